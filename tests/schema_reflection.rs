//! Schema reflection and the ExperimentalService over gRPC: ReflectSchema,
//! ComputablePermissions, DependentRelations and DiffSchema, their deprecated
//! `Experimental*` aliases, BulkCheckPermission, and the relationship
//! counters, with SpiceDB's codes, reasons and metadata.
//!
//! The embedded SpiceDB of `tests/oracle` cannot serve these RPCs (its FFI
//! covers WriteSchema, ReadSchema, the permission checks and relationship
//! writes; its proxy only the four streaming RPCs), so the expected values
//! here are SpiceDB v1.54.0's own service tests where they have a case
//! (internal/services/v1/schema_test.go: "full schema" reflects with
//! `comment: "/** document is a protected document */"`, editor's
//! `comment: "// editor is a relation"`, subject types `user` (terminal),
//! `group#member`, `user with somecaveat`, `user:*`, caveat expression
//! `first == 1 && second == "two"`; DependentRelations of a relation fails
//! INVALID_ARGUMENT "is not a permission"; unknown names fail
//! FAILED_PRECONDITION "object definition `invalid` not found" and
//! "relation/permission `invalid` not found"), and otherwise what its
//! sources say (comments are stored as written with each line trimmed;
//! `is_terminal_subject` is present but false; counters fail with
//! COUNTER_ALREADY_REGISTERED / COUNTER_NOT_REGISTERED and a `counter_name`).

// The aliases under test are deprecated in the API.
#![allow(deprecated)]

#[path = "common/server.rs"]
mod server;

use std::collections::HashMap;

use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use trellis::api::proto::v1;
use trellis::api::proto::v1::experimental_service_client::ExperimentalServiceClient;
use trellis::api::proto::v1::permissions_service_client::PermissionsServiceClient;
use trellis::api::proto::v1::schema_service_client::SchemaServiceClient;

/// SpiceDB's "full schema" ReflectSchema case.
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

/// A running server (stopped on drop) and a channel to it.
struct Server {
    channel: Channel,
    _server: server::TestServer,
}

impl Server {
    fn schema(&self) -> SchemaServiceClient<Channel> {
        SchemaServiceClient::new(self.channel.clone())
    }

    fn experimental(&self) -> ExperimentalServiceClient<Channel> {
        ExperimentalServiceClient::new(self.channel.clone())
    }

    fn permissions(&self) -> PermissionsServiceClient<Channel> {
        PermissionsServiceClient::new(self.channel.clone())
    }
}

async fn start() -> Server {
    let server = server::TestServer::start_default().await;
    Server {
        channel: server.channel.clone(),
        _server: server,
    }
}

async fn with_schema(schema: &str) -> Server {
    let server = start().await;
    server
        .schema()
        .write_schema(authed(v1::WriteSchemaRequest {
            schema: schema.into(),
        }))
        .await
        .expect("schema accepted");
    server
}

fn authed<T>(message: T) -> Request<T> {
    server::authed(message)
}

fn full() -> Option<v1::Consistency> {
    Some(v1::Consistency {
        requirement: Some(v1::consistency::Requirement::FullyConsistent(true)),
    })
}

/// (reason, metadata) of a status's ErrorInfo.
fn info(status: &Status) -> (String, HashMap<String, String>) {
    status
        .get_details_error_info()
        .map(|i| (i.reason, i.metadata))
        .unwrap_or_default()
}

fn terminal(definition: &str, caveat: &str) -> v1::ReflectionTypeReference {
    v1::ReflectionTypeReference {
        subject_definition_name: definition.into(),
        optional_caveat_name: caveat.into(),
        // SpiceDB sets the oneof without setting its value.
        typeref: Some(v1::reflection_type_reference::Typeref::IsTerminalSubject(
            false,
        )),
    }
}

fn subject_set(definition: &str, relation: &str) -> v1::ReflectionTypeReference {
    v1::ReflectionTypeReference {
        subject_definition_name: definition.into(),
        optional_caveat_name: String::new(),
        typeref: Some(
            v1::reflection_type_reference::Typeref::OptionalRelationName(relation.into()),
        ),
    }
}

