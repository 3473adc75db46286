//! Prometheus metrics end to end: a real server with its metrics endpoint
//! on a free port, a few API calls, then `GET /metrics` over plain TCP and
//! the text format parsed. The recorder is process-wide, so every
//! assertion compares counts before and after the calls it makes.

#[path = "common/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tonic::Code;

use server::{TestServer, authed, free_addr, get};
use trellis::api::proto::v1;
use trellis::api::proto::v1::permissions_service_client::PermissionsServiceClient;
use trellis::api::proto::v1::schema_service_client::SchemaServiceClient;
use trellis::api::proto::v1::watch_service_client::WatchServiceClient;
use trellis::config::Config;
use trellis::datastore::RevisionConfig;

const SCHEMA: &str = "definition user {}

definition document {
    relation viewer: user
    permission view = viewer
}";

async fn start() -> (TestServer, SocketAddr) {
    let metrics_addr = free_addr().await;
    let config = Config {
        metrics_addr: Some(metrics_addr),
        ..Config::default()
    };
    let server = TestServer::start(config, RevisionConfig::default()).await;
    (server, metrics_addr)
}

/// One sample of the text format: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse(body: &str) -> Vec<Sample> {
    body.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let value = value.parse().expect("numeric value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("label=value");
                    (key.to_string(), value.trim_matches('"').to_string())
                })
                .collect();
            Sample {
                name: name.to_string(),
                labels,
                value,
            }
        })
        .collect()
}

async fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    parse(&body)
}

/// The value of the sample with this name and (at least) these labels; 0
/// when absent.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map_or(0.0, |s| s.value)
}

fn handled(samples: &[Sample], method: &str, code: &str) -> f64 {
    value(
        samples,
        "grpc_server_handled_total",
        &[("grpc_method", method), ("grpc_code", code)],
    )
}

fn obj(t: &str, id: &str) -> Option<v1::ObjectReference> {
    Some(v1::ObjectReference {
        object_type: t.into(),
        object_id: id.into(),
    })
}

fn full() -> Option<v1::Consistency> {
    Some(v1::Consistency {
        requirement: Some(v1::consistency::Requirement::FullyConsistent(true)),
    })
}

async fn check(server: &TestServer, resource_type: &str) -> Result<i32, tonic::Status> {
    PermissionsServiceClient::new(server.channel.clone())
        .check_permission(authed(v1::CheckPermissionRequest {
            consistency: full(),
            resource: obj(resource_type, "readme"),
            permission: "view".into(),
            subject: Some(v1::SubjectReference {
                object: obj("user", "alice"),
                optional_relation: String::new(),
            }),
            ..Default::default()
        }))
        .await
        .map(|r| r.into_inner().permissionship)
}

