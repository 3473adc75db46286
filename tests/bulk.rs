//! ImportBulkRelationships and ExportBulkRelationships end to end, over a
//! real server: an import then an export round-trips relationships with
//! their caveats and expirations; an import is one transaction (nothing
//! written on ALREADY_EXISTS or on a validation error in any message);
//! export pages are full but the last, never repeat, resume from any
//! cursor at the cursor's revision, follow SpiceDB's order (definitions by
//! name, then by resource) and honour filters and the page-size limit.

#[path = "common/server.rs"]
mod server;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use server::{TestServer, authed, relationship, text};
use trellis::api::proto::v1;
use trellis::api::proto::v1::permissions_service_client::PermissionsServiceClient;
use trellis::api::proto::v1::relationship_update::Operation;
use trellis::api::proto::v1::schema_service_client::SchemaServiceClient;

const SCHEMA: &str = "use expiration

caveat on_weekday(day string) {
    day != \"saturday\" && day != \"sunday\"
}

definition user {}

definition group {
    relation member: user | user with on_weekday
}

definition document {
    relation viewer: user | group#member | user with expiration
    relation editor: user
    permission edit = editor
}

definition folder {
    relation viewer: user
}";

async fn seeded() -> TestServer {
    let server = TestServer::start_default().await;
    SchemaServiceClient::new(server.channel.clone())
        .write_schema(authed(v1::WriteSchemaRequest {
            schema: SCHEMA.into(),
        }))
        .await
        .expect("schema is written");
    server
}

fn client(server: &TestServer) -> PermissionsServiceClient<tonic::transport::Channel> {
    PermissionsServiceClient::new(server.channel.clone())
}

/// Imports `messages`, each a batch of relationships.
async fn import(server: &TestServer, messages: Vec<Vec<v1::Relationship>>) -> Result<u64, Status> {
    let requests: Vec<v1::ImportBulkRelationshipsRequest> = messages
        .into_iter()
        .map(|relationships| v1::ImportBulkRelationshipsRequest { relationships })
        .collect();
    client(server)
        .import_bulk_relationships(authed(tokio_stream::iter(requests)))
        .await
        .map(|r| r.into_inner().num_loaded)
}

fn rels(texts: &[String]) -> Vec<v1::Relationship> {
    texts.iter().map(|t| relationship(t)).collect()
}

/// One export call: its pages (relationships in text form) and cursors.
async fn export(
    server: &TestServer,
    request: v1::ExportBulkRelationshipsRequest,
) -> Result<Vec<(Vec<String>, v1::Cursor)>, Status> {
    let mut stream = client(server)
        .export_bulk_relationships(authed(request))
        .await?
        .into_inner();
    let mut pages = Vec::new();
    while let Some(page) = stream.message().await? {
        let texts = page.relationships.iter().map(text).collect();
        pages.push((
            texts,
            page.after_result_cursor.expect("every page has a cursor"),
        ));
    }
    Ok(pages)
}

fn full() -> Option<v1::Consistency> {
    Some(v1::Consistency {
        requirement: Some(v1::consistency::Requirement::FullyConsistent(true)),
    })
}

fn request(limit: u32, cursor: Option<v1::Cursor>) -> v1::ExportBulkRelationshipsRequest {
    v1::ExportBulkRelationshipsRequest {
        consistency: full(),
        optional_limit: limit,
        optional_cursor: cursor,
        optional_relationship_filter: None,
    }
}

async fn export_all(server: &TestServer) -> Vec<String> {
    export(server, request(0, None))
        .await
        .expect("export succeeds")
        .into_iter()
        .flat_map(|(texts, _)| texts)
        .collect()
}

/// `texts` in SpiceDB's export order: definition name, then resource id,
/// relation and subject (the order of relationship keys).
fn in_export_order(texts: &[String]) -> Vec<String> {
    let mut keyed: Vec<_> = texts
        .iter()
        .map(|t| {
            let key = trellis::model::parse_relationship(t).expect("parses").key();
            (key, t.clone())
        })
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, t)| t).collect()
}

/// `n` distinct relationships spread over three definitions.
fn generated(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 3 {
            0 => format!("document:doc{i}#viewer@user:u{}", i % 7),
            1 => format!("group:g{}#member@user:u{i}", i % 11),
            _ => format!("folder:f{i}#viewer@user:u{}", i % 5),
        })
        .collect()
}

fn reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