fn wildcard(definition: &str) -> v1::ReflectionTypeReference {
    v1::ReflectionTypeReference {
        subject_definition_name: definition.into(),
        optional_caveat_name: String::new(),
        typeref: Some(v1::reflection_type_reference::Typeref::IsPublicWildcard(
            true,
        )),
    }
}

fn reference(
    definition: &str,
    relation: &str,
    is_permission: bool,
) -> v1::ReflectionRelationReference {
    v1::ReflectionRelationReference {
        definition_name: definition.into(),
        relation_name: relation.into(),
        is_permission,
    }
}

async fn reflect(
    server: &Server,
    filters: Vec<v1::ReflectionSchemaFilter>,
) -> Result<v1::ReflectSchemaResponse, Status> {
    server
        .schema()
        .reflect_schema(authed(v1::ReflectSchemaRequest {
            consistency: full(),
            optional_filters: filters,
        }))
        .await
        .map(|r| r.into_inner())
}

// ---- ReflectSchema ----------------------------------------------------------

#[tokio::test]
async fn reflect_schema_matches_spicedbs_full_schema_case() {
    let server = with_schema(FULL).await;
    let response = reflect(&server, vec![]).await.expect("reflects");
    assert!(response.read_at.is_some());
    let expected_document = v1::ReflectionDefinition {
        name: "document".into(),
        comment: "/** document is a protected document */".into(),
        relations: vec![
            v1::ReflectionRelation {
                name: "editor".into(),
                comment: "// editor is a relation".into(),
                parent_definition_name: "document".into(),
                subject_types: vec![terminal("user", ""), subject_set("group", "member")],
            },
            v1::ReflectionRelation {
                name: "viewer".into(),
                comment: String::new(),
                parent_definition_name: "document".into(),
                subject_types: vec![
                    terminal("user", ""),
                    terminal("user", "somecaveat"),
                    subject_set("group", "member"),
                    wildcard("user"),
                ],
            },
        ],
        permissions: vec![v1::ReflectionPermission {
            name: "read".into(),
            comment: "// read all the things".into(),
            parent_definition_name: "document".into(),
        }],
    };
    assert_eq!(response.definitions.len(), 3);
    assert_eq!(response.definitions[0], expected_document);
    assert_eq!(response.definitions[1].name, "group");
    assert_eq!(
        response.definitions[1].comment,
        "/** group represents a group */"
    );
    assert_eq!(
        response.definitions[2],
        v1::ReflectionDefinition {
            name: "user".into(),
            comment: "/** user represents a user */".into(),
            relations: vec![],
            permissions: vec![],
        }
    );
    let param = |name: &str, t: &str| v1::ReflectionCaveatParameter {
        name: name.into(),
        r#type: t.into(),
        parent_caveat_name: "somecaveat".into(),
    };
    assert_eq!(
        response.caveats,
        [v1::ReflectionCaveat {
            name: "somecaveat".into(),
            comment: "/** somecaveat is a caveat */".into(),
            parameters: vec![param("first", "int"), param("second", "string")],
            expression: "first == 1 && second == \"two\"".into(),
        }]
    );
}

#[tokio::test]
async fn reflect_schema_keeps_comments_as_written() {
    let server = with_schema(
        "//no space\n/**\n     * a block\n     */\ndefinition user {\n\t/* a relation */ relation friend: user\n}",
    )
    .await;
    let response = reflect(&server, vec![]).await.expect("reflects");
    let user = &response.definitions[0];
    assert_eq!(user.comment, "//no space\n/**\n* a block\n*/");
    assert_eq!(user.relations[0].comment, "/* a relation */");
    // ReadSchema still prints them canonically.
    let text = server
        .schema()
        .read_schema(authed(v1::ReadSchemaRequest {}))
        .await
        .expect("reads")
        .into_inner()
        .schema_text;
    assert!(
        text.starts_with("// no space\n/** a block */\ndefinition user {"),
        "{text}"
    );
}

