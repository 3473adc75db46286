//! Dispatch metrics, recorded by the decorators they measure: subproblem
//! cache hits, misses, evictions and the bytes it holds (SpiceDB's
//! `spicedb_cache_*` with `cache="dispatch"`), and subproblems that joined
//! a computation already in flight (SpiceDB's
//! `spicedb_dispatch_single_flight_total{shared="true"}`); and, in a
//! cluster, where routed subproblems went and which peers are down.

/// Counter of subproblems answered from the cache, by `kind` (`check`, or
/// `read` for a lookup's read step).
pub const CACHE_HITS_TOTAL: &str = "trellis_dispatch_cache_hits_total";
/// Counter of subproblems the cache could not answer, by `kind`.
pub const CACHE_MISSES_TOTAL: &str = "trellis_dispatch_cache_misses_total";
/// Counter of entries removed to make room or because they expired.
pub const CACHE_EVICTIONS_TOTAL: &str = "trellis_dispatch_cache_evictions_total";
/// Counter of bytes added to the cache.
pub const CACHE_COST_ADDED_BYTES: &str = "trellis_dispatch_cache_cost_added_bytes_total";
/// Counter of bytes evicted from the cache.
pub const CACHE_COST_EVICTED_BYTES: &str = "trellis_dispatch_cache_cost_evicted_bytes_total";
/// Counter of singleflight outcomes: `shared` says whether the request
/// joined another's computation.
pub const SINGLEFLIGHT_TOTAL: &str = "trellis_dispatch_singleflight_total";

/// Counter of subproblems the remote dispatcher routed, by `kind` (`check`,
/// `read`) and `outcome`:
/// `local` (owned here, or owner down), `peer` (answered by the owner),
/// `failover` (the owner failed; evaluated here).
pub const REMOTE_DISPATCH_TOTAL: &str = "trellis_dispatch_remote_total";
/// Gauge per peer: 1 while it is marked down, 0 once it is back.
pub const PEER_DOWN: &str = "trellis_dispatch_peer_down";
/// Members of the dispatch hashring.
pub const RING_MEMBERS: &str = "trellis_dispatch_ring_members";

/// Registers help text for the metrics declared here.
pub fn describe() {
    metrics::describe_gauge!(
        RING_MEMBERS,
        "Members of the dispatch hashring (the node itself included)."
    );
    metrics::describe_counter!(
        REMOTE_DISPATCH_TOTAL,
        "Subproblems routed by the hashring, by kind (check, read) and outcome (local, peer, failover)."
    );
    metrics::describe_gauge!(
        PEER_DOWN,
        "1 while a dispatch peer is marked down (its subproblems evaluated locally), else 0."
    );
    metrics::describe_counter!(
        CACHE_HITS_TOTAL,
        "Subproblems answered from the dispatch cache, by kind (check, or a lookup's read step)."
    );
    metrics::describe_counter!(
        CACHE_MISSES_TOTAL,
        "Subproblems the dispatch cache could not answer (absent, or computed with less depth than the request needs), by kind (check, read)."
    );
    metrics::describe_counter!(
        CACHE_EVICTIONS_TOTAL,
        "Dispatch cache entries evicted, by reason (size, expired)."
    );
    metrics::describe_counter!(
        CACHE_COST_ADDED_BYTES,
        metrics::Unit::Bytes,
        "Estimated bytes of keys and answers added to the dispatch cache."
    );
    metrics::describe_counter!(
        CACHE_COST_EVICTED_BYTES,
        metrics::Unit::Bytes,
        "Estimated bytes of keys and answers evicted from the dispatch cache."
    );
    metrics::describe_counter!(
        SINGLEFLIGHT_TOTAL,
        "Check subproblems entering singleflight; shared=\"true\" joined an identical one in flight instead of computing."
    );
}

/// A subproblem of `kind` (`check`, or a lookup's `read` step) answered
/// from the cache.
pub(super) fn cache_hit(kind: &'static str) {
    metrics::counter!(CACHE_HITS_TOTAL, "kind" => kind).increment(1);
}

pub(super) fn cache_miss(kind: &'static str) {
    metrics::counter!(CACHE_MISSES_TOTAL, "kind" => kind).increment(1);
}

pub(super) fn cache_added(bytes: u32) {
    metrics::counter!(CACHE_COST_ADDED_BYTES).increment(u64::from(bytes));
}

/// One entry gone for `reason` (`size` or `expired`).
pub(super) fn cache_evicted(reason: &'static str, bytes: u32) {
    metrics::counter!(CACHE_EVICTIONS_TOTAL, "reason" => reason).increment(1);
    metrics::counter!(CACHE_COST_EVICTED_BYTES).increment(u64::from(bytes));
}

/// One subproblem through singleflight; `shared` if it joined one in flight.
pub(super) fn singleflight(shared: bool) {
    let shared = if shared { "true" } else { "false" };
    metrics::counter!(SINGLEFLIGHT_TOTAL, "shared" => shared).increment(1);
}

/// One routed subproblem of `kind` and where it was answered.
pub(super) fn remote_dispatch(kind: &'static str, outcome: &'static str) {
    metrics::counter!(REMOTE_DISPATCH_TOTAL, "kind" => kind, "outcome" => outcome).increment(1);
}

/// A peer went down (`true`) or came back.
pub(super) fn peer_down(peer: &str, down: bool) {
    metrics::gauge!(PEER_DOWN, "peer" => peer.to_string()).set(if down { 1.0 } else { 0.0 });
}

/// The ring was built with `members` members.
pub(super) fn ring_members(members: usize) {
    metrics::gauge!(RING_MEMBERS).set(members as f64);
}
