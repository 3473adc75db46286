//! PostgreSQL going away under load, against a cluster of this test's own
//! (stopped the hard way, as a crash): calls during the outage fail with
//! UNAVAILABLE within the connect timeout (no hang, no panic), every write
//! that was acknowledged is there afterwards, and service resumes by itself
//! soon after the database returns. Skipped with a message when PostgreSQL
//! is not installed.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::Mutex;
use tonic::Code;

use common::postgres::Cluster;
use common::server::{TestServer, authed, check_doc_view, fully_consistent, update};
use trellis::api::proto::v1;
use trellis::config::Config;
use trellis::datastore::postgres::PostgresDatastore;
use trellis::datastore::{RevisionConfig, SystemClock};

const SCHEMA: &str = "definition user {}\n\ndefinition doc {\n\trelation viewer: user\n\tpermission view = viewer\n}";

/// No call may take longer than this (the connect timeout is 2 s).
const CALL_BOUND: Duration = Duration::from_secs(6);

/// What the load saw.
#[derive(Default)]
struct Observed {
    acknowledged: BTreeSet<String>,
    codes_during_outage: BTreeSet<String>,
    unexpected: Vec<String>,
}

async fn write(channel: tonic::transport::Channel, text: &str) -> Result<(), tonic::Status> {
    let mut client = v1::permissions_service_client::PermissionsServiceClient::new(channel);
    client
        .write_relationships(authed(v1::WriteRelationshipsRequest {
            updates: vec![update(v1::relationship_update::Operation::Touch, text)],
            ..Default::default()
        }))
        .await
        .map(|_| ())
}

async fn check(channel: tonic::transport::Channel, doc: &str) -> Result<(), tonic::Status> {
    let mut client = v1::permissions_service_client::PermissionsServiceClient::new(channel);
    client
        .check_permission(authed(check_doc_view(doc, "ann", fully_consistent())))
        .await
        .map(|_| ())
}

/// One load worker: writes a new relationship and checks it, until told to
/// stop, recording what was acknowledged and how calls failed.
async fn worker(
    id: usize,
    channel: tonic::transport::Channel,
    stop: Arc<AtomicBool>,
    outage: Arc<AtomicBool>,
    observed: Arc<Mutex<Observed>>,
) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let doc = format!("d{id}_{n}");
        let text = format!("doc:{doc}#viewer@user:ann");
        let results = [
            tokio::time::timeout(CALL_BOUND, write(channel.clone(), &text)).await,
            tokio::time::timeout(CALL_BOUND, check(channel.clone(), &doc)).await,
        ];
        let mut seen = observed.lock().await;
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Err(_) => seen
                    .unexpected
                    .push(format!("a call hung past {CALL_BOUND:?}")),
                Ok(Ok(())) if i == 0 => {
                    seen.acknowledged.insert(text.clone());
                }
                Ok(Ok(())) => {}
                Ok(Err(status)) if outage.load(Ordering::Relaxed) => {
                    seen.codes_during_outage
                        .insert(format!("{:?}", status.code()));
                    if status.code() != Code::Unavailable {
                        seen.unexpected.push(format!("{status:?}"));
                    }
                }
                Ok(Err(status)) => seen
                    .unexpected
                    .push(format!("outside the outage: {status:?}")),
            }
        }
        drop(seen);
        if outage.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn read_all(channel: tonic::transport::Channel) -> BTreeSet<String> {
    let mut client = v1::permissions_service_client::PermissionsServiceClient::new(channel);
    client
        .read_relationships(authed(v1::ReadRelationshipsRequest {
            consistency: fully_consistent(),
            relationship_filter: Some(v1::RelationshipFilter {
                resource_type: "doc".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .expect("read after recovery")
        .into_inner()
        .map(|r| common::server::text(&r.expect("item").relationship.expect("relationship")))
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_hard_database_stop_under_load() {
    let cluster = match Cluster::start() {
        Ok(cluster) => cluster,
        Err(why) => {
            eprintln!("skipping the PostgreSQL fault test: {why}");
            return;
        }
    };
    let pg = cluster.config("postgres");
    PostgresDatastore::migrate(&pg).await.expect("migrate");
    let datastore =
        PostgresDatastore::connect(&pg, RevisionConfig::default(), Arc::new(SystemClock))
            .await
            .expect("connect");
    let server = TestServer::start_with(Arc::new(datastore), Config::default()).await;
    let mut schemas = v1::schema_service_client::SchemaServiceClient::new(server.channel.clone());
    schemas
        .write_schema(authed(v1::WriteSchemaRequest {
            schema: SCHEMA.into(),
        }))
        .await
        .expect("schema");

    let stop = Arc::new(AtomicBool::new(false));
    let outage = Arc::new(AtomicBool::new(false));
    let observed = Arc::new(Mutex::new(Observed::default()));
    let workers: Vec<_> = (0..4)
        .map(|id| {
            tokio::spawn(worker(
                id,
                server.channel.clone(),
                stop.clone(),
                outage.clone(),
                observed.clone(),
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    outage.store(true, Ordering::Relaxed);
    cluster.stop_immediately().expect("stop PostgreSQL");
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.resume().expect("restart PostgreSQL");
    let back = Instant::now();
    let recovered = loop {
        let probe = format!("doc:probe_{}#viewer@user:ann", back.elapsed().as_millis());
        if write(server.channel.clone(), &probe).await.is_ok() {
            observed.lock().await.acknowledged.insert(probe);
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "no recovery in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Anything failing from here on is outside the outage.
    tokio::time::sleep(Duration::from_millis(200)).await;
    outage.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for handle in workers {
        handle.await.expect("a worker panicked");
    }

    let observed = observed.lock().await;
    println!(
        "acknowledged {} writes; codes during the outage: {:?}; recovered {recovered:?} after restart",
        observed.acknowledged.len(),
        observed.codes_during_outage
    );
    assert!(observed.unexpected.is_empty(), "{:?}", observed.unexpected);
    assert!(
        observed.codes_during_outage.contains("Unavailable"),
        "the outage was not noticed"
    );
    assert!(
        recovered < Duration::from_secs(5),
        "recovered after {recovered:?}"
    );
    let stored = read_all(server.channel.clone()).await;
    let lost: Vec<&String> = observed.acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}