#[tokio::test]
async fn reflect_schema_filters() {
    let server = with_schema(FULL).await;
    let filter = |definition: &str, caveat: &str, relation: &str, permission: &str| {
        v1::ReflectionSchemaFilter {
            optional_definition_name_filter: definition.into(),
            optional_caveat_name_filter: caveat.into(),
            optional_relation_name_filter: relation.into(),
            optional_permission_name_filter: permission.into(),
        }
    };
    let response = reflect(
        &server,
        vec![
            filter("doc", "", "viewer", ""),
            filter("doc", "", "", "read"),
        ],
    )
    .await
    .expect("reflects");
    assert!(response.caveats.is_empty());
    assert_eq!(response.definitions.len(), 1);
    let document = &response.definitions[0];
    assert_eq!(document.relations.len(), 1);
    assert_eq!(document.relations[0].name, "viewer");
    assert_eq!(document.permissions[0].name, "read");

    let caveats_only = reflect(&server, vec![filter("", "some", "", "")])
        .await
        .expect("reflects");
    assert!(caveats_only.definitions.is_empty());
    assert_eq!(caveats_only.caveats.len(), 1);

    let status = reflect(&server, vec![filter("doc", "invalid", "", "")])
        .await
        .expect_err("invalid filter");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "the relationship filter provided is not valid: cannot filter by both definition and caveat name"
    );
    let (reason, metadata) = info(&status);
    assert_eq!(reason, "ERROR_REASON_INVALID_FILTER");
    assert_eq!(
        metadata["filter"],
        r#"optional_definition_name_filter:"doc" optional_caveat_name_filter:"invalid""#
    );
    let status = reflect(&server, vec![filter("", "", "doc", "")])
        .await
        .expect_err("invalid filter");
    assert!(
        status
            .message()
            .contains("relation name match requires definition name match")
    );
}

#[tokio::test]
async fn reflect_schema_without_a_schema_is_empty_and_checks_consistency() {
    let server = start().await;
    let response = reflect(&server, vec![]).await.expect("reflects");
    assert!(response.definitions.is_empty() && response.caveats.is_empty());
    let status = server
        .schema()
        .reflect_schema(authed(v1::ReflectSchemaRequest {
            consistency: Some(v1::Consistency {
                requirement: Some(v1::consistency::Requirement::FullyConsistent(false)),
            }),
            optional_filters: vec![],
        }))
        .await
        .expect_err("fully_consistent must be true");
    assert_eq!(status.code(), Code::InvalidArgument);
}

// ---- ComputablePermissions and DependentRelations ---------------------------

const ARROWS: &str = "
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
}";

#[tokio::test]
async fn computable_permissions_and_dependent_relations() {
    let server = with_schema(ARROWS).await;
    let computable = server
        .schema()
        .computable_permissions(authed(v1::ComputablePermissionsRequest {
            consistency: full(),
            definition_name: "folder".into(),
            relation_name: "viewer".into(),
            optional_definition_name_filter: String::new(),
        }))
        .await
        .expect("computes")
        .into_inner();
    assert_eq!(
        computable.permissions,
        [
            reference("document", "view", true),
            reference("folder", "view", true)
        ]
    );
    assert!(computable.read_at.is_some());
    let filtered = server
        .schema()
        .computable_permissions(authed(v1::ComputablePermissionsRequest {
            consistency: full(),
            definition_name: "user".into(),
            relation_name: String::new(),
            optional_definition_name_filter: "fold".into(),
        }))
        .await
        .expect("computes")
        .into_inner();
    assert_eq!(
        filtered.permissions,
        [
            reference("folder", "alsounused", false),
            reference("folder", "view", true),
            reference("folder", "viewer", false)
        ]
    );
    let dependent = server
        .schema()
        .dependent_relations(authed(v1::DependentRelationsRequest {
            consistency: full(),
            definition_name: "document".into(),
            permission_name: "view".into(),
        }))
        .await
        .expect("depends")
        .into_inner();
    assert_eq!(
        dependent.relations,
        [
            reference("document", "parent", false),
            reference("document", "viewer", false),
            reference("folder", "view", true),
            reference("folder", "viewer", false)
        ]
    );
}

