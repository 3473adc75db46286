//! Trellis on PostgreSQL end to end, against a throwaway PostgreSQL 15
//! cluster (skipped with a message when the server is not installed):
//! every schema example and SpiceDB test config through the engine, the
//! gRPC API with health following the migration state, and new-enemy
//! safety (a check at least as fresh as a write's token sees the write).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tonic::Code;

use common::postgres;
use common::server::{
    TestServer, at_least_as_fresh, authed, check_doc_view, free_addr, fully_consistent, get,
    relationship, update,
};
use trellis::api::proto::v1;
use trellis::config::Config;
use trellis::datastore::postgres::PostgresDatastore;
use trellis::datastore::proxy::Metered;
use trellis::datastore::{RevisionConfig, SystemClock, spawn_garbage_collector};
use trellis::model::{
    Consistency, ObjectRef, RelationshipUpdate, SubjectRef, UpdateOperation, parse_relationship,
};
use trellis::service::{CheckParams, Limits, Permissionship, WriteParams};
use trellis::validationfile;

async fn migrated(cluster: &postgres::Cluster) -> Arc<PostgresDatastore> {
    Arc::new(cluster.default_datastore().await.1)
}

/// Runs one validation file on a fresh database.
async fn validate(cluster: &postgres::Cluster, path: std::path::PathBuf) -> Result<usize, String> {
    let loaded = validationfile::load(&path).map_err(|e| e.to_string())?;
    let services = trellis::server::services(migrated(cluster).await, Limits::default());
    let report = services.run_validation_file(&loaded).await;
    if report.failures.is_empty() {
        Ok(report.assertions_passed)
    } else {
        let lines: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
        Err(format!("{}:\n{}", path.display(), lines.join("\n")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_validation_file_passes_on_postgres() {
    let Some(cluster) = postgres::shared() else {
        return;
    };
    let mut files = common::files_with_extension(&common::repo().join("schema-examples"), "yaml");
    match common::shared_testconfigs() {
        Some(root) => files.extend(common::files_with_extension(&root, "yaml")),
        None => eprintln!("../shared absent: only the schema examples run"),
    }
    let total = files.len();
    let outcomes: Vec<Result<usize, String>> = futures::stream::iter(files)
        .map(|path| validate(cluster, path))
        .buffer_unordered(4)
        .collect()
        .await;
    let assertions: usize = outcomes.iter().filter_map(|o| o.as_ref().ok()).sum();
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    println!(
        "on PostgreSQL: {}/{total} validation files pass ({assertions} assertions)",
        total - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{}",
        failures
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

const SCHEMA: &str = "definition user {}\n\ndefinition doc {\n\trelation viewer: user\n\tpermission view = viewer\n}";

fn check_request(doc: &str, user: &str, token: Option<v1::ZedToken>) -> v1::CheckPermissionRequest {
    check_doc_view(doc, user, at_least_as_fresh(token))
}

/// Writes the schema and `doc:readme#viewer@user:ann` over gRPC; returns
/// the write's token.
async fn grant_readme_to_ann(server: &TestServer) -> Option<v1::ZedToken> {
    v1::schema_service_client::SchemaServiceClient::new(server.channel.clone())
        .write_schema(authed(v1::WriteSchemaRequest {
            schema: SCHEMA.into(),
        }))
        .await
        .expect("schema written");
    v1::permissions_service_client::PermissionsServiceClient::new(server.channel.clone())
        .write_relationships(authed(v1::WriteRelationshipsRequest {
            updates: vec![update(
                v1::relationship_update::Operation::Create,
                "doc:readme#viewer@user:ann",
            )],
            ..Default::default()
        }))
        .await
        .expect("written")
        .into_inner()
        .written_at
}

async fn health(server: &TestServer) -> i32 {
    let mut client = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    client
        .check(tonic_health::pb::HealthCheckRequest {
            service: "authzed.api.v1.PermissionsService".into(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status
}

/// The server starts on an unmigrated database reporting NOT_SERVING and
/// refusing calls with a clear error, then serves once migrated, without a
/// restart.
#[tokio::test]
async fn serves_over_grpc_once_the_database_is_migrated() {
    let Some(cluster) = postgres::shared() else {
        return;
    };
    let pg = cluster.fresh_database().await;
    let datastore = PostgresDatastore::open(&pg, RevisionConfig::default(), Arc::new(SystemClock))
        .expect("pools");
    let server = TestServer::start_with(Arc::new(datastore), Config::default()).await;
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(health(&server).await, not_serving);
    let mut schemas = v1::schema_service_client::SchemaServiceClient::new(server.channel.clone());
    let refused = schemas
        .write_schema(authed(v1::WriteSchemaRequest {
            schema: SCHEMA.into(),
        }))
        .await
        .expect_err("not migrated");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("migrate"),
        "{}",
        refused.message()
    );

    PostgresDatastore::migrate(&pg).await.expect("migrate");
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(&server).await != serving {
        assert!(
            Instant::now() < deadline,
            "still NOT_SERVING 10 s after migrating"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let written_at = grant_readme_to_ann(&server).await;
    let mut permissions =
        v1::permissions_service_client::PermissionsServiceClient::new(server.channel.clone());
    let answer = permissions
        .check_permission(authed(check_request("readme", "ann", written_at)))
        .await
        .expect("checked")
        .into_inner();
    assert_eq!(
        answer.permissionship,
        v1::check_permission_response::Permissionship::HasPermission as i32
    );
    let again = permissions
        .write_relationships(authed(v1::WriteRelationshipsRequest {
            updates: vec![update(
                v1::relationship_update::Operation::Create,
                "doc:readme#viewer@user:ann",
            )],
            ..Default::default()
        }))
        .await
        .expect_err("created twice");
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");
    let read: Vec<String> = permissions
        .read_relationships(authed(v1::ReadRelationshipsRequest {
            relationship_filter: Some(v1::RelationshipFilter {
                resource_type: "doc".into(),
                ..Default::default()
            }),
            consistency: fully_consistent(),
            ..Default::default()
        }))
        .await
        .expect("read")
        .into_inner()
        .map(|r| common::server::text(&r.expect("item").relationship.expect("relationship")))
        .collect()
        .await;
    assert_eq!(
        read,
        vec![common::server::text(&relationship(
            "doc:readme#viewer@user:ann"
        ))]
    );
}

/// New-enemy safety: a check at least as fresh as a write's revision sees
/// that write, for 10,000 writes (half grants, half revocations) made by
/// four concurrent writers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_at_least_as_fresh_as_a_write_sees_it() {
    const WRITERS: usize = 4;
    const TRIALS: usize = 10_000;
    let Some(cluster) = postgres::shared() else {
        return;
    };
    let services = trellis::server::services(migrated(cluster).await, Limits::default());
    services.write_schema(SCHEMA).await.expect("schema");
    let failures = futures::stream::iter(0..WRITERS)
        .map(|writer| {
            let services = services.clone();
            async move {
                let mut wrong = Vec::new();
                for trial in 0..TRIALS / WRITERS {
                    // Each writer grants, then revokes, on its own document.
                    let grant = trial % 2 == 0;
                    let doc = format!("w{writer}_{}", trial / 2);
                    let operation = if grant {
                        UpdateOperation::Touch
                    } else {
                        UpdateOperation::Delete
                    };
                    let text = format!("doc:{doc}#viewer@user:bob");
                    let revision = services
                        .write_relationships(WriteParams {
                            updates: vec![RelationshipUpdate {
                                operation,
                                relationship: parse_relationship(&text).expect("parses"),
                            }],
                            ..Default::default()
                        })
                        .await
                        .expect("write");
                    let outcome = services
                        .check(
                            CheckParams {
                                resource: ObjectRef::new("doc", doc.as_str()),
                                permission: "view".into(),
                                subject: SubjectRef::object("user", "bob"),
                                context: Default::default(),
                            },
                            Consistency::AtLeastAsFresh(revision),
                        )
                        .await
                        .expect("check");
                    let sees_grant = outcome.permissionship == Permissionship::HasPermission;
                    if sees_grant != grant || outcome.revision < revision {
                        wrong.push(format!("{text} at {revision}: {outcome:?}"));
                    }
                }
                wrong
            }
        })
        .buffer_unordered(WRITERS)
        .concat()
        .await;
    assert!(failures.is_empty(), "stale reads: {failures:?}");
}

/// The metered PostgreSQL datastore, as `serve` runs it, shows up on
/// `/metrics`: latency per operation, garbage collection, pool usage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datastore_metrics_are_scraped() {
    let Some(cluster) = postgres::shared() else {
        return;
    };
    let (pg, datastore) = cluster.default_datastore().await;
    let datastore = Arc::new(Metered::new(datastore));
    let metrics_addr = free_addr().await;
    let config = Config {
        metrics_addr: Some(metrics_addr),
        ..Config::default()
    };
    let server = TestServer::start_with(datastore.clone(), config).await;
    // After the server installed the metrics recorder: a sample recorded
    // before it would be lost.
    let collector = spawn_garbage_collector(Arc::downgrade(&datastore), Duration::from_millis(50));
    let maintenance = datastore.inner().spawn_pool_maintenance(&pg);
    let written_at = grant_readme_to_ann(&server).await;
    let mut permissions =
        v1::permissions_service_client::PermissionsServiceClient::new(server.channel.clone());
    permissions
        .check_permission(authed(check_request("readme", "ann", written_at)))
        .await
        .expect("checked");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = get(metrics_addr, "/metrics").await;
    collector.abort();
    maintenance.abort();
    assert!(status.contains("200"), "{status}");
    for expected in [
        "trellis_datastore_query_seconds_bucket{operation=\"query\"",
        "trellis_datastore_query_seconds_count{operation=\"write\"}",
        "trellis_datastore_query_seconds_count{operation=\"collect_garbage\"}",
        "trellis_datastore_gc_seconds_count",
        "trellis_datastore_pool_connections{pool=\"read\",state=\"max\"} 4",
        "trellis_datastore_pool_connections{pool=\"write\",state=\"in_use\"}",
    ] {
        assert!(body.contains(expected), "no {expected} in:\n{body}");
    }
}
