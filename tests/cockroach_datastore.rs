//! The datastore conformance suite on CockroachDB, against the cluster
//! `TRELLIS_TEST_CRDB_URL` names (tests/common/cockroach.rs; every test
//! skips with a message when it is unset), plus what only CockroachDB
//! promises: migrations without advisory locks, and a change feed that
//! lags by the follower-read delay.
//!
//! The suite's datastores read the feed with no follower-read delay, so a
//! commit is listed as soon as it is acknowledged (a read at the current
//! HLC is as final as one at a closed timestamp, only it may push
//! concurrent writers into retries; ARCHITECTURE.md, "CockroachDB
//! revisions"). Six cases cannot hold against a server clock, so the
//! suite's `server_clock` group leaves them out: they step the suite's
//! `ManualClock` hours forward to move revisions
//! out of the GC window or into the next quantization window, but
//! CockroachDB's revisions, GC window and optimized revision follow the
//! cluster's HLC, which the test cannot move:
//! `check_revision_range`, `optimized_revision_is_quantized`,
//! `gc_keeps_what_readers_see`, `gc_reclaims_expired_relationships`,
//! `gc_truncates_the_change_feed`, `counters_survive_garbage_collection`.
//! Their arithmetic on the HLC is unit-tested in
//! `src/datastore/postgres/dialect/tests.rs`. Expiry still follows the
//! `ManualClock` (it is bound into every query), so the expiry cases run.

mod common;

use common::cockroach;

use std::sync::Arc;
use std::time::Duration;

use trellis::datastore::postgres::{CockroachSettings, PostgresDatastore, migrate};
use trellis::datastore::{
    Datastore, DatastoreError, ManualClock, RevisionConfig, SystemClock, WriteBatch,
};
use trellis::model::{RelationshipUpdate, UpdateOperation, parse_relationship};

/// The suite's settings: SpiceDB's, with the feed read at the current HLC.
fn suite_settings() -> CockroachSettings {
    CockroachSettings {
        follower_read_delay: Duration::ZERO,
        ..CockroachSettings::default()
    }
}

async fn datastore(config: RevisionConfig, clock: Arc<ManualClock>) -> PostgresDatastore {
    let crdb = cockroach::fresh_database(suite_settings()).await;
    PostgresDatastore::migrate(&crdb).await.expect("migrate");
    PostgresDatastore::connect(&crdb, config, clock)
        .await
        .expect("connect")
}

trellis::datastore_conformance_tests!(
    datastore,
    available = cockroach::url().is_some(),
    server_clock
);

fn touch(text: &str) -> WriteBatch {
    WriteBatch {
        updates: vec![RelationshipUpdate {
            operation: UpdateOperation::Touch,
            relationship: parse_relationship(text).expect("fixture parses"),
        }],
        ..WriteBatch::default()
    }
}

#[tokio::test]
async fn an_unmigrated_database_is_refused_until_migrated() {
    if cockroach::url().is_none() {
        return;
    }
    let crdb = cockroach::fresh_database(suite_settings()).await;
    let refused =
        PostgresDatastore::connect(&crdb, RevisionConfig::default(), Arc::new(SystemClock))
            .await
            .expect_err("not migrated");
    assert!(
        matches!(&refused, DatastoreError::NotMigrated(m) if m.contains("migrate")),
        "{refused:?}"
    );
    let first = PostgresDatastore::migrate(&crdb).await.expect("migrate");
    assert_eq!(first.applied.len(), migrate::COCKROACH_MIGRATIONS.len());
    let again = PostgresDatastore::migrate(&crdb)
        .await
        .expect("migrate again");
    assert!(again.applied.is_empty(), "a second run applies nothing");
    let ds = PostgresDatastore::connect(&crdb, RevisionConfig::default(), Arc::new(SystemClock))
        .await
        .expect("migrated");
    assert!(
        ds.unique_id().starts_with("cockroachdb-"),
        "{}",
        ds.unique_id()
    );
}

#[tokio::test]
async fn concurrent_migrations_apply_once() {
    if cockroach::url().is_none() {
        return;
    }
    let crdb = cockroach::fresh_database(suite_settings()).await;
    let runs = futures::future::join_all((0..4).map(|_| PostgresDatastore::migrate(&crdb))).await;
    let applied: usize = runs
        .into_iter()
        .map(|r| r.expect("every migrator succeeds").applied.len())
        .sum();
    assert_eq!(applied, migrate::COCKROACH_MIGRATIONS.len());
}

/// With a follower-read delay the feed lists a commit only once the delay
/// has passed, and then exactly once.
#[tokio::test]
async fn the_feed_lags_by_the_follower_read_delay() {
    if cockroach::url().is_none() {
        return;
    }
    let delay = Duration::from_secs(2);
    let crdb = cockroach::fresh_database(CockroachSettings {
        follower_read_delay: delay,
        ..CockroachSettings::default()
    })
    .await;
    PostgresDatastore::migrate(&crdb).await.expect("migrate");
    let ds = PostgresDatastore::connect(&crdb, RevisionConfig::default(), Arc::new(SystemClock))
        .await
        .expect("connect");
    let before = ds.head_revision().await.expect("head");
    let written = ds
        .write(touch("doc:a#viewer@user:x"))
        .await
        .expect("write")
        .revision;
    assert!(written > before);
    assert!(
        ds.changes_since(before, 10).await.expect("feed").is_empty(),
        "not listed before the delay"
    );
    tokio::time::sleep(delay + Duration::from_millis(500)).await;
    let feed = ds.changes_since(before, 10).await.expect("feed");
    assert_eq!(
        feed.iter().map(|c| c.revision).collect::<Vec<_>>(),
        [written]
    );
    let optimized = ds.optimized_revision().await.expect("optimized");
    assert!(optimized < ds.head_revision().await.expect("head"));
    ds.check_revision(optimized)
        .await
        .expect("optimized is readable");
}

/// The static overlap key orders concurrent writers: every write gets its
/// own revision and all commit (retried when they lose a race).
#[tokio::test]
async fn concurrent_writers_all_commit_in_distinct_revisions() {
    if cockroach::url().is_none() {
        return;
    }
    let crdb = cockroach::fresh_database(suite_settings()).await;
    PostgresDatastore::migrate(&crdb).await.expect("migrate");
    let ds = PostgresDatastore::connect(&crdb, RevisionConfig::default(), Arc::new(SystemClock))
        .await
        .expect("connect");
    let writes = (0..16).map(|i| ds.write(touch(&format!("doc:{i}#viewer@user:x"))));
    let mut revisions: Vec<_> = futures::future::join_all(writes)
        .await
        .into_iter()
        .map(|r| r.expect("write commits").revision)
        .collect();
    revisions.sort();
    revisions.dedup();
    assert_eq!(revisions.len(), 16);
}
