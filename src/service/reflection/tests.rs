//! Reflection through the services over the memory datastore. The schema and
//! expected values of the ReflectSchema cases are those of SpiceDB's own
//! service tests (internal/services/v1/schema_test.go, v1.54.0): comments
//! with their delimiters, subject types in declared order, definitions and
//! caveats by name, parameters by name, and its filter semantics.

use std::sync::Arc;

use super::*;
use crate::datastore::memory::MemoryDatastore;
use crate::service::Limits;

const FULL: &str = r#"
    /** user represents a user */
    definition user {}

    /** group represents a group */
    definition group {
        relation direct_member: user | group#member
        relation admin: user
        permission member = direct_member + admin
    }

    /** somecaveat is a caveat */
    caveat somecaveat(first int, second string) {
        first == 1 && second == "two"
    }

    /** document is a protected document */
    definition document {
        // editor is a relation
        relation editor: user | group#member
        relation viewer: user | user with somecaveat | group#member | user:*

        // read all the things
        permission read = viewer + editor
    }
"#;

async fn services_with(schema: Option<&str>) -> Arc<Services<MemoryDatastore>> {
    let services = crate::server::services(Arc::new(MemoryDatastore::default()), Limits::default());
    if let Some(schema) = schema {
        services
            .write_schema(schema)
            .await
            .expect("schema is valid");
    }
    services
}

async fn reflect(
    services: &Services<MemoryDatastore>,
    filters: Vec<SchemaFilter>,
) -> Result<ReflectedSchema, ServiceError> {
    services
        .reflect_schema(filters, Consistency::FullyConsistent)
        .await
        .map(|(schema, _)| schema)
}

fn subject(definition: &str, caveat: Option<&str>, target: SubjectTarget) -> ReflectedSubjectType {
    ReflectedSubjectType {
        definition: definition.into(),
        caveat: caveat.map(String::from),
        target,
    }
}

fn user() -> ReflectedSubjectType {
    subject("user", None, SubjectTarget::Object)
}

fn group_member() -> ReflectedSubjectType {
    subject("group", None, SubjectTarget::Relation("member".into()))
}

fn filter(definition: &str, caveat: &str, relation: &str, permission: &str) -> SchemaFilter {
    SchemaFilter {
        definition: definition.into(),
        caveat: caveat.into(),
        relation: relation.into(),
        permission: permission.into(),
    }
}

#[tokio::test]
async fn reflects_the_whole_schema_as_spicedb_does() {
    let services = services_with(Some(FULL)).await;
    let reflected = reflect(&services, vec![]).await.expect("reflects");
    let names: Vec<&str> = reflected
        .definitions
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(names, ["document", "group", "user"]);
    let document = &reflected.definitions[0];
    assert_eq!(document.comment, "/** document is a protected document */");
    assert_eq!(
        document.relations,
        [
            ReflectedRelation {
                name: "editor".into(),
                comment: "// editor is a relation".into(),
                parent_definition: "document".into(),
                subject_types: vec![user(), group_member()],
            },
            ReflectedRelation {
                name: "viewer".into(),
                comment: String::new(),
                parent_definition: "document".into(),
                subject_types: vec![
                    user(),
                    subject("user", Some("somecaveat"), SubjectTarget::Object),
                    group_member(),
                    subject("user", None, SubjectTarget::Wildcard),
                ],
            },
        ]
    );
    assert_eq!(
        document.permissions,
        [ReflectedPermission {
            name: "read".into(),
            comment: "// read all the things".into(),
            parent_definition: "document".into(),
        }]
    );
    assert_eq!(
        reflected.definitions[2],
        ReflectedDefinition {
            name: "user".into(),
            comment: "/** user represents a user */".into(),
            relations: vec![],
            permissions: vec![],
        }
    );
    assert_eq!(
        reflected.caveats,
        [ReflectedCaveat {
            name: "somecaveat".into(),
            comment: "/** somecaveat is a caveat */".into(),
            parameters: vec![
                ReflectedParameter {
                    name: "first".into(),
                    type_name: "int".into(),
                    parent_caveat: "somecaveat".into(),
                },
                ReflectedParameter {
                    name: "second".into(),
                    type_name: "string".into(),
                    parent_caveat: "somecaveat".into(),
                },
            ],
            expression: "first == 1 && second == \"two\"".into(),
        }]
    );
}

