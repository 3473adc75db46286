//! The public gRPC API end to end: a real server on a free loopback port,
//! called with the generated `authzed.api.v1` clients, success and error
//! paths, auth, and SpiceDB's error details (`ErrorInfo` reasons).

#[path = "common/server.rs"]
mod server;

use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use trellis::api::proto::v1;
use trellis::api::proto::v1::permissions_service_client::PermissionsServiceClient;
use trellis::api::proto::v1::schema_service_client::SchemaServiceClient;

const SCHEMA: &str = "definition user {}

definition group {
    relation member: user | group#member
}

definition document {
    relation owner: user
    relation viewer: user | group#member | user:*
    relation banned: user
    permission edit = owner
    permission view = (viewer + edit) - banned
}";

/// A running server (stopped on drop) and a channel to it.
struct Server {
    channel: Channel,
    _server: server::TestServer,
}

async fn start() -> Server {
    let server = server::TestServer::start_default().await;
    Server {
        channel: server.channel.clone(),
        _server: server,
    }
}

fn authed<T>(message: T) -> Request<T> {
    server::authed(message)
}

fn obj(t: &str, id: &str) -> Option<v1::ObjectReference> {
    Some(v1::ObjectReference {
        object_type: t.into(),
        object_id: id.into(),
    })
}

fn subject(t: &str, id: &str, relation: &str) -> Option<v1::SubjectReference> {
    Some(v1::SubjectReference {
        object: obj(t, id),
        optional_relation: relation.into(),
    })
}

fn update(
    op: v1::relationship_update::Operation,
    resource: (&str, &str),
    relation: &str,
    subj: (&str, &str, &str),
) -> v1::RelationshipUpdate {
    v1::RelationshipUpdate {
        operation: op as i32,
        relationship: Some(v1::Relationship {
            resource: obj(resource.0, resource.1),
            relation: relation.into(),
            subject: subject(subj.0, subj.1, subj.2),
            optional_caveat: None,
            optional_expires_at: None,
        }),
    }
}

fn full() -> Option<v1::Consistency> {
    Some(v1::Consistency {
        requirement: Some(v1::consistency::Requirement::FullyConsistent(true)),
    })
}

async fn write_schema(server: &Server, schema: &str) -> Result<v1::WriteSchemaResponse, Status> {
    SchemaServiceClient::new(server.channel.clone())
        .write_schema(authed(v1::WriteSchemaRequest {
            schema: schema.into(),
        }))
        .await
        .map(|r| r.into_inner())
}

async fn write(
    server: &Server,
    updates: Vec<v1::RelationshipUpdate>,
) -> Result<v1::WriteRelationshipsResponse, Status> {
    PermissionsServiceClient::new(server.channel.clone())
        .write_relationships(authed(v1::WriteRelationshipsRequest {
            updates,
            ..Default::default()
        }))
        .await
        .map(|r| r.into_inner())
}

async fn check(
    server: &Server,
    resource: (&str, &str),
    permission: &str,
    subj: (&str, &str, &str),
) -> Result<i32, Status> {
    PermissionsServiceClient::new(server.channel.clone())
        .check_permission(authed(v1::CheckPermissionRequest {
            consistency: full(),
            resource: obj(resource.0, resource.1),
            permission: permission.into(),
            subject: subject(subj.0, subj.1, subj.2),
            ..Default::default()
        }))
        .await
        .map(|r| r.into_inner().permissionship)
}

fn reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

const HAS: i32 = v1::check_permission_response::Permissionship::HasPermission as i32;
const NO: i32 = v1::check_permission_response::Permissionship::NoPermission as i32;
use v1::relationship_update::Operation::{Create, Delete, Touch};

async fn seeded() -> Server {
    let server = start().await;
    write_schema(&server, SCHEMA)
        .await
        .expect("schema accepted");
    write(
        &server,
        vec![
            update(
                Touch,
                ("document", "readme"),
                "owner",
                ("user", "alice", ""),
            ),
            update(Touch, ("group", "eng"), "member", ("user", "bob", "")),
            update(
                Touch,
                ("document", "readme"),
                "viewer",
                ("group", "eng", "member"),
            ),
            update(Touch, ("document", "public"), "viewer", ("user", "*", "")),
            update(
                Touch,
                ("document", "public"),
                "banned",
                ("user", "mallory", ""),
            ),
        ],
    )
    .await
    .expect("relationships written");
    server
}

