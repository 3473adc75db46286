//! Owns `SortedIndex`: an ordered set of record slots (`u32`) kept in
//! fixed-capacity chunks, ordered by a comparator the caller supplies (the
//! index never sees what a slot means). Depends on nothing else in the crate.
//!
//! Why not a `BTreeSet`: its keys would have to carry their own order, but
//! our order is by strings behind interned ids, which only the caller can
//! resolve. A two-level chunked vector (a B+-tree of depth two) stores four
//! bytes per entry plus chunk slack, searches in `O(log n)` and inserts by
//! moving at most one chunk.

/// Entries per chunk: a 2 KiB chunk keeps inserts cheap (one short memmove)
/// and the chunk directory small.
const CHUNK: usize = 512;

/// A position: chunk index and offset inside it. `chunk == chunks.len()`
/// is the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    chunk: usize,
    offset: usize,
}

#[derive(Debug, Default)]
pub struct SortedIndex {
    chunks: Vec<Vec<u32>>,
    len: usize,
}

impl SortedIndex {
    /// Builds an index from slots already in order, with full chunks.
    pub fn from_sorted(slots: impl IntoIterator<Item = u32>) -> Self {
        let mut index = Self::default();
        for slot in slots {
            match index.chunks.last_mut() {
                Some(chunk) if chunk.len() < CHUNK => chunk.push(slot),
                _ => {
                    let mut chunk = Vec::with_capacity(CHUNK);
                    chunk.push(slot);
                    index.chunks.push(chunk);
                }
            }
            index.len += 1;
        }
        index
    }

    /// Merges this index with `slots` (in order) into a new index, in time
    /// linear in both; `less(a, b)` is the index order.
    pub fn merged(&self, slots: &[u32], less: impl Fn(u32, u32) -> bool) -> Self {
        let mut old = self.iter_from(self.start()).peekable();
        let mut new = slots.iter().copied().peekable();
        let merged = std::iter::from_fn(|| match (old.peek(), new.peek()) {
            (Some(&a), Some(&b)) if less(b, a) => new.next(),
            (Some(_), _) => old.next(),
            (None, _) => new.next(),
        });
        Self::from_sorted(merged)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn start(&self) -> Pos {
        Pos {
            chunk: 0,
            offset: 0,
        }
    }

    /// The first position whose entry is not `before` (`before` must hold
    /// for a prefix of the index and fail for the rest).
    pub fn partition_point(&self, before: impl Fn(u32) -> bool) -> Pos {
        let chunk = self.chunks.partition_point(|chunk| match chunk.last() {
            Some(&last) => before(last),
            None => true,
        });
        match self.chunks.get(chunk) {
            Some(entries) => Pos {
                chunk,
                offset: entries.partition_point(|&slot| before(slot)),
            },
            None => self.end(),
        }
    }

    /// Entries from `pos` on, in order.
    pub fn iter_from(&self, pos: Pos) -> impl Iterator<Item = u32> + '_ {
        let first = self
            .chunks
            .get(pos.chunk)
            .map(|chunk| &chunk[pos.offset.min(chunk.len())..])
            .into_iter();
        let rest = self.chunks.iter().skip(pos.chunk + 1).map(|c| c.as_slice());
        first.chain(rest).flatten().copied()
    }

    /// Inserts `slot` where `before` (entries ordered before it) stops.
    pub fn insert(&mut self, slot: u32, before: impl Fn(u32) -> bool) {
        let pos = self.partition_point(before);
        self.len += 1;
        if self.chunks.is_empty() {
            let mut chunk = Vec::with_capacity(CHUNK);
            chunk.push(slot);
            self.chunks.push(chunk);
            return;
        }
        // Past the last entry: append to the last chunk.
        let (chunk, offset) = if pos.chunk == self.chunks.len() {
            let last = self.chunks.len() - 1;
            (last, self.chunks[last].len())
        } else {
            (pos.chunk, pos.offset)
        };
        let last_chunk = chunk == self.chunks.len() - 1;
        let entries = &mut self.chunks[chunk];
        let appending = last_chunk && offset == entries.len();
        if entries.len() < CHUNK {
            entries.insert(offset, slot);
            return;
        }
        // Full chunk: split. Appends at the very end (ascending loads) keep
        // the full chunk full and start a new one.
        let mut tail = Vec::with_capacity(CHUNK);
        if appending {
            tail.push(slot);
        } else {
            tail.extend(entries.drain(CHUNK / 2..));
            if offset <= CHUNK / 2 {
                entries.insert(offset, slot);
            } else {
                tail.insert(offset - CHUNK / 2, slot);
            }
        }
        self.chunks.insert(chunk + 1, tail);
    }