#[tokio::test]
async fn grpc_calls_are_counted_by_method_and_code() {
    let (server, metrics) = start().await;
    let before = scrape(metrics).await;

    SchemaServiceClient::new(server.channel.clone())
        .write_schema(authed(v1::WriteSchemaRequest {
            schema: SCHEMA.into(),
        }))
        .await
        .expect("schema accepted");
    for _ in 0..3 {
        check(&server, "document").await.expect("check answered");
    }
    let unknown = check(&server, "nosuch")
        .await
        .expect_err("unknown definition");
    assert_eq!(unknown.code(), Code::FailedPrecondition);
    // A stream's status comes in its trailers, after the messages.
    let mut read = PermissionsServiceClient::new(server.channel.clone())
        .read_relationships(authed(v1::ReadRelationshipsRequest {
            consistency: full(),
            relationship_filter: Some(v1::RelationshipFilter {
                resource_type: "document".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .expect("read started")
        .into_inner();
    while read.message().await.expect("no error").is_some() {}

    let after = scrape(metrics).await;
    let moved =
        |method: &str, code: &str| handled(&after, method, code) - handled(&before, method, code);
    assert!(moved("CheckPermission", "OK") >= 3.0);
    assert!(moved("WriteSchema", "OK") >= 1.0);
    assert!(moved("CheckPermission", "FailedPrecondition") >= 1.0);
    assert!(moved("ReadRelationships", "OK") >= 1.0);
    assert!(
        value(
            &after,
            "grpc_server_handled_total",
            &[
                ("grpc_method", "ReadRelationships"),
                ("grpc_type", "server_stream")
            ],
        ) >= 1.0
    );

    let ok_check = [
        ("grpc_service", "authzed.api.v1.PermissionsService"),
        ("grpc_method", "CheckPermission"),
        ("grpc_type", "unary"),
        ("grpc_code", "OK"),
    ];
    assert!(value(&after, "grpc_server_handled_total", &ok_check) >= 3.0);
    let buckets: Vec<&Sample> = after
        .iter()
        .filter(|s| {
            s.name == "grpc_server_handling_seconds_bucket"
                && s.labels.get("grpc_method").map(String::as_str) == Some("CheckPermission")
                && s.labels.get("grpc_code").map(String::as_str) == Some("OK")
        })
        .collect();
    assert!(buckets.len() > 5, "histogram buckets: {buckets:?}");
    let infinite = value(
        &after,
        "grpc_server_handling_seconds_bucket",
        &[
            ("grpc_method", "CheckPermission"),
            ("grpc_code", "OK"),
            ("le", "+Inf"),
        ],
    );
    let count = value(
        &after,
        "grpc_server_handling_seconds_count",
        &[("grpc_method", "CheckPermission"), ("grpc_code", "OK")],
    );
    assert!(
        count >= 3.0 && infinite == count,
        "+Inf {infinite}, count {count}"
    );
}

#[tokio::test]
async fn unauthenticated_calls_are_counted() {
    let (server, metrics) = start().await;
    let before = scrape(metrics).await;
    let refused = SchemaServiceClient::new(server.channel.clone())
        .read_schema(v1::ReadSchemaRequest {})
        .await
        .expect_err("no key");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let after = scrape(metrics).await;
    assert!(
        handled(&after, "ReadSchema", "Unauthenticated")
            > handled(&before, "ReadSchema", "Unauthenticated")
    );
}

#[tokio::test]
async fn engine_metrics_follow_checks() {
    let (server, metrics) = start().await;
    SchemaServiceClient::new(server.channel.clone())
        .write_schema(authed(v1::WriteSchemaRequest {
            schema: SCHEMA.into(),
        }))
        .await
        .expect("schema accepted");
    let before = scrape(metrics).await;
    let no = v1::check_permission_response::Permissionship::NoPermission as i32;
    assert_eq!(check(&server, "document").await.expect("answered"), no);
    let after = scrape(metrics).await;

    let permissionship = |samples: &[Sample]| {
        value(
            samples,
            "trellis_check_permissionship_total",
            &[("permissionship", "no_permission")],
        )
    };
    assert!(permissionship(&after) > permissionship(&before));
    let dispatches = |samples: &[Sample]| {
        value(
            samples,
            "trellis_check_dispatches_count",
            &[("method", "check")],
        )
    };
    assert!(dispatches(&after) > dispatches(&before),);
    assert!(
        after
            .iter()
            .any(|s| s.name == "trellis_check_dispatches_bucket"
                && s.labels.get("le").map(String::as_str) == Some("250")),
        "SpiceDB's dispatch buckets"
    );
}

#[tokio::test]
async fn open_watch_streams_are_a_gauge() {
    let (server, metrics) = start().await;
    let open = |samples: &[Sample]| value(samples, "trellis_watch_streams_open", &[]);
    let stream = WatchServiceClient::new(server.channel.clone())
        .watch(authed(v1::WatchRequest::default()))
        .await
        .expect("watch started")
        .into_inner();
    let during = scrape(metrics).await;
    assert!(open(&during) >= 1.0, "{:?}", open(&during));
    drop(stream);
}

#[tokio::test]
async fn only_get_metrics_is_served_and_metrics_are_described() {
    let (server, metrics) = start().await;
    let _ = SchemaServiceClient::new(server.channel.clone())
        .read_schema(authed(v1::ReadSchemaRequest {}))
        .await;
    let (status, _) = get(metrics, "/other").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, body) = get(metrics, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        body.contains("# TYPE grpc_server_handled_total counter"),
        "{body}"
    );
    assert!(body.contains("# HELP grpc_server_handled_total "), "{body}");
    assert!(
        body.contains("# TYPE grpc_server_handling_seconds histogram"),
        "{body}"
    );
}

#[tokio::test]
async fn dispatch_cache_counters_move() {
    let (server, metrics) = start().await;
    SchemaServiceClient::new(server.channel.clone())
        .write_schema(authed(v1::WriteSchemaRequest {
            schema: SCHEMA.into(),
        }))
        .await
        .expect("schema accepted");
    let before = scrape(metrics).await;
    // No write in between: both read the same head revision, so the second
    // is answered from the cache.
    let ask = || async {
        PermissionsServiceClient::new(server.channel.clone())
            .check_permission(authed(v1::CheckPermissionRequest {
                consistency: full(),
                resource: obj("document", "cached"),
                permission: "view".into(),
                subject: Some(v1::SubjectReference {
                    object: obj("user", "alice"),
                    optional_relation: String::new(),
                }),
                ..Default::default()
            }))
            .await
            .expect("check answered")
    };
    let first = ask().await;
    let second = ask().await;
    let after = scrape(metrics).await;

    let count = |response: &tonic::Response<v1::CheckPermissionResponse>, key: &str| {
        response
            .metadata()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
    };
    let computed = "io.spicedb.respmeta.dispatchedoperationscount";
    let cached = "io.spicedb.respmeta.cachedoperationscount";
    assert!(count(&first, computed) >= Some(1), "{first:?}");
    assert_eq!(count(&second, computed), Some(0), "{second:?}");
    assert!(count(&second, cached) >= Some(1), "{second:?}");

    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert!(moved("trellis_dispatch_cache_misses_total", &[]) >= 1.0);
    assert!(moved("trellis_dispatch_cache_hits_total", &[]) >= 1.0);
    assert!(moved("trellis_dispatch_cache_cost_added_bytes_total", &[]) > 0.0);
    assert!(
        moved(
            "trellis_dispatch_singleflight_total",
            &[("shared", "false")]
        ) >= 1.0
    );
    assert!(
        moved(
            "trellis_check_dispatches_count",
            &[("method", "check"), ("cached", "true")]
        ) >= 2.0
    );
    let (_, body) = get(metrics, "/metrics").await;
    assert!(
        body.contains("# HELP trellis_dispatch_cache_hits_total "),
        "{body}"
    );
}
