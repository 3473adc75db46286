//! Datastore metrics, declared here and recorded by the metering decorator
//! (`proxy::metered`) for any engine, and by the PostgreSQL pools: latency
//! per operation, errors by kind, garbage collection, pool usage (SpiceDB's
//! `spicedb_datastore_query_latency`, `…_gc_*` and pgxpool gauges).

/// Histogram of datastore call latency, by `operation`.
pub const QUERY_SECONDS: &str = "trellis_datastore_query_seconds";
/// Bucket bounds for `QUERY_SECONDS`: 100 µs to 5 s.
pub const QUERY_SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// Counter of failed datastore calls, by `operation` and error `kind`.
pub const ERRORS_TOTAL: &str = "trellis_datastore_errors_total";
/// Histogram of garbage-collection runs, in seconds.
pub const GC_SECONDS: &str = "trellis_datastore_gc_seconds";
/// Counter of relationship versions garbage collection removed.
pub const GC_RELATIONSHIPS_TOTAL: &str = "trellis_datastore_gc_relationships_total";
/// Counter of garbage-collection runs that failed.
pub const GC_FAILURES_TOTAL: &str = "trellis_datastore_gc_failures_total";
/// Gauge of pooled connections, by `pool` (read, write) and `state`
/// (in_use, idle, max).
pub const POOL_CONNECTIONS: &str = "trellis_datastore_pool_connections";

/// Registers help text for the metrics declared here.
pub fn describe() {
    metrics::describe_histogram!(
        QUERY_SECONDS,
        metrics::Unit::Seconds,
        "Latency of datastore calls, by operation (query, query_resources, write, ...)."
    );
    metrics::describe_counter!(
        ERRORS_TOTAL,
        "Failed datastore calls, by operation and error kind (unavailable, not_migrated, ...)."
    );
    metrics::describe_histogram!(
        GC_SECONDS,
        metrics::Unit::Seconds,
        "Duration of garbage-collection runs."
    );
    metrics::describe_counter!(
        GC_RELATIONSHIPS_TOTAL,
        "Relationship versions removed by garbage collection (deleted, or expired)."
    );
    metrics::describe_counter!(GC_FAILURES_TOTAL, "Garbage-collection runs that failed.");
    metrics::describe_gauge!(
        POOL_CONNECTIONS,
        "Pooled datastore connections, by pool (read, write) and state (in_use, idle, max)."
    );
}
