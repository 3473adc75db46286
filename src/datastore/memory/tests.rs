//! Runs the datastore conformance suite against `MemoryDatastore`, plus
//! checks of what only the memory engine promises (string reclamation,
//! chunked writes, readers below the GC floor, concurrent readers).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::MemoryDatastore;
use crate::datastore::{
    Datastore, DatastoreError, ManualClock, Page, Reader, RevisionConfig, TransactionMetadata,
    WriteBatch,
};
use crate::model::{
    Relationship, RelationshipFilter, RelationshipUpdate, Revision, UpdateOperation,
    parse_relationship,
};

async fn memory(config: RevisionConfig, clock: Arc<ManualClock>) -> MemoryDatastore {
    MemoryDatastore::new(config, clock)
}

crate::datastore_conformance_tests!(memory);

fn rel(text: &str) -> Relationship {
    parse_relationship(text).expect("test relationship parses")
}

fn docs() -> RelationshipFilter {
    RelationshipFilter {
        resource_type: Some("doc".into()),
        ..RelationshipFilter::default()
    }
}

fn batch(operation: UpdateOperation, rels: impl IntoIterator<Item = Relationship>) -> WriteBatch {
    WriteBatch {
        updates: rels
            .into_iter()
            .map(|relationship| RelationshipUpdate {
                operation,
                relationship,
            })
            .collect(),
        ..WriteBatch::default()
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000),
    ))
}

fn config() -> RevisionConfig {
    RevisionConfig {
        gc_window: Duration::from_secs(60),
        ..RevisionConfig::default()
    }
}

async fn count(ds: &MemoryDatastore, revision: Revision) -> usize {
    let reader = ds.snapshot(revision);
    let rels = reader.query(&docs(), &Page::default()).await;
    rels.expect("query").len()
}

#[tokio::test]
async fn large_writes_apply_in_chunks_and_merge_indexes() {
    let ds = MemoryDatastore::new(config(), clock());
    // Bulk load into empty indexes, then a large write that merges into
    // them, then a small one that inserts; spans several apply chunks.
    let first: Vec<Relationship> = (0..5000)
        .map(|i| rel(&format!("doc:{i}#viewer@user:u{}", i % 100)))
        .collect();
    let r1 = ds
        .bulk_load(first, TransactionMetadata::new())
        .await
        .expect("bulk load")
        .revision;
    let second = (5000..9000).map(|i| rel(&format!("doc:{i}#viewer@user:u{}", i % 100)));
    let r2 = ds
        .write(batch(UpdateOperation::Touch, second))
        .await
        .expect("write")
        .revision;
    let deletes = (0..3000).map(|i| rel(&format!("doc:{i}#viewer@user:u{}", i % 100)));
    let r3 = ds
        .write(batch(UpdateOperation::Delete, deletes))
        .await
        .expect("write")
        .revision;
    assert_eq!(count(&ds, r1).await, 5000);
    assert_eq!(count(&ds, r2).await, 9000);
    assert_eq!(count(&ds, r3).await, 6000);
    let reader = ds.snapshot(r3);
    let found = reader
        .query_resources("doc", &["4000", "10"], "viewer", &["user"])
        .await
        .expect("query_resources");
    assert_eq!(found.len(), 1);
}