#[tokio::test]
async fn schema_round_trip_and_not_found_before_any() {
    let server = start().await;
    let mut client = SchemaServiceClient::new(server.channel.clone());
    let missing = client
        .read_schema(authed(v1::ReadSchemaRequest {}))
        .await
        .expect_err("no schema yet");
    assert_eq!(missing.code(), Code::NotFound);
    write_schema(&server, SCHEMA).await.expect("accepted");
    let read = client
        .read_schema(authed(v1::ReadSchemaRequest {}))
        .await
        .expect("readable")
        .into_inner();
    assert!(
        read.schema_text
            .contains("permission view = viewer + edit - banned"),
        "{}",
        read.schema_text
    );
    assert!(read.read_at.is_some());
}

#[tokio::test]
async fn checks_follow_the_schema() {
    let server = seeded().await;
    assert_eq!(
        check(
            &server,
            ("document", "readme"),
            "view",
            ("user", "alice", "")
        )
        .await
        .expect("ok"),
        HAS
    );
    assert_eq!(
        check(&server, ("document", "readme"), "view", ("user", "bob", ""))
            .await
            .expect("ok"),
        HAS
    );
    assert_eq!(
        check(&server, ("document", "readme"), "edit", ("user", "bob", ""))
            .await
            .expect("ok"),
        NO
    );
    assert_eq!(
        check(&server, ("document", "public"), "view", ("user", "zed", ""))
            .await
            .expect("ok"),
        HAS
    );
    assert_eq!(
        check(
            &server,
            ("document", "public"),
            "view",
            ("user", "mallory", "")
        )
        .await
        .expect("ok"),
        NO
    );
    // A relation can be checked too, and a subject set is a member of itself.
    assert_eq!(
        check(
            &server,
            ("group", "eng"),
            "member",
            ("group", "eng", "member")
        )
        .await
        .expect("ok"),
        HAS
    );
}

#[tokio::test]
async fn a_write_token_makes_the_next_check_see_the_write() {
    let server = seeded().await;
    let written = write(
        &server,
        vec![update(
            Touch,
            ("document", "new"),
            "viewer",
            ("user", "carol", ""),
        )],
    )
    .await
    .expect("written");
    let response = PermissionsServiceClient::new(server.channel.clone())
        .check_permission(authed(v1::CheckPermissionRequest {
            consistency: Some(v1::Consistency {
                requirement: Some(v1::consistency::Requirement::AtLeastAsFresh(
                    written.written_at.expect("token"),
                )),
            }),
            resource: obj("document", "new"),
            permission: "view".into(),
            subject: subject("user", "carol", ""),
            ..Default::default()
        }))
        .await
        .expect("checked")
        .into_inner();
    assert_eq!(response.permissionship, HAS);
    assert!(response.checked_at.is_some());
}

#[tokio::test]
async fn bulk_check_keeps_order_and_reports_errors_per_item() {
    let server = seeded().await;
    let item = |id: &str, permission: &str, user: &str| v1::CheckBulkPermissionsRequestItem {
        resource: obj("document", id),
        permission: permission.into(),
        subject: subject("user", user, ""),
        context: None,
    };
    let response = PermissionsServiceClient::new(server.channel.clone())
        .check_bulk_permissions(authed(v1::CheckBulkPermissionsRequest {
            consistency: full(),
            items: vec![
                item("readme", "view", "bob"),
                item("readme", "nosuch", "bob"),
                item("readme", "edit", "bob"),
            ],
            with_tracing: false,
        }))
        .await
        .expect("bulk check")
        .into_inner();
    use v1::check_bulk_permissions_pair::Response as R;
    let answers: Vec<String> = response
        .pairs
        .iter()
        .map(|p| match &p.response {
            Some(R::Item(item)) => format!("item {}", item.permissionship),
            Some(R::Error(status)) => format!("error {}", status.code),
            None => "none".into(),
        })
        .collect();
    assert_eq!(
        answers,
        vec![
            format!("item {HAS}"),
            format!("error {}", Code::FailedPrecondition as i32),
            format!("item {NO}")
        ]
    );
}