#[tokio::test]
async fn comments_are_reported_as_written_not_as_printed() {
    let services = services_with(Some(
        "//tight comment\n/*\n   block\n   */\ndefinition user {}",
    ))
    .await;
    let reflected = reflect(&services, vec![]).await.expect("reflects");
    assert_eq!(
        reflected.definitions[0].comment,
        "//tight comment\n/*\nblock\n*/"
    );
    // ReadSchema prints the same comments canonically.
    let (text, _) = services.read_schema().await.expect("reads");
    assert_eq!(text, "// tight comment\n/* block */\ndefinition user {}");
}

#[tokio::test]
async fn a_definition_filter_drops_caveats_and_other_definitions() {
    let services = services_with(Some(FULL)).await;
    let reflected = reflect(&services, vec![filter("doc", "", "", "")])
        .await
        .expect("reflects");
    assert!(reflected.caveats.is_empty());
    assert_eq!(reflected.definitions.len(), 1);
    assert_eq!(reflected.definitions[0].name, "document");
    assert_eq!(reflected.definitions[0].relations.len(), 2);
    assert_eq!(reflected.definitions[0].permissions.len(), 1);
}

#[tokio::test]
async fn relation_and_permission_filters_are_or_ed() {
    let services = services_with(Some(FULL)).await;
    let reflected = reflect(
        &services,
        vec![
            filter("doc", "", "viewer", ""),
            filter("doc", "", "", "read"),
        ],
    )
    .await
    .expect("reflects");
    let document = &reflected.definitions[0];
    let relations: Vec<&str> = document.relations.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(relations, ["viewer"]);
    assert_eq!(document.permissions[0].name, "read");
    // A relation filter alone keeps every permission (none is filtered).
    let reflected = reflect(&services, vec![filter("gr", "", "adm", "")])
        .await
        .expect("reflects");
    let group = &reflected.definitions[0];
    assert_eq!(group.relations.len(), 1);
    assert_eq!(group.relations[0].name, "admin");
    assert_eq!(group.permissions.len(), 1);
}

#[tokio::test]
async fn a_caveat_filter_drops_definitions() {
    let services = services_with(Some(FULL)).await;
    let reflected = reflect(&services, vec![filter("", "some", "", "")])
        .await
        .expect("reflects");
    assert!(reflected.definitions.is_empty());
    assert_eq!(reflected.caveats.len(), 1);
    let none = reflect(&services, vec![filter("", "other", "", "")])
        .await
        .expect("reflects");
    assert!(none.caveats.is_empty());
}

