//! Measurement helpers shared by the benchmarks (each bench uses some).

#![allow(dead_code)]

/// Resident set size in bytes, from /proc/self/statm (Linux, 4 KiB pages).
pub fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm has a resident field");
    pages * 4096
}

/// A one-thread tokio runtime: benchmarks measure one request at a time.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Two tokio workers: a client and an in-process server (or a database
/// driver) sharing the machine's two cores.
pub fn two_worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Criterion for calls that take up to seconds each: ten samples, a
/// one-second warm-up, ten seconds of measurement (flags may override).
pub fn criterion_for_slow_calls() -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(10))
        .configure_from_args()
}
