//! Trellis on PostgreSQL, against a throwaway PostgreSQL 15 cluster on this
//! machine (tests/common/postgres.rs; fsync off, so disk speed is out of
//! the picture; skipped with a message when PostgreSQL is not installed):
//!
//! - `postgres/import/{size}`: one ImportBulkRelationships call of the
//!   social network through gRPC into a fresh database (COPY underneath);
//!   starting the server and writing the schema are not timed;
//! - `postgres/point_query`: one relationship read by its full key through
//!   the datastore's read pool (one statement): the round trip every other
//!   figure is measured in;
//! - `postgres/check_cold`: one CheckPermission of the seed test's mix
//!   (`workload::sample_check`, users from a 1 % sample), through the
//!   services with the dispatch cache off, at the quantized revision;
//! - `postgres/write`: one WriteRelationships of a single TOUCH.
//!
//! Besides criterion's medians, the run prints the cold check as a multiple
//! of the point query and the write latency's p50 and p95 from every timed
//! write.

#[path = "../tests/common/postgres.rs"]
mod postgres;
#[path = "../tests/common/server.rs"]
mod server;
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};

use server::{TestServer, authed};
use trellis::api::proto::v1;
use trellis::config::Config;
use trellis::datastore::postgres::{PostgresConfig, PostgresDatastore};
use trellis::datastore::{Datastore, Page, Reader, RevisionConfig};
use trellis::dispatch::settings::DispatchSettings;
use trellis::model::{
    Consistency, RelationshipFilter, RelationshipUpdate, SubjectFilter, UpdateOperation,
    parse_relationship,
};
use trellis::service::{CheckParams, Limits, WriteParams};
use trellis::workload::{self, SocialShape, SplitMix64};

const SCHEMA: &str = include_str!("../schema-examples/social-network.zed");
const SEED: u64 = 1_000_000;
const IMPORT_BATCH: usize = 1_000;

async fn fresh(cluster: &postgres::Cluster) -> (PostgresConfig, Arc<PostgresDatastore>) {
    let (pg, datastore) = cluster.default_datastore().await;
    (pg, Arc::new(datastore))
}

fn messages(n: usize) -> Vec<v1::ImportBulkRelationshipsRequest> {
    server::import_messages(n, SEED, IMPORT_BATCH)
}

/// A server over a fresh database with the social-network schema.
async fn server(cluster: &postgres::Cluster) -> TestServer {
    let (_, datastore) = fresh(cluster).await;
    let server = TestServer::start_with(datastore, Config::default()).await;
    v1::schema_service_client::SchemaServiceClient::new(server.channel.clone())
        .write_schema(authed(v1::WriteSchemaRequest {
            schema: SCHEMA.into(),
        }))
        .await
        .expect("schema");
    server
}

async fn import(server: &TestServer, messages: Vec<v1::ImportBulkRelationshipsRequest>) -> u64 {
    server::import(server.channel.clone(), messages).await
}

