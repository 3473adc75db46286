//! Owns the read paths of the memory datastore: how a filter, a batch of
//! resource ids or a reverse query becomes ranges ("runs") of the forward
//! or reverse indexes, and how runs are merged into `RelationshipKey` order
//! with a cursor and a limit. Depends on `store`, `index` and `model`.
//!
//! Each run is a contiguous range of one index whose entries are already
//! in key order, so a page costs `log n` to find its start plus what it
//! returns (times the number of runs, which the schema bounds). The one
//! exception: a subject filter without a subject id and without a resource
//! type reads whole reverse indexes and sorts (API validation makes such a
//! filter name at least a subject type; nothing cheaper exists for it).

use std::cmp::Ordering;

use super::index::{Pos, SortedIndex};
use super::store::{At, KeyRef, LIVE, ReverseKey, Store, Table};
use crate::datastore::ReverseQuery;
use crate::model::{RelationshipFilter, RelationshipKey};

/// A filter with its strings resolved to interned ids. A string that is
/// not interned names nothing stored, so such a filter matches nothing.
struct Resolved<'f> {
    resource_type: Option<u32>,
    resource_id: Option<u32>,
    prefix: Option<&'f str>,
    relation: Option<u32>,
    subject: Option<ResolvedSubject>,
}

#[derive(Clone, Copy)]
struct ResolvedSubject {
    subject_type: u32,
    subject_id: Option<u32>,
    relation: Option<u32>,
}

/// How a filter is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Forward indexes of one resource type.
    Forward,
    /// Reverse indexes, one subject id: ordered runs.
    ReverseById,
    /// Reverse indexes, every subject id: read whole and sorted.
    ReverseAll,
    /// Every forward index (no type, no subject).
    Scan,
}

impl Path {
    pub fn of(filter: &RelationshipFilter) -> Self {
        let by_subject_id = filter
            .subject
            .as_ref()
            .is_some_and(|s| s.subject_id.is_some());
        let by_resource_id = filter.resource_id.is_some() || filter.resource_id_prefix.is_some();
        match (&filter.resource_type, &filter.subject) {
            (Some(_), Some(_)) if by_subject_id && !by_resource_id => Path::ReverseById,
            (Some(_), _) => Path::Forward,
            (None, Some(_)) if by_subject_id => Path::ReverseById,
            (None, Some(_)) => Path::ReverseAll,
            (None, None) => Path::Scan,
        }
    }

    /// Whether a cursor resumes this path cheaply (every run is ordered).
    pub fn resumable(self) -> bool {
        self != Path::ReverseAll
    }
}

/// One range of one index to read.
struct Run<'s, B, I> {
    index: &'s SortedIndex,
    /// Holds for the index entries before the run's first candidate.
    before: B,
    /// Holds while the walk is still inside the run.
    inside: I,
}

impl Store {
    /// Visible relationships matching `filter`, in key order, strictly
    /// after `after`, at most `limit`.
    pub fn query(
        &self,
        filter: &RelationshipFilter,
        after: Option<&RelationshipKey>,
        limit: usize,
        at: At,
    ) -> Vec<u32> {
        let Some(resolved) = self.resolve(filter) else {
            return Vec::new();
        };
        let after = after.map(KeyRef::of);
        let mut out = Vec::new();
        let path = Path::of(filter);
        let after = after.as_ref();
        let runs = match path {
            Path::Forward => self.forward_runs(&resolved, after, limit, at, &mut out),
            Path::ReverseById => self.reverse_runs(&resolved, after, limit, at, &mut out),
            Path::ReverseAll => self.reverse_runs(&resolved, after, usize::MAX, at, &mut out),
            Path::Scan => self.scan_runs(&resolved, after, limit, at, &mut out),
        };
        self.finish(out, runs <= 1 && path.resumable(), limit)
    }

