//! `trellis serve`'s operations flags: logging, TLS and limits (SpiceDB's
//! names where SpiceDB has the flag), and how they become the library's
//! settings.

use std::path::Path;
use std::time::Duration;

use clap::Args;

use trellis::api::limits::{DEFAULT_MAX_CONCURRENT_REQUESTS, DEFAULT_MAX_MESSAGE_SIZE, GrpcLimits};
use trellis::config::parse_duration;
use trellis::telemetry::{LogFormat, LogSettings};
use trellis::tls::{TlsError, TlsFiles, read_ca};

/// Logging, TLS and limits of `trellis serve`.
#[derive(Debug, Args)]
pub struct OpsArgs {
    /// Log level: `trace`, `debug`, `info`, `warn`, `error`, or a filter
    /// such as `info,trellis::datastore=debug`.
    #[arg(long, env = "TRELLIS_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log line format: `text` or `json` (one object per event, with the
    /// call's method and request id).
    #[arg(long, env = "TRELLIS_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// OTLP/gRPC collector to export spans to, e.g.
    /// `http://localhost:4317`; empty: none. Needs a build with the `otel`
    /// cargo feature.
    #[arg(long, env = "TRELLIS_OTEL_ENDPOINT", default_value = "")]
    otel_endpoint: String,
    /// PEM certificate (chain) of the gRPC API; with `--grpc-tls-key-path`
    /// the API is served over TLS only. Reloaded on change or SIGHUP.
    #[arg(long, env = "TRELLIS_GRPC_TLS_CERT_PATH", default_value = "")]
    grpc_tls_cert_path: String,
    /// PEM private key of `--grpc-tls-cert-path`.
    #[arg(long, env = "TRELLIS_GRPC_TLS_KEY_PATH", default_value = "")]
    grpc_tls_key_path: String,
    /// PEM certificate (chain) of the dispatch peer port; with
    /// `--dispatch-cluster-tls-key-path` peers must dial it over TLS.
    #[arg(
        long,
        env = "TRELLIS_DISPATCH_CLUSTER_TLS_CERT_PATH",
        default_value = ""
    )]
    dispatch_cluster_tls_cert_path: String,
    /// PEM private key of `--dispatch-cluster-tls-cert-path`.
    #[arg(
        long,
        env = "TRELLIS_DISPATCH_CLUSTER_TLS_KEY_PATH",
        default_value = ""
    )]
    dispatch_cluster_tls_key_path: String,
    /// PEM certificate (chain) of the HTTP/JSON gateway; with
    /// `--http-tls-key-path` the gateway is served over TLS only (HTTP/2 and
    /// HTTP/1.1 by ALPN). Reloaded on change or SIGHUP.
    #[arg(long, env = "TRELLIS_HTTP_TLS_CERT_PATH", default_value = "")]
    http_tls_cert_path: String,
    /// PEM private key of `--http-tls-cert-path`.
    #[arg(long, env = "TRELLIS_HTTP_TLS_KEY_PATH", default_value = "")]
    http_tls_key_path: String,
    /// PEM CA certificate(s) peers' certificates are signed by: set, peers
    /// are dialed over TLS; empty, in plaintext.
    #[arg(long, env = "TRELLIS_DISPATCH_UPSTREAM_CA_PATH", default_value = "")]
    dispatch_upstream_ca_path: String,
    /// Largest request message accepted, in bytes (larger: OUT_OF_RANGE).
    #[arg(long, env = "TRELLIS_GRPC_MAX_MESSAGE_SIZE", default_value_t = DEFAULT_MAX_MESSAGE_SIZE)]
    grpc_max_message_size: usize,
    /// Calls the gRPC API handles at once; more are refused at once with
    /// RESOURCE_EXHAUSTED (health checks never are). 0: no limit.
    #[arg(long, env = "TRELLIS_GRPC_MAX_CONCURRENT_REQUESTS", default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS)]
    grpc_max_concurrent_requests: usize,
    /// Longest a call may run before DEADLINE_EXCEEDED, whatever deadline
    /// the client set (a client's shorter `grpc-timeout` always applies);
    /// `0`: no server maximum. Streams are timed until they start.
    #[arg(long, env = "TRELLIS_GRPC_MAX_REQUEST_DURATION", default_value = "0", value_parser = parse_duration)]
    grpc_max_request_duration: Duration,
}

impl OpsArgs {
    /// `--log-level` and `--log-format`.
    pub fn log_settings(&self) -> LogSettings {
        LogSettings {
            level: self.log_level.clone(),
            format: self.log_format,
            otel_endpoint: self.otel_endpoint.clone(),
        }
    }

    /// TLS of the public port, checked to be both files or neither.
    pub fn grpc_tls(&self) -> Result<Option<TlsFiles>, TlsError> {
        TlsFiles::from_flags(
            "grpc",
            Path::new(&self.grpc_tls_cert_path),
            Path::new(&self.grpc_tls_key_path),
        )
    }

    /// TLS of the dispatch peer port.
    pub fn dispatch_cluster_tls(&self) -> Result<Option<TlsFiles>, TlsError> {
        TlsFiles::from_flags(
            "dispatch-cluster",
            Path::new(&self.dispatch_cluster_tls_cert_path),
            Path::new(&self.dispatch_cluster_tls_key_path),
        )
    }

    /// TLS of the HTTP/JSON gateway.
    pub fn http_tls(&self) -> Result<Option<TlsFiles>, TlsError> {
        TlsFiles::from_flags(
            "http",
            Path::new(&self.http_tls_cert_path),
            Path::new(&self.http_tls_key_path),
        )
    }

    /// The CA peers are trusted by, read now so a bad path fails startup.
    pub fn dispatch_upstream_ca(&self) -> Result<Option<Vec<u8>>, TlsError> {
        let path = Path::new(&self.dispatch_upstream_ca_path);
        if path.as_os_str().is_empty() {
            return Ok(None);
        }
        read_ca(path, "--dispatch-upstream-ca-path").map(Some)
    }

    /// The public port's limits.
    pub fn grpc_limits(&self) -> GrpcLimits {
        GrpcLimits {
            max_message_size: self.grpc_max_message_size,
            max_concurrent_requests: self.grpc_max_concurrent_requests,
            max_request_duration: Some(self.grpc_max_request_duration).filter(|d| !d.is_zero()),
        }
    }
}