#[tokio::test]
async fn invalid_filters_name_the_filter() {
    let services = services_with(Some(FULL)).await;
    let cases = [
        (
            filter("doc", "invalid", "", ""),
            "cannot filter by both definition and caveat name",
            r#"optional_definition_name_filter:"doc" optional_caveat_name_filter:"invalid""#,
        ),
        (
            filter("", "", "doc", ""),
            "relation name match requires definition name match",
            r#"optional_relation_name_filter:"doc""#,
        ),
        (
            filter("doc", "", "rel", "perm"),
            "cannot filter by both relation and permission name",
            r#"optional_definition_name_filter:"doc" optional_relation_name_filter:"rel" optional_permission_name_filter:"perm""#,
        ),
        (
            filter("", "", "", "perm"),
            "permission name match requires definition name match",
            r#"optional_permission_name_filter:"perm""#,
        ),
    ];
    for (f, expected_message, expected_text) in cases {
        match reflect(&services, vec![f]).await {
            Err(ServiceError::InvalidFilter { message, filter }) => {
                assert_eq!(message, expected_message);
                assert_eq!(filter, expected_text);
            }
            other => panic!("expected an invalid filter, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn no_schema_reflects_as_empty() {
    let services = services_with(None).await;
    assert_eq!(
        reflect(&services, vec![]).await.expect("reflects"),
        ReflectedSchema::default()
    );
    let (diffs, _) = services
        .diff_schema("definition user {}", Consistency::FullyConsistent)
        .await
        .expect("diffs");
    assert!(matches!(&diffs[..], [SchemaDiff::DefinitionAdded(d)] if d.name == "user"));
    let err = services
        .dependent_relations("user", "view", Consistency::FullyConsistent)
        .await
        .expect_err("no definitions");
    assert!(matches!(err, ServiceError::UnknownDefinition { definition } if definition == "user"));
}

fn refs(found: &[RelationReference]) -> Vec<String> {
    found
        .iter()
        .map(|r| {
            let kind = if r.is_permission { "perm" } else { "rel" };
            format!("{}#{} {kind}", r.definition, r.relation)
        })
        .collect()
}

#[tokio::test]
async fn computable_and_dependent_with_spicedbs_errors() {
    let services = services_with(Some(
        "definition user {}
definition folder {
    relation viewer: user
}
definition document {
    relation unused: user
    relation editor: user
    relation viewer: user
    permission view = viewer + editor
    permission another = unused
}",
    ))
    .await;
    let fully = || Consistency::FullyConsistent;
    let (found, _) = services
        .computable_permissions("user", "", "", fully())
        .await
        .expect("computes");
    assert_eq!(
        refs(&found),
        [
            "document#another perm",
            "document#editor rel",
            "document#unused rel",
            "document#view perm",
            "document#viewer rel",
            "folder#viewer rel"
        ]
    );
    let (found, _) = services
        .computable_permissions("user", "", "folder", fully())
        .await
        .expect("computes");
    assert_eq!(refs(&found), ["folder#viewer rel"]);
    let (found, _) = services
        .computable_permissions("document", "viewer", "", fully())
        .await
        .expect("computes");
    assert_eq!(refs(&found), ["document#view perm"]);
    let (found, _) = services
        .dependent_relations("document", "view", fully())
        .await
        .expect("depends");
    assert_eq!(refs(&found), ["document#editor rel", "document#viewer rel"]);

    let err = services
        .computable_permissions("invalid", "", "", fully())
        .await
        .expect_err("unknown definition");
    assert_eq!(err.to_string(), "object definition `invalid` not found");
    let err = services
        .computable_permissions("user", "invalid", "", fully())
        .await
        .expect_err("unknown relation");
    assert_eq!(
        err.to_string(),
        "relation/permission `invalid` not found under definition `user`"
    );
    let err = services
        .dependent_relations("document", "editor", fully())
        .await
        .expect_err("a relation");
    assert_eq!(err.to_string(), "the relation `editor` is not a permission");
    let err = services
        .dependent_relations("user", "", fully())
        .await
        .expect_err("empty permission");
    assert!(matches!(err, ServiceError::UnknownRelation { .. }));
}

#[tokio::test]
async fn diff_describes_each_change_from_the_schema_that_has_it() {
    let services = services_with(Some(
        "caveat cav(num int) {
    num == 1
}
definition user {}
definition doc {
    relation owner: user
    relation viewer: user | user with cav
    permission view = viewer
}",
    ))
    .await;
    let (diffs, _) = services
        .diff_schema(
            "caveat cav(num string) {
    num == \"1\"
}
definition user {}
definition doc {
    /** who may see */
    relation viewer: user:* | user with cav
    permission view = viewer + viewer
}",
            Consistency::FullyConsistent,
        )
        .await
        .expect("diffs");
    let viewer = ReflectedRelation {
        name: "viewer".into(),
        comment: "/** who may see */".into(),
        parent_definition: "doc".into(),
        subject_types: vec![
            subject("user", None, SubjectTarget::Wildcard),
            subject("user", Some("cav"), SubjectTarget::Object),
        ],
    };
    let param = ReflectedParameter {
        name: "num".into(),
        type_name: "string".into(),
        parent_caveat: "cav".into(),
    };
    assert_eq!(
        diffs,
        [
            SchemaDiff::RelationRemoved(ReflectedRelation {
                name: "owner".into(),
                comment: String::new(),
                parent_definition: "doc".into(),
                subject_types: vec![user()],
            }),
            SchemaDiff::PermissionExprChanged(ReflectedPermission {
                name: "view".into(),
                comment: String::new(),
                parent_definition: "doc".into(),
            }),
            SchemaDiff::RelationDocCommentChanged(viewer.clone()),
            SchemaDiff::RelationSubjectTypeRemoved {
                relation: viewer.clone(),
                subject_type: user(),
            },
            SchemaDiff::RelationSubjectTypeAdded {
                relation: viewer,
                subject_type: subject("user", None, SubjectTarget::Wildcard),
            },
            SchemaDiff::CaveatParameterTypeChanged {
                parameter: param,
                previous_type: "int".into(),
            },
            SchemaDiff::CaveatExprChanged(ReflectedCaveat {
                name: "cav".into(),
                comment: String::new(),
                parameters: vec![ReflectedParameter {
                    name: "num".into(),
                    type_name: "string".into(),
                    parent_caveat: "cav".into(),
                }],
                expression: "num == \"1\"".into(),
            }),
        ]
    );
}

#[tokio::test]
async fn diff_reports_schema_errors_as_write_schema_does() {
    let services = services_with(Some("definition user {}")).await;
    let err = services
        .diff_schema("definition user { invalid", Consistency::FullyConsistent)
        .await
        .expect_err("does not parse");
    assert!(matches!(err, ServiceError::SchemaParse { .. }), "{err:?}");
}
