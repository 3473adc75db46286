//! The lookups' read steps: the relationship reads LookupResources' reverse
//! walk and LookupSubjects' forward walk make, as dispatchable subproblems.
//! A walk stays on the node that was asked (its frontier, visited set and
//! output order live there); each read it needs is a `ReadRequest` sent
//! through the dispatcher chain, so in a cluster it is answered — and
//! cached — by the node that owns it on the hashring, as checks are.
//!
//! The answer is sorted in relationship-key order wherever it is computed,
//! so a walk sees the same sequence from any node, from the cache or from
//! the datastore, and LookupResources' results keep the one order their
//! cursors resume by.

use std::mem::{size_of, size_of_val};
use std::sync::Arc;
use std::time::SystemTime;

use crate::datastore::{DatastoreResult, Page, Reader, ReverseQuery};
use crate::model::{Relationship, Revision};

/// Which relationships a walk needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReadQuery {
    /// By subject (the reverse index): LookupResources follows an edge
    /// backwards from a chunk of subject ids.
    BySubject(ReverseQuery),
    /// By resource: LookupSubjects reads `resource_type:id#relation`, with
    /// subjects of every type.
    ByResource {
        resource_type: String,
        resource_ids: Vec<String>,
        relation: String,
    },
}

/// One read step: a query at a revision. Built only by `new`, which sorts
/// and deduplicates the ids, so equal questions are equal values (one cache
/// entry, one owner on the ring) whatever order the walk reached the ids in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadRequest {
    query: ReadQuery,
    revision: Revision,
}

impl ReadRequest {
    pub fn new(mut query: ReadQuery, revision: Revision) -> Self {
        let ids = match &mut query {
            ReadQuery::BySubject(reverse) => &mut reverse.subject_ids,
            ReadQuery::ByResource { resource_ids, .. } => resource_ids,
        };
        ids.sort_unstable();
        ids.dedup();
        Self { query, revision }
    }

    pub fn query(&self) -> &ReadQuery {
        &self.query
    }

    /// The revision read at: the quantized one for minimize_latency, so
    /// requests in one window share answers, never across revisions.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Bytes this request occupies as a cache key.
    pub fn size_in_bytes(&self) -> usize {
        let strings = |items: &[String]| -> usize {
            items.iter().map(String::capacity).sum::<usize>() + size_of_val(items)
        };
        let heap = match &self.query {
            ReadQuery::BySubject(q) => {
                strings(&q.subject_ids)
                    + q.subject_type.capacity()
                    + q.subject_relation.as_ref().map_or(0, String::capacity)
                    + q.resource_type.capacity()
                    + q.resource_relation.capacity()
            }
            ReadQuery::ByResource {
                resource_type,
                resource_ids,
                relation,
            } => strings(resource_ids) + resource_type.capacity() + relation.capacity(),
        };
        size_of::<Self>() + heap
    }
}

/// The relationships a read found, in relationship-key order. Cloning is
/// one reference count: the cache and every walk share one list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadResult {
    pub relationships: Arc<[Relationship]>,
    /// The earliest expiration among them: such an answer may change at
    /// the same revision once it passes, so it is not cached.
    pub expires_at: Option<SystemTime>,
}

impl ReadResult {
    /// The result of `relationships` in whatever order they came.
    pub fn sorted(mut relationships: Vec<Relationship>) -> Self {
        relationships.sort_unstable_by(|a, b| {
            (&a.resource, &a.relation, &a.subject).cmp(&(&b.resource, &b.relation, &b.subject))
        });
        let expires_at = relationships.iter().filter_map(|r| r.expires_at).min();
        Self {
            relationships: relationships.into(),
            expires_at,
        }
    }
}

/// Answers `query` from `reader` (the datastore at the request's revision).
pub async fn evaluate<R: Reader>(reader: &R, query: &ReadQuery) -> DatastoreResult<ReadResult> {
    let relationships = match query {
        ReadQuery::BySubject(reverse) => {
            reader
                .query_subjects(reverse, &Page::everything_any_order())
                .await?
        }
        ReadQuery::ByResource {
            resource_type,
            resource_ids,
            relation,
        } => {
            let ids: Vec<&str> = resource_ids.iter().map(String::as_str).collect();
            reader
                .query_resources(resource_type, &ids, relation, &[])
                .await?
        }
    };
    Ok(ReadResult::sorted(relationships))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::model::parse_relationship;

    fn by_subject(ids: &[&str]) -> ReadQuery {
        ReadQuery::BySubject(ReverseQuery {
            subject_type: "user".into(),
            subject_ids: ids.iter().map(|s| s.to_string()).collect(),
            subject_relation: Some("...".into()),
            resource_type: "document".into(),
            resource_relation: "viewer".into(),
        })
    }

    #[test]
    fn ids_are_sorted_and_deduplicated_so_equal_questions_are_equal() {
        let a = ReadRequest::new(by_subject(&["b", "a", "b"]), Revision(3));
        let b = ReadRequest::new(by_subject(&["a", "b"]), Revision(3));
        assert_eq!(a, b);
        assert_ne!(a, ReadRequest::new(by_subject(&["a", "b"]), Revision(4)));
    }

    #[test]
    fn results_come_in_key_order_with_the_earliest_expiry() {
        let soon = UNIX_EPOCH + Duration::from_secs(100);
        let later = UNIX_EPOCH + Duration::from_secs(200);
        let mut second = parse_relationship("document:b#viewer@user:a").expect("valid");
        second.expires_at = Some(later);
        let mut first = parse_relationship("document:a#viewer@user:b").expect("valid");
        first.expires_at = Some(soon);
        let third = parse_relationship("document:b#viewer@user:b").expect("valid");
        let result = ReadResult::sorted(vec![third.clone(), second.clone(), first.clone()]);
        assert_eq!(&*result.relationships, &[first, second, third]);
        assert_eq!(result.expires_at, Some(soon));
    }

    #[test]
    fn size_counts_the_ids() {
        let small = ReadRequest::new(by_subject(&["a"]), Revision(1));
        let long = "x".repeat(1000);
        let big = ReadRequest::new(by_subject(&["a", &long]), Revision(1));
        assert!(big.size_in_bytes() >= small.size_in_bytes() + 1000);
    }
}