#[tokio::test]
async fn computable_and_dependent_errors_carry_spicedbs_reasons() {
    let server = with_schema(ARROWS).await;
    let dependent = |definition: &str, permission: &str| {
        let mut client = server.schema();
        let request = authed(v1::DependentRelationsRequest {
            consistency: full(),
            definition_name: definition.into(),
            permission_name: permission.into(),
        });
        async move { client.dependent_relations(request).await }
    };
    let status = dependent("invalid", "view")
        .await
        .expect_err("unknown type");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "object definition `invalid` not found");
    let (reason, metadata) = info(&status);
    assert_eq!(reason, "ERROR_REASON_UNKNOWN_DEFINITION");
    assert_eq!(metadata["definition_name"], "invalid");

    let status = dependent("document", "invalid").await.expect_err("unknown");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("permission `invalid` not found"));
    let (reason, metadata) = info(&status);
    assert_eq!(reason, "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION");
    assert_eq!(metadata["relation_or_permission_name"], "invalid");

    let status = dependent("document", "viewer")
        .await
        .expect_err("a relation");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "the relation `viewer` is not a permission"
    );
    let (reason, metadata) = info(&status);
    assert_eq!(reason, "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION");
    assert_eq!(metadata["relationName"], "viewer");

    let status = dependent("", "view").await.expect_err("empty type");
    assert_eq!(status.message(), "object definition `` not found");

    let status = server
        .schema()
        .computable_permissions(authed(v1::ComputablePermissionsRequest {
            consistency: full(),
            definition_name: "user".into(),
            relation_name: "invalid".into(),
            optional_definition_name_filter: String::new(),
        }))
        .await
        .expect_err("unknown relation");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "relation/permission `invalid` not found under definition `user`"
    );
}

// ---- DiffSchema ------------------------------------------------------------

async fn diff(server: &Server, comparison: &str) -> Result<v1::DiffSchemaResponse, Status> {
    server
        .schema()
        .diff_schema(authed(v1::DiffSchemaRequest {
            consistency: full(),
            comparison_schema: comparison.into(),
        }))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn diff_schema_reports_changes_in_spicedbs_order() {
    use v1::reflection_schema_diff::Diff;
    let server = with_schema(
        "caveat cav(num int) {
    num == 1
}
definition user {}
definition document {
    relation owner: user
    relation viewer: user
    permission view = viewer
}",
    )
    .await;
    assert!(
        diff(&server, "caveat cav(num int) {\n num == 1\n}\ndefinition user {}\ndefinition document {\n relation owner: user\n relation viewer: user\n permission view = viewer\n}")
            .await
            .expect("diffs")
            .diffs
            .is_empty()
    );
    let response = diff(
        &server,
        "caveat cav(num int, extra string) {
    num == 1 && extra != \"\"
}
definition user {}
definition folder {}
definition document {
    // who may see
    relation viewer: user | user:*
    permission view = viewer + viewer
    permission edit = viewer
}",
    )
    .await
    .expect("diffs");
    let kinds: Vec<&str> = response
        .diffs
        .iter()
        .map(|d| match &d.diff {
            Some(Diff::DefinitionAdded(_)) => "definition_added",
            Some(Diff::RelationRemoved(_)) => "relation_removed",
            Some(Diff::PermissionAdded(_)) => "permission_added",
            Some(Diff::PermissionExprChanged(_)) => "permission_expr_changed",
            Some(Diff::RelationDocCommentChanged(_)) => "relation_doc_comment_changed",
            Some(Diff::RelationSubjectTypeAdded(_)) => "relation_subject_type_added",
            Some(Diff::CaveatParameterAdded(_)) => "caveat_parameter_added",
            Some(Diff::CaveatExprChanged(_)) => "caveat_expr_changed",
            other => panic!("unexpected diff {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "definition_added",
            "relation_removed",
            "permission_added",
            "permission_expr_changed",
            "relation_doc_comment_changed",
            "relation_subject_type_added",
            "caveat_parameter_added",
            "caveat_expr_changed"
        ]
    );
    let Some(Diff::RelationSubjectTypeAdded(change)) = &response.diffs[5].diff else {
        panic!("a subject type change");
    };
    let relation = change.relation.as_ref().expect("relation");
    assert_eq!(relation.name, "viewer");
    assert_eq!(relation.comment, "// who may see");
    assert_eq!(change.changed_subject_type, Some(wildcard("user")));
    let Some(Diff::CaveatParameterAdded(param)) = &response.diffs[6].diff else {
        panic!("a parameter");
    };
    assert_eq!(
        (
            param.name.as_str(),
            param.r#type.as_str(),
            param.parent_caveat_name.as_str()
        ),
        ("extra", "string", "cav")
    );
}

