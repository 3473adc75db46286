//! DiffSchema's rules: one case per kind of change, SpiceDB's order of
//! groups, and the comparisons that decide what counts as a change. The
//! expected kinds follow SpiceDB's pkg/diff tests (v1.54.0) where they have
//! a case.

use super::*;
use crate::schema::{compile, compile_unchecked};

use SchemaChange as C;

fn changes(existing: &str, comparison: &str) -> Vec<SchemaChange> {
    let existing = compile(existing).expect("existing schema compiles");
    let comparison = compile_unchecked(comparison).expect("comparison schema compiles");
    diff(&existing, &comparison)
}

fn relation_removed(definition: &str, relation: &str) -> SchemaChange {
    C::RelationRemoved {
        definition: definition.into(),
        relation: relation.into(),
    }
}

fn permission_added(definition: &str, permission: &str) -> SchemaChange {
    C::PermissionAdded {
        definition: definition.into(),
        permission: permission.into(),
    }
}

fn plain_user(caveat: Option<&str>, expiration: bool) -> AllowedSubjectType {
    AllowedSubjectType {
        type_name: "user".into(),
        target: SubjectTarget::Object,
        caveat: caveat.map(String::from),
        expiration,
    }
}

#[test]
fn equal_schemas_have_no_changes() {
    let schema = "/** u */\ndefinition user {}\ncaveat cav(num int) {\n num == 1\n}\ndefinition doc {\n relation viewer: user with cav\n permission view = viewer\n}";
    assert!(changes(schema, schema).is_empty());
    // Formatting, parentheses and declaration order are not changes.
    assert!(
        changes(
            "definition user {}\ndefinition doc {\nrelation viewer: user\npermission view = viewer\n}",
            "definition doc {\n\trelation viewer: user\n\tpermission view = (viewer)\n}\n\ndefinition user {}"
        )
        .is_empty()
    );
}

#[test]
fn added_and_removed_definitions_and_caveats() {
    assert_eq!(
        changes(
            "definition user {}",
            "definition user {} definition document {}"
        ),
        [C::DefinitionAdded("document".into())]
    );
    assert_eq!(
        changes(
            "definition user {} definition document {}",
            "definition user {}"
        ),
        [C::DefinitionRemoved("document".into())]
    );
    assert_eq!(
        changes(
            "caveat old(num int) {\n num == 1\n}\ndefinition user {}",
            "caveat new(num int) {\n num == 1\n}\ndefinition user {}"
        ),
        [C::CaveatAdded("new".into()), C::CaveatRemoved("old".into())]
    );
}

#[test]
fn groups_come_in_spicedbs_order_and_names_sorted_within() {
    let existing = "
caveat cav(num int, gone string) {
    num == 1 && gone == \"\"
}
definition user {}
definition old {}
definition doc {
    relation zzz: user
    relation aaa: user
    permission pp2 = aaa
    permission pp1 = zzz
    relation flip: user
}";
    let comparison = "
caveat cav(num int, added bool) {
    num == 2 && added
}
caveat fresh(num int) {
    num > 0
}
definition user {}
definition doc {
    // a doc comment now
    relation aaa: user | user:*
    relation bbb: user
    permission pp1 = zzz + aaa
    permission flip = aaa
    permission pp0 = aaa
}
definition added {}";
    assert_eq!(
        changes(existing, comparison),
        [
            C::DefinitionAdded("added".into()),
            C::DefinitionRemoved("old".into()),
            C::CaveatAdded("fresh".into()),
            relation_removed("doc", "flip"),
            relation_removed("doc", "zzz"),
            C::RelationAdded {
                definition: "doc".into(),
                relation: "bbb".into()
            },
            C::PermissionRemoved {
                definition: "doc".into(),
                permission: "pp2".into()
            },
            permission_added("doc", "flip"),
            permission_added("doc", "pp0"),
            C::PermissionExprChanged {
                definition: "doc".into(),
                permission: "pp1".into()
            },
            C::RelationDocChanged {
                definition: "doc".into(),
                relation: "aaa".into()
            },
            C::SubjectTypeAdded {
                definition: "doc".into(),
                relation: "aaa".into(),
                subject_type: AllowedSubjectType {
                    target: SubjectTarget::Wildcard,
                    ..plain_user(None, false)
                }
            },
            C::CaveatParameterRemoved {
                caveat: "cav".into(),
                parameter: "gone".into()
            },
            C::CaveatParameterAdded {
                caveat: "cav".into(),
                parameter: "added".into()
            },
            C::CaveatExprChanged("cav".into()),
        ]
    );
}

