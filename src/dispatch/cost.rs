//! What a cached answer costs: an estimate of the bytes a `CheckResult`
//! occupies (its struct, its membership map and the caveat expressions in
//! it), or a read step's relationships, so the cache's budget is in real
//! bytes rather than entries.

use super::caching::Cached;
use super::keys::CacheKey;
use super::{CheckResult, ReadResult};
use crate::graph::{CaveatExpr, Membership};
use crate::model::{ContextualizedCaveat, Relationship};
use std::mem::size_of;

/// Bytes the cache spends per entry besides key and value: its own node,
/// the `Arc`s around key and value, and the hash table slot. An estimate of
/// moka's bookkeeping; it keeps many tiny entries from looking free.
pub const ENTRY_OVERHEAD: usize = 128;

/// Estimated bytes of one cached answer, held in an `Arc`.
pub fn result_bytes(result: &CheckResult) -> usize {
    // An `Arc` allocation holds two counters beside the value.
    let arc = 2 * size_of::<usize>() + size_of::<CheckResult>();
    // A hashbrown table: one slot and one control byte per bucket.
    let slots = result.memberships.capacity() * (size_of::<(String, Membership)>() + 1);
    let entries: usize = result
        .memberships
        .iter()
        .map(|(id, membership)| id.capacity() + membership_bytes(membership))
        .sum();
    arc + slots + entries
}

/// Estimated bytes of a read step's relationships, in their shared list.
pub fn read_bytes(result: &ReadResult) -> usize {
    let arc = 2 * size_of::<usize>() + size_of::<ReadResult>();
    arc + result
        .relationships
        .iter()
        .map(relationship_bytes)
        .sum::<usize>()
}

fn relationship_bytes(rel: &Relationship) -> usize {
    size_of::<Relationship>()
        + rel.resource.object_type.capacity()
        + rel.resource.object_id.capacity()
        + rel.relation.capacity()
        + rel.subject.object.object_type.capacity()
        + rel.subject.object.object_id.capacity()
        + rel.subject.relation.capacity()
        + rel.caveat.as_ref().map_or(0, caveat_bytes)
}

/// Heap bytes of a caveat's name and context.
fn caveat_bytes(caveat: &ContextualizedCaveat) -> usize {
    caveat.name.capacity()
        + caveat
            .context
            .iter()
            .map(|(k, v)| json_entry_bytes(k, v))
            .sum::<usize>()
}

/// Heap bytes of a membership beyond its own slot.
fn membership_bytes(membership: &Membership) -> usize {
    match membership {
        Membership::NotMember | Membership::Member => 0,
        Membership::Conditional(expr) => expr_bytes(expr),
    }
}

/// Heap bytes of a caveat expression beyond its own slot.
fn expr_bytes(expr: &CaveatExpr) -> usize {
    match expr {
        CaveatExpr::Caveat(caveat) => caveat_bytes(caveat),
        CaveatExpr::And(items) | CaveatExpr::Or(items) => {
            items.capacity() * size_of::<CaveatExpr>() + items.iter().map(expr_bytes).sum::<usize>()
        }
        CaveatExpr::Not(inner) => size_of::<CaveatExpr>() + expr_bytes(inner),
    }
}

/// A JSON object entry: its node (key and value) and what they own.
fn json_entry_bytes(key: &String, value: &serde_json::Value) -> usize {
    size_of::<String>() + size_of::<serde_json::Value>() + key.capacity() + json_bytes(value)
}

/// Heap bytes of a JSON value beyond its own slot.
fn json_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.capacity(),
        Value::Array(items) => {
            items.capacity() * size_of::<Value>() + items.iter().map(json_bytes).sum::<usize>()
        }
        Value::Object(map) => map.iter().map(|(k, v)| json_entry_bytes(k, v)).sum(),
    }
}

/// The cost moka weighs an entry at: key, answer and bookkeeping, in bytes
/// (saturating at the weigher's `u32`).
pub fn entry_cost(key: &CacheKey, value: &Cached) -> u32 {
    let value = match value {
        Cached::Check(result) => result_bytes(result),
        Cached::Read(result) => read_bytes(result),
    };
    let bytes = key.size_in_bytes() + value + ENTRY_OVERHEAD;
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_relationship;

    fn result(memberships: Vec<(&str, Membership)>) -> CheckResult {
        CheckResult {
            memberships: memberships
                .into_iter()
                .map(|(id, m)| (id.to_string(), m))
                .collect(),
            ..CheckResult::default()
        }
    }

    #[test]
    fn bigger_answers_cost_more() {
        let empty = result_bytes(&result(vec![]));
        let one = result_bytes(&result(vec![("doc1", Membership::Member)]));
        let long_id = "d".repeat(500);
        let long = result_bytes(&result(vec![(&long_id, Membership::Member)]));
        assert!(empty >= size_of::<CheckResult>());
        assert!(one > empty);
        assert!(long >= one + 490, "{long} vs {one}");
    }

    #[test]
    fn caveat_context_counts() {
        let mut context = serde_json::Map::new();
        context.insert("allowed".into(), serde_json::json!(["x".repeat(300)]));
        let caveat = |context| {
            Membership::Conditional(CaveatExpr::Caveat(ContextualizedCaveat {
                name: "ip_allowed".into(),
                context,
            }))
        };
        let plain = result_bytes(&result(vec![("doc", caveat(serde_json::Map::new()))]));
        let with_context = result_bytes(&result(vec![("doc", caveat(context))]));
        assert!(with_context >= plain + 300);
    }

    #[test]
    fn read_steps_cost_their_relationships() {
        let rel = |text| parse_relationship(text).expect("valid");
        let one = ReadResult::sorted(vec![rel("document:a#viewer@user:b")]);
        let long = format!("document:{}#viewer@user:b", "d".repeat(500));
        let two = ReadResult::sorted(vec![rel("document:a#viewer@user:b"), rel(&long)]);
        assert!(read_bytes(&one) > read_bytes(&ReadResult::default()));
        assert!(read_bytes(&two) >= read_bytes(&one) + 500 + size_of::<Relationship>());
    }
}
