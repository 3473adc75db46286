//! WatchService end to end, over a real server: every change of concurrent
//! writers reported exactly once, resuming from any `changes_through` token
//! without loss or repetition, object-type and relationship filters,
//! checkpoints and heartbeats, schema-change events, transaction metadata,
//! expiry (not reported), the error cases, a slow consumer disconnected
//! with RESOURCE_EXHAUSTED, and shutdown ending open streams.

#[path = "common/postgres.rs"]
mod postgres;
#[path = "common/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tonic::{Code, Status, Streaming};

use server::{TestServer, authed, revision, text, update};
use trellis::api::proto::v1;
use trellis::api::proto::v1::permissions_service_client::PermissionsServiceClient;
use trellis::api::proto::v1::relationship_update::Operation;
use trellis::api::proto::v1::schema_service_client::SchemaServiceClient;
use trellis::api::proto::v1::watch_service_client::WatchServiceClient;
use trellis::config::Config;
use trellis::datastore::RevisionConfig;
use trellis::service::WatchSettings;

const SCHEMA: &str = "definition user {}

definition group {
    relation member: user
}

definition document {
    relation viewer: user | group#member
    relation editor: user
}";

/// Bounds every wait for a message, so a missing one fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

/// Relationship changes by revision, each as `TOUCH doc:1#viewer@user:a`,
/// sorted within the revision.
type Changes = BTreeMap<u128, Vec<String>>;

async fn write_schema(server: &TestServer, schema: &str) -> v1::ZedToken {
    SchemaServiceClient::new(server.channel.clone())
        .write_schema(authed(v1::WriteSchemaRequest {
            schema: schema.into(),
        }))
        .await
        .expect("schema is written")
        .into_inner()
        .written_at
        .expect("written_at")
}

async fn write_with(
    server: &TestServer,
    updates: Vec<v1::RelationshipUpdate>,
    metadata: Option<prost_types::Struct>,
) -> v1::ZedToken {
    PermissionsServiceClient::new(server.channel.clone())
        .write_relationships(authed(v1::WriteRelationshipsRequest {
            updates,
            optional_preconditions: Vec::new(),
            optional_transaction_metadata: metadata,
        }))
        .await
        .expect("write succeeds")
        .into_inner()
        .written_at
        .expect("written_at")
}

async fn write(server: &TestServer, updates: Vec<v1::RelationshipUpdate>) -> v1::ZedToken {
    write_with(server, updates, None).await
}

fn touch(text: &str) -> v1::RelationshipUpdate {
    update(Operation::Touch, text)
}

async fn watch(
    server: &TestServer,
    request: v1::WatchRequest,
) -> Result<Streaming<v1::WatchResponse>, Status> {
    WatchServiceClient::new(server.channel.clone())
        .watch(authed(request))
        .await
        .map(|r| r.into_inner())
}

fn from(token: &v1::ZedToken, kinds: &[v1::WatchKind]) -> v1::WatchRequest {
    v1::WatchRequest {
        optional_start_cursor: Some(token.clone()),
        optional_update_kinds: kinds.iter().map(|k| *k as i32).collect(),
        ..v1::WatchRequest::default()
    }
}

/// The next message; fails on an error, the end, or a long silence.
async fn next(stream: &mut Streaming<v1::WatchResponse>) -> v1::WatchResponse {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("a message within the patience bound")
        .expect("no error")
        .expect("the stream goes on")
}

/// The status the stream ends with (after any messages still in flight).
async fn final_status(stream: &mut Streaming<v1::WatchResponse>) -> (usize, Status) {
    let mut messages = 0;
    loop {
        match tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("the stream ends within the patience bound")
        {
            Ok(Some(_)) => messages += 1,
            Ok(None) => panic!("the stream ended without an error"),
            Err(status) => return (messages, status),
        }
    }
}

fn describe(update: &v1::RelationshipUpdate) -> String {
    let operation = match Operation::try_from(update.operation) {
        Ok(Operation::Touch) => "TOUCH",
        Ok(Operation::Delete) => "DELETE",
        other => panic!("watch reports only TOUCH and DELETE, got {other:?}"),
    };
    let rel = update.relationship.as_ref().expect("relationship");
    format!("{operation} {}", text(rel))
}

fn token_of(response: &v1::WatchResponse) -> &v1::ZedToken {
    response
        .changes_through
        .as_ref()
        .expect("every message has changes_through")
}