#[tokio::test]
async fn diff_schema_refuses_a_comparison_that_does_not_parse() {
    let server = with_schema("definition user {}").await;
    let status = diff(&server, "definition user { invalid")
        .await
        .expect_err("does not parse");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(info(&status).0, "ERROR_REASON_SCHEMA_PARSE_ERROR");
}

// ---- the deprecated aliases -------------------------------------------------

#[tokio::test]
async fn experimental_aliases_answer_as_the_stable_rpcs() {
    let server = with_schema(FULL).await;
    let stable = reflect(&server, vec![]).await.expect("reflects");
    let alias = server
        .experimental()
        .experimental_reflect_schema(authed(v1::ExperimentalReflectSchemaRequest {
            consistency: full(),
            optional_filters: vec![],
        }))
        .await
        .expect("alias reflects")
        .into_inner();
    assert_eq!(alias.definitions.len(), stable.definitions.len());
    let document = &alias.definitions[0];
    assert_eq!(document.comment, "/** document is a protected document */");
    assert_eq!(
        document.relations[1].subject_types[3].typeref,
        Some(v1::exp_type_reference::Typeref::IsPublicWildcard(true))
    );
    assert_eq!(alias.caveats[0].expression, stable.caveats[0].expression);

    let computable = server
        .experimental()
        .experimental_computable_permissions(authed(v1::ExperimentalComputablePermissionsRequest {
            consistency: full(),
            definition_name: "group".into(),
            relation_name: "admin".into(),
            optional_definition_name_filter: String::new(),
        }))
        .await
        .expect("alias computes")
        .into_inner();
    let names: Vec<(&str, &str, bool)> = computable
        .permissions
        .iter()
        .map(|r| {
            (
                r.definition_name.as_str(),
                r.relation_name.as_str(),
                r.is_permission,
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("document", "editor", false),
            ("document", "read", true),
            ("document", "viewer", false),
            ("group", "direct_member", false),
            ("group", "member", true)
        ]
    );

    let status = server
        .experimental()
        .experimental_dependent_relations(authed(v1::ExperimentalDependentRelationsRequest {
            consistency: full(),
            definition_name: "document".into(),
            permission_name: "editor".into(),
        }))
        .await
        .expect_err("not a permission");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        info(&status).0,
        "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION"
    );

    let diffed = server
        .experimental()
        .experimental_diff_schema(authed(v1::ExperimentalDiffSchemaRequest {
            consistency: full(),
            comparison_schema: "definition user {}".into(),
        }))
        .await
        .expect("alias diffs")
        .into_inner();
    use v1::exp_schema_diff::Diff as E;
    let kinds: Vec<String> = diffed
        .diffs
        .iter()
        .map(|d| match &d.diff {
            Some(E::DefinitionRemoved(def)) => format!("definition_removed {}", def.name),
            Some(E::CaveatRemoved(c)) => format!("caveat_removed {}", c.name),
            Some(E::DefinitionDocCommentChanged(def)) => {
                format!(
                    "definition_doc_comment_changed {} {:?}",
                    def.name, def.comment
                )
            }
            other => panic!("unexpected diff {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "definition_removed document",
            "definition_removed group",
            "caveat_removed somecaveat",
            "definition_doc_comment_changed user \"\""
        ]
    );
}

#[tokio::test]
async fn bulk_check_permission_is_check_bulk_permissions() {
    let server = with_schema(FULL).await;
    server
        .permissions()
        .write_relationships(authed(v1::WriteRelationshipsRequest {
            updates: vec![v1::RelationshipUpdate {
                operation: v1::relationship_update::Operation::Touch as i32,
                relationship: Some(v1::Relationship {
                    resource: Some(v1::ObjectReference {
                        object_type: "document".into(),
                        object_id: "readme".into(),
                    }),
                    relation: "editor".into(),
                    subject: Some(v1::SubjectReference {
                        object: Some(v1::ObjectReference {
                            object_type: "user".into(),
                            object_id: "ann".into(),
                        }),
                        optional_relation: String::new(),
                    }),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }))
        .await
        .expect("write");
    let item = |user: &str| v1::BulkCheckPermissionRequestItem {
        resource: Some(v1::ObjectReference {
            object_type: "document".into(),
            object_id: "readme".into(),
        }),
        permission: "read".into(),
        subject: Some(v1::SubjectReference {
            object: Some(v1::ObjectReference {
                object_type: "user".into(),
                object_id: user.into(),
            }),
            optional_relation: String::new(),
        }),
        context: None,
    };
    let request = v1::BulkCheckPermissionRequest {
        consistency: full(),
        items: vec![item("ann"), item("bob"), item("*")],
    };
    let response = server
        .experimental()
        .bulk_check_permission(authed(request))
        .await
        .expect("checks")
        .into_inner();
    assert!(response.checked_at.is_some());
    use v1::bulk_check_permission_pair::Response as R;
    use v1::check_permission_response::Permissionship as P;
    let answers: Vec<Result<i32, i32>> = response
        .pairs
        .iter()
        .map(|pair| match &pair.response {
            Some(R::Item(item)) => Ok(item.permissionship),
            Some(R::Error(status)) => Err(status.code),
            None => panic!("pair without a response"),
        })
        .collect();
    assert_eq!(
        answers,
        [
            Ok(P::HasPermission as i32),
            Ok(P::NoPermission as i32),
            Err(Code::InvalidArgument as i32)
        ]
    );
    assert_eq!(
        response.pairs[1]
            .request
            .as_ref()
            .map(|r| r.permission.as_str()),
        Some("read"),
        "each pair echoes its request"
    );
    // The stable RPC's validation applies, field names and all.
    let invalid = v1::BulkCheckPermissionRequest {
        consistency: full(),
        items: vec![v1::BulkCheckPermissionRequestItem {
            resource: None,
            ..item("ann")
        }],
    };
    let status = server
        .experimental()
        .bulk_check_permission(authed(invalid))
        .await
        .expect_err("resource is required");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("items[0].resource"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn experimental_service_needs_the_key_and_reports_healthy() {
    let server = start().await;
    let status = server
        .experimental()
        .experimental_count_relationships(Request::new(v1::ExperimentalCountRelationshipsRequest {
            name: "views".into(),
        }))
        .await
        .expect_err("no key");
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "authzed.api.v1.ExperimentalService".into(),
        })
        .await
        .expect("health answers")
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

// ---- relationship counters ---------------------------------------------------

fn documents(relation: &str) -> Option<v1::RelationshipFilter> {
    Some(v1::RelationshipFilter {
        resource_type: "document".into(),
        optional_relation: relation.into(),
        ..Default::default()
    })
}

async fn register(
    server: &Server,
    name: &str,
    filter: Option<v1::RelationshipFilter>,
) -> Result<(), Status> {
    server
        .experimental()
        .experimental_register_relationship_counter(authed(
            v1::ExperimentalRegisterRelationshipCounterRequest {
                name: name.into(),
                relationship_filter: filter,
            },
        ))
        .await
        .map(|_| ())
}

async fn count(server: &Server, name: &str) -> Result<v1::ReadCounterValue, Status> {
    use v1::experimental_count_relationships_response::CounterResult;
    let response = server
        .experimental()
        .experimental_count_relationships(authed(v1::ExperimentalCountRelationshipsRequest {
            name: name.into(),
        }))
        .await?
        .into_inner();
    match response.counter_result {
        Some(CounterResult::ReadCounterValue(value)) => Ok(value),
        other => panic!("expected a counter value, got {other:?}"),
    }
}

async fn unregister(server: &Server, name: &str) -> Result<(), Status> {
    server
        .experimental()
        .experimental_unregister_relationship_counter(authed(
            v1::ExperimentalUnregisterRelationshipCounterRequest { name: name.into() },
        ))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn counters_register_count_and_unregister() {
    let server = with_schema(FULL).await;
    register(&server, "doc_viewers", documents("viewer"))
        .await
        .expect("registers");
    assert_eq!(
        count(&server, "doc_viewers")
            .await
            .expect("counts")
            .relationship_count,
        0
    );
    let updates = ["ann", "bob", "*"]
        .iter()
        .map(|id| v1::RelationshipUpdate {
            operation: v1::relationship_update::Operation::Touch as i32,
            relationship: Some(v1::Relationship {
                resource: Some(v1::ObjectReference {
                    object_type: "document".into(),
                    object_id: "readme".into(),
                }),
                relation: "viewer".into(),
                subject: Some(v1::SubjectReference {
                    object: Some(v1::ObjectReference {
                        object_type: "user".into(),
                        object_id: (*id).into(),
                    }),
                    optional_relation: String::new(),
                }),
                ..Default::default()
            }),
        })
        .collect();
    let written = server
        .permissions()
        .write_relationships(authed(v1::WriteRelationshipsRequest {
            updates,
            ..Default::default()
        }))
        .await
        .expect("write")
        .into_inner();
    let value = count(&server, "doc_viewers").await.expect("counts");
    assert_eq!(value.relationship_count, 3);
    assert_eq!(value.read_at, written.written_at, "counted at head");

    unregister(&server, "doc_viewers")
        .await
        .expect("unregisters");
    let status = count(&server, "doc_viewers")
        .await
        .expect_err("unregistered");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "counter with name `doc_viewers` not found"
    );
    let (reason, metadata) = info(&status);
    assert_eq!(reason, "ERROR_REASON_COUNTER_NOT_REGISTERED");
    assert_eq!(metadata["counter_name"], "doc_viewers");
    let status = unregister(&server, "doc_viewers").await.expect_err("twice");
    assert_eq!(info(&status).0, "ERROR_REASON_COUNTER_NOT_REGISTERED");
}

#[tokio::test]
async fn counter_errors_carry_spicedbs_reasons() {
    let server = with_schema(FULL).await;
    register(&server, "doc_viewers", documents("viewer"))
        .await
        .expect("registers");
    let status = register(
        &server,
        "doc_viewers",
        Some(v1::RelationshipFilter {
            resource_type: "document".into(),
            optional_resource_id_prefix: "re".into(),
            optional_subject_filter: Some(v1::SubjectFilter {
                subject_type: "group".into(),
                optional_subject_id: "eng".into(),
                optional_relation: Some(v1::subject_filter::RelationFilter {
                    relation: "member".into(),
                }),
            }),
            ..Default::default()
        }),
    )
    .await
    .expect_err("taken");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "counter with name `doc_viewers` already registered"
    );
    let (reason, metadata) = info(&status);
    assert_eq!(reason, "ERROR_REASON_COUNTER_ALREADY_REGISTERED");
    let expected: HashMap<String, String> = [
        ("counter_name", "doc_viewers"),
        ("new_filter_resource_type", "document"),
        ("new_filter_resource_id", ""),
        ("new_filter_resource_id_prefix", "re"),
        ("new_filter_relation", ""),
        ("new_filter_subject_type", "group"),
        ("new_filter_subject_id", "eng"),
        ("new_filter_subject_relation", "member"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(metadata, expected);

    // An empty name passes the pattern and is refused by the handler.
    let status = register(&server, "", documents("viewer"))
        .await
        .expect_err("no name");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "name must be provided");
    assert_eq!(info(&status).0, "ERROR_REASON_UNSPECIFIED");
    let status = count(&server, "").await.expect_err("no name");
    assert_eq!(status.message(), "name must be provided");

    let status = register(&server, "Bad-Name", documents("viewer"))
        .await
        .expect_err("bad name");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("name"), "{}", status.message());
    assert!(
        info(&status).0.is_empty(),
        "validation errors carry no ErrorInfo"
    );

    let status = register(&server, "no_filter", None)
        .await
        .expect_err("filter required");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("relationship_filter"));

    let status = register(
        &server,
        "folders",
        Some(v1::RelationshipFilter {
            resource_type: "folder".into(),
            ..Default::default()
        }),
    )
    .await
    .expect_err("unknown type");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(info(&status).0, "ERROR_REASON_UNKNOWN_DEFINITION");

    let status = register(&server, "nothing", Some(v1::RelationshipFilter::default()))
        .await
        .expect_err("selects nothing");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(info(&status).0, "ERROR_REASON_INVALID_FILTER");
}
