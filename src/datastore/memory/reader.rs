//! Owns `MemoryReader`: reads of the memory datastore pinned to one
//! revision. Turns the port's requests into `Store` reads under the shared
//! lock and materializes the results. Depends on the memory datastore's
//! state and the port's types.

use std::sync::Arc;

use super::query::Path;
use super::store::At;
use super::{Inner, State};
use crate::datastore::{
    DatastoreError, DatastoreResult, Page, Reader, RelationshipCounter, ReverseQuery, StoredSchema,
};
use crate::model::{Relationship, RelationshipFilter, RelationshipKey, Revision};

/// Rows read per hold of the read lock when a read resumes by cursor, so a
/// large read lets a waiting writer in between batches.
const READ_BATCH: usize = 1024;

/// Resource ids read per hold of the read lock in `query_resources`.
const ID_BATCH: usize = 128;

/// A reader at one revision. Clones share the datastore.
#[derive(Clone)]
pub struct MemoryReader {
    inner: Arc<Inner>,
    /// Revisions past `u64::MAX` do not exist; they read as head would.
    revision: u64,
    requested: Revision,
}

impl std::fmt::Debug for MemoryReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReader")
            .field("revision", &self.requested)
            .finish_non_exhaustive()
    }
}

impl MemoryReader {
    pub(super) fn new(inner: Arc<Inner>, revision: Revision) -> Self {
        Self {
            inner,
            revision: u64::try_from(revision.0).unwrap_or(u64::MAX),
            requested: revision,
        }
    }

    /// The point of view for one read. A revision past head reads as head
    /// (the caller was to check it; this keeps a stray one from seeing a
    /// write in progress). One below the GC floor fails: GC may have
    /// reclaimed versions it would see.
    fn at(&self, state: &State) -> DatastoreResult<At> {
        if self.revision < state.history.gc_floor {
            return Err(DatastoreError::RevisionOutOfRange(format!(
                "revision {} has been garbage collected",
                self.revision
            )));
        }
        Ok(At {
            revision: self.revision.min(state.history.head()),
            now: self.inner.clock.now(),
        })
    }

    /// Reads a page in batches of `READ_BATCH`, releasing the lock between
    /// them, when `fetch` is ordered by key (so a cursor resumes it); in
    /// one go otherwise.
    fn paged(
        &self,
        page: &Page,
        resumable: bool,
        fetch: impl Fn(&State, Option<&RelationshipKey>, usize, At) -> Vec<u32>,
    ) -> DatastoreResult<Vec<Relationship>> {
        let limit = page.limit.unwrap_or(usize::MAX);
        let mut cursor = page.after.clone();
        let mut out = Vec::new();
        while out.len() < limit {
            let want = limit - out.len();
            let want = if resumable {
                want.min(READ_BATCH)
            } else {
                want
            };
            let batch: Vec<Relationship> = {
                let state = self.inner.read()?;
                let at = self.at(&state)?;
                let slots = fetch(&state, cursor.as_ref(), want, at);
                slots
                    .iter()
                    .map(|&slot| state.store.table.relationship(slot))
                    .collect()
            };
            let done = !resumable || batch.len() < want;
            cursor = batch.last().map(Relationship::key).or(cursor);
            out.extend(batch);
            if done {
                break;
            }
        }
        Ok(out)
    }
}

impl Reader for MemoryReader {
    fn revision(&self) -> Revision {
        self.requested
    }

    async fn query(
        &self,
        filter: &RelationshipFilter,
        page: &Page,
    ) -> DatastoreResult<Vec<Relationship>> {
        let resumable = Path::of(filter).resumable();
        self.paged(page, resumable, |state, after, limit, at| {
            state.store.query(filter, after, limit, at)
        })
    }

    async fn query_resources(
        &self,
        resource_type: &str,
        resource_ids: &[&str],
        relation: &str,
        subject_types: &[&str],
    ) -> DatastoreResult<Vec<Relationship>> {
        let mut ids = resource_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut out = Vec::new();
        for batch in ids.chunks(ID_BATCH) {
            let state = self.inner.read()?;
            let at = self.at(&state)?;
            let store = &state.store;
            let slots = store.query_resources(resource_type, batch, relation, subject_types, at);
            out.extend(slots.iter().map(|&slot| store.table.relationship(slot)));
        }
        Ok(out)
    }

    async fn query_subjects(
        &self,
        query: &ReverseQuery,
        page: &Page,
    ) -> DatastoreResult<Vec<Relationship>> {
        if page.wants_key_order() {
            return self.paged(page, true, |state, after, limit, at| {
                state.store.query_subjects(query, after, limit, at, true)
            });
        }
        // A batch of subject ids at a time, releasing the lock between them.
        let mut ids = query.subject_ids.clone();
        ids.sort_unstable();
        ids.dedup();
        let mut out = Vec::new();
        for batch in ids.chunks(ID_BATCH) {
            let batch_query = ReverseQuery {
                subject_ids: batch.to_vec(),
                ..query.clone()
            };
            let state = self.inner.read()?;
            let at = self.at(&state)?;
            let store = &state.store;
            let slots = store.query_subjects(&batch_query, None, usize::MAX, at, false);
            out.extend(slots.iter().map(|&slot| store.table.relationship(slot)));
        }
        Ok(out)
    }

    async fn schema(&self) -> DatastoreResult<Option<Arc<StoredSchema>>> {
        let state = self.inner.read()?;
        let at = self.at(&state)?;
        Ok(state.history.schema_at(at.revision))
    }

    async fn counters(&self) -> DatastoreResult<Vec<RelationshipCounter>> {
        let state = self.inner.read()?;
        let at = self.at(&state)?;
        Ok(state.history.counters_at(at.revision).to_vec())
    }
}