/// Reads relationship changes until a checkpoint at or after `last`;
/// returns them and every token seen. A revision reported twice fails.
async fn collect_until(
    stream: &mut Streaming<v1::WatchResponse>,
    last: u128,
) -> (Changes, Vec<v1::ZedToken>) {
    let mut changes = Changes::new();
    let mut tokens = Vec::new();
    loop {
        let response = next(stream).await;
        let at = revision(token_of(&response));
        tokens.push(token_of(&response).clone());
        if response.is_checkpoint {
            assert!(
                response.updates.is_empty(),
                "a checkpoint carries no updates"
            );
            if at >= last {
                return (changes, tokens);
            }
            continue;
        }
        let mut described: Vec<String> = response.updates.iter().map(describe).collect();
        described.sort();
        assert!(
            changes.insert(at, described).is_none(),
            "revision {at} was reported twice"
        );
    }
}

/// What one writer does on its `i`th write: touch a viewer, create an
/// editor, and (every third write) delete the viewer it touched before.
fn writer_updates(writer: usize, i: usize) -> Vec<v1::RelationshipUpdate> {
    let mut updates = vec![
        touch(&format!("document:w{writer}-{i}#viewer@user:u{i}")),
        update(
            Operation::Create,
            &format!("document:w{writer}-{i}#editor@user:u{i}"),
        ),
    ];
    if i % 3 == 2 {
        updates.push(update(
            Operation::Delete,
            &format!("document:w{writer}-{}#viewer@user:u{}", i - 1, i - 1),
        ));
    }
    updates
}

