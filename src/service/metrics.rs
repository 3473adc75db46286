//! Engine metrics, recorded by the use cases they measure: how many
//! dispatches a check request took, computed or answered from the dispatch
//! cache (SpiceDB's `spicedb_services_dispatches{cached}`), and how checks
//! came out (SpiceDB's `spicedb_v1_check_permissionship_total`).

use super::Permissionship;

/// Histogram of dispatches per check request.
pub const CHECK_DISPATCHES: &str = "trellis_check_dispatches";
/// SpiceDB's buckets for `spicedb_services_dispatches`.
pub const CHECK_DISPATCHES_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0];
/// Counter of check answers by permissionship.
pub const CHECK_PERMISSIONSHIP_TOTAL: &str = "trellis_check_permissionship_total";

/// Registers help text for the metrics declared here.
pub fn describe() {
    metrics::describe_histogram!(
        CHECK_DISPATCHES,
        "Dispatches to answer one check request, by method (check, check_bulk) and whether they were computed (cached=\"false\") or answered from the dispatch cache (cached=\"true\")."
    );
    metrics::describe_counter!(
        CHECK_PERMISSIONSHIP_TOTAL,
        "Check answers by permissionship (has_permission, no_permission, conditional_permission)."
    );
}

/// One check request's dispatches, computed and served from the cache;
/// `method` names the use case. Both are recorded for every request, as
/// SpiceDB does, so the two series count the same requests.
pub(super) fn record_dispatches(method: &'static str, computed: u32, cached: u32) {
    metrics::histogram!(CHECK_DISPATCHES, "method" => method, "cached" => "false")
        .record(f64::from(computed));
    metrics::histogram!(CHECK_DISPATCHES, "method" => method, "cached" => "true")
        .record(f64::from(cached));
}

/// One answered check (each item of a bulk check counts).
pub(super) fn record_permissionship(permissionship: &Permissionship) {
    let label = match permissionship {
        Permissionship::HasPermission => "has_permission",
        Permissionship::NoPermission => "no_permission",
        Permissionship::Conditional { .. } => "conditional_permission",
    };
    metrics::counter!(CHECK_PERMISSIONSHIP_TOTAL, "permissionship" => label).increment(1);
}
