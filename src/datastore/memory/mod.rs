//! Owns `MemoryDatastore`, the embedded default datastore: relationship
//! versions kept in memory under MVCC, with the port's revisions, GC window
//! and change feed. Depends on the port (`datastore`) and `model` only.
//!
//! Layout (see each file): `interner` (strings → `u32`), `store` (40-byte
//! version records, forward and reverse indexes), `query` (read paths),
//! `write` (planning a write while only reading), `history` (revision log,
//! schema history, revision policy), `reader` (`MemoryReader`).
//!
//! Concurrency: one `RwLock` guards the state; every method finishes
//! synchronously, so no lock is held across an `.await`. Writers are
//! serialized by an async mutex (waiting writers yield instead of blocking a
//! worker thread). A write plans under the read lock — readers run beside
//! it, and every error surfaces before anything changes — then applies in
//! chunks of `APPLY_CHUNK` steps under the write lock, so readers never wait
//! for more than one chunk. That is safe because versions are stamped with
//! the new revision, which readers cannot see until the final step appends
//! it to the log (readers clamp their revision to head).

mod history;
mod index;
mod interner;
mod query;
mod reader;
mod store;
#[cfg(test)]
mod tests;
mod write;

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use history::{DELETE_BIT, Entry, History};
use store::{LIVE, Store};
use write::{Plan, Planned};

pub use reader::MemoryReader;

use super::{
    Change, Clock, Datastore, DatastoreError, DatastoreResult, RevisionChanges, RevisionConfig,
    SystemClock, TransactionMetadata, WriteBatch, WriteOutcome,
};
use crate::model::{Relationship, Revision};

/// Steps applied per hold of the write lock: bounds how long a reader can
/// wait for a writer (a few hundred microseconds).
const APPLY_CHUNK: usize = 1024;

/// Writes creating at most this many versions index them in place; larger
/// ones sort and merge beside readers first (`Store::prepare_index`).
const SMALL_WRITE: usize = 256;

/// The embedded datastore. Cloning shares the same data.
#[derive(Clone)]
pub struct MemoryDatastore {
    inner: Arc<Inner>,
}

/// Everything the datastore's clones and readers share.
struct Inner {
    state: RwLock<State>,
    /// Serializes writes and GC; held only by the task that writes.
    writer: tokio::sync::Mutex<()>,
    config: RevisionConfig,
    clock: Arc<dyn Clock>,
    unique_id: String,
    /// The head revision, published after each commit so Watch streams
    /// wake on a commit instead of polling.
    head: tokio::sync::watch::Sender<u64>,
}

/// The data behind the lock.
struct State {
    store: Store,
    history: History,
}

impl Default for MemoryDatastore {
    fn default() -> Self {
        Self::new(RevisionConfig::default(), Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for MemoryDatastore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDatastore")
            .field("unique_id", &self.inner.unique_id)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl MemoryDatastore {
    /// An empty datastore at revision 0, reading time from `clock`.
    pub fn new(config: RevisionConfig, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        let unique_id = format!("memory-{:016x}", RandomState::new().hash_one(now));
        let state = State {
            store: Store::default(),
            history: History::new(now),
        };
        Self {
            inner: Arc::new(Inner {
                state: RwLock::new(state),
                writer: tokio::sync::Mutex::new(()),
                config,
                clock,
                unique_id,
                head: tokio::sync::watch::Sender::new(0),
            }),
        }
    }
}

impl Inner {
    fn read(&self) -> DatastoreResult<RwLockReadGuard<'_, State>> {
        self.state.read().map_err(|_| poisoned())
    }

    fn write(&self) -> DatastoreResult<RwLockWriteGuard<'_, State>> {
        self.state.write().map_err(|_| poisoned())
    }

    /// Applies a plan at the next revision, chunk by chunk; the final step
    /// publishes the revision. The caller holds the writer mutex.
    fn apply(&self, plan: Plan, now: SystemTime) -> DatastoreResult<WriteOutcome> {
        let revision = self.read()?.history.head() + 1;
        for chunk in plan.retire.chunks(APPLY_CHUNK) {
            let mut state = self.write()?;
            for &slot in chunk {
                state.store.mark_deleted(slot, revision);
                state.history.record_death(revision, slot);
            }
        }
        let slots = self.add_versions(&plan.create, revision)?;
        self.index_versions(&slots)?;
        let changes = plan
            .changes
            .iter()
            .map(|change| match *change {
                Planned::Touch(i) => slots[i],
                Planned::Delete(slot) => slot | DELETE_BIT,
            })
            .collect();
        let entry = Entry {
            revision,
            committed_at: now,
            changes,
            schema_changed: plan.schema.is_some(),
            metadata: plan.metadata,
        };
        let mut state = self.write()?;
        if let Some(counters) = plan.counters {
            state.history.set_counters(revision, counters);
        }
        state.history.commit(entry, plan.schema);
        drop(state);
        // Writers are serialized, so published heads only increase.
        self.head.send_replace(revision);
        Ok(WriteOutcome {
            revision: Revision(revision.into()),
            deleted_by_filter: plan.deleted_by_filter,
            partial: plan.partial,
        })
    }

    /// Stores new versions (not yet indexed); returns their slots in order.
    fn add_versions(&self, create: &[Relationship], revision: u64) -> DatastoreResult<Vec<u32>> {
        let mut slots = Vec::with_capacity(create.len());
        for chunk in create.chunks(APPLY_CHUNK) {
            let mut state = self.write()?;
            slots.extend(chunk.iter().map(|rel| state.store.add(rel, revision)));
        }
        Ok(slots)
    }

    fn index_versions(&self, slots: &[u32]) -> DatastoreResult<()> {
        if slots.len() <= SMALL_WRITE {
            let mut state = self.write()?;
            for &slot in slots {
                state.store.index(slot);
            }
            return Ok(());
        }
        let mut ops = self
            .read()?
            .store
            .prepare_index(slots)
            .into_iter()
            .peekable();
        while ops.peek().is_some() {
            let mut state = self.write()?;
            for op in ops.by_ref().take(APPLY_CHUNK) {
                state.store.install(op);
            }
        }
        Ok(())
    }

    /// Reclaims what no readable revision can see: versions deleted at or
    /// before the oldest readable revision, and expired versions whose
    /// writing revision the change log no longer holds. The caller holds
    /// the writer mutex.
    fn collect_garbage(&self) -> DatastoreResult<usize> {
        let now = self.clock.now();
        let victims = {
            let mut state = self.write()?;
            let horizon = state.history.oldest_readable(now, self.config.gc_window);
            // Raise the floor first: a reader still pinned below the
            // horizon now fails instead of reading half-collected data.
            state.history.forget_before(horizon);
            let mut victims = state.history.take_dead(horizon);
            let table = &state.store.table;
            victims.extend(state.store.expired_before(now).filter(|&slot| {
                let record = table.record(slot);
                record.deleted == LIVE && record.created() <= horizon
            }));
            victims
        };
        for chunk in victims.chunks(APPLY_CHUNK) {
            let mut state = self.write()?;
            for &slot in chunk {
                state.store.reclaim(slot);
            }
        }
        self.write()?.store.table.interner.compact_if_worthwhile();
        Ok(victims.len())
    }

    /// The change feed of one entry.
    fn revision_changes(&self, state: &State, entry: &Entry) -> RevisionChanges {
        let changes = entry
            .changes
            .iter()
            .map(|&change| {
                let slot = change & !DELETE_BIT;
                let rel = state.store.table.relationship(slot);
                if change & DELETE_BIT == 0 {
                    Change::Touch(rel)
                } else {
                    Change::Delete(rel)
                }
            })
            .collect();
        RevisionChanges {
            revision: Revision(entry.revision.into()),
            changes,
            schema_changed: entry.schema_changed,
            metadata: entry.metadata.clone(),
        }
    }
}

impl Datastore for MemoryDatastore {
    type Reader = MemoryReader;