#[tokio::test]
async fn gc_releases_strings_and_fails_readers_below_the_floor() {
    let clock = clock();
    let ds = MemoryDatastore::new(config(), clock.clone());
    let rels: Vec<Relationship> = (0..100)
        .map(|i| rel(&format!("doc:d{i}#viewer@user:u{i}")))
        .collect();
    let r1 = ds
        .write(batch(UpdateOperation::Touch, rels.clone()))
        .await
        .expect("write")
        .revision;
    let r2 = ds
        .write(batch(UpdateOperation::Delete, rels))
        .await
        .expect("write")
        .revision;
    let strings_before = ds.inner.read().expect("lock").store.table.interner.len();
    clock.advance(Duration::from_secs(120));
    ds.write(batch(UpdateOperation::Touch, [rel("doc:x#viewer@user:y")]))
        .await
        .expect("write");
    assert_eq!(ds.collect_garbage().await.expect("gc"), 100);
    let (strings_after, versions) = {
        let state = ds.inner.read().expect("lock");
        (state.store.table.interner.len(), state.store.versions())
    };
    assert_eq!(versions, 1);
    assert!(
        strings_after < strings_before / 10,
        "{strings_after} of {strings_before}"
    );
    let old = ds.snapshot(r1).query(&docs(), &Page::default()).await;
    assert!(matches!(old, Err(DatastoreError::RevisionOutOfRange(_))));
    let below = ds.snapshot(r2).query(&docs(), &Page::default()).await;
    assert!(below.is_err(), "r2 is older than the window too");
    let head = ds.head_revision().await.expect("head");
    assert_eq!(count(&ds, head).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_whole_writes_while_writers_run() {
    let ds = MemoryDatastore::new(config(), clock());
    let writer = {
        let ds = ds.clone();
        tokio::spawn(async move {
            for round in 0..20 {
                // Each write replaces the previous round's 600 relationships
                // (more than one apply chunk with their deletes).
                let mut batch = batch(
                    UpdateOperation::Touch,
                    (0..600).map(|i| rel(&format!("doc:r{round}-{i}#viewer@user:u"))),
                );
                batch.delete_by_filter = Some(crate::datastore::DeleteByFilter {
                    filter: docs(),
                    limit: None,
                    allow_partial: false,
                });
                ds.write(batch).await.expect("write");
            }
        })
    };
    let mut checks = 0;
    while !writer.is_finished() || checks == 0 {
        let head = ds.head_revision().await.expect("head");
        let n = count(&ds, head).await;
        assert!(n == 0 || n == 600, "a reader saw a partial write: {n}");
        checks += 1;
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer task");
}

#[tokio::test]
async fn background_gc_stops_with_the_datastore() {
    let ds = Arc::new(MemoryDatastore::new(config(), clock()));
    let task =
        crate::datastore::spawn_garbage_collector(Arc::downgrade(&ds), Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(5)).await;
    drop(ds);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the collector ends once the datastore is gone")
        .expect("collector task");
}

/// The memory datastore with `wait_for_commit` left to the port's default
/// (polling head), so the default a SQL backend inherits passes the same
/// conformance case as the memory engine's own wake-up.
mod polling_default {
    use std::sync::Arc;

    use super::super::{MemoryDatastore, MemoryReader};
    use crate::datastore::{
        Datastore, DatastoreResult, ManualClock, RevisionChanges, RevisionConfig,
        TransactionMetadata, WriteBatch, WriteOutcome, conformance,
    };
    use crate::model::{Relationship, Revision};

    struct Polling(MemoryDatastore);

    impl Datastore for Polling {
        type Reader = MemoryReader;

        fn unique_id(&self) -> &str {
            self.0.unique_id()
        }
        async fn head_revision(&self) -> DatastoreResult<Revision> {
            self.0.head_revision().await
        }
        async fn optimized_revision(&self) -> DatastoreResult<Revision> {
            self.0.optimized_revision().await
        }
        async fn check_revision(&self, revision: Revision) -> DatastoreResult<()> {
            self.0.check_revision(revision).await
        }
        fn snapshot(&self, revision: Revision) -> MemoryReader {
            self.0.snapshot(revision)
        }
        async fn write(&self, batch: WriteBatch) -> DatastoreResult<WriteOutcome> {
            self.0.write(batch).await
        }
        async fn bulk_load(
            &self,
            relationships: Vec<Relationship>,
            metadata: TransactionMetadata,
        ) -> DatastoreResult<WriteOutcome> {
            self.0.bulk_load(relationships, metadata).await
        }
        async fn changes_since(
            &self,
            after: Revision,
            limit: usize,
        ) -> DatastoreResult<Vec<RevisionChanges>> {
            self.0.changes_since(after, limit).await
        }
        async fn collect_garbage(&self) -> DatastoreResult<usize> {
            self.0.collect_garbage().await
        }
    }

    async fn polling(config: RevisionConfig, clock: Arc<ManualClock>) -> Polling {
        Polling(MemoryDatastore::new(config, clock))
    }

    #[tokio::test]
    async fn wait_for_commit_by_polling() {
        conformance::wait_for_commit_wakes_on_the_next_commit(&polling).await;
    }
}