fn bench_import(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    cluster: &postgres::Cluster,
    n: usize,
    label: &str,
) {
    let messages = messages(n);
    let count: usize = messages.iter().map(|m| m.relationships.len()).sum();
    let mut group = c.benchmark_group("postgres");
    group.throughput(Throughput::Elements(count as u64));
    group.bench_function(format!("import/{label}"), |b| {
        b.iter_batched(
            || (rt.block_on(server(cluster)), messages.clone()),
            |(server, messages)| {
                let loaded = rt.block_on(import(&server, messages));
                assert_eq!(loaded as usize, count, "every relationship loaded");
                server
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// Median of timings, and a percentile by rank.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(rank).copied().unwrap_or_default()
}

fn median_of(samples: &Mutex<Vec<Duration>>) -> Duration {
    let mut sorted = samples.lock().expect("samples").clone();
    sorted.sort();
    percentile(&sorted, 0.5)
}

fn bench_round_trips(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    cluster: &postgres::Cluster,
    n: usize,
    full: bool,
) {
    let (_, datastore) = rt.block_on(fresh(cluster));
    // No dispatch cache: every check's reads go to PostgreSQL ("cold").
    let no_cache = DispatchSettings {
        cache_enabled: false,
        ..DispatchSettings::default()
    };
    let services = trellis::server::services_with(
        datastore,
        Limits::default(),
        &no_cache,
        &RevisionConfig::default(),
    );
    rt.block_on(async {
        services.write_schema(SCHEMA).await.expect("schema");
        let rels = workload::social_network(n, SEED);
        services
            .datastore()
            .bulk_load(rels, Default::default())
            .await
            .expect("load");
    });
    // The quantized revision once past the quantization window, which then
    // holds the data; the smoke run does not wait and reads at head.
    let consistency = if full {
        std::thread::sleep(Duration::from_secs(6));
        Consistency::MinimizeLatency
    } else {
        Consistency::FullyConsistent
    };
    // The engine's own unit of work: one relationship read by its full key
    // through the read pool, one statement at head.
    let reader = rt.block_on(async {
        let head = services.datastore().head_revision().await.expect("head");
        services.datastore().snapshot(head)
    });
    let point = RelationshipFilter {
        resource_type: Some("content".into()),
        resource_id: Some(workload::content_id(1)),
        relation: Some("owner".into()),
        subject: Some(SubjectFilter {
            subject_type: "user".into(),
            subject_id: Some(workload::user_id(0)),
            relation: Some("...".into()),
        }),
        ..RelationshipFilter::default()
    };
    let point_samples = Mutex::new(Vec::new());
    let check_samples = Mutex::new(Vec::new());
    let write_samples = Mutex::new(Vec::new());
    let mut group = c.benchmark_group("postgres");
    group.bench_function("point_query", |b| {
        b.iter(|| {
            let started = Instant::now();
            let rows = rt
                .block_on(reader.query(&point, &Page::default()))
                .expect("point query");
            point_samples
                .lock()
                .expect("samples")
                .push(started.elapsed());
            rows.len()
        })
    });
    let shape = SocialShape::for_relationships(n);
    let mut rng = SplitMix64::new(SEED);
    let users: Vec<usize> = (0..shape.users.div_ceil(100))
        .map(|_| rng.below(shape.users))
        .collect();
    group.bench_function("check_cold", |b| {
        b.iter_batched(
            || workload::sample_check(&shape, &mut rng, &users),
            |(resource, permission, subject)| {
                let started = Instant::now();
                let outcome = rt
                    .block_on(services.check(
                        CheckParams {
                            resource,
                            permission: permission.into(),
                            subject,
                            context: Default::default(),
                        },
                        consistency,
                    ))
                    .expect("check");
                check_samples
                    .lock()
                    .expect("samples")
                    .push(started.elapsed());
                outcome
            },
            BatchSize::SmallInput,
        )
    });
    let mut next = 0u64;
    group.bench_function("write", |b| {
        b.iter(|| {
            next += 1;
            let text = format!("user:bench{next}#follower@user:u{}", next % 97);
            let started = Instant::now();
            let revision = rt
                .block_on(services.write_relationships(WriteParams {
                    updates: vec![RelationshipUpdate {
                        operation: UpdateOperation::Touch,
                        relationship: parse_relationship(&text).expect("parses"),
                    }],
                    ..Default::default()
                }))
                .expect("write");
            write_samples
                .lock()
                .expect("samples")
                .push(started.elapsed());
            revision
        })
    });
    group.finish();

    let point = median_of(&point_samples);
    let check = median_of(&check_samples);
    let mut writes = write_samples.lock().expect("samples").clone();
    writes.sort();
    println!(
        "postgres ({n} relationships): point query median {point:?}; cold check median {check:?} \
         = {:.2}x the point query; write p50 {:?}, p95 {:?} ({} writes)",
        check.as_secs_f64() / point.as_secs_f64().max(1e-9),
        percentile(&writes, 0.5),
        percentile(&writes, 0.95),
        writes.len()
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let Some(cluster) = postgres::shared() else {
        return;
    };
    let rt = support::two_worker_runtime();
    let mut criterion = support::criterion_for_slow_calls();
    let (import_size, label, network) = if full {
        (100_000, "100k", 100_000)
    } else {
        (2_000, "2k", 2_000)
    };
    bench_import(&mut criterion, &rt, cluster, import_size, label);
    bench_round_trips(&mut criterion, &rt, cluster, network, full);
    criterion.final_summary();
}
