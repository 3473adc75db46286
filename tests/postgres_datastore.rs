//! The datastore conformance suite on PostgreSQL, against a throwaway
//! PostgreSQL 15 cluster (tests/common/postgres.rs; skipped with a message
//! when the server is not installed), plus what only PostgreSQL promises:
//! migrations that are idempotent and refuse an unmigrated database.

mod common;

use common::postgres;

use std::sync::Arc;

use trellis::datastore::postgres::PostgresDatastore;
use trellis::datastore::{DatastoreError, ManualClock, RevisionConfig, SystemClock};

async fn datastore(config: RevisionConfig, clock: Arc<ManualClock>) -> PostgresDatastore {
    let cluster = postgres::shared().expect("checked by `available`");
    cluster.migrated_datastore(config, clock).await.1
}

trellis::datastore_conformance_tests!(datastore, available = postgres::shared().is_some());

#[tokio::test]
async fn an_unmigrated_database_is_refused_until_migrated() {
    let Some(cluster) = postgres::shared() else {
        return;
    };
    let pg = cluster.fresh_database().await;
    let refused = PostgresDatastore::connect(&pg, RevisionConfig::default(), Arc::new(SystemClock))
        .await
        .expect_err("not migrated");
    assert!(
        matches!(&refused, DatastoreError::NotMigrated(m) if m.contains("migrate")),
        "{refused:?}"
    );
    let first = PostgresDatastore::migrate(&pg).await.expect("migrate");
    assert_eq!(
        first.applied.len(),
        trellis::datastore::postgres::migrate::MIGRATIONS.len()
    );
    let again = PostgresDatastore::migrate(&pg)
        .await
        .expect("migrate again");
    assert!(again.applied.is_empty(), "a second run applies nothing");
    assert_eq!(again.version, first.version);
    PostgresDatastore::connect(&pg, RevisionConfig::default(), Arc::new(SystemClock))
        .await
        .expect("migrated");
}

#[tokio::test]
async fn concurrent_migrations_apply_once() {
    let Some(cluster) = postgres::shared() else {
        return;
    };
    let pg = cluster.fresh_database().await;
    let runs = futures::future::join_all((0..4).map(|_| PostgresDatastore::migrate(&pg))).await;
    let applied: usize = runs
        .into_iter()
        .map(|r| r.expect("every migrator succeeds").applied.len())
        .sum();
    assert_eq!(
        applied,
        trellis::datastore::postgres::migrate::MIGRATIONS.len()
    );
}
