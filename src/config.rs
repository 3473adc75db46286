//! Server configuration: one typed `Config` with SpiceDB's defaults, built
//! from flags (each with a `TRELLIS_<FLAG>` environment variable, or a
//! `--config` file) by the CLI. Secrets are redacted from `Debug` output.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::api::limits::GrpcLimits;
use crate::datastore::RevisionConfig;
use crate::datastore::postgres::PostgresConfig;
use crate::dispatch::settings::DispatchSettings;
use crate::gateway::GatewaySettings;
use crate::service::WatchSettings;
use crate::tls::TlsFiles;

/// Which datastore engine to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DatastoreEngine {
    #[default]
    Memory,
    Postgres,
    /// The SQL datastore in its CockroachDB dialect.
    Cockroach,
}

impl DatastoreEngine {
    /// Whether the engine is a SQL database (`--datastore-conn-uri`,
    /// migrations).
    pub fn is_sql(self) -> bool {
        matches!(self, DatastoreEngine::Postgres | DatastoreEngine::Cockroach)
    }
}

impl std::str::FromStr for DatastoreEngine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "memory" => Ok(DatastoreEngine::Memory),
            "postgres" => Ok(DatastoreEngine::Postgres),
            "cockroachdb" => Ok(DatastoreEngine::Cockroach),
            other => Err(format!(
                "unknown datastore engine `{other}`; available: memory, postgres, cockroachdb"
            )),
        }
    }
}

/// Everything `trellis serve` needs.
#[derive(Clone)]
pub struct Config {
    pub grpc_addr: SocketAddr,
    /// Where `GET /metrics` is served; `None` disables it. `trellis serve`
    /// defaults to SpiceDB's `:9090`; the default `Config` leaves it off so
    /// that a program (or test) starting several servers does not have
    /// them fight over one port.
    pub metrics_addr: Option<SocketAddr>,
    /// Accepted bearer tokens; empty means no authentication.
    pub preshared_keys: Vec<String>,
    pub datastore_engine: DatastoreEngine,
    /// Connection and pools of the SQL engines (PostgreSQL, CockroachDB;
    /// `postgres.cockroach` holds CockroachDB's own settings).
    pub postgres: PostgresConfig,
    pub revisions: RevisionConfig,
    /// Validation YAML or schema files loaded at start.
    pub bootstrap_files: Vec<PathBuf>,
    /// How long in-flight calls may take to finish after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// How often the datastore reclaims dead versions.
    pub gc_interval: Duration,
    /// Watch heartbeat and per-stream buffering.
    pub watch: WatchSettings,
    /// The subproblem cache (`--dispatch-cache-*`).
    pub dispatch: DispatchSettings,
    /// The HTTP/JSON gateway (`--http-enabled`, `--http-addr`).
    pub gateway: GatewaySettings,
    /// TLS on the public gRPC port (`--grpc-tls-*`); `None`: plaintext.
    pub grpc_tls: Option<TlsFiles>,
    /// TLS on the dispatch peer port (`--dispatch-cluster-tls-*`).
    pub dispatch_cluster_tls: Option<TlsFiles>,
    /// TLS on the HTTP/JSON gateway (`--http-tls-*`); `None`: plaintext.
    pub http_tls: Option<TlsFiles>,
    /// Message size, deadline and concurrency limits of the public port.
    pub grpc_limits: GrpcLimits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 50051)),
            metrics_addr: None,
            preshared_keys: Vec::new(),
            datastore_engine: DatastoreEngine::Memory,
            postgres: PostgresConfig::default(),
            revisions: RevisionConfig::default(),
            bootstrap_files: Vec::new(),
            shutdown_grace: Duration::from_secs(30),
            gc_interval: Duration::from_secs(180),
            watch: WatchSettings::default(),
            dispatch: DispatchSettings::default(),
            gateway: GatewaySettings::default(),
            grpc_tls: None,
            dispatch_cluster_tls: None,
            http_tls: None,
            grpc_limits: GrpcLimits::default(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("grpc_addr", &self.grpc_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field(
                "preshared_keys",
                &format_args!("[{} redacted]", self.preshared_keys.len()),
            )
            .field("datastore_engine", &self.datastore_engine)
            .field("postgres", &self.postgres)
            .field("revisions", &self.revisions)
            .field("bootstrap_files", &self.bootstrap_files)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("gc_interval", &self.gc_interval)
            .field("watch", &self.watch)
            .field("dispatch", &self.dispatch)
            .field("gateway", &self.gateway)
            .field("grpc_tls", &self.grpc_tls)
            .field("dispatch_cluster_tls", &self.dispatch_cluster_tls)
            .field("http_tls", &self.http_tls)
            .field("grpc_limits", &self.grpc_limits)
            .finish()
    }
}

/// Parses an address as SpiceDB writes them: `:50051` means every
/// interface; `host:port` as usual.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_string()
    };
    full.parse()
        .map_err(|_| format!("invalid address `{text}`: expected `host:port` or `:port`"))
}

/// Parses an optional address: empty disables the listener, anything else
/// is read as `parse_addr` reads it.
pub fn parse_optional_addr(text: &str) -> Result<Option<SocketAddr>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    parse_addr(text).map(Some)
}

/// Parses a Go-style duration: `5s`, `1h30m`, `250ms`, `24h`, `0`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration `{text}`: expected e.g. `5s`, `1h30m` or `250ms`");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| bad())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "5x", "s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn engines() {
        assert_eq!("cockroachdb".parse(), Ok(DatastoreEngine::Cockroach));
        assert_eq!("postgres".parse(), Ok(DatastoreEngine::Postgres));
        assert!(DatastoreEngine::Cockroach.is_sql());
        assert!(!DatastoreEngine::Memory.is_sql());
        let unknown = "mysql".parse::<DatastoreEngine>().expect_err("unknown");
        assert!(unknown.contains("cockroachdb"), "{unknown}");
    }

    #[test]
    fn addresses_and_redaction() {
        assert_eq!(
            parse_addr(":50051"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 50051)))
        );
        assert_eq!(
            parse_addr("127.0.0.1:1"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 1)))
        );
        assert!(parse_addr("nonsense").is_err());
        assert_eq!(parse_optional_addr(""), Ok(None));
        assert_eq!(
            parse_optional_addr(":9090"),
            Ok(Some(SocketAddr::from(([0, 0, 0, 0], 9090))))
        );
        assert!(parse_optional_addr("nonsense").is_err());
        let config = Config {
            preshared_keys: vec!["hunter2".into()],
            postgres: PostgresConfig {
                uri: "postgres://trellis:s3cret@db:5432/trellis".into(),
                ..PostgresConfig::default()
            },
            ..Config::default()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"));
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("db:5432"), "{printed}");
    }
}
