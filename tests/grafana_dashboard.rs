//! config/grafana-dashboard.json parses, and every metric its queries name
//! is one the code declares (with `_bucket` only on histograms exported with
//! buckets, `_sum`/`_count` only on histograms), so renaming a metric
//! without the dashboard fails here.

mod common;

use std::collections::BTreeSet;

use trellis::{api, datastore, dispatch, service};

/// Every metric the code declares, and whether it is a histogram exported
/// with buckets (`Some(true)`), as a summary (`Some(false)`), or not a
/// histogram (`None`).
fn declared() -> Vec<(&'static str, Option<bool>)> {
    vec![
        (api::metrics::HANDLED_TOTAL, None),
        (api::metrics::HANDLING_SECONDS, Some(true)),
        (api::metrics::WATCH_STREAMS_OPEN, None),
        (service::metrics::CHECK_DISPATCHES, Some(true)),
        (service::metrics::CHECK_PERMISSIONSHIP_TOTAL, None),
        (datastore::metrics::QUERY_SECONDS, Some(true)),
        (datastore::metrics::ERRORS_TOTAL, None),
        (datastore::metrics::GC_SECONDS, Some(false)),
        (datastore::metrics::GC_RELATIONSHIPS_TOTAL, None),
        (datastore::metrics::GC_FAILURES_TOTAL, None),
        (datastore::metrics::POOL_CONNECTIONS, None),
        (dispatch::metrics::CACHE_HITS_TOTAL, None),
        (dispatch::metrics::CACHE_MISSES_TOTAL, None),
        (dispatch::metrics::CACHE_EVICTIONS_TOTAL, None),
        (dispatch::metrics::CACHE_COST_ADDED_BYTES, None),
        (dispatch::metrics::CACHE_COST_EVICTED_BYTES, None),
        (dispatch::metrics::SINGLEFLIGHT_TOTAL, None),
        (dispatch::metrics::REMOTE_DISPATCH_TOTAL, None),
        (dispatch::metrics::PEER_DOWN, None),
    ]
}

/// Every PromQL expression in the dashboard's panels (rows included).
fn expressions(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(expr)) = map.get("expr") {
                out.push(expr.clone());
            }
            map.values().for_each(|v| expressions(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| expressions(v, out)),
        _ => {}
    }
}

/// The metric names an expression reads: identifiers in our namespaces.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("trellis_") || word.starts_with("grpc_server_"))
        .map(str::to_string)
        .collect()
}

/// Whether `name` is a declared metric, or one of the series a declared
/// histogram is exported as.
fn is_declared(name: &str, declared: &[(&str, Option<bool>)]) -> bool {
    declared.iter().any(|&(metric, histogram)| {
        name == metric
            || (histogram == Some(true) && name == format!("{metric}_bucket"))
            || (histogram.is_some()
                && (name == format!("{metric}_sum") || name == format!("{metric}_count")))
    })
}

#[test]
fn every_metric_the_dashboard_queries_is_declared() {
    let path = common::repo().join("config/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard file");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(dashboard["title"], "Trellis");
    let mut exprs = Vec::new();
    expressions(&dashboard["panels"], &mut exprs);
    assert!(exprs.len() >= 10, "too few queries: {exprs:?}");
    let declared = declared();
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "a query that reads no metric: {expr}");
        for name in names {
            assert!(
                is_declared(&name, &declared),
                "`{name}` is not a metric Trellis exports: {expr}"
            );
            used.insert(name);
        }
    }
    // The four views: gRPC rates and latency, the dispatch cache
    // hit ratio, datastore latency and pool usage.
    for needed in [
        "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket",
        "trellis_dispatch_cache_hits_total",
        "trellis_dispatch_cache_misses_total",
        "trellis_datastore_query_seconds_bucket",
        "trellis_datastore_pool_connections",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
}
