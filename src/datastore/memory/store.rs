//! Owns the memory datastore's relationship versions: the record slab, the
//! forward (by resource) and reverse (by subject) indexes over it, the side
//! table of caveats and expirations, and the order relations the indexes use.
//! Knows nothing of revisions beyond the numbers stored in records; depends
//! on `model`, `interner` and `index`.
//!
//! A version is a 40-byte `Record` of six interned ids and the revisions
//! that created and deleted it. Indexes hold 4-byte slots into the slab:
//! - forward, one index per `(resource type, relation)`, ordered by
//!   `(resource id, subject type, subject id, subject relation)` — within
//!   one index that is `RelationshipKey` order;
//! - reverse, one index per `(subject type, subject relation, resource
//!   type, relation)`, ordered by `(subject id, resource id)` — for one
//!   subject id that is again `RelationshipKey` order.
//!
//! Ties are broken by slot, so every version has one exact position.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use super::index::SortedIndex;
use super::interner::{Interner, MAX_STRING_LEN};
use crate::datastore::{DatastoreError, DatastoreResult};
use crate::model::{ContextualizedCaveat, ObjectRef, Relationship, RelationshipKey, SubjectRef};

/// `Record::deleted` of a version no write has deleted.
pub const LIVE: u64 = u64::MAX;
/// `Record::created` of a free slab slot.
const FREE: u64 = u64::MAX;
/// Set in `Record::created` when the side table holds caveat/expiration.
const ATTRS: u64 = 1 << 63;
/// Slots stay below this so a change-log entry can flag deletes in bit 31.
pub const MAX_SLOTS: usize = 1 << 31;

/// One relationship version.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    pub resource_type: u32,
    pub resource_id: u32,
    pub relation: u32,
    pub subject_type: u32,
    pub subject_id: u32,
    pub subject_relation: u32,
    created: u64,
    pub deleted: u64,
}

impl Record {
    pub fn created(&self) -> u64 {
        self.created & !ATTRS
    }

    fn has_attrs(&self) -> bool {
        self.created != FREE && self.created & ATTRS != 0
    }
}

/// What a few relationships carry besides their key.
#[derive(Debug, Clone)]
struct Attrs {
    caveat: Option<ContextualizedCaveat>,
    expires_at: Option<SystemTime>,
}

/// A point of view for reads: the (clamped) revision and the clock's now.
#[derive(Debug, Clone, Copy)]
pub struct At {
    pub revision: u64,
    pub now: SystemTime,
}

/// A relationship key as borrowed strings, for comparing records with keys
/// whose strings may not be interned (cursors of deleted relationships).
/// Fields are in key order, so the derived order is `RelationshipKey`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef<'a> {
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub relation: &'a str,
    pub subject_type: &'a str,
    pub subject_id: &'a str,
    pub subject_relation: &'a str,
}

impl<'a> KeyRef<'a> {
    pub fn of(key: &'a RelationshipKey) -> Self {
        Self {
            resource_type: &key.resource.object_type,
            resource_id: &key.resource.object_id,
            relation: &key.relation,
            subject_type: &key.subject.object.object_type,
            subject_id: &key.subject.object.object_id,
            subject_relation: &key.subject.relation,
        }
    }

    pub fn of_relationship(rel: &'a Relationship) -> Self {
        Self {
            resource_type: &rel.resource.object_type,
            resource_id: &rel.resource.object_id,
            relation: &rel.relation,
            subject_type: &rel.subject.object.object_type,
            subject_id: &rel.subject.object.object_id,
            subject_relation: &rel.subject.relation,
        }
    }

    fn strings(&self) -> [&'a str; 6] {
        [
            self.resource_type,
            self.resource_id,
            self.relation,
            self.subject_type,
            self.subject_id,
            self.subject_relation,
        ]
    }

    /// Refuses strings the interner cannot hold.
    pub fn check_lengths(&self) -> DatastoreResult<()> {
        match self.strings().iter().find(|s| s.len() > MAX_STRING_LEN) {
            Some(s) => Err(DatastoreError::Internal(format!(
                "a name or id of {} bytes exceeds the memory datastore's limit of {MAX_STRING_LEN}",
                s.len()
            ))),
            None => Ok(()),
        }
    }
}