    /// The visible relationships of `resource_type:id#relation` for each
    /// id, with a subject of one of `subject_types` (any when empty), in
    /// key order.
    pub fn query_resources(
        &self,
        resource_type: &str,
        resource_ids: &[&str],
        relation: &str,
        subject_types: &[&str],
        at: At,
    ) -> Vec<u32> {
        let table = &self.table;
        let interner = &table.interner;
        let (Some(rt), Some(rel)) = (interner.lookup(resource_type), interner.lookup(relation))
        else {
            return Vec::new();
        };
        let Some(index) = self.forward(rt, rel) else {
            return Vec::new();
        };
        let ids = sorted_ids(table, resource_ids);
        let types = sorted_ids(table, subject_types);
        if !subject_types.is_empty() && types.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for &id in &ids {
            if types.is_empty() {
                let run = Run {
                    index,
                    before: |e| table.interner.cmp(table.record(e).resource_id, id).is_lt(),
                    inside: |e| table.record(e).resource_id == id,
                };
                self.collect(run, |_| true, at, usize::MAX, &mut out);
                continue;
            }
            for &st in &types {
                let run = Run {
                    index,
                    before: |e| {
                        let r = table.record(e);
                        let i = &table.interner;
                        i.cmp(r.resource_id, id)
                            .then_with(|| i.cmp(r.subject_type, st))
                            .is_lt()
                    },
                    inside: |e| {
                        let r = table.record(e);
                        r.resource_id == id && r.subject_type == st
                    },
                };
                self.collect(run, |_| true, at, usize::MAX, &mut out);
            }
        }
        out
    }

    /// Visible relationships by subject for a reverse walk, strictly after
    /// `after`, at most `limit`; in key order if `ordered`, else in index
    /// order (subject by subject), which skips a sort.
    pub fn query_subjects(
        &self,
        query: &ReverseQuery,
        after: Option<&RelationshipKey>,
        limit: usize,
        at: At,
        ordered: bool,
    ) -> Vec<u32> {
        let table = &self.table;
        let interner = &table.interner;
        let (Some(st), Some(rt), Some(rel)) = (
            interner.lookup(&query.subject_type),
            interner.lookup(&query.resource_type),
            interner.lookup(&query.resource_relation),
        ) else {
            return Vec::new();
        };
        let srels: Vec<u32> = match &query.subject_relation {
            Some(srel) => interner.lookup(srel).into_iter().collect(),
            None => self.subject_relations_of(st, rt, rel).to_vec(),
        };
        let ids: Vec<&str> = query.subject_ids.iter().map(String::as_str).collect();
        let sids = sorted_ids(table, &ids);
        let after = after.map(KeyRef::of);
        let mut out = Vec::new();
        let mut runs = 0;
        for srel in srels {
            let Some(index) = self.reverse(&(st, srel, rt, rel)) else {
                continue;
            };
            for &sid in &sids {
                let run = subject_run(table, index, sid, after.as_ref());
                self.collect(run, |_| true, at, limit, &mut out);
                runs += 1;
            }
        }
        self.finish(out, runs <= 1 || !ordered, limit)
    }

    /// The live (not deleted) version of `key` at head, expired or not.
    pub fn live_version(&self, key: &KeyRef<'_>) -> Option<u32> {
        let table = &self.table;
        let i = &table.interner;
        let rt = i.lookup(key.resource_type)?;
        let rel = i.lookup(key.relation)?;
        let index = self.forward(rt, rel)?;
        let probe = [
            i.lookup(key.resource_id)?,
            i.lookup(key.subject_type)?,
            i.lookup(key.subject_id)?,
            i.lookup(key.subject_relation)?,
        ];
        let fields = |e: u32| {
            let r = table.record(e);
            [
                r.resource_id,
                r.subject_type,
                r.subject_id,
                r.subject_relation,
            ]
        };
        let start = index.partition_point(|e| {
            fields(e)
                .iter()
                .zip(probe)
                .map(|(&a, b)| i.cmp(a, b))
                .find(|o| o.is_ne())
                .is_some_and(Ordering::is_lt)
        });
        index
            .iter_from(start)
            .take_while(|&e| fields(e) == probe)
            .find(|&e| table.record(e).deleted == LIVE)
    }