/// How an update shows in Watch: a create is a touch.
fn expected(update: &v1::RelationshipUpdate) -> String {
    let operation = match Operation::try_from(update.operation) {
        Ok(Operation::Delete) => "DELETE",
        _ => "TOUCH",
    };
    format!(
        "{operation} {}",
        text(update.relationship.as_ref().expect("relationship"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_reported_once_and_every_token_resumes_exactly() {
    concurrent_writes_scenario(TestServer::start_default().await).await;
}

/// The same on PostgreSQL, where writers really run in parallel sessions
/// (skipped with a message when PostgreSQL is not installed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_on_postgres_are_reported_once_and_every_token_resumes_exactly() {
    let Some(cluster) = postgres::shared() else {
        return;
    };
    let (_, datastore) = cluster.default_datastore().await;
    concurrent_writes_scenario(
        TestServer::start_with(Arc::new(datastore), Config::default()).await,
    )
    .await;
}

async fn concurrent_writes_scenario(server: TestServer) {
    const WRITERS: usize = 4;
    const WRITES: usize = 25;
    let start = write_schema(&server, SCHEMA).await;
    let kinds = [v1::WatchKind::IncludeCheckpoints];
    let mut stream = watch(&server, from(&start, &kinds))
        .await
        .expect("watch starts");

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let channel = server.channel.clone();
            tokio::spawn(async move {
                let mut client = PermissionsServiceClient::new(channel);
                let mut done = Vec::new();
                for i in 0..WRITES {
                    let updates = writer_updates(w, i);
                    let mut described: Vec<String> = updates.iter().map(expected).collect();
                    described.sort();
                    let token = client
                        .write_relationships(authed(v1::WriteRelationshipsRequest {
                            updates,
                            ..Default::default()
                        }))
                        .await
                        .expect("write succeeds")
                        .into_inner()
                        .written_at
                        .expect("written_at");
                    done.push((revision(&token), described));
                }
                done
            })
        })
        .collect();
    let mut all = Changes::new();
    for writer in writers {
        for (at, described) in writer.await.expect("writer finishes") {
            assert!(all.insert(at, described).is_none(), "two writes at {at}");
        }
    }
    let last = *all.keys().last().expect("writes happened");

    let (seen, tokens) = collect_until(&mut stream, last).await;
    assert_eq!(seen, all, "the watch saw exactly the writes");

    // Resuming from any token sees exactly the writes after it.
    assert!(tokens.len() > WRITERS * WRITES / 2);
    for token in &tokens {
        let after = revision(token);
        let mut resumed = watch(&server, from(token, &kinds))
            .await
            .expect("watch resumes");
        let (seen, _) = collect_until(&mut resumed, last).await;
        let want: Changes = all
            .range(after + 1..)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        assert_eq!(seen, want, "resumed after revision {after}");
    }
}

#[tokio::test]
async fn object_types_and_relationship_filters_select_updates() {
    let server = TestServer::start_default().await;
    let start = write_schema(&server, SCHEMA).await;
    write(&server, vec![touch("document:1#viewer@user:a")]).await;
    write(
        &server,
        vec![
            touch("group:g#member@user:a"),
            touch("document:2#editor@user:b"),
        ],
    )
    .await;
    let last = write(&server, vec![touch("document:3#viewer@group:g#member")]).await;
    let last = revision(&last);
    let checkpoints = [v1::WatchKind::IncludeCheckpoints];

    let selected = |changes: Changes| -> Vec<String> { changes.into_values().flatten().collect() };

    let request = v1::WatchRequest {
        optional_object_types: vec!["group".into()],
        ..from(&start, &checkpoints)
    };
    let mut stream = watch(&server, request).await.expect("watch starts");
    let (seen, _) = collect_until(&mut stream, last).await;
    assert_eq!(selected(seen), vec!["TOUCH group:g#member@user:a"]);

    let viewers = v1::RelationshipFilter {
        resource_type: "document".into(),
        optional_relation: "viewer".into(),
        ..Default::default()
    };
    let request = v1::WatchRequest {
        optional_relationship_filters: vec![viewers],
        ..from(&start, &checkpoints)
    };
    let mut stream = watch(&server, request).await.expect("watch starts");
    let (seen, _) = collect_until(&mut stream, last).await;
    assert_eq!(
        selected(seen),
        vec![
            "TOUCH document:1#viewer@user:a",
            "TOUCH document:3#viewer@group:g#member"
        ]
    );

    // Several filters: a change matching any of them.
    let group_subjects = v1::RelationshipFilter {
        resource_type: "document".into(),
        optional_subject_filter: Some(v1::SubjectFilter {
            subject_type: "group".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let editors = v1::RelationshipFilter {
        optional_relation: "editor".into(),
        resource_type: "document".into(),
        ..Default::default()
    };
    let request = v1::WatchRequest {
        optional_relationship_filters: vec![group_subjects, editors],
        ..from(&start, &checkpoints)
    };
    let mut stream = watch(&server, request).await.expect("watch starts");
    let (seen, _) = collect_until(&mut stream, last).await;
    assert_eq!(
        selected(seen),
        vec![
            "TOUCH document:2#editor@user:b",
            "TOUCH document:3#viewer@group:g#member"
        ]
    );
}

#[tokio::test]
async fn checkpoints_follow_changes_and_keep_an_idle_stream_alive() {
    let config = Config {
        watch: WatchSettings {
            heartbeat: Duration::from_millis(50),
            ..WatchSettings::default()
        },
        ..Config::default()
    };
    let server = TestServer::start(config, RevisionConfig::default()).await;
    let start = write_schema(&server, SCHEMA).await;
    let at_start = revision(&start);

    let mut stream = watch(&server, from(&start, &[v1::WatchKind::IncludeCheckpoints]))
        .await
        .expect("watch starts");
    // Nothing changes: the heartbeat sends a checkpoint at the start.
    let heartbeat = next(&mut stream).await;
    assert!(heartbeat.is_checkpoint);
    assert_eq!(revision(token_of(&heartbeat)), at_start);

    let written = revision(&write(&server, vec![touch("document:1#viewer@user:a")]).await);
    let mut response = next(&mut stream).await;
    while response.is_checkpoint && revision(token_of(&response)) < written {
        response = next(&mut stream).await;
    }
    assert!(!response.is_checkpoint);
    assert_eq!(revision(token_of(&response)), written);
    assert_eq!(
        response.updates.iter().map(describe).collect::<Vec<_>>(),
        vec!["TOUCH document:1#viewer@user:a"]
    );
    let checkpoint = next(&mut stream).await;
    assert!(checkpoint.is_checkpoint && checkpoint.updates.is_empty());
    assert_eq!(revision(token_of(&checkpoint)), written);

    // Without the kind, no checkpoints at all: only the two writes.
    let mut quiet = watch(&server, from(&start, &[]))
        .await
        .expect("watch starts");
    assert_eq!(revision(token_of(&next(&mut quiet).await)), written);
    let second = revision(&write(&server, vec![touch("document:2#viewer@user:a")]).await);
    let response = next(&mut quiet).await;
    assert!(!response.is_checkpoint);
    assert_eq!(revision(token_of(&response)), second);
}

#[tokio::test]
async fn schema_writes_are_reported_when_asked_for() {
    let server = TestServer::start_default().await;
    let start = write_schema(&server, SCHEMA).await;
    let mut with_schema = watch(
        &server,
        from(&start, &[v1::WatchKind::IncludeSchemaUpdates]),
    )
    .await
    .expect("watch starts");
    let mut without = watch(
        &server,
        from(&start, &[v1::WatchKind::IncludeRelationshipUpdates]),
    )
    .await
    .expect("watch starts");

    let extended = format!("{SCHEMA}\n\ndefinition folder {{\n    relation viewer: user\n}}");
    let schema_at = revision(&write_schema(&server, &extended).await);
    let written = revision(&write(&server, vec![touch("folder:f#viewer@user:a")]).await);

    let schema_event = next(&mut with_schema).await;
    assert!(schema_event.schema_updated);
    assert!(schema_event.updates.is_empty() && !schema_event.is_checkpoint);
    assert_eq!(revision(token_of(&schema_event)), schema_at);
    let change = next(&mut with_schema).await;
    assert!(!change.schema_updated);
    assert_eq!(revision(token_of(&change)), written);

    let change = next(&mut without).await;
    assert!(!change.schema_updated);
    assert_eq!(revision(token_of(&change)), written);
}

fn json_struct(value: serde_json::Value) -> prost_types::Struct {
    let serde_json::Value::Object(map) = value else {
        panic!("an object")
    };
    trellis::api::convert::json_to_struct(&map)
}

#[tokio::test]
async fn transaction_metadata_is_passed_through() {
    let server = TestServer::start_default().await;
    let start = write_schema(&server, SCHEMA).await;
    let mut stream = watch(&server, from(&start, &[]))
        .await
        .expect("watch starts");

    let metadata = json_struct(serde_json::json!({"request": "abc", "attempt": 2}));
    write_with(
        &server,
        vec![touch("document:1#viewer@user:a")],
        Some(metadata.clone()),
    )
    .await;
    let deletion = json_struct(serde_json::json!({"reason": "offboarding"}));
    PermissionsServiceClient::new(server.channel.clone())
        .delete_relationships(authed(v1::DeleteRelationshipsRequest {
            relationship_filter: Some(v1::RelationshipFilter {
                resource_type: "document".into(),
                ..Default::default()
            }),
            optional_transaction_metadata: Some(deletion.clone()),
            ..Default::default()
        }))
        .await
        .expect("delete succeeds");
    write(&server, vec![touch("document:2#viewer@user:a")]).await;

    let written = next(&mut stream).await;
    assert_eq!(
        written.optional_transaction_metadata.as_ref(),
        Some(&metadata)
    );
    assert_eq!(written.full_revision_metadata, vec![metadata]);
    let deleted = next(&mut stream).await;
    assert_eq!(
        deleted.updates.iter().map(describe).collect::<Vec<_>>(),
        vec!["DELETE document:1#viewer@user:a"]
    );
    assert_eq!(
        deleted.optional_transaction_metadata.as_ref(),
        Some(&deletion)
    );
    assert_eq!(deleted.full_revision_metadata, vec![deletion]);
    let plain = next(&mut stream).await;
    assert_eq!(plain.optional_transaction_metadata, None);
    assert!(plain.full_revision_metadata.is_empty());
}

#[tokio::test]
async fn expiry_is_not_reported_as_a_deletion() {
    let server = TestServer::start_default().await;
    let schema = "use expiration

definition user {}

definition document {
    relation viewer: user with expiration
}";
    let start = write_schema(&server, schema).await;
    let mut stream = watch(&server, from(&start, &[v1::WatchKind::IncludeCheckpoints]))
        .await
        .expect("watch starts");
    let mut expiring = server::relationship("document:1#viewer@user:a");
    expiring.optional_expires_at = Some((SystemTime::now() + Duration::from_millis(200)).into());
    write(
        &server,
        vec![v1::RelationshipUpdate {
            operation: Operation::Touch as i32,
            relationship: Some(expiring),
        }],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Deleting what has expired changes nothing either.
    write(
        &server,
        vec![update(Operation::Delete, "document:1#viewer@user:a")],
    )
    .await;
    let mut later = server::relationship("document:2#viewer@user:a");
    later.optional_expires_at = Some((SystemTime::now() + Duration::from_secs(3600)).into());
    let last = write(
        &server,
        vec![v1::RelationshipUpdate {
            operation: Operation::Touch as i32,
            relationship: Some(later),
        }],
    )
    .await;

    let (seen, _) = collect_until(&mut stream, revision(&last)).await;
    let all: Vec<String> = seen.into_values().flatten().collect();
    assert_eq!(
        all,
        vec![
            "TOUCH document:1#viewer@user:a",
            "TOUCH document:2#viewer@user:a"
        ]
    );
}

#[tokio::test]
async fn bad_requests_fail_before_streaming() {
    let server = TestServer::start_default().await;
    let start = write_schema(&server, SCHEMA).await;

    let both = v1::WatchRequest {
        optional_object_types: vec!["document".into()],
        optional_relationship_filters: vec![v1::RelationshipFilter {
            resource_type: "document".into(),
            ..Default::default()
        }],
        ..from(&start, &[])
    };
    let status = watch(&server, both).await.expect_err("both selections");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("optional_relationship_filters")
            && status.message().contains("object types"),
        "{}",
        status.message()
    );

    let unknown = v1::WatchRequest {
        optional_relationship_filters: vec![v1::RelationshipFilter {
            resource_type: "nosuch".into(),
            ..Default::default()
        }],
        ..from(&start, &[])
    };
    let status = watch(&server, unknown).await.expect_err("unknown type");
    assert_eq!(status.code(), Code::FailedPrecondition);

    let garbage = v1::ZedToken {
        token: "not a token".into(),
    };
    let status = watch(&server, from(&garbage, &[]))
        .await
        .expect_err("garbage token");
    assert_eq!(status.code(), Code::InvalidArgument);

    let elsewhere = trellis::api::zedtoken::encode(
        trellis::model::Revision(revision(&start)),
        "another-datastore",
        &[],
    );
    let status = watch(&server, from(&elsewhere, &[]))
        .await
        .expect_err("token from another datastore");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("optional_start_cursor")
            && status.message().contains("different datastore"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_start_older_than_the_gc_window_is_out_of_range() {
    let revisions = RevisionConfig {
        gc_window: Duration::from_millis(200),
        ..RevisionConfig::default()
    };
    let server = TestServer::start(Config::default(), revisions).await;
    let old = write_schema(&server, SCHEMA).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    write(&server, vec![touch("document:1#viewer@user:a")]).await;
    let status = watch(&server, from(&old, &[]))
        .await
        .expect_err("the start revision has left the window");
    assert_eq!(status.code(), Code::OutOfRange);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_reading_is_disconnected() {
    const WRITES: usize = 30;
    let config = Config {
        watch: WatchSettings {
            buffer_length: 2,
            buffer_write_timeout: Duration::from_millis(50),
            ..WatchSettings::default()
        },
        ..Config::default()
    };
    let server = TestServer::start(config, RevisionConfig::default()).await;
    let start = write_schema(&server, SCHEMA).await;
    let mut stream = watch(&server, from(&start, &[]))
        .await
        .expect("watch starts");
    // Large revisions (about half a megabyte each as updates; 15 MB in all)
    // fill the transport's buffers (about 3 MB on loopback here), then the
    // stream's own, while nobody reads.
    let padding = "x".repeat(500);
    for w in 0..WRITES {
        let updates = (0..1000)
            .map(|i| touch(&format!("document:{w}-{i}-{padding}#viewer@user:u")))
            .collect();
        write(&server, updates).await;
    }
    // Still not reading, well past the write timeout.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (read, status) = final_status(&mut stream).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("watch"), "{}", status.message());
    assert!(
        read < WRITES,
        "read {read} of {WRITES} before the disconnect"
    );
}

#[tokio::test]
async fn shutdown_ends_open_streams_as_unavailable() {
    let mut server = TestServer::start_default().await;
    let start = write_schema(&server, SCHEMA).await;
    let mut stream = watch(&server, from(&start, &[]))
        .await
        .expect("watch starts");
    write(&server, vec![touch("document:1#viewer@user:a")]).await;
    next(&mut stream).await;
    server.stop();
    let (_, status) = final_status(&mut stream).await;
    assert_eq!(status.code(), Code::Unavailable);
}