/// Records per slab page: 160 KiB pages grow the slab without ever
/// copying it (one big `Vec` would copy everything on each growth and, in
/// the heap, leave the old block resident as a hole).
const PAGE: usize = 4096;

/// The records, addressed by slot, in fixed-size pages.
#[derive(Debug, Default)]
struct Slab {
    pages: Vec<Vec<Record>>,
    len: usize,
}

impl Slab {
    fn get(&self, slot: u32) -> &Record {
        let slot = slot as usize;
        &self.pages[slot / PAGE][slot % PAGE]
    }

    fn get_mut(&mut self, slot: u32) -> &mut Record {
        let slot = slot as usize;
        &mut self.pages[slot / PAGE][slot % PAGE]
    }

    /// Appends a record; returns its slot (the caller keeps slots below
    /// `MAX_SLOTS`).
    fn push(&mut self, record: Record) -> u32 {
        match self.pages.last_mut() {
            Some(page) if page.len() < PAGE => page.push(record),
            _ => {
                let mut page = Vec::with_capacity(PAGE);
                page.push(record);
                self.pages.push(page);
            }
        }
        self.len += 1;
        (self.len - 1) as u32
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// Records, strings and attributes: everything needed to order and read a
/// slot. Kept apart from the indexes so an index can be changed while its
/// comparator borrows this.
#[derive(Debug, Default)]
pub struct Table {
    pub interner: Interner,
    records: Slab,
    attrs: HashMap<u32, Attrs>,
}

impl Table {
    pub fn record(&self, slot: u32) -> &Record {
        self.records.get(slot)
    }

    pub fn str(&self, id: u32) -> &str {
        self.interner.get(id)
    }

    /// Whether the version in `slot` is visible at `at`: written at or
    /// before the revision, not deleted by then, and not expired now.
    pub fn visible(&self, slot: u32, at: At) -> bool {
        let record = self.record(slot);
        record.created() <= at.revision
            && at.revision < record.deleted
            && !self.expired(slot, at.now)
    }

    /// Whether the version carries an expiration that has passed.
    pub fn expired(&self, slot: u32, now: SystemTime) -> bool {
        self.expires_at(slot).is_some_and(|at| at <= now)
    }

    pub fn expires_at(&self, slot: u32) -> Option<SystemTime> {
        if !self.record(slot).has_attrs() {
            return None;
        }
        self.attrs.get(&slot).and_then(|a| a.expires_at)
    }

    /// The relationship stored in `slot`.
    pub fn relationship(&self, slot: u32) -> Relationship {
        let r = self.record(slot);
        let attrs = if r.has_attrs() {
            self.attrs.get(&slot)
        } else {
            None
        };
        Relationship {
            resource: ObjectRef::new(self.str(r.resource_type), self.str(r.resource_id)),
            relation: self.str(r.relation).to_string(),
            subject: SubjectRef::set(
                self.str(r.subject_type),
                self.str(r.subject_id),
                self.str(r.subject_relation),
            ),
            caveat: attrs.and_then(|a| a.caveat.clone()),
            expires_at: attrs.and_then(|a| a.expires_at),
        }
    }

    /// Forward index order (the index fixes type and relation).
    pub fn forward_cmp(&self, a: u32, b: u32) -> Ordering {
        let (x, y) = (self.record(a), self.record(b));
        let i = &self.interner;
        i.cmp(x.resource_id, y.resource_id)
            .then_with(|| i.cmp(x.subject_type, y.subject_type))
            .then_with(|| i.cmp(x.subject_id, y.subject_id))
            .then_with(|| i.cmp(x.subject_relation, y.subject_relation))
            .then(a.cmp(&b))
    }

    /// Reverse index order (the index fixes the rest).
    pub fn reverse_cmp(&self, a: u32, b: u32) -> Ordering {
        let (x, y) = (self.record(a), self.record(b));
        let i = &self.interner;
        i.cmp(x.subject_id, y.subject_id)
            .then_with(|| i.cmp(x.resource_id, y.resource_id))
            .then(a.cmp(&b))
    }

    /// `RelationshipKey` order between two records.
    pub fn key_cmp(&self, a: u32, b: u32) -> Ordering {
        let (x, y) = (self.record(a), self.record(b));
        let i = &self.interner;
        i.cmp(x.resource_type, y.resource_type)
            .then_with(|| i.cmp(x.resource_id, y.resource_id))
            .then_with(|| i.cmp(x.relation, y.relation))
            .then_with(|| i.cmp(x.subject_type, y.subject_type))
            .then_with(|| i.cmp(x.subject_id, y.subject_id))
            .then_with(|| i.cmp(x.subject_relation, y.subject_relation))
    }

    /// `RelationshipKey` order between a record and a key.
    pub fn key_cmp_probe(&self, slot: u32, key: &KeyRef<'_>) -> Ordering {
        let r = self.record(slot);
        let ids = [
            r.resource_type,
            r.resource_id,
            r.relation,
            r.subject_type,
            r.subject_id,
            r.subject_relation,
        ];
        ids.iter()
            .zip(key.strings())
            .map(|(&id, s)| self.str(id).cmp(s))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

/// The indexed version store.
#[derive(Debug, Default)]
pub struct Store {
    pub table: Table,
    free: Vec<u32>,
    indexes: Indexes,
    /// Versions with an expiration, by when they expire (for GC).
    expiring: BTreeSet<(SystemTime, u32)>,
}

/// `(subject type, subject relation, resource type, relation)`
pub type ReverseKey = (u32, u32, u32, u32);

/// The forward and reverse indexes, with what lets a read find the ones
/// it needs without walking every index.
#[derive(Debug, Default)]
struct Indexes {
    forward: HashMap<(u32, u32), SortedIndex>,
    /// The relations that have a forward index, per resource type.
    relations: HashMap<u32, Vec<u32>>,
    reverse: HashMap<ReverseKey, SortedIndex>,
    /// The subject relations that have a reverse index, per
    /// `(subject type, resource type, relation)`.
    subject_relations: HashMap<(u32, u32, u32), Vec<u32>>,
}

impl Indexes {
    fn forward_entry(&mut self, rt: u32, rel: u32) -> &mut SortedIndex {
        self.forward.entry((rt, rel)).or_insert_with(|| {
            self.relations.entry(rt).or_default().push(rel);
            SortedIndex::default()
        })
    }

    fn reverse_entry(&mut self, key: ReverseKey) -> &mut SortedIndex {
        let (st, srel, rt, rel) = key;
        self.reverse.entry(key).or_insert_with(|| {
            self.subject_relations
                .entry((st, rt, rel))
                .or_default()
                .push(srel);
            SortedIndex::default()
        })
    }

    /// Removes `slot` from both indexes, dropping indexes left empty.
    fn remove(&mut self, table: &Table, slot: u32) {
        let r = table.record(slot);
        let forward_key = (r.resource_type, r.relation);
        if let Some(index) = self.forward.get_mut(&forward_key) {
            index.remove(slot, |e| table.forward_cmp(e, slot).is_lt());
            if index.is_empty() {
                self.forward.remove(&forward_key);
                remove_from(&mut self.relations, r.resource_type, r.relation);
            }
        }
        let reverse_key = reverse_key(r);
        if let Some(index) = self.reverse.get_mut(&reverse_key) {
            index.remove(slot, |e| table.reverse_cmp(e, slot).is_lt());
            if index.is_empty() {
                self.reverse.remove(&reverse_key);
                let group = (r.subject_type, r.resource_type, r.relation);
                remove_from(&mut self.subject_relations, group, r.subject_relation);
            }
        }
    }
}

fn reverse_key(r: &Record) -> ReverseKey {
    (
        r.subject_type,
        r.subject_relation,
        r.resource_type,
        r.relation,
    )
}

impl Store {
    /// Versions stored, live or dead.
    pub fn versions(&self) -> usize {
        self.table.records.len() - self.free.len()
    }

    /// Whether `extra` more versions fit (slots stay below `MAX_SLOTS`).
    pub fn has_room_for(&self, extra: usize) -> bool {
        self.versions().saturating_add(extra) < MAX_SLOTS
    }

    /// The forward index of a resource type and relation.
    pub fn forward(&self, resource_type: u32, relation: u32) -> Option<&SortedIndex> {
        self.indexes.forward.get(&(resource_type, relation))
    }

    /// The relations of a resource type that have relationships.
    pub fn relations_of(&self, resource_type: u32) -> &[u32] {
        self.indexes
            .relations
            .get(&resource_type)
            .map_or(&[], |v| v.as_slice())
    }

    /// The reverse index of one subject relation.
    pub fn reverse(&self, key: &ReverseKey) -> Option<&SortedIndex> {
        self.indexes.reverse.get(key)
    }

    /// The subject relations with a reverse index for a subject type and a
    /// resource type and relation.
    pub fn subject_relations_of(&self, subject_type: u32, rt: u32, rel: u32) -> &[u32] {
        self.indexes
            .subject_relations
            .get(&(subject_type, rt, rel))
            .map_or(&[], |v| v.as_slice())
    }

    /// Every reverse index (for filters without a resource type).
    pub fn reverse_indexes(&self) -> impl Iterator<Item = (&ReverseKey, &SortedIndex)> {
        self.indexes.reverse.iter()
    }

    /// Every forward index (for filters with neither type nor subject).
    pub fn forward_indexes(&self) -> impl Iterator<Item = (&(u32, u32), &SortedIndex)> {
        self.indexes.forward.iter()
    }

    /// Stores a new version created at `created`, not yet indexed. The
    /// caller checked lengths and room.
    pub fn add(&mut self, rel: &Relationship, created: u64) -> u32 {
        let key = KeyRef::of_relationship(rel);
        let [rt, rid, relation, st, sid, srel] =
            key.strings().map(|s| self.table.interner.acquire(s));
        let has_attrs = rel.caveat.is_some() || rel.expires_at.is_some();
        let record = Record {
            resource_type: rt,
            resource_id: rid,
            relation,
            subject_type: st,
            subject_id: sid,
            subject_relation: srel,
            created: if has_attrs { created | ATTRS } else { created },
            deleted: LIVE,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                *self.table.records.get_mut(slot) = record;
                slot
            }
            None => self.table.records.push(record),
        };
        if has_attrs {
            let attrs = Attrs {
                caveat: rel.caveat.clone(),
                expires_at: rel.expires_at,
            };
            if let Some(at) = attrs.expires_at {
                self.expiring.insert((at, slot));
            }
            self.table.attrs.insert(slot, attrs);
        }
        slot
    }

    /// Marks the version in `slot` deleted at `revision`.
    pub fn mark_deleted(&mut self, slot: u32, revision: u64) {
        self.table.records.get_mut(slot).deleted = revision;
    }

    /// Adds a stored version to both indexes.
    pub fn index(&mut self, slot: u32) {
        let table = &self.table;
        let r = table.record(slot);
        self.indexes
            .forward_entry(r.resource_type, r.relation)
            .insert(slot, |e| table.forward_cmp(e, slot).is_lt());
        self.indexes
            .reverse_entry(reverse_key(r))
            .insert(slot, |e| table.reverse_cmp(e, slot).is_lt());
    }

    /// Plans adding many stored versions to the indexes, reading only, so
    /// the sorting and merging run beside readers rather than blocking
    /// them. Where a batch is large next to an index, a linear merge into a
    /// new index beats inserting one by one (`log n` comparisons each).
    pub fn prepare_index(&self, slots: &[u32]) -> Vec<IndexOp> {
        let table = &self.table;
        let mut forward: HashMap<(u32, u32), Vec<u32>> = HashMap::new();
        let mut reverse: HashMap<ReverseKey, Vec<u32>> = HashMap::new();
        for &slot in slots {
            let r = table.record(slot);
            forward
                .entry((r.resource_type, r.relation))
                .or_default()
                .push(slot);
            reverse.entry(reverse_key(r)).or_default().push(slot);
        }
        let mut ops = Vec::new();
        plan_index(
            forward,
            &self.indexes.forward,
            |a, b| table.forward_cmp(a, b),
            IndexOp::ReplaceForward,
            IndexOp::InsertForward,
            &mut ops,
        );
        plan_index(
            reverse,
            &self.indexes.reverse,
            |a, b| table.reverse_cmp(a, b),
            IndexOp::ReplaceReverse,
            IndexOp::InsertReverse,
            &mut ops,
        );
        ops
    }

    /// Applies one step planned by `prepare_index`.
    pub fn install(&mut self, op: IndexOp) {
        let table = &self.table;
        match op {
            IndexOp::ReplaceForward((rt, rel), index) => {
                *self.indexes.forward_entry(rt, rel) = index;
            }
            IndexOp::ReplaceReverse(key, index) => {
                *self.indexes.reverse_entry(key) = index;
            }
            IndexOp::InsertForward(slot) => {
                let r = table.record(slot);
                self.indexes
                    .forward_entry(r.resource_type, r.relation)
                    .insert(slot, |e| table.forward_cmp(e, slot).is_lt());
            }
            IndexOp::InsertReverse(slot) => {
                self.indexes
                    .reverse_entry(reverse_key(table.record(slot)))
                    .insert(slot, |e| table.reverse_cmp(e, slot).is_lt());
            }
        }
    }

    /// Removes a version from the indexes and frees its slot and strings.
    pub fn reclaim(&mut self, slot: u32) {
        self.indexes.remove(&self.table, slot);
        let r = *self.table.record(slot);
        if r.has_attrs()
            && let Some(attrs) = self.table.attrs.remove(&slot)
            && let Some(at) = attrs.expires_at
        {
            self.expiring.remove(&(at, slot));
        }
        for id in [
            r.resource_type,
            r.resource_id,
            r.relation,
            r.subject_type,
            r.subject_id,
            r.subject_relation,
        ] {
            self.table.interner.release(id);
        }
        self.table.records.get_mut(slot).created = FREE;
        self.free.push(slot);
    }

    /// Versions whose expiration is at or before `now`, soonest first.
    pub fn expired_before(&self, now: SystemTime) -> impl Iterator<Item = u32> + '_ {
        self.expiring
            .iter()
            .take_while(move |(at, _)| *at <= now)
            .map(|&(_, slot)| slot)
    }
}

/// One step of adding versions to the indexes; see `Store::prepare_index`.
#[derive(Debug)]
pub enum IndexOp {
    ReplaceForward((u32, u32), SortedIndex),
    ReplaceReverse(ReverseKey, SortedIndex),
    InsertForward(u32),
    InsertReverse(u32),
}

/// Plans adding each group of slots to its index (forward or reverse): a
/// merge into a new index where the group is large next to it, else
/// inserts one by one.
fn plan_index<K: std::hash::Hash + Eq>(
    groups: HashMap<K, Vec<u32>>,
    existing: &HashMap<K, SortedIndex>,
    cmp: impl Fn(u32, u32) -> Ordering,
    replace: fn(K, SortedIndex) -> IndexOp,
    insert: fn(u32) -> IndexOp,
    ops: &mut Vec<IndexOp>,
) {
    for (key, mut group) in groups {
        group.sort_unstable_by(|&a, &b| cmp(a, b));
        let current = existing.get(&key);
        if current.is_none_or(|index| worth_merging(index, &group)) {
            let merged = match current {
                Some(index) => index.merged(&group, |a, b| cmp(a, b).is_lt()),
                None => SortedIndex::from_sorted(group),
            };
            ops.push(replace(key, merged));
        } else {
            ops.extend(group.into_iter().map(insert));
        }
    }
}

/// Merging rebuilds the whole index; inserting costs about `log n`
/// comparisons per entry. Merge once the batch is a sixteenth of the index.
fn worth_merging(index: &SortedIndex, batch: &[u32]) -> bool {
    batch.len().saturating_mul(16) >= index.len()
}

fn remove_from<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<u32>>, key: K, value: u32) {
    if let Some(values) = map.get_mut(&key) {
        values.retain(|&v| v != value);
        if values.is_empty() {
            map.remove(&key);
        }
    }
}