    fn forward_runs(
        &self,
        f: &Resolved<'_>,
        after: Option<&KeyRef<'_>>,
        limit: usize,
        at: At,
        out: &mut Vec<u32>,
    ) -> usize {
        let Some(rt) = f.resource_type else {
            return 0;
        };
        let relations: Vec<u32> = match f.relation {
            Some(rel) => vec![rel],
            None => self.relations_of(rt).to_vec(),
        };
        let table = &self.table;
        let mut runs = 0;
        for rel in relations {
            let Some(index) = self.forward(rt, rel) else {
                continue;
            };
            let run = Run {
                index,
                before: |e| {
                    let id = table.record(e).resource_id;
                    let below = match (f.resource_id, f.prefix) {
                        (Some(rid), _) => table.interner.cmp(id, rid).is_lt(),
                        (None, Some(prefix)) => table.str(id) < prefix,
                        (None, None) => false,
                    };
                    below || after.is_some_and(|k| table.key_cmp_probe(e, k).is_le())
                },
                inside: |e| {
                    let id = table.record(e).resource_id;
                    match (f.resource_id, f.prefix) {
                        (Some(rid), _) => id == rid,
                        (None, Some(prefix)) => table.str(id).starts_with(prefix),
                        (None, None) => true,
                    }
                },
            };
            self.collect(run, |e| subject_matches(table, f, e), at, limit, out);
            runs += 1;
        }
        runs
    }

    /// Reverse runs for a subject filter. With a subject id each run is in
    /// key order and stops at `limit`; without, each is read whole.
    fn reverse_runs(
        &self,
        f: &Resolved<'_>,
        after: Option<&KeyRef<'_>>,
        limit: usize,
        at: At,
        out: &mut Vec<u32>,
    ) -> usize {
        let Some(subject) = f.subject else {
            return 0;
        };
        let table = &self.table;
        let mut runs = 0;
        for key in self.reverse_keys(f, subject) {
            let Some(index) = self.reverse(&key) else {
                continue;
            };
            let keep = |e| {
                resource_matches(table, f, e)
                    && after.is_none_or(|k| table.key_cmp_probe(e, k).is_gt())
            };
            match subject.subject_id {
                Some(sid) => {
                    let run = subject_run(table, index, sid, after);
                    self.collect(run, keep, at, limit, out);
                }
                None => {
                    let run = Run {
                        index,
                        before: |_| false,
                        inside: |_| true,
                    };
                    self.collect(run, keep, at, usize::MAX, out);
                }
            }
            runs += 1;
        }
        runs
    }

    /// The reverse indexes a subject filter reads.
    fn reverse_keys(&self, f: &Resolved<'_>, s: ResolvedSubject) -> Vec<ReverseKey> {
        let Some(rt) = f.resource_type else {
            return self
                .reverse_indexes()
                .map(|(key, _)| *key)
                .filter(|&(st, srel, _, rel)| {
                    st == s.subject_type
                        && s.relation.is_none_or(|r| r == srel)
                        && f.relation.is_none_or(|r| r == rel)
                })
                .collect();
        };
        let relations: Vec<u32> = match f.relation {
            Some(rel) => vec![rel],
            None => self.relations_of(rt).to_vec(),
        };
        let mut keys = Vec::new();
        for rel in relations {
            match s.relation {
                Some(srel) => keys.push((s.subject_type, srel, rt, rel)),
                None => keys.extend(
                    self.subject_relations_of(s.subject_type, rt, rel)
                        .iter()
                        .map(|&srel| (s.subject_type, srel, rt, rel)),
                ),
            }
        }
        keys
    }

    fn scan_runs(
        &self,
        f: &Resolved<'_>,
        after: Option<&KeyRef<'_>>,
        limit: usize,
        at: At,
        out: &mut Vec<u32>,
    ) -> usize {
        let table = &self.table;
        let mut runs = 0;
        for (&(_, rel), index) in self.forward_indexes() {
            if f.relation.is_some_and(|r| r != rel) {
                continue;
            }
            let run = Run {
                index,
                before: |e| after.is_some_and(|k| table.key_cmp_probe(e, k).is_le()),
                inside: |_| true,
            };
            let keep = |e| resource_matches(table, f, e) && subject_matches(table, f, e);
            self.collect(run, keep, at, limit, out);
            runs += 1;
        }
        runs
    }