#[tokio::test]
async fn import_then_export_round_trips_relationships_and_their_attributes() {
    let server = seeded().await;
    let mut caveated = relationship("group:eng#member@user:ann");
    caveated.optional_caveat = Some(v1::ContextualizedCaveat {
        caveat_name: "on_weekday".into(),
        context: Some(trellis::api::convert::json_to_struct(
            &serde_json::json!({"day": "monday"})
                .as_object()
                .expect("object")
                .clone(),
        )),
    });
    let mut expiring = relationship("document:plan#viewer@user:bob");
    let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(4_102_444_800); // 2100-01-01
    expiring.optional_expires_at = Some(expires.into());
    let plain = [
        "document:plan#viewer@group:eng#member",
        "document:plan#editor@user:ann",
        "folder:root#viewer@user:carl",
        "document:alpha#viewer@user:ann",
    ];
    let messages = vec![
        vec![caveated.clone(), relationship(plain[0])],
        vec![],
        vec![expiring.clone(), relationship(plain[1])],
        vec![relationship(plain[2]), relationship(plain[3])],
    ];
    assert_eq!(import(&server, messages).await.expect("import"), 6);

    let mut stream = client(&server)
        .export_bulk_relationships(authed(request(0, None)))
        .await
        .expect("export")
        .into_inner();
    let page = stream.message().await.expect("a page").expect("one page");
    assert!(stream.message().await.expect("clean end").is_none());
    let mut all: Vec<String> = plain.iter().map(|s| s.to_string()).collect();
    all.push("group:eng#member@user:ann".into());
    all.push("document:plan#viewer@user:bob".into());
    assert_eq!(
        page.relationships.iter().map(text).collect::<Vec<_>>(),
        in_export_order(&all),
        "definitions by name, then by resource"
    );
    let exported = |t: &str| {
        page.relationships
            .iter()
            .find(|r| text(r) == t)
            .cloned()
            .expect("exported")
    };
    assert_eq!(exported("group:eng#member@user:ann"), caveated);
    assert_eq!(exported("document:plan#viewer@user:bob"), expiring);

    // The imported relationships are live: a check sees them.
    let checked = client(&server)
        .check_permission(authed(v1::CheckPermissionRequest {
            consistency: full(),
            resource: Some(v1::ObjectReference {
                object_type: "document".into(),
                object_id: "plan".into(),
            }),
            permission: "edit".into(),
            subject: relationship("document:x#viewer@user:ann").subject,
            context: None,
            with_tracing: false,
        }))
        .await
        .expect("check")
        .into_inner();
    assert_eq!(
        checked.permissionship,
        v1::check_permission_response::Permissionship::HasPermission as i32
    );
}

#[tokio::test]
async fn an_import_is_one_transaction() {
    let server = seeded().await;
    client(&server)
        .write_relationships(authed(v1::WriteRelationshipsRequest {
            updates: vec![v1::RelationshipUpdate {
                operation: Operation::Touch as i32,
                relationship: Some(relationship("document:a#viewer@user:ann")),
            }],
            ..Default::default()
        }))
        .await
        .expect("write");

    // One existing relationship, in the last message, fails it all.
    let status = import(
        &server,
        vec![
            rels(&generated(50)),
            vec![
                relationship("folder:new#viewer@user:x"),
                relationship("document:a#viewer@user:ann"),
            ],
        ],
    )
    .await
    .expect_err("one already exists");
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(
        reason(&status),
        "ERROR_REASON_ATTEMPT_TO_RECREATE_RELATIONSHIP"
    );
    assert!(status.message().contains("document:a#viewer@user:ann"));
    assert_eq!(
        export_all(&server).await,
        vec!["document:a#viewer@user:ann"]
    );

    // So does the same relationship twice in one import.
    let status = import(
        &server,
        vec![
            vec![relationship("folder:f#viewer@user:x")],
            vec![relationship("folder:f#viewer@user:x")],
        ],
    )
    .await
    .expect_err("a duplicate");
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(
        export_all(&server).await,
        vec!["document:a#viewer@user:ann"]
    );

    // Nothing to import is nothing loaded.
    assert_eq!(import(&server, vec![]).await.expect("empty import"), 0);
}

#[tokio::test]
async fn imported_relationships_are_validated_like_creates() {
    let server = seeded().await;
    let cases: [(&str, Code, &str); 4] = [
        (
            "nosuch:a#viewer@user:x",
            Code::FailedPrecondition,
            "ERROR_REASON_UNKNOWN_DEFINITION",
        ),
        (
            "document:a#edit@user:x",
            Code::InvalidArgument,
            "ERROR_REASON_CANNOT_UPDATE_PERMISSION",
        ),
        (
            "folder:a#viewer@group:eng#member",
            Code::InvalidArgument,
            "ERROR_REASON_INVALID_SUBJECT_TYPE",
        ),
        (
            "document:a#nosuch@user:x",
            Code::FailedPrecondition,
            "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION",
        ),
    ];
    for (bad, code, why) in cases {
        let status = import(&server, vec![rels(&generated(10)), vec![relationship(bad)]])
            .await
            .expect_err(bad);
        assert_eq!(status.code(), code, "{bad}: {status:?}");
        assert_eq!(reason(&status), why, "{bad}");
    }
    // A malformed message names the field.
    let mut malformed = relationship("document:a#viewer@user:x");
    malformed.relation = "Viewer".into();
    let status = import(
        &server,
        vec![vec![relationship("folder:b#viewer@user:x"), malformed]],
    )
    .await
    .expect_err("malformed");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("relationships[1].relation"),
        "{}",
        status.message()
    );
    // A caveat the relation does not allow, or an expiration it does not.
    let mut expiring = relationship("folder:c#viewer@user:x");
    expiring.optional_expires_at = Some(SystemTime::now().into());
    let status = import(&server, vec![vec![expiring]])
        .await
        .expect_err("expiration");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(export_all(&server).await.is_empty(), "nothing was written");
}