#[tokio::test]
async fn read_relationships_pages_with_cursors_in_key_order() {
    let server = seeded().await;
    let mut client = PermissionsServiceClient::new(server.channel.clone());
    let mut cursor = None;
    let mut seen = Vec::new();
    loop {
        let mut stream = client
            .read_relationships(authed(v1::ReadRelationshipsRequest {
                consistency: full(),
                relationship_filter: Some(v1::RelationshipFilter {
                    resource_type: "document".into(),
                    ..Default::default()
                }),
                optional_limit: 2,
                optional_cursor: cursor.take(),
            }))
            .await
            .expect("read")
            .into_inner();
        let mut page = 0;
        while let Some(item) = stream.message().await.expect("stream item") {
            let rel = item.relationship.expect("relationship");
            let resource = rel.resource.expect("resource");
            seen.push(format!("{}#{}", resource.object_id, rel.relation));
            cursor = item.after_result_cursor;
            page += 1;
        }
        if page < 2 {
            break;
        }
    }
    assert_eq!(
        seen,
        vec![
            "public#banned",
            "public#viewer",
            "readme#owner",
            "readme#viewer"
        ]
    );
}

#[tokio::test]
async fn delete_by_filter_and_partial_deletion() {
    let server = seeded().await;
    let mut client = PermissionsServiceClient::new(server.channel.clone());
    let filter = Some(v1::RelationshipFilter {
        resource_type: "document".into(),
        ..Default::default()
    });
    let too_many = client
        .delete_relationships(authed(v1::DeleteRelationshipsRequest {
            relationship_filter: filter.clone(),
            optional_limit: 1,
            ..Default::default()
        }))
        .await
        .expect_err("more than the limit match");
    assert_eq!(
        (too_many.code(), reason(&too_many).as_str()),
        (
            Code::InvalidArgument,
            "ERROR_REASON_TOO_MANY_RELATIONSHIPS_FOR_TRANSACTIONAL_DELETE"
        )
    );
    let partial = client
        .delete_relationships(authed(v1::DeleteRelationshipsRequest {
            relationship_filter: filter.clone(),
            optional_limit: 1,
            optional_allow_partial_deletions: true,
            ..Default::default()
        }))
        .await
        .expect("partial delete")
        .into_inner();
    assert_eq!(
        partial.deletion_progress,
        v1::delete_relationships_response::DeletionProgress::Partial as i32
    );
    assert_eq!(partial.relationships_deleted_count, 1);
    let rest = client
        .delete_relationships(authed(v1::DeleteRelationshipsRequest {
            relationship_filter: filter,
            ..Default::default()
        }))
        .await
        .expect("delete the rest")
        .into_inner();
    assert_eq!(rest.relationships_deleted_count, 3);
    assert_eq!(
        check(
            &server,
            ("document", "readme"),
            "view",
            ("user", "alice", "")
        )
        .await
        .expect("ok"),
        NO
    );
}

#[tokio::test]
async fn write_errors_carry_spicedb_reasons() {
    let server = seeded().await;
    let cases: Vec<(Vec<v1::RelationshipUpdate>, Code, &str)> = vec![
        (
            vec![update(
                Create,
                ("document", "readme"),
                "owner",
                ("user", "alice", ""),
            )],
            Code::AlreadyExists,
            "ERROR_REASON_ATTEMPT_TO_RECREATE_RELATIONSHIP",
        ),
        (
            vec![update(
                Touch,
                ("document", "readme"),
                "view",
                ("user", "alice", ""),
            )],
            Code::InvalidArgument,
            "ERROR_REASON_CANNOT_UPDATE_PERMISSION",
        ),
        (
            vec![update(
                Touch,
                ("document", "readme"),
                "owner",
                ("group", "eng", ""),
            )],
            Code::InvalidArgument,
            "ERROR_REASON_INVALID_SUBJECT_TYPE",
        ),
        (
            vec![update(
                Touch,
                ("nosuch", "x"),
                "owner",
                ("user", "alice", ""),
            )],
            Code::FailedPrecondition,
            "ERROR_REASON_UNKNOWN_DEFINITION",
        ),
        (
            vec![update(
                Touch,
                ("document", "x"),
                "nosuch",
                ("user", "alice", ""),
            )],
            Code::FailedPrecondition,
            "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION",
        ),
        (
            vec![
                update(Touch, ("document", "x"), "owner", ("user", "alice", "")),
                update(Delete, ("document", "x"), "owner", ("user", "alice", "")),
            ],
            Code::InvalidArgument,
            "ERROR_REASON_UPDATES_ON_SAME_RELATIONSHIP",
        ),
    ];
    for (updates, code, expected_reason) in cases {
        let status = write(&server, updates).await.expect_err("write refused");
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (code, expected_reason),
            "{}",
            status.message()
        );
    }
    // A CREATE that failed changed nothing.
    assert_eq!(
        check(
            &server,
            ("document", "readme"),
            "view",
            ("user", "alice", "")
        )
        .await
        .expect("ok"),
        HAS
    );
}