    fn unique_id(&self) -> &str {
        &self.inner.unique_id
    }

    async fn head_revision(&self) -> DatastoreResult<Revision> {
        Ok(Revision(self.inner.read()?.history.head().into()))
    }

    async fn optimized_revision(&self) -> DatastoreResult<Revision> {
        let now = self.inner.clock.now();
        let state = self.inner.read()?;
        Ok(Revision(
            state.history.optimized(now, &self.inner.config).into(),
        ))
    }

    async fn check_revision(&self, revision: Revision) -> DatastoreResult<()> {
        let now = self.inner.clock.now();
        let window = self.inner.config.gc_window;
        self.inner.read()?.history.check(revision.0, now, window)
    }

    fn snapshot(&self, revision: Revision) -> MemoryReader {
        MemoryReader::new(self.inner.clone(), revision)
    }

    async fn write(&self, batch: WriteBatch) -> DatastoreResult<WriteOutcome> {
        let _writer = self.inner.writer.lock().await;
        let now = self.inner.clock.now();
        let plan = write::plan_write(&*self.inner.read()?, batch, now)?;
        self.inner.apply(plan, now)
    }

    async fn bulk_load(
        &self,
        relationships: Vec<Relationship>,
        metadata: TransactionMetadata,
    ) -> DatastoreResult<WriteOutcome> {
        let _writer = self.inner.writer.lock().await;
        let now = self.inner.clock.now();
        let plan = write::plan_bulk(&*self.inner.read()?, relationships, metadata, now)?;
        self.inner.apply(plan, now)
    }

    async fn changes_since(
        &self,
        after: Revision,
        limit: usize,
    ) -> DatastoreResult<Vec<RevisionChanges>> {
        let state = self.inner.read()?;
        let entries = state.history.since(after.0, limit)?;
        Ok(entries
            .map(|entry| self.inner.revision_changes(&state, entry))
            .collect())
    }

    async fn wait_for_commit(&self, after: Revision) -> DatastoreResult<Revision> {
        let mut head = self.inner.head.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail
        // while this future is alive; map it anyway rather than assume.
        let newer = head
            .wait_for(|&h| u128::from(h) > after.0)
            .await
            .map(|h| Revision(u128::from(*h)))
            .map_err(|_| DatastoreError::Internal("the head revision channel closed".into()))?;
        Ok(newer)
    }

    async fn collect_garbage(&self) -> DatastoreResult<usize> {
        let _writer = self.inner.writer.lock().await;
        self.inner.collect_garbage()
    }
}

fn poisoned() -> DatastoreError {
    DatastoreError::Internal("the memory datastore is unusable after a writer panicked".into())
}
