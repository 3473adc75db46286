//! Owns the memory datastore's history: one entry per committed revision
//! (commit time, changes, metadata), the schema and the relationship
//! counters in force at each revision,
//! the queue of deleted versions awaiting GC, and the revision policy built
//! on them (head, GC window, quantized "optimized" revision). Depends on the
//! port's types only.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::datastore::{
    DatastoreError, DatastoreResult, RelationshipCounter, RevisionConfig, StoredSchema,
    TransactionMetadata, window_start,
};

/// A change-log entry's slot with this bit set is a delete, else a touch.
pub const DELETE_BIT: u32 = 1 << 31;

/// One committed revision.
#[derive(Debug)]
pub struct Entry {
    pub revision: u64,
    pub committed_at: SystemTime,
    /// Slots of the versions written (touch) or deleted (`| DELETE_BIT`),
    /// in the order the write applied them.
    pub changes: Vec<u32>,
    pub schema_changed: bool,
    pub metadata: TransactionMetadata,
}

#[derive(Debug)]
pub struct History {
    /// Consecutive revisions, oldest first; never empty. The back is head.
    log: VecDeque<Entry>,
    /// `(revision, schema)` in revision order.
    schemas: Vec<(u64, Arc<StoredSchema>)>,
    /// `(revision, every counter registered from then on)` in revision
    /// order; counters are few, so each change keeps a whole new list.
    counters: Vec<(u64, Arc<Vec<RelationshipCounter>>)>,
    /// `(deleted at, slot)` of deleted versions, in revision order.
    dead: VecDeque<(u64, u32)>,
    /// Readers below this revision may have lost versions to GC.
    pub gc_floor: u64,
}

impl History {
    /// A history whose only revision, 0, is the empty datastore.
    pub fn new(now: SystemTime) -> Self {
        let genesis = Entry {
            revision: 0,
            committed_at: now,
            changes: Vec::new(),
            schema_changed: false,
            metadata: TransactionMetadata::new(),
        };
        Self {
            log: VecDeque::from([genesis]),
            schemas: Vec::new(),
            counters: Vec::new(),
            dead: VecDeque::new(),
            gc_floor: 0,
        }
    }

    pub fn head(&self) -> u64 {
        self.newest().revision
    }

    fn newest(&self) -> &Entry {
        self.log
            .back()
            .expect("history: the log always keeps its newest entry")
    }

    fn oldest(&self) -> &Entry {
        self.log
            .front()
            .expect("history: the log always keeps its newest entry")
    }

    /// Records a commit. Commit times never go backwards, even if the
    /// clock does, so "newest revision at or before an instant" is a
    /// binary search.
    pub fn commit(&mut self, mut entry: Entry, schema: Option<StoredSchema>) {
        entry.committed_at = entry.committed_at.max(self.newest().committed_at);
        if let Some(schema) = schema {
            self.schemas.push((entry.revision, Arc::new(schema)));
        }
        self.log.push_back(entry);
    }

    /// Records the counters in force from `revision` (the one being
    /// written; readers see them once it is committed).
    pub fn set_counters(&mut self, revision: u64, counters: Vec<RelationshipCounter>) {
        self.counters.push((revision, Arc::new(counters)));
    }

    /// The counters registered at `revision`, sorted by name.
    pub fn counters_at(&self, revision: u64) -> Arc<Vec<RelationshipCounter>> {
        let i = self.counters.partition_point(|(r, _)| *r <= revision);
        i.checked_sub(1)
            .map_or_else(Default::default, |i| self.counters[i].1.clone())
    }

    /// Remembers that `slot` was deleted at `revision` (the one being written).
    pub fn record_death(&mut self, revision: u64, slot: u32) {
        self.dead.push_back((revision, slot));
    }

    /// The schema written at or before `revision`.
    pub fn schema_at(&self, revision: u64) -> Option<Arc<StoredSchema>> {
        let i = self.schemas.partition_point(|(r, _)| *r <= revision);
        i.checked_sub(1).map(|i| self.schemas[i].1.clone())
    }

    /// The oldest revision a reader may use at `now`: the oldest committed
    /// inside the GC window, or head if none is (head is always readable).
    pub fn oldest_readable(&self, now: SystemTime, window: Duration) -> u64 {
        let oldest = match now.checked_sub(window) {
            Some(cutoff) => {
                let i = self.log.partition_point(|e| e.committed_at < cutoff);
                self.log.get(i).map_or(self.head(), |e| e.revision)
            }
            None => self.oldest().revision,
        };
        oldest.max(self.gc_floor)
    }