#[tokio::test]
async fn preconditions_guard_writes() {
    let server = seeded().await;
    let request = |kind: v1::precondition::Operation| v1::WriteRelationshipsRequest {
        updates: vec![update(
            Touch,
            ("document", "guarded"),
            "owner",
            ("user", "alice", ""),
        )],
        optional_preconditions: vec![v1::Precondition {
            operation: kind as i32,
            filter: Some(v1::RelationshipFilter {
                resource_type: "document".into(),
                optional_resource_id: "readme".into(),
                ..Default::default()
            }),
        }],
        ..Default::default()
    };
    let mut client = PermissionsServiceClient::new(server.channel.clone());
    let refused = client
        .write_relationships(authed(request(v1::precondition::Operation::MustNotMatch)))
        .await
        .expect_err("readme has relationships");
    assert_eq!(
        (refused.code(), reason(&refused).as_str()),
        (
            Code::FailedPrecondition,
            "ERROR_REASON_WRITE_OR_DELETE_PRECONDITION_FAILURE"
        )
    );
    client
        .write_relationships(authed(request(v1::precondition::Operation::MustMatch)))
        .await
        .expect("precondition holds");
}

#[tokio::test]
async fn schema_errors_and_orphan_protection() {
    let server = seeded().await;
    let parse = write_schema(&server, "definition {")
        .await
        .expect_err("parse error");
    assert_eq!(
        (parse.code(), reason(&parse).as_str()),
        (Code::InvalidArgument, "ERROR_REASON_SCHEMA_PARSE_ERROR")
    );
    let typed = write_schema(&server, "definition doc { relation viewer: usr; }")
        .await
        .expect_err("type error");
    assert_eq!(
        (typed.code(), reason(&typed).as_str()),
        (Code::FailedPrecondition, "ERROR_REASON_SCHEMA_TYPE_ERROR")
    );
    // Dropping `banned` would orphan document:public#banned@user:mallory.
    let orphan = write_schema(
        &server,
        &SCHEMA
            .replace("relation banned: user", "")
            .replace(" - banned", ""),
    )
    .await
    .expect_err("orphaned relationships");
    assert_eq!(orphan.code(), Code::InvalidArgument, "{}", orphan.message());
    assert!(orphan.message().contains("banned"), "{}", orphan.message());
}

#[tokio::test]
async fn check_errors() {
    let server = seeded().await;
    let wildcard = check(&server, ("document", "readme"), "view", ("user", "*", ""))
        .await
        .expect_err("wildcard subject");
    assert_eq!(wildcard.code(), Code::InvalidArgument);
    let unknown = check(
        &server,
        ("document", "readme"),
        "nosuch",
        ("user", "alice", ""),
    )
    .await
    .expect_err("unknown permission");
    assert_eq!(
        (unknown.code(), reason(&unknown).as_str()),
        (
            Code::FailedPrecondition,
            "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION"
        )
    );
    let bad_token = PermissionsServiceClient::new(server.channel.clone())
        .check_permission(authed(v1::CheckPermissionRequest {
            consistency: Some(v1::Consistency {
                requirement: Some(v1::consistency::Requirement::AtExactSnapshot(
                    v1::ZedToken {
                        token: "garbage!".into(),
                    },
                )),
            }),
            resource: obj("document", "readme"),
            permission: "view".into(),
            subject: subject("user", "alice", ""),
            ..Default::default()
        }))
        .await
        .expect_err("undecodable token");
    assert_eq!(bad_token.code(), Code::InvalidArgument);
}

/// CheckPermission with `with_tracing` (or SpiceDB's debug header).
async fn traced_check(
    server: &Server,
    resource: (&str, &str),
    permission: &str,
    subj: (&str, &str, &str),
    by_header: bool,
) -> v1::CheckPermissionResponse {
    let mut request = authed(v1::CheckPermissionRequest {
        consistency: full(),
        resource: obj(resource.0, resource.1),
        permission: permission.into(),
        subject: subject(subj.0, subj.1, subj.2),
        with_tracing: !by_header,
        ..Default::default()
    });
    if by_header {
        request.metadata_mut().insert(
            "io.spicedb.requestdebuginfo",
            "true".parse().expect("ascii header"),
        );
    }
    PermissionsServiceClient::new(server.channel.clone())
        .check_permission(request)
        .await
        .expect("traced check")
        .into_inner()
}

