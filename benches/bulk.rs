//! Bulk import and export throughput through gRPC: an in-process server
//! (`server::run` on a loopback port, the memory datastore) driven by the
//! generated `authzed.api.v1` client, with the social network of
//! `workload::social_network` (schema-examples/social-network.zed).
//!
//! - `bulk/import/{size}`: one ImportBulkRelationships call streaming the
//!   whole network in messages of `IMPORT_BATCH` relationships, into a
//!   fresh server each time (an import fails on relationships that exist;
//!   starting the server and writing the schema are not timed);
//! - `bulk/export/{size}`: one ExportBulkRelationships call reading the
//!   whole network back in pages of 10,000 (the default and maximum),
//!   fully consistent.
//!
//! Each reports throughput in relationships (criterion's `thrpt`); the
//! medians are in `target/criterion/bulk/{import,export}_{size}/new/estimates.json`. Every
//! timed call is checked (count loaded, count exported), so a broken path
//! cannot look fast. The runtime has two worker threads, shared by the
//! client and the server.

#[path = "../tests/common/server.rs"]
mod server;
mod support;

use criterion::{BatchSize, Criterion, Throughput};
use server::{TestServer as Server, authed};

use trellis::api::proto::v1;
use trellis::api::proto::v1::permissions_service_client::PermissionsServiceClient;
use trellis::api::proto::v1::schema_service_client::SchemaServiceClient;

const SCHEMA: &str = include_str!("../schema-examples/social-network.zed");
/// Seeds the network; any fixed value will do.
const SEED: u64 = 1_000_000;
/// Relationships per import message, as `zed import` sends them.
const IMPORT_BATCH: usize = 1_000;

/// Network sizes to measure: the full run, and the smoke run
/// `cargo test --benches` does (this binary without `--bench`).
const FULL: &[(usize, &str)] = &[(100_000, "100k")];
const SMOKE: &[(usize, &str)] = &[(2_000, "2k")];

/// A server on a loopback port (the integration tests' helper), with the
/// social-network schema written.
async fn start() -> Server {
    let server = Server::start_default().await;
    SchemaServiceClient::new(server.channel.clone())
        .write_schema(authed(v1::WriteSchemaRequest {
            schema: SCHEMA.into(),
        }))
        .await
        .expect("write the social-network schema");
    server
}

/// The network as import messages.
fn messages(n: usize) -> Vec<v1::ImportBulkRelationshipsRequest> {
    server::import_messages(n, SEED, IMPORT_BATCH)
}

async fn import(server: &Server, messages: Vec<v1::ImportBulkRelationshipsRequest>) -> u64 {
    server::import(server.channel.clone(), messages).await
}

/// One export of everything; returns how many came back.
async fn export(server: &Server) -> usize {
    let mut pages = PermissionsServiceClient::new(server.channel.clone())
        .export_bulk_relationships(authed(v1::ExportBulkRelationshipsRequest {
            consistency: Some(v1::Consistency {
                requirement: Some(v1::consistency::Requirement::FullyConsistent(true)),
            }),
            optional_limit: 0,
            optional_cursor: None,
            optional_relationship_filter: None,
        }))
        .await
        .expect("export starts")
        .into_inner();
    let mut count = 0;
    while let Some(page) = pages.message().await.expect("export page") {
        count += page.relationships.len();
    }
    count
}

fn bench_size(criterion: &mut Criterion, rt: &tokio::runtime::Runtime, n: usize, label: &str) {
    let messages = messages(n);
    let count: usize = messages.iter().map(|m| m.relationships.len()).sum();
    let mut group = criterion.benchmark_group("bulk");
    group.throughput(Throughput::Elements(count as u64));

    group.bench_function(format!("import/{label}"), |b| {
        b.iter_batched(
            || (rt.block_on(start()), messages.clone()),
            |(server, messages)| {
                let loaded = rt.block_on(import(&server, messages));
                assert_eq!(loaded as usize, count, "every relationship loaded");
                // Dropped (and the server stopped) outside the timing.
                server
            },
            BatchSize::PerIteration,
        )
    });

    let server = rt.block_on(start());
    assert_eq!(
        rt.block_on(import(&server, messages.clone())) as usize,
        count
    );
    group.bench_function(format!("export/{label}"), |b| {
        b.iter(|| {
            let exported = rt.block_on(export(&server));
            assert_eq!(exported, count, "every relationship exported");
        })
    });
    group.finish();
}

fn main() {
    let sizes = if std::env::args().any(|a| a == "--bench") {
        FULL
    } else {
        SMOKE
    };
    let rt = support::two_worker_runtime();
    let mut criterion = support::criterion_for_slow_calls();
    for &(n, label) in sizes {
        bench_size(&mut criterion, &rt, n, label);
    }
    criterion.final_summary();
}