#[tokio::test]
async fn export_pages_are_full_distinct_and_resume_from_any_cursor() {
    const LIMIT: usize = 97;
    let server = seeded().await;
    let all = generated(1_000);
    let batches: Vec<Vec<v1::Relationship>> = all.chunks(300).map(rels).collect();
    assert_eq!(import(&server, batches).await.expect("import"), 1_000);
    let ordered = in_export_order(&all);

    let pages = export(&server, request(LIMIT as u32, None))
        .await
        .expect("export");
    let (last, rest) = pages.split_last().expect("pages");
    assert!(
        rest.iter().all(|(texts, _)| texts.len() == LIMIT),
        "all but the last are full"
    );
    assert!(!last.0.is_empty() && last.0.len() <= LIMIT);
    let flat: Vec<String> = pages.iter().flat_map(|(t, _)| t.clone()).collect();
    assert_eq!(
        flat.len(),
        flat.iter().collect::<HashSet<_>>().len(),
        "no duplicates"
    );
    assert_eq!(flat, ordered);

    // Written after the first page: later pages of that export, read at
    // its revision, do not see it.
    client(&server)
        .write_relationships(authed(v1::WriteRelationshipsRequest {
            updates: vec![v1::RelationshipUpdate {
                operation: Operation::Touch as i32,
                relationship: Some(relationship("group:zzz#member@user:late")),
            }],
            ..Default::default()
        }))
        .await
        .expect("write");

    // Resume from every page's cursor, with another page size too.
    let mut consumed = 0;
    for (texts, cursor) in &pages {
        consumed += texts.len();
        for limit in [LIMIT as u32, 250] {
            let resumed: Vec<String> = export(&server, request(limit, Some(cursor.clone())))
                .await
                .expect("resume")
                .into_iter()
                .flat_map(|(t, _)| t)
                .collect();
            assert_eq!(resumed, ordered[consumed..], "resumed after {consumed}");
        }
    }
}

#[tokio::test]
async fn cursors_belong_to_their_request() {
    let server = seeded().await;
    import(&server, vec![rels(&generated(30))])
        .await
        .expect("import");
    let pages = export(&server, request(10, None)).await.expect("export");
    let cursor = pages[0].1.clone();

    let other_filter = v1::ExportBulkRelationshipsRequest {
        optional_relationship_filter: Some(v1::RelationshipFilter {
            resource_type: "folder".into(),
            ..Default::default()
        }),
        ..request(10, Some(cursor.clone()))
    };
    let status = export(&server, other_filter)
        .await
        .expect_err("another filter");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "ERROR_REASON_INVALID_CURSOR");

    // A ReadRelationships cursor is not an export cursor.
    let mut read = client(&server)
        .read_relationships(authed(v1::ReadRelationshipsRequest {
            consistency: full(),
            relationship_filter: Some(v1::RelationshipFilter {
                resource_type: "folder".into(),
                ..Default::default()
            }),
            optional_limit: 1,
            optional_cursor: None,
        }))
        .await
        .expect("read")
        .into_inner();
    let read_cursor = read
        .message()
        .await
        .expect("read")
        .expect("one")
        .after_result_cursor
        .expect("cursor");
    let status = export(&server, request(10, Some(read_cursor)))
        .await
        .expect_err("a read cursor");
    assert_eq!(status.code(), Code::FailedPrecondition);

    let garbage = v1::Cursor {
        token: "not-a-cursor".into(),
    };
    let status = export(&server, request(10, Some(garbage)))
        .await
        .expect_err("garbage");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), "ERROR_REASON_INVALID_CURSOR");
}