/// `resource#permission` and result of a trace node, and its sub-problems
/// (none when the cache answered it).
fn trace_summary(trace: &v1::CheckDebugTrace) -> (String, i32, i32, Vec<&v1::CheckDebugTrace>) {
    use v1::check_debug_trace::Resolution;
    let resource = trace.resource.as_ref().expect("resource");
    let children = match &trace.resolution {
        Some(Resolution::SubProblems(sub)) => sub.traces.iter().collect(),
        _ => Vec::new(),
    };
    (
        format!(
            "{}:{}#{}",
            resource.object_type, resource.object_id, trace.permission
        ),
        trace.permission_type,
        trace.result,
        children,
    )
}

#[tokio::test]
async fn with_tracing_returns_the_subproblems_that_decided() {
    use v1::check_debug_trace::{PermissionType, Permissionship, Resolution};
    let server = seeded().await;
    let response = traced_check(
        &server,
        ("document", "readme"),
        "view",
        ("user", "bob", ""),
        false,
    )
    .await;
    assert_eq!(response.permissionship, HAS);
    let debug = response.debug_trace.expect("a debug trace");
    assert!(
        debug.schema_used.contains("permission view"),
        "{}",
        debug.schema_used
    );
    let root = debug.check.expect("the root trace");
    let (name, kind, result, children) = trace_summary(&root);
    assert_eq!(
        (name.as_str(), kind, result),
        (
            "document:readme#view",
            PermissionType::Permission as i32,
            Permissionship::HasPermission as i32
        )
    );
    assert!(root.duration.is_some());
    let viewer = children
        .iter()
        .find(|c| trace_summary(c).0 == "document:readme#viewer")
        .expect("the viewer relation was dispatched");
    let (_, kind, result, grandchildren) = trace_summary(viewer);
    assert_eq!(
        (kind, result),
        (
            PermissionType::Relation as i32,
            Permissionship::HasPermission as i32
        )
    );
    let group = grandchildren
        .iter()
        .find(|c| trace_summary(c).0 == "group:eng#member")
        .expect("bob is a viewer through group:eng#member");
    assert_eq!(group.result, Permissionship::HasPermission as i32);
    let traced_subject = root
        .subject
        .as_ref()
        .and_then(|s| s.object.as_ref())
        .expect("subject");
    assert_eq!(
        (
            traced_subject.object_type.as_str(),
            traced_subject.object_id.as_str()
        ),
        ("user", "bob")
    );

    // Asked again, the answer comes from the dispatch cache, and says so.
    let again = traced_check(
        &server,
        ("document", "readme"),
        "view",
        ("user", "bob", ""),
        true,
    )
    .await
    .debug_trace
    .and_then(|d| d.check)
    .expect("a debug trace through the header");
    assert_eq!(again.resolution, Some(Resolution::WasCachedResult(true)));
    assert_eq!(again.result, Permissionship::HasPermission as i32);

    // Without tracing, no trace.
    let plain = PermissionsServiceClient::new(server.channel.clone())
        .check_permission(authed(v1::CheckPermissionRequest {
            consistency: full(),
            resource: obj("document", "readme"),
            permission: "view".into(),
            subject: subject("user", "bob", ""),
            ..Default::default()
        }))
        .await
        .expect("check")
        .into_inner();
    assert!(plain.debug_trace.is_none());
}

#[tokio::test]
async fn recursion_without_end_is_a_depth_error_not_a_hang() {
    let server = seeded().await;
    write(
        &server,
        vec![
            update(Touch, ("group", "a"), "member", ("group", "b", "member")),
            update(Touch, ("group", "b"), "member", ("group", "a", "member")),
        ],
    )
    .await
    .expect("cycle written");
    let status = check(&server, ("group", "a"), "member", ("user", "nobody", ""))
        .await
        .expect_err("cycle");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (
            Code::FailedPrecondition,
            "ERROR_REASON_MAXIMUM_DEPTH_EXCEEDED"
        )
    );
}

