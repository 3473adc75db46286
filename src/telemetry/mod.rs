//! Telemetry the process sets up once: the `tracing` subscriber behind
//! `--log-level` and `--log-format` (`logging`), and with the `otel` feature
//! OTLP span export behind `--otel-endpoint` (`otel`). Metrics live in
//! `crate::metrics` and beside the code they measure; spans are opened where
//! the work happens (one per gRPC call in `api::request_id`, one per
//! datastore call in `datastore::proxy::Metered`).

pub mod logging;
#[cfg(feature = "otel")]
pub mod otel;

pub use logging::{LogFormat, LogSettings, LogSettingsError, TelemetryGuard};