    /// Ok if `revision` is readable at `now`.
    pub fn check(&self, revision: u128, now: SystemTime, window: Duration) -> DatastoreResult<()> {
        let head = self.head();
        if revision > u128::from(head) {
            return Err(DatastoreError::RevisionOutOfRange(format!(
                "revision {revision} is newer than the head revision {head}"
            )));
        }
        if revision < u128::from(self.oldest_readable(now, window)) {
            return Err(DatastoreError::RevisionOutOfRange(format!(
                "revision {revision} is older than the garbage collection window"
            )));
        }
        Ok(())
    }

    /// SpiceDB's quantized revision: `now` moved back by a random share of
    /// the max staleness (so windows hand over gradually across callers),
    /// floored to its window's start; the newest revision committed by
    /// then, but never one outside the GC window.
    pub fn optimized(&self, now: SystemTime, config: &RevisionConfig) -> u64 {
        let oldest = self.oldest_readable(now, config.gc_window);
        let Some(instant) = window_start(now, config) else {
            return self.head();
        };
        let i = self.log.partition_point(|e| e.committed_at <= instant);
        let quantized = i.checked_sub(1).map_or(oldest, |i| self.log[i].revision);
        quantized.max(oldest)
    }

    /// Committed revisions strictly after `after`, oldest first.
    pub fn since(
        &self,
        after: u128,
        limit: usize,
    ) -> DatastoreResult<impl Iterator<Item = &Entry>> {
        let (first, head) = (self.oldest().revision, self.head());
        if after < u128::from(first) {
            return Err(DatastoreError::RevisionOutOfRange(format!(
                "revision {after} is older than the change history kept"
            )));
        }
        if after > u128::from(head) {
            return Err(DatastoreError::RevisionOutOfRange(format!(
                "revision {after} is newer than the head revision {head}"
            )));
        }
        // `after` lies within [first, head], so the offset fits.
        let skip = (after - u128::from(first)) as usize + 1;
        Ok(self.log.iter().skip(skip).take(limit))
    }

    /// Slots of versions deleted at or before `horizon`, removed from the
    /// queue (the caller reclaims them).
    pub fn take_dead(&mut self, horizon: u64) -> Vec<u32> {
        let n = self.dead.partition_point(|(r, _)| *r <= horizon);
        self.dead.drain(..n).map(|(_, slot)| slot).collect()
    }

    /// Forgets what no reader at or after `horizon` needs: older log
    /// entries, the changes of the horizon entry itself (its versions may be
    /// reclaimed now), and schemas and counter lists superseded by then.
    pub fn forget_before(&mut self, horizon: u64) {
        self.gc_floor = self.gc_floor.max(horizon);
        while self.log.len() > 1 && self.oldest().revision < horizon {
            self.log.pop_front();
        }
        if let Some(entry) = self.log.front_mut()
            && entry.revision == horizon
        {
            entry.changes = Vec::new();
        }
        let in_force = self.schemas.partition_point(|(r, _)| *r <= horizon);
        self.schemas.drain(..in_force.saturating_sub(1));
        let in_force = self.counters.partition_point(|(r, _)| *r <= horizon);
        self.counters.drain(..in_force.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(revision: u64, at: SystemTime) -> Entry {
        Entry {
            revision,
            committed_at: at,
            changes: Vec::new(),
            schema_changed: false,
            metadata: TransactionMetadata::new(),
        }
    }

    #[test]
    fn optimized_floors_to_the_window() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let config = RevisionConfig {
            max_staleness_percent: 0,
            ..RevisionConfig::default()
        };
        let mut history = History::new(t0);
        history.commit(entry(1, t0 + Duration::from_secs(1)), None);
        history.commit(entry(2, t0 + Duration::from_secs(6)), None);
        // At t0+7 the window started at t0+5: revision 1 is the newest by then.
        assert_eq!(history.optimized(t0 + Duration::from_secs(7), &config), 1);
        assert_eq!(history.optimized(t0 + Duration::from_secs(10), &config), 2);
    }

    #[test]
    fn forgets_history_before_the_horizon() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut history = History::new(t0);
        for r in 1..=3 {
            let schema = StoredSchema {
                text: format!("v{r}"),
                hash: [0; 32],
            };
            history.commit(entry(r, t0), Some(schema));
        }
        history.forget_before(2);
        assert_eq!(history.oldest().revision, 2);
        assert_eq!(
            history.schema_at(2).map(|s| s.text.clone()),
            Some("v2".into())
        );
        assert!(history.since(1, 10).is_err());
        assert_eq!(history.since(2, 10).map(|e| e.count()).ok(), Some(1));
    }
}