#[tokio::test]
async fn preshared_key_is_required_and_compared() {
    let server = start().await;
    let mut client = SchemaServiceClient::new(server.channel.clone());
    let missing = client
        .read_schema(Request::new(v1::ReadSchemaRequest {}))
        .await
        .expect_err("no key");
    assert_eq!(missing.code(), Code::Unauthenticated);
    let mut wrong = Request::new(v1::ReadSchemaRequest {});
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer wrong".parse().expect("ascii"));
    assert_eq!(
        client
            .read_schema(wrong)
            .await
            .expect_err("wrong key")
            .code(),
        Code::PermissionDenied
    );
    // Health stays open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "authzed.api.v1.PermissionsService".into(),
        })
        .await
        .expect("health answers without a key")
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn lookups_and_expand_answer_over_grpc() {
    use futures::StreamExt as _;
    let server = seeded().await;
    let mut client = PermissionsServiceClient::new(server.channel.clone());
    let lookup = |limit: u32, cursor: Option<v1::Cursor>| v1::LookupResourcesRequest {
        consistency: full(),
        resource_object_type: "document".into(),
        permission: "view".into(),
        subject: Some(v1::SubjectReference {
            object: obj("user", "bob"),
            optional_relation: String::new(),
        }),
        context: None,
        optional_limit: limit,
        optional_cursor: cursor,
        with_debug: false,
    };
    // bob sees readme (through group:eng) and the public document.
    let all: Vec<v1::LookupResourcesResponse> = client
        .lookup_resources(authed(lookup(0, None)))
        .await
        .expect("lookup")
        .into_inner()
        .map(|r| r.expect("result"))
        .collect()
        .await;
    let mut ids: Vec<&str> = all.iter().map(|r| r.resource_object_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["public", "readme"]);

    // Page by page with limit 1: the same two, each once.
    let first: Vec<_> = client
        .lookup_resources(authed(lookup(1, None)))
        .await
        .expect("page 1")
        .into_inner()
        .map(|r| r.expect("result"))
        .collect()
        .await;
    assert_eq!(first.len(), 1);
    let second: Vec<_> = client
        .lookup_resources(authed(lookup(1, first[0].after_result_cursor.clone())))
        .await
        .expect("page 2")
        .into_inner()
        .map(|r| r.expect("result"))
        .collect()
        .await;
    assert_eq!(second.len(), 1);
    assert_ne!(first[0].resource_object_id, second[0].resource_object_id);

    // A cursor replayed with another request is refused.
    let mut other = lookup(1, first[0].after_result_cursor.clone());
    other.permission = "edit".into();
    let refused = client
        .lookup_resources(authed(other))
        .await
        .expect_err("cursor of another request");
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // A malformed cursor, and one LookupSubjects issued, are refused.
    let garbage = client
        .lookup_resources(authed(lookup(1, Some(v1::Cursor { token: "zz".into() }))))
        .await
        .expect_err("malformed cursor");
    assert_eq!(garbage.code(), Code::InvalidArgument);

    // LookupSubjects pages concrete subjects by id (SpiceDB refuses a limit).
    let subjects_of =
        |limit: u32, cursor: Option<v1::Cursor>, wildcard_option: i32| v1::LookupSubjectsRequest {
            consistency: full(),
            resource: obj("document", "readme"),
            permission: "view".into(),
            subject_object_type: "user".into(),
            optional_subject_relation: String::new(),
            context: None,
            optional_concrete_limit: limit,
            optional_cursor: cursor,
            wildcard_option,
        };
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page: Vec<v1::LookupSubjectsResponse> = client
            .lookup_subjects(authed(subjects_of(1, cursor.clone(), 0)))
            .await
            .expect("page of subjects")
            .into_inner()
            .map(|r| r.expect("subject"))
            .collect()
            .await;
        let Some(last) = page.last() else { break };
        cursor = last.after_result_cursor.clone();
        pages.push(
            page.iter()
                .map(|r| {
                    r.subject
                        .as_ref()
                        .expect("subject")
                        .subject_object_id
                        .clone()
                })
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(pages, [vec!["alice"], vec!["bob"]]);
    let foreign = client
        .lookup_resources(authed(lookup(1, cursor)))
        .await
        .expect_err("a LookupSubjects cursor");
    assert_eq!(foreign.code(), Code::FailedPrecondition);

    // The public document: everyone but the banned mallory.
    let subjects: Vec<v1::LookupSubjectsResponse> = client
        .lookup_subjects(authed(v1::LookupSubjectsRequest {
            consistency: full(),
            resource: obj("document", "public"),
            permission: "view".into(),
            subject_object_type: "user".into(),
            optional_subject_relation: String::new(),
            context: None,
            optional_concrete_limit: 0,
            optional_cursor: None,
            wildcard_option: 0,
        }))
        .await
        .expect("lookup subjects")
        .into_inner()
        .map(|r| r.expect("subject"))
        .collect()
        .await;
    assert_eq!(subjects.len(), 1);
    let wildcard = subjects[0].subject.as_ref().expect("subject");
    assert_eq!(wildcard.subject_object_id, "*");
    let excluded: Vec<&str> = subjects[0]
        .excluded_subjects
        .iter()
        .map(|s| s.subject_object_id.as_str())
        .collect();
    assert_eq!(excluded, ["mallory"]);
    let mut exclude_wildcards = subjects_of(0, None, 0);
    exclude_wildcards.resource = obj("document", "public");
    exclude_wildcards.wildcard_option =
        v1::lookup_subjects_request::WildcardOption::ExcludeWildcards as i32;
    let without: Vec<_> = client
        .lookup_subjects(authed(exclude_wildcards))
        .await
        .expect("lookup subjects without wildcards")
        .into_inner()
        .collect()
        .await;
    assert!(without.is_empty(), "only the wildcard matched: {without:?}");

    // Expand: view = (viewer + edit) - banned, one level of data.
    let tree = client
        .expand_permission_tree(authed(v1::ExpandPermissionTreeRequest {
            consistency: full(),
            resource: obj("document", "readme"),
            permission: "view".into(),
        }))
        .await
        .expect("expand")
        .into_inner()
        .tree_root
        .expect("root");
    assert_eq!(tree.expanded_relation, "view");
    match tree.tree_type {
        Some(v1::permission_relationship_tree::TreeType::Intermediate(set)) => {
            assert_eq!(
                set.operation,
                v1::algebraic_subject_set::Operation::Exclusion as i32
            );
            assert_eq!(set.children.len(), 2);
        }
        other => panic!("expected an exclusion at the root, got {other:?}"),
    }
}

#[tokio::test]
async fn request_ids_come_back_in_the_response_metadata() {
    let server = seeded().await;
    let mut request = authed(v1::ReadSchemaRequest {});
    request
        .metadata_mut()
        .insert("x-request-id", "trace-me-42".parse().expect("ascii"));
    let response = SchemaServiceClient::new(server.channel.clone())
        .read_schema(request)
        .await
        .expect("read");
    assert_eq!(
        response
            .metadata()
            .get("io.spicedb.respmeta.requestid")
            .and_then(|v| v.to_str().ok()),
        Some("trace-me-42")
    );
    let generated = SchemaServiceClient::new(server.channel.clone())
        .read_schema(authed(v1::ReadSchemaRequest {}))
        .await
        .expect("read");
    assert!(
        generated
            .metadata()
            .get("io.spicedb.respmeta.requestid")
            .is_some()
    );
}

#[tokio::test]
async fn exact_snapshots_outside_the_readable_range_are_out_of_range() {
    let server = seeded().await;
    let written = write(
        &server,
        vec![update(
            Touch,
            ("document", "x"),
            "owner",
            ("user", "alice", ""),
        )],
    )
    .await
    .expect("written")
    .written_at
    .expect("token");
    let (revision, prefix, _) =
        trellis::api::zedtoken::decode_parts(&written).expect("our own token decodes");
    let future =
        trellis::api::zedtoken::encode(trellis::model::Revision(revision.0 + 1000), &prefix, &[]);
    let status = PermissionsServiceClient::new(server.channel.clone())
        .check_permission(authed(v1::CheckPermissionRequest {
            consistency: Some(v1::Consistency {
                requirement: Some(v1::consistency::Requirement::AtExactSnapshot(future)),
            }),
            resource: obj("document", "x"),
            permission: "view".into(),
            subject: subject("user", "alice", ""),
            ..Default::default()
        }))
        .await
        .expect_err("a revision from the future");
    assert_eq!(status.code(), Code::OutOfRange, "{}", status.message());
}

#[tokio::test]
async fn a_shallow_answer_beats_a_cycle_in_an_earlier_branch() {
    let server = start().await;
    write_schema(
        &server,
        "definition user {}\ndefinition group {\n\trelation member: user | group#member\n\trelation owner: user\n\tpermission view = member + owner\n}",
    )
    .await
    .expect("schema");
    write(
        &server,
        vec![
            update(Touch, ("group", "a"), "member", ("group", "b", "member")),
            update(Touch, ("group", "b"), "member", ("group", "a", "member")),
            update(Touch, ("group", "a"), "owner", ("user", "tom", "")),
        ],
    )
    .await
    .expect("written");
    // `member` recurses forever; SpiceDB races branches and `owner` answers first.
    assert_eq!(
        check(&server, ("group", "a"), "view", ("user", "tom", ""))
            .await
            .expect("decided"),
        HAS
    );
    let status = check(&server, ("group", "a"), "view", ("user", "ann", ""))
        .await
        .expect_err("undecidable");
    assert_eq!(status.code(), Code::FailedPrecondition);
}

const CAVEATED_SCHEMA: &str = r#"definition user {}

caveat in_network(ip ipaddress, cidr string) {
    ip.in_cidr(cidr)
}

caveat ratio(n int, d int) {
    n / d > 1
}

definition document {
    relation viewer: user with in_network | user with ratio
    permission view = viewer
}"#;

fn json_struct(value: serde_json::Value) -> Option<prost_types::Struct> {
    value.as_object().map(trellis::api::convert::json_to_struct)
}

fn caveated(subject_id: &str, caveat: &str, context: serde_json::Value) -> v1::RelationshipUpdate {
    let mut u = update(Touch, ("document", "d"), "viewer", ("user", subject_id, ""));
    if let Some(rel) = u.relationship.as_mut() {
        rel.optional_caveat = Some(v1::ContextualizedCaveat {
            caveat_name: caveat.into(),
            context: json_struct(context),
        });
    }
    u
}

async fn check_with(
    server: &Server,
    subject_id: &str,
    context: serde_json::Value,
) -> Result<v1::CheckPermissionResponse, Status> {
    PermissionsServiceClient::new(server.channel.clone())
        .check_permission(authed(v1::CheckPermissionRequest {
            consistency: full(),
            resource: obj("document", "d"),
            permission: "view".into(),
            subject: subject("user", subject_id, ""),
            context: json_struct(context),
            ..Default::default()
        }))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn caveats_over_the_wire() {
    let server = start().await;
    write_schema(&server, CAVEATED_SCHEMA)
        .await
        .expect("schema accepted");
    write(
        &server,
        vec![
            caveated(
                "ann",
                "in_network",
                serde_json::json!({"cidr": "10.0.0.0/8"}),
            ),
            caveated("zed", "ratio", serde_json::json!({"d": 0})),
        ],
    )
    .await
    .expect("relationships written");

    let conditional = check_with(&server, "ann", serde_json::json!({}))
        .await
        .expect("check");
    assert_eq!(
        conditional.permissionship,
        v1::check_permission_response::Permissionship::ConditionalPermission as i32
    );
    assert_eq!(
        conditional
            .partial_caveat_info
            .map(|p| p.missing_required_context),
        Some(vec!["ip".to_string()])
    );
    let has = check_with(&server, "ann", serde_json::json!({"ip": "10.1.2.3"}))
        .await
        .expect("check");
    assert_eq!(has.permissionship, HAS);
    assert!(has.partial_caveat_info.is_none());
    let no = check_with(&server, "ann", serde_json::json!({"ip": "::ffff:10.1.2.3"}))
        .await
        .expect("check");
    assert_eq!(no.permissionship, NO);

    let failed = check_with(&server, "zed", serde_json::json!({"n": 5}))
        .await
        .expect_err("division by zero");
    assert_eq!(
        (failed.code(), reason(&failed).as_str()),
        (
            Code::InvalidArgument,
            "ERROR_REASON_CAVEAT_EVALUATION_ERROR"
        )
    );
    assert_eq!(
        failed.message(),
        "evaluation error for caveat ratio: division by zero"
    );
    let info = failed.get_details_error_info().expect("error info");
    assert_eq!(
        info.metadata.get("caveat_name").map(String::as_str),
        Some("ratio")
    );

    let mistyped = check_with(&server, "ann", serde_json::json!({"ip": 3}))
        .await
        .expect_err("not an address");
    assert_eq!(
        reason(&mistyped),
        "ERROR_REASON_CAVEAT_PARAMETER_TYPE_ERROR"
    );
    let info = mistyped.get_details_error_info().expect("error info");
    assert_eq!(
        info.metadata.get("parameter_name").map(String::as_str),
        Some("ip")
    );

    let refused = write(
        &server,
        vec![caveated(
            "bob",
            "in_network",
            serde_json::json!({"port": 22}),
        )],
    )
    .await
    .expect_err("undeclared parameter");
    assert_eq!(
        (refused.code(), reason(&refused).as_str()),
        (
            Code::InvalidArgument,
            "ERROR_REASON_CAVEAT_PARAMETER_TYPE_ERROR"
        )
    );

    let big = serde_json::json!({"cidr": "x".repeat(5_000)});
    let too_big = check_with(&server, "ann", big)
        .await
        .expect_err("4096 bytes");
    assert_eq!(too_big.code(), Code::InvalidArgument);
}
