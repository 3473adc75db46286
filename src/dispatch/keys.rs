//! The identities of a subproblem: the cache key (what was asked, at
//! which revision, without the depth budget), the singleflight key (the
//! cache key plus the depth budget) and the routing key (which peer owns
//! it), kept apart: the routing key leaves out what need not decide the
//! owner (the results setting), so both settings of one question meet in
//! the same node's cache. A lookup's read step is its own key in both the
//! cache and the ring (`read::ReadRequest` is already canonical).

use std::hash::{Hash, Hasher};
use std::mem::size_of;

use super::{CheckRequest, ReadRequest, ResultsSetting};
use crate::model::{Revision, SubjectRef};

/// A check subproblem without its depth budget: two requests with equal
/// keys ask the same question of the same snapshot, so one's answer is the
/// other's, provided it needed no more depth than the other has left.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckKey {
    resource_type: String,
    /// Sorted and without duplicates: the answer does not depend on the
    /// order the ids were asked in.
    resource_ids: Vec<String>,
    relation: String,
    subject: SubjectRef,
    /// The revision the request reads at: already the quantized one when
    /// the request used minimize_latency, so requests in one window share
    /// entries, and never shared across revisions.
    revision: Revision,
    results_setting: ResultsSetting,
}

impl CheckKey {
    pub fn of(request: &CheckRequest) -> Self {
        let mut resource_ids = request.resource_ids.clone();
        resource_ids.sort_unstable();
        resource_ids.dedup();
        Self {
            resource_type: request.resource_type.clone(),
            resource_ids,
            relation: request.relation.clone(),
            subject: request.subject.clone(),
            revision: request.revision,
            results_setting: request.results_setting,
        }
    }

    /// Bytes this key occupies: the struct and the heap its strings use.
    pub fn size_in_bytes(&self) -> usize {
        let ids: usize = self.resource_ids.iter().map(string_bytes).sum();
        size_of::<Self>()
            + self.resource_ids.capacity() * size_of::<String>()
            + ids
            + string_bytes(&self.resource_type)
            + string_bytes(&self.relation)
            + string_bytes(&self.subject.object.object_type)
            + string_bytes(&self.subject.object.object_id)
            + string_bytes(&self.subject.relation)
    }
}

/// What the dispatch cache holds answers by: checks and read steps share
/// one cache and one budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CacheKey {
    Check(CheckKey),
    Read(ReadRequest),
}

impl CacheKey {
    pub fn size_in_bytes(&self) -> usize {
        match self {
            CacheKey::Check(key) => key.size_in_bytes(),
            CacheKey::Read(request) => request.size_in_bytes(),
        }
    }
}

/// A subproblem in flight: its cache key and its depth budget. Requests
/// share a computation only at equal depth (see `singleflight` for why
/// that rules out deadlock).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlightKey {
    pub check: CheckKey,
    pub depth_remaining: u32,
}

impl FlightKey {
    pub fn of(request: &CheckRequest) -> Self {
        Self {
            check: CheckKey::of(request),
            depth_remaining: request.depth_remaining,
        }
    }
}

/// What decides which peer owns a subproblem. For a check: resource type,
/// relation, sorted ids, subject and revision. The revision is in it so
/// ownership reshuffles each quantization window rather than pinning one
/// hot subproblem to one node for ever. For a read step: the whole
/// (canonical) request, revision included for the same reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingKey<'a> {
    Check {
        resource_type: &'a str,
        relation: &'a str,
        /// Sorted, deduplicated: the owner does not depend on the ids' order.
        resource_ids: Vec<&'a str>,
        subject: &'a SubjectRef,
        revision: Revision,
    },
    Read(&'a ReadRequest),
}

impl<'a> RoutingKey<'a> {
    pub fn of(request: &'a CheckRequest) -> Self {
        let mut resource_ids: Vec<&str> = request.resource_ids.iter().map(String::as_str).collect();
        resource_ids.sort_unstable();
        resource_ids.dedup();
        RoutingKey::Check {
            resource_type: &request.resource_type,
            relation: &request.relation,
            resource_ids,
            subject: &request.subject,
            revision: request.revision,
        }
    }

    pub fn of_read(request: &'a ReadRequest) -> Self {
        RoutingKey::Read(request)
    }
}

impl Hash for RoutingKey<'_> {
    /// Field by field with separators, so `("ab", "c")` and `("a", "bc")`
    /// hash apart. The ring's hasher is fixed (SipHash with zero keys), so
    /// every node computes the same owner. A check hashes exactly as it
    /// did before read steps existed, so check ownership did not move.
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            RoutingKey::Check {
                resource_type,
                relation,
                resource_ids,
                subject,
                revision,
            } => {
                resource_type.hash(state);
                relation.hash(state);
                resource_ids.hash(state);
                subject.hash(state);
                revision.hash(state);
            }
            RoutingKey::Read(request) => {
                "read".hash(state);
                request.hash(state);
            }
        }
    }
}

/// Heap bytes of a string.
pub(super) fn string_bytes(s: &String) -> usize {
    s.capacity()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ids: &[&str], depth: u32) -> CheckRequest {
        CheckRequest {
            resource_type: "document".into(),
            resource_ids: ids.iter().map(|s| s.to_string()).collect(),
            relation: "view".into(),
            subject: SubjectRef::object("user", "alice"),
            revision: Revision(7),
            depth_remaining: depth,
            results_setting: ResultsSetting::AllowSingleResult,
        }
    }

    #[test]
    fn ids_order_and_depth_do_not_change_the_cache_key() {
        assert_eq!(
            CheckKey::of(&request(&["b", "a", "a"], 50)),
            CheckKey::of(&request(&["a", "b"], 3))
        );
        assert_ne!(
            FlightKey::of(&request(&["a"], 50)),
            FlightKey::of(&request(&["a"], 49))
        );
    }

    #[test]
    fn revision_and_setting_are_part_of_the_key() {
        let base = request(&["a"], 50);
        let later = CheckRequest {
            revision: Revision(8),
            ..base.clone()
        };
        let all = CheckRequest {
            results_setting: ResultsSetting::RequireAllResults,
            ..base.clone()
        };
        assert_ne!(CheckKey::of(&base), CheckKey::of(&later));
        assert_ne!(CheckKey::of(&base), CheckKey::of(&all));
    }

    #[test]
    fn routing_ignores_order_depth_and_setting_but_not_revision() {
        let base = request(&["b", "a"], 50);
        let same = CheckRequest {
            results_setting: ResultsSetting::RequireAllResults,
            ..request(&["a", "b", "a"], 3)
        };
        let later = CheckRequest {
            revision: Revision(8),
            ..base.clone()
        };
        assert_eq!(RoutingKey::of(&base), RoutingKey::of(&same));
        assert_ne!(RoutingKey::of(&base), RoutingKey::of(&later));
    }

    #[test]
    fn size_counts_the_strings() {
        let small = CheckKey::of(&request(&["a"], 50));
        let big = CheckKey::of(&request(&["a", &"x".repeat(1000)], 50));
        assert!(small.size_in_bytes() > size_of::<CheckKey>());
        assert!(big.size_in_bytes() >= small.size_in_bytes() + 1000);
    }
}