    /// Appends the visible entries of `run` that `keep` accepts, at most
    /// `limit` of them.
    fn collect<B, I>(
        &self,
        run: Run<'_, B, I>,
        keep: impl Fn(u32) -> bool,
        at: At,
        limit: usize,
        out: &mut Vec<u32>,
    ) where
        B: Fn(u32) -> bool,
        I: Fn(u32) -> bool,
    {
        let start: Pos = run.index.partition_point(run.before);
        let mut taken = 0;
        for slot in run.index.iter_from(start) {
            if taken >= limit || !(run.inside)(slot) {
                break;
            }
            if keep(slot) && self.table.visible(slot, at) {
                out.push(slot);
                taken += 1;
            }
        }
    }

    /// Puts what the runs returned into key order (unless one ordered run
    /// returned it all), then applies the limit.
    fn finish(&self, mut out: Vec<u32>, in_order: bool, limit: usize) -> Vec<u32> {
        if !in_order {
            let table = &self.table;
            out.sort_unstable_by(|&a, &b| table.key_cmp(a, b));
        }
        out.truncate(limit);
        out
    }

    fn resolve<'f>(&self, filter: &'f RelationshipFilter) -> Option<Resolved<'f>> {
        let interner = &self.table.interner;
        let lookup = |name: &Option<String>| match name {
            Some(name) => interner.lookup(name).map(Some),
            None => Some(None),
        };
        let subject = match &filter.subject {
            Some(s) => Some(ResolvedSubject {
                subject_type: interner.lookup(&s.subject_type)?,
                subject_id: lookup(&s.subject_id)?,
                relation: lookup(&s.relation)?,
            }),
            None => None,
        };
        Some(Resolved {
            resource_type: lookup(&filter.resource_type)?,
            resource_id: lookup(&filter.resource_id)?,
            prefix: filter.resource_id_prefix.as_deref(),
            relation: lookup(&filter.relation)?,
            subject,
        })
    }
}

/// The entries of one subject id in a reverse index, after a cursor.
fn subject_run<'s>(
    table: &'s Table,
    index: &'s SortedIndex,
    sid: u32,
    after: Option<&'s KeyRef<'s>>,
) -> Run<'s, impl Fn(u32) -> bool + 's, impl Fn(u32) -> bool + 's> {
    Run {
        index,
        before: move |e| match table.interner.cmp(table.record(e).subject_id, sid) {
            Ordering::Less => true,
            Ordering::Greater => false,
            Ordering::Equal => after.is_some_and(|k| table.key_cmp_probe(e, k).is_le()),
        },
        inside: move |e| table.record(e).subject_id == sid,
    }
}

fn subject_matches(table: &Table, f: &Resolved<'_>, slot: u32) -> bool {
    let Some(s) = f.subject else {
        return true;
    };
    let r = table.record(slot);
    r.subject_type == s.subject_type
        && s.subject_id.is_none_or(|id| id == r.subject_id)
        && s.relation.is_none_or(|rel| rel == r.subject_relation)
}

fn resource_matches(table: &Table, f: &Resolved<'_>, slot: u32) -> bool {
    let r = table.record(slot);
    f.resource_type.is_none_or(|t| t == r.resource_type)
        && f.resource_id.is_none_or(|id| id == r.resource_id)
        && f.relation.is_none_or(|rel| rel == r.relation)
        && f.prefix
            .is_none_or(|p| table.str(r.resource_id).starts_with(p))
}

/// The interned ids of `names` that exist, in string order, without
/// duplicates.
fn sorted_ids(table: &Table, names: &[&str]) -> Vec<u32> {
    let mut ids: Vec<u32> = names
        .iter()
        .filter_map(|name| table.interner.lookup(name))
        .collect();
    ids.sort_unstable_by(|&a, &b| table.interner.cmp(a, b));
    ids.dedup();
    ids
}