    /// Removes `slot`, which `before` positions exactly (the order is total).
    /// Returns whether it was there.
    pub fn remove(&mut self, slot: u32, before: impl Fn(u32) -> bool) -> bool {
        let pos = self.partition_point(before);
        let Some(entries) = self.chunks.get_mut(pos.chunk) else {
            return false;
        };
        if entries.get(pos.offset) != Some(&slot) {
            return false;
        }
        entries.remove(pos.offset);
        self.len -= 1;
        self.rebalance(pos.chunk);
        true
    }

    /// Keeps chunks from thinning out after removals: an empty chunk goes,
    /// and a chunk under a quarter full joins a neighbour if both fit in
    /// half a chunk.
    fn rebalance(&mut self, chunk: usize) {
        let len = self.chunks[chunk].len();
        if len == 0 {
            self.chunks.remove(chunk);
            return;
        }
        if len >= CHUNK / 4 {
            return;
        }
        let fits = |other: &Vec<u32>| len + other.len() <= CHUNK / 2;
        if self.chunks.get(chunk + 1).is_some_and(fits) {
            let next = self.chunks.remove(chunk + 1);
            self.chunks[chunk].extend(next);
        } else if chunk > 0 && fits(&self.chunks[chunk - 1]) {
            let this = self.chunks.remove(chunk);
            self.chunks[chunk - 1].extend(this);
        }
    }

    fn end(&self) -> Pos {
        Pos {
            chunk: self.chunks.len(),
            offset: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(index: &SortedIndex) -> Vec<u32> {
        index.iter_from(index.start()).collect()
    }

    #[test]
    fn inserts_in_order_across_splits() {
        let mut index = SortedIndex::default();
        // A permutation of 0..5000 (7919 is prime, so this is a bijection).
        for i in 0..5000u32 {
            let value = (i * 7919) % 5000;
            index.insert(value, |e| e < value);
        }
        assert_eq!(collect(&index), (0..5000).collect::<Vec<_>>());
        assert_eq!(index.len(), 5000);
        let pos = index.partition_point(|e| e < 4321);
        assert_eq!(index.iter_from(pos).next(), Some(4321));
    }

    #[test]
    fn ascending_appends_fill_chunks() {
        let mut index = SortedIndex::default();
        for value in 0..(CHUNK as u32 * 4) {
            index.insert(value, |e| e < value);
        }
        assert_eq!(index.chunks.len(), 4);
    }

    #[test]
    fn removes_and_merges() {
        let mut index = SortedIndex::from_sorted(0..3000);
        for value in (0..3000).filter(|v| v % 10 != 0) {
            assert!(index.remove(value, |e| e < value));
        }
        assert!(!index.remove(5, |e| e < 5));
        assert_eq!(collect(&index), (0..3000).step_by(10).collect::<Vec<_>>());
        assert!(index.chunks.len() < 6);
    }

    #[test]
    fn merges_sorted_runs() {
        let index = SortedIndex::from_sorted((0..1000).map(|v| v * 2));
        let new: Vec<u32> = (0..1000).map(|v| v * 2 + 1).collect();
        let merged = index.merged(&new, |a, b| a < b);
        assert_eq!(collect(&merged), (0..2000).collect::<Vec<_>>());
        let end = merged.partition_point(|_| true);
        assert_eq!(merged.iter_from(end).next(), None);
    }
}