#[tokio::test]
async fn export_filters_select_definitions_and_relationships() {
    let server = seeded().await;
    let all = generated(300);
    import(&server, vec![rels(&all)]).await.expect("import");
    let filtered = |filter: v1::RelationshipFilter| v1::ExportBulkRelationshipsRequest {
        optional_relationship_filter: Some(filter),
        ..request(40, None)
    };
    let flat = |pages: Vec<(Vec<String>, v1::Cursor)>| -> Vec<String> {
        pages.into_iter().flat_map(|(t, _)| t).collect()
    };
    let want = |pred: &dyn Fn(&str) -> bool| -> Vec<String> {
        in_export_order(&all)
            .into_iter()
            .filter(|t| pred(t))
            .collect()
    };

    let folders = flat(
        export(
            &server,
            filtered(v1::RelationshipFilter {
                resource_type: "folder".into(),
                ..Default::default()
            }),
        )
        .await
        .expect("export"),
    );
    assert_eq!(folders, want(&|t| t.starts_with("folder:")));

    // No resource type: every definition, in order, subject filtered.
    let by_subject = flat(
        export(
            &server,
            filtered(v1::RelationshipFilter {
                optional_subject_filter: Some(v1::SubjectFilter {
                    subject_type: "user".into(),
                    optional_subject_id: "u3".into(),
                    optional_relation: None,
                }),
                ..Default::default()
            }),
        )
        .await
        .expect("export"),
    );
    assert!(!by_subject.is_empty());
    assert_eq!(by_subject, want(&|t| t.ends_with("@user:u3")));

    let prefixed = flat(
        export(
            &server,
            filtered(v1::RelationshipFilter {
                resource_type: "document".into(),
                optional_resource_id_prefix: "doc1".into(),
                ..Default::default()
            }),
        )
        .await
        .expect("export"),
    );
    assert_eq!(prefixed, want(&|t| t.starts_with("document:doc1")));

    let unknown = export(
        &server,
        filtered(v1::RelationshipFilter {
            resource_type: "nosuch".into(),
            ..Default::default()
        }),
    )
    .await
    .expect("an unknown definition exports nothing");
    assert!(unknown.is_empty());
}

#[tokio::test]
async fn export_page_size_is_bounded_by_the_server_maximum() {
    let server = seeded().await;
    let status = export(&server, request(10_001, None))
        .await
        .expect_err("above the maximum");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        reason(&status),
        "ERROR_REASON_EXCEEDS_MAXIMUM_ALLOWABLE_LIMIT"
    );

    let all = generated(10_500);
    import(&server, all.chunks(1_000).map(rels).collect())
        .await
        .expect("import");
    let pages = export(&server, request(0, None)).await.expect("export");
    let sizes: Vec<usize> = pages.iter().map(|(t, _)| t.len()).collect();
    assert_eq!(sizes, vec![10_000, 500], "the default page is the maximum");
}

#[tokio::test]
async fn export_before_any_schema_is_empty() {
    let server = TestServer::start_default().await;
    assert!(export_all(&server).await.is_empty());
}

// The aliases are deprecated in the proto; SpiceDB still serves them.
#[allow(deprecated)]
#[tokio::test]
async fn the_deprecated_experimental_aliases_import_and_export_alike() {
    use trellis::api::proto::v1::experimental_service_client::ExperimentalServiceClient;
    let server = seeded().await;
    let mut experimental = ExperimentalServiceClient::new(server.channel.clone());
    let texts = generated(30);
    let batches: Vec<v1::BulkImportRelationshipsRequest> = rels(&texts)
        .chunks(7)
        .map(|c| v1::BulkImportRelationshipsRequest {
            relationships: c.to_vec(),
        })
        .collect();
    let loaded = experimental
        .bulk_import_relationships(authed(tokio_stream::iter(batches)))
        .await
        .expect("import through the alias")
        .into_inner()
        .num_loaded;
    assert_eq!(loaded, 30);

    use futures::StreamExt as _;
    let pages: Vec<v1::BulkExportRelationshipsResponse> = experimental
        .bulk_export_relationships(authed(v1::BulkExportRelationshipsRequest {
            consistency: full(),
            optional_limit: 8,
            optional_cursor: None,
            optional_relationship_filter: None,
        }))
        .await
        .expect("export through the alias")
        .into_inner()
        .map(|p| p.expect("page"))
        .collect()
        .await;
    let exported: Vec<String> = pages
        .iter()
        .flat_map(|p| p.relationships.iter().map(text))
        .collect();
    assert_eq!(exported, in_export_order(&texts));
    assert_eq!(export_all(&server).await, exported, "the stable RPC agrees");
    // An existing relationship fails the whole import, as with the stable RPC.
    let again = vec![v1::BulkImportRelationshipsRequest {
        relationships: rels(&texts[..1]),
    }];
    let refused = experimental
        .bulk_import_relationships(authed(tokio_stream::iter(again)))
        .await
        .expect_err("already exists");
    assert_eq!(refused.code(), Code::AlreadyExists);
}
