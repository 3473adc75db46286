//! Owns the string table of the memory datastore: every type, relation and
//! object id is stored once and named by a `u32`, so relationship records
//! are small fixed-size values. Depends on nothing else in the crate.
//!
//! Strings live in one arena (`String`), addressed by packed spans, and are
//! found by a hash table of ids that hashes through the arena; that costs
//! about `len + 20` bytes per distinct string where a `HashMap<String, u32>`
//! would cost several allocations. Each string is reference-counted by the
//! records that name it, so ids and arena bytes of unused strings are
//! reclaimed (by garbage collection) instead of growing forever with churn.

use std::cmp::Ordering;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

/// The longest string the table stores. SpiceDB caps object ids at 1024
/// bytes and names at 64, so this only stops absurd input.
pub const MAX_STRING_LEN: usize = (1 << LEN_BITS) - 1;

const LEN_BITS: u32 = 16;

/// A span packs `start << LEN_BITS | len`; `FREE_SPAN` marks a free id.
const FREE_SPAN: u64 = u64::MAX;

/// Compact the arena when at least this share of it is dead, and it is big
/// enough to be worth copying.
const COMPACT_MIN_BYTES: usize = 1 << 20;

#[derive(Debug)]
pub struct Interner {
    arena: String,
    spans: Vec<u64>,
    refs: Vec<u32>,
    free: Vec<u32>,
    /// Ids, hashed by their strings. Keyed through `arena`, so the hasher
    /// is seeded per process (request-controlled ids must not be able to
    /// force collisions).
    table: HashTable<u32>,
    hasher: RandomState,
    dead_bytes: usize,
}

impl Default for Interner {
    fn default() -> Self {
        Self {
            arena: String::new(),
            spans: Vec::new(),
            refs: Vec::new(),
            free: Vec::new(),
            table: HashTable::new(),
            hasher: RandomState::new(),
            dead_bytes: 0,
        }
    }
}

impl Interner {
    /// The id of `text`, if it is stored.
    pub fn lookup(&self, text: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(text);
        self.table.find(hash, |&id| self.get(id) == text).copied()
    }

    /// The id of `text`, storing it if needed, with one more reference.
    /// The caller has checked `text.len() <= MAX_STRING_LEN`.
    pub fn acquire(&mut self, text: &str) -> u32 {
        if let Some(id) = self.lookup(text) {
            let refs = &mut self.refs[id as usize];
            *refs = refs
                .checked_add(1)
                .expect("interner: fewer than 2^32 records name one string");
            return id;
        }
        let start = self.arena.len() as u64;
        self.arena.push_str(text);
        let span = (start << LEN_BITS) | text.len() as u64;
        let id = match self.free.pop() {
            Some(id) => {
                self.spans[id as usize] = span;
                self.refs[id as usize] = 1;
                id
            }
            None => {
                let id = u32::try_from(self.spans.len())
                    .expect("interner: fewer than 2^32 distinct strings");
                self.spans.push(span);
                self.refs.push(1);
                id
            }
        };
        let hash = self.hasher.hash_one(text);
        let (arena, spans, hasher) = (&self.arena, &self.spans, &self.hasher);
        self.table.insert_unique(hash, id, |&other| {
            hasher.hash_one(span_str(arena, spans[other as usize]))
        });
        id
    }

    /// Drops one reference to `id`, freeing it when none remain.
    pub fn release(&mut self, id: u32) {
        let refs = &mut self.refs[id as usize];
        *refs -= 1;
        if *refs > 0 {
            return;
        }
        let text = self.get(id);
        let hash = self.hasher.hash_one(text);
        self.dead_bytes += text.len();
        if let Ok(entry) = self.table.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
        self.spans[id as usize] = FREE_SPAN;
        self.free.push(id);
    }

    /// The string of a live id.
    pub fn get(&self, id: u32) -> &str {
        span_str(&self.arena, self.spans[id as usize])
    }

    /// Orders two ids by their strings (byte-wise, as `str` orders).
    pub fn cmp(&self, a: u32, b: u32) -> Ordering {
        if a == b {
            Ordering::Equal
        } else {
            self.get(a).cmp(self.get(b))
        }
    }

    /// Rewrites the arena without dead strings when they take up half of
    /// it. Ids and hashes do not change, so the table stays as it is.
    pub fn compact_if_worthwhile(&mut self) {
        if self.dead_bytes < COMPACT_MIN_BYTES || self.dead_bytes * 2 < self.arena.len() {
            return;
        }
        let mut arena = String::with_capacity(self.arena.len() - self.dead_bytes);
        for span in &mut self.spans {
            if *span == FREE_SPAN {
                continue;
            }
            let start = arena.len() as u64;
            let text = span_str(&self.arena, *span);
            arena.push_str(text);
            *span = (start << LEN_BITS) | text.len() as u64;
        }
        self.arena = arena;
        self.dead_bytes = 0;
    }

    /// Distinct strings stored.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.spans.len() - self.free.len()
    }
}

fn span_str(arena: &str, span: u64) -> &str {
    let start = (span >> LEN_BITS) as usize;
    let len = (span & ((1 << LEN_BITS) - 1)) as usize;
    arena
        .get(start..start + len)
        .expect("interner: spans are written at char boundaries and never freed while used")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_releases_and_reuses_ids() {
        let mut interner = Interner::default();
        let a = interner.acquire("alice");
        let b = interner.acquire("bob");
        assert_eq!(interner.acquire("alice"), a);
        assert_eq!(interner.lookup("bob"), Some(b));
        assert_eq!(interner.cmp(a, b), Ordering::Less);
        interner.release(b);
        assert_eq!(interner.lookup("bob"), None);
        let c = interner.acquire("carol");
        assert_eq!(c, b, "a freed id is reused");
        interner.release(a);
        assert_eq!(interner.get(a), "alice", "one reference remains");
        interner.release(a);
        assert_eq!(interner.len(), 1);
    }

    #[test]
    fn compaction_keeps_live_strings() {
        let mut interner = Interner::default();
        let big = "x".repeat(60_000);
        let ids: Vec<u32> = (0..40)
            .map(|i| interner.acquire(&format!("{big}{i}")))
            .collect();
        let keep = interner.acquire("keep");
        for &id in &ids {
            interner.release(id);
        }
        interner.compact_if_worthwhile();
        assert!(interner.arena.len() < 100);
        assert_eq!(interner.get(keep), "keep");
        assert_eq!(interner.lookup("keep"), Some(keep));
    }
}
