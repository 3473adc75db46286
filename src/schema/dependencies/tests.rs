//! The walks on the schemas of SpiceDB's own DependentRelations and
//! ComputablePermissions cases (its service tests, v1.54.0), plus the corners
//! its graph builder implies (tuplesets, wildcards, `self`, exclusions).

use super::*;
use crate::schema::compile;

fn keys(found: BTreeSet<RelationKey>) -> Vec<String> {
    found.into_iter().map(|(d, r)| format!("{d}#{r}")).collect()
}

fn dependents(schema: &str, def: &str, perm: &str) -> Vec<String> {
    let schema = compile(schema).expect("schema compiles");
    let mut found = dependent_relations(&schema, def, perm);
    found.remove(&(def.to_string(), perm.to_string()));
    keys(found)
}

fn computable(schema: &str, def: &str, relation: Option<&str>) -> Vec<String> {
    let schema = compile(schema).expect("schema compiles");
    let mut found = computable_from(&schema, def, relation);
    if let Some(r) = relation {
        found.remove(&(def.to_string(), r.to_string()));
    }
    keys(found)
}

const NESTED: &str = "
definition user {}
definition group {
    relation direct_member: user | group#member
    relation admin: user
    permission member = direct_member + admin
}
definition document {
    relation unused: user
    relation viewer: user | group#member
    permission view = viewer
}";

const ARROW: &str = "
definition user {}
definition folder {
    relation alsounused: user
    relation viewer: user
    permission view = viewer
}
definition document {
    relation unused: user
    relation parent: folder
    relation viewer: user
    permission view = viewer + parent->view
    permission empty = nil
}";

#[test]
fn a_union_of_relations_depends_on_both() {
    let schema = "definition user {}
definition document {
    relation unused: user
    relation editor: user
    relation viewer: user
    permission view = viewer + editor
}";
    assert_eq!(
        dependents(schema, "document", "view"),
        ["document#editor", "document#viewer"]
    );
}

#[test]
fn subject_sets_are_followed_into_their_definition() {
    assert_eq!(
        dependents(NESTED, "document", "view"),
        [
            "document#viewer",
            "group#admin",
            "group#direct_member",
            "group#member"
        ]
    );
}

#[test]
fn arrows_list_the_tupleset_and_walk_the_target() {
    assert_eq!(
        dependents(ARROW, "document", "view"),
        [
            "document#parent",
            "document#viewer",
            "folder#view",
            "folder#viewer"
        ]
    );
    assert!(dependents(ARROW, "document", "empty").is_empty());
}

#[test]
fn every_branch_of_an_exclusion_and_intersection_counts() {
    let schema = "definition user {}
definition doc {
    relation aaa: user
    relation bbb: user
    relation ccc: user
    permission ppp = (aaa & bbb) - ccc
}";
    assert_eq!(
        dependents(schema, "doc", "ppp"),
        ["doc#aaa", "doc#bbb", "doc#ccc"]
    );
}

#[test]
fn an_arrow_that_reaches_nothing_lists_no_tupleset() {
    let schema = "definition user {}
definition folder {
    relation viewer: user
}
definition other {}
definition doc {
    relation parent: folder | other
    relation owner: user
    permission ppp = owner + parent->viewer
}";
    // `other` has no `viewer`, but `folder` does: the tupleset is listed once.
    assert_eq!(
        dependents(schema, "doc", "ppp"),
        ["doc#owner", "doc#parent", "folder#viewer"]
    );
}

#[test]
fn computable_from_a_subject_type() {
    let schema = "definition user {}
definition document {
    relation unused: user
    relation editor: user
    relation viewer: user
    permission view = viewer + editor
    permission another = unused
}";
    assert_eq!(
        computable(schema, "user", None),
        [
            "document#another",
            "document#editor",
            "document#unused",
            "document#view",
            "document#viewer"
        ]
    );
    assert_eq!(
        computable(schema, "document", Some("viewer")),
        ["document#view"]
    );
}

#[test]
fn computable_through_subject_sets_arrows_and_self() {
    assert_eq!(
        computable(NESTED, "user", None),
        [
            "document#unused",
            "document#view",
            "document#viewer",
            "group#admin",
            "group#direct_member",
            "group#member"
        ]
    );
    assert_eq!(
        computable(ARROW, "folder", Some("viewer")),
        ["document#view", "folder#view"]
    );
    let with_self = "use self
definition user {
    relation friend: user
    permission myself = self
}";
    assert_eq!(
        computable(with_self, "user", None),
        ["user#friend", "user#myself"]
    );
}

#[test]
fn a_wildcard_is_reached_from_any_relation_of_its_type() {
    let schema = "definition user {}
definition group {
    relation member: user
}
definition doc {
    relation anyone_in: group:*
    relation team: group#member
}";
    // SpiceDB keys wildcard entrypoints by type alone, so `group#member`
    // reaches `doc#anyone_in` too.
    assert_eq!(
        computable(schema, "group", Some("member")),
        ["doc#anyone_in", "doc#team"]
    );
}

#[test]
fn a_permission_that_reaches_nothing_is_computable_from_nothing() {
    let schema = "definition user {}
definition document {
    relation unused: user
    permission empty = nil
}";
    assert!(computable(schema, "document", Some("unused")).is_empty());
}