#[test]
fn doc_comments_compare_as_written() {
    let base = "// who\ndefinition user {}";
    assert_eq!(
        changes(base, "//who\ndefinition user {}"),
        [C::DefinitionDocChanged("user".into())]
    );
    // Lines are trimmed before comparing, as SpiceDB stores them.
    assert!(changes(base, "   // who   \ndefinition user {}").is_empty());
    assert_eq!(
        changes(
            "definition user {}\ndefinition doc {\n/** a */ relation rel: user\n// p\npermission perm = rel\n}",
            "definition user {}\ndefinition doc {\n/** b */ relation rel: user\npermission perm = rel\n}"
        ),
        [
            C::PermissionDocChanged {
                definition: "doc".into(),
                permission: "perm".into()
            },
            C::RelationDocChanged {
                definition: "doc".into(),
                relation: "rel".into()
            },
        ]
    );
    assert_eq!(
        changes(
            "caveat cav(num int) {\n num == 1\n}\ndefinition user {}",
            "/* c */ caveat cav(num int) {\n num == 1\n}\ndefinition user {}"
        ),
        [C::CaveatDocChanged("cav".into())]
    );
}

#[test]
fn a_permission_changes_when_its_rewrite_tree_does() {
    let with = |expr: &str| {
        format!(
            "definition user {{}}\ndefinition folder {{\n relation viewer: user\n}}\ndefinition doc {{\n relation aaa: user\n relation bbb: user\n relation parent: folder\n permission perm = {expr}\n}}"
        )
    };
    let changed = |from: &str, to: &str| !changes(&with(from), &with(to)).is_empty();
    assert!(
        changed("aaa + bbb", "bbb + aaa"),
        "operand order is structure"
    );
    assert!(
        !changed("aaa + bbb + parent->viewer", "aaa + (bbb + parent->viewer)"),
        "unions flatten"
    );
    assert!(
        changed("parent->viewer", "parent.any(viewer)"),
        "`->` and `.any()` are stored apart"
    );
    assert!(!changed("aaa - bbb", "(aaa) - (bbb)"));
    assert!(changed("(aaa - bbb) - aaa", "aaa - (bbb - aaa)"));
    assert!(changed("aaa & bbb", "aaa + bbb"));
}

#[test]
fn a_relation_that_becomes_a_permission_is_removed_and_added() {
    assert_eq!(
        changes(
            "definition user {}\ndefinition doc {\n relation rel: user\n relation other: user\n}",
            "definition user {}\ndefinition doc {\n permission rel = other\n relation other: user\n}"
        ),
        [
            relation_removed("doc", "rel"),
            permission_added("doc", "rel")
        ]
    );
}

#[test]
fn subject_types_compare_as_written_with_caveats_and_expiration() {
    let with = |types: &str| {
        format!(
            "use expiration\ncaveat cav(num int) {{\n num == 1\n}}\ndefinition user {{}}\ndefinition doc {{\n relation rel: {types}\n}}"
        )
    };
    assert_eq!(
        changes(
            &with("user | user with cav"),
            &with("user with cav and expiration | user with cav")
        ),
        [
            C::SubjectTypeRemoved {
                definition: "doc".into(),
                relation: "rel".into(),
                subject_type: plain_user(None, false)
            },
            C::SubjectTypeAdded {
                definition: "doc".into(),
                relation: "rel".into(),
                subject_type: plain_user(Some("cav"), true)
            },
        ]
    );
}

#[test]
fn caveat_parameters_and_expressions() {
    let with = |params: &str, body: &str| {
        format!("caveat cav({params}) {{\n {body}\n}}\ndefinition user {{}}")
    };
    let type_changed = |previous| C::CaveatParameterTypeChanged {
        caveat: "cav".into(),
        parameter: "num".into(),
        previous,
    };
    // A read parameter's new type changes the checked expression too.
    assert_eq!(
        changes(
            &with("num int", "num == num"),
            &with("num string", "num == num")
        ),
        [
            type_changed(CaveatType::Int),
            C::CaveatExprChanged("cav".into())
        ]
    );
    assert_eq!(
        changes(&with("num int", "num > 1"), &with("num uint", "num > 1")),
        [type_changed(CaveatType::Int)],
        "uint is int to CEL's checker"
    );
    // The comparison schema skips the unused-parameter check, as in SpiceDB.
    assert_eq!(
        changes(
            &with("num int", "num == 1"),
            &with("num int, spare string", "num == 1")
        ),
        [C::CaveatParameterAdded {
            caveat: "cav".into(),
            parameter: "spare".into()
        }],
        "an unread parameter leaves the expression alone"
    );
    assert_eq!(
        changes(&with("num int", "num==1"), &with("num int", "num == 1")),
        [C::CaveatExprChanged("cav".into())],
        "the text is compared, spacing included"
    );
}

#[test]
fn the_comparison_schema_is_not_type_checked() {
    // SpiceDB compiles the comparison without its type system: a relation
    // naming an unknown type is still a schema to compare with.
    assert_eq!(
        changes(
            "definition user {}",
            "definition user {}\ndefinition doc {\n relation rel: nosuch\n}"
        ),
        [C::DefinitionAdded("doc".into())]
    );
}
