//! Command-line commands: `serve`, `validate`, `schema check`,
//! `schema fmt`, `datastore migrate`, `bench generate|run|plan`, and the
//! zed-like client commands (`schema write|read`, `relationship …`,
//! `permission …`, `import`, `export`; their logic is `trellis::client`).
//! Every `serve` flag also reads `TRELLIS_<FLAG_NAME>`, and `serve --config
//! FILE` (`config_file`) sets any of them from a TOML file.

mod config_file;
mod ops_args;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use trellis::client::ClientCommand;
use trellis::config::{Config, DatastoreEngine, parse_addr, parse_duration, parse_optional_addr};
use trellis::datastore::memory::MemoryDatastore;
use trellis::datastore::postgres::{
    CockroachSettings, OverlapStrategy, PoolSettings, PostgresConfig, PostgresDatastore, redact_uri,
};
use trellis::datastore::proxy::Metered;
use trellis::datastore::{RevisionConfig, SystemClock, spawn_garbage_collector};
use trellis::dispatch::settings::{
    CacheCapacity, ClusterSettings, DispatchSettings, parse_upstreams,
};
use trellis::gateway::GatewaySettings;
use trellis::schema;
use trellis::service::WatchSettings;
use trellis::validationfile;

/// Trellis: a Zanzibar-style permission service, compatible with SpiceDB.
#[derive(Debug, Parser)]
#[command(name = "trellis", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the permission service (SpiceDB's gRPC API).
    Serve(Box<ServeArgs>),
    /// Run SpiceDB validation files (schema, relationships, assertions)
    /// in-process and report every failed assertion with its file and line.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Work with schema files, or a running server's schema.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Query and change a running server's relationships (as `zed
    /// relationship`).
    #[command(subcommand, visible_alias = "rel")]
    Relationship(trellis::client::RelationshipCommand),
    /// Ask a running server about permissions (as `zed permission`).
    #[command(subcommand, visible_alias = "perm")]
    Permission(trellis::client::PermissionCommand),
    /// Load a validation YAML (schema and relationships) or a file of
    /// relationships into a running server.
    Import(trellis::client::ImportArgs),
    /// Write a running server's schema and relationships as a validation
    /// YAML that `import` reads back.
    Export(trellis::client::ExportArgs),
    /// Manage the datastore (`trellis datastore migrate head`).
    #[command(subcommand)]
    Datastore(DatastoreCommand),
    /// Short for `trellis datastore migrate`.
    Migrate(MigrateArgs),
    /// Benchmark any SpiceDB-compatible server with the social network of
    /// AuthZed's 1M-QPS test.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum DatastoreCommand {
    /// Apply the datastore's migrations up to `head` (idempotent; safe to
    /// run from several pods at once).
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
struct MigrateArgs {
    /// The migration to reach; only `head` (every migration this binary
    /// knows) is supported.
    #[arg(default_value = "head")]
    target: String,
    /// Datastore engine.
    #[arg(long, env = "TRELLIS_DATASTORE_ENGINE", default_value = "postgres")]
    datastore_engine: DatastoreEngine,
    #[command(flatten)]
    connection: ConnectionArgs,
}

/// How to reach a SQL datastore (SpiceDB's flag names).
#[derive(Debug, Args)]
struct ConnectionArgs {
    /// Connection URI of the SQL datastore, e.g.
    /// `postgres://user:password@host:5432/trellis`.
    #[arg(
        long,
        env = "TRELLIS_DATASTORE_CONN_URI",
        default_value = "",
        hide_env_values = true
    )]
    datastore_conn_uri: String,
    /// Most connections the read pool opens.
    #[arg(
        long,
        env = "TRELLIS_DATASTORE_CONN_POOL_READ_MAX_OPEN",
        default_value_t = 20
    )]
    datastore_conn_pool_read_max_open: usize,
    /// A read connection older than this is closed when idle.
    #[arg(long, env = "TRELLIS_DATASTORE_CONN_POOL_READ_MAX_LIFETIME", default_value = "30m", value_parser = parse_duration)]
    datastore_conn_pool_read_max_lifetime: Duration,
    /// A read connection idle this long is closed.
    #[arg(long, env = "TRELLIS_DATASTORE_CONN_POOL_READ_MAX_IDLETIME", default_value = "30m", value_parser = parse_duration)]
    datastore_conn_pool_read_max_idletime: Duration,
    /// Most connections the write pool opens.
    #[arg(
        long,
        env = "TRELLIS_DATASTORE_CONN_POOL_WRITE_MAX_OPEN",
        default_value_t = 10
    )]
    datastore_conn_pool_write_max_open: usize,
    /// A write connection older than this is closed when idle.
    #[arg(long, env = "TRELLIS_DATASTORE_CONN_POOL_WRITE_MAX_LIFETIME", default_value = "30m", value_parser = parse_duration)]
    datastore_conn_pool_write_max_lifetime: Duration,
    /// A write connection idle this long is closed.
    #[arg(long, env = "TRELLIS_DATASTORE_CONN_POOL_WRITE_MAX_IDLETIME", default_value = "30m", value_parser = parse_duration)]
    datastore_conn_pool_write_max_idletime: Duration,
    /// How long connecting, or waiting for a pooled connection, may take
    /// before a call fails with UNAVAILABLE.
    #[arg(long, env = "TRELLIS_DATASTORE_CONNECT_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    datastore_connect_timeout: Duration,
}

impl ConnectionArgs {
    /// The SQL datastore's configuration, in the engine's dialect.
    fn postgres(&self, cockroach: Option<CockroachSettings>) -> PostgresConfig {
        PostgresConfig {
            cockroach,
            uri: self.datastore_conn_uri.clone(),
            read_pool: PoolSettings {
                max_open: self.datastore_conn_pool_read_max_open,
                max_lifetime: self.datastore_conn_pool_read_max_lifetime,
                max_idle: self.datastore_conn_pool_read_max_idletime,
            },
            write_pool: PoolSettings {
                max_open: self.datastore_conn_pool_write_max_open,
                max_lifetime: self.datastore_conn_pool_write_max_lifetime,
                max_idle: self.datastore_conn_pool_write_max_idletime,
            },
            connect_timeout: self.datastore_connect_timeout,
        }
    }
}

/// CockroachDB's own flags (SpiceDB's names and defaults); ignored by the
/// other engines.
#[derive(Debug, Args)]
struct CockroachArgs {
    /// How far behind now the optimized revision and the change feed (so
    /// Watch) read on CockroachDB, so follower replicas can serve them.
    #[arg(long, env = "TRELLIS_DATASTORE_FOLLOWER_READ_DELAY_DURATION", default_value = "4.8s", value_parser = parse_duration)]
    datastore_follower_read_delay_duration: Duration,
    /// How CockroachDB writes are made to overlap for new-enemy safety:
    /// `static` (one shared key), `prefix` (one key per object type
    /// prefix), `insecure` (none). `request` is not supported yet.
    #[arg(
        long,
        env = "TRELLIS_DATASTORE_TX_OVERLAP_STRATEGY",
        default_value = "static"
    )]
    datastore_tx_overlap_strategy: String,
    /// The overlap key of the `static` strategy (and of unprefixed types
    /// under `prefix`).
    #[arg(long, env = "TRELLIS_DATASTORE_TX_OVERLAP_KEY", default_value = "key")]
    datastore_tx_overlap_key: String,
    /// Retries of a CockroachDB write that lost a serialization race.
    #[arg(long, env = "TRELLIS_DATASTORE_MAX_TX_RETRIES", default_value_t = 10)]
    datastore_max_tx_retries: u32,
}

impl CockroachArgs {
    fn settings(&self) -> anyhow::Result<CockroachSettings> {
        Ok(CockroachSettings {
            follower_read_delay: self.datastore_follower_read_delay_duration,
            overlap: OverlapStrategy::parse(
                &self.datastore_tx_overlap_strategy,
                &self.datastore_tx_overlap_key,
            )
            .map_err(anyhow::Error::msg)?,
            max_tx_retries: self.datastore_max_tx_retries,
        })
    }
}

/// `trellis serve` flags, named as SpiceDB names them.
#[derive(Debug, Args)]
struct ServeArgs {
    /// A TOML file of `serve` settings, keyed by flag name without `--`
    /// (see config/reference.toml); flags and `TRELLIS_*` variables win
    /// over it.
    #[arg(long, env = "TRELLIS_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    ops: ops_args::OpsArgs,
    /// Address of the gRPC API (`:PORT` listens on every interface).
    #[arg(long, env = "TRELLIS_GRPC_ADDR", default_value = ":50051", value_parser = parse_addr)]
    grpc_addr: SocketAddr,
    /// Address of the Prometheus `/metrics` endpoint; empty disables it.
    #[arg(long, env = "TRELLIS_METRICS_ADDR", default_value = ":9090")]
    metrics_addr: String,
    /// Serve the HTTP/JSON gateway (SpiceDB's REST paths) on `--http-addr`.
    #[arg(
        long,
        env = "TRELLIS_HTTP_ENABLED",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    http_enabled: bool,
    /// Address of the HTTP/JSON gateway.
    #[arg(long, env = "TRELLIS_HTTP_ADDR", default_value = ":8443", value_parser = parse_addr)]
    http_addr: SocketAddr,
    /// Bearer token every call must present; repeat (or separate with
    /// commas) to accept several during rotation. Without it, no auth.
    #[arg(
        long = "grpc-preshared-key",
        env = "TRELLIS_GRPC_PRESHARED_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    grpc_preshared_key: Vec<String>,
    /// Datastore engine: `memory` (in this process; lost on exit),
    /// `postgres` or `cockroachdb` (need `--datastore-conn-uri` and a
    /// migrated database).
    #[arg(long, env = "TRELLIS_DATASTORE_ENGINE", default_value = "memory")]
    datastore_engine: DatastoreEngine,
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    cockroach: CockroachArgs,
    /// Width of the revision quantization window used by minimize_latency.
    #[arg(long, env = "TRELLIS_DATASTORE_REVISION_QUANTIZATION_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    datastore_revision_quantization_interval: Duration,
    /// Share of the window by which requests smear the hand-over (0 to 1).
    #[arg(
        long,
        env = "TRELLIS_DATASTORE_REVISION_QUANTIZATION_MAX_STALENESS_PERCENT",
        default_value_t = 0.1
    )]
    datastore_revision_quantization_max_staleness_percent: f64,
    /// How long old revisions stay readable (older: OUT_OF_RANGE);
    /// `forever` keeps every revision.
    #[arg(long, env = "TRELLIS_DATASTORE_GC_WINDOW", default_value = "24h", value_parser = parse_retention)]
    datastore_gc_window: Duration,
    /// How often dead versions and expired relationships are reclaimed.
    #[arg(long, env = "TRELLIS_DATASTORE_GC_INTERVAL", default_value = "3m", value_parser = parse_duration)]
    datastore_gc_interval: Duration,
    /// Validation YAML or schema files to load at start (repeatable).
    #[arg(
        long = "datastore-bootstrap-files",
        env = "TRELLIS_DATASTORE_BOOTSTRAP_FILES",
        value_delimiter = ','
    )]
    datastore_bootstrap_files: Vec<PathBuf>,
    /// How long in-flight calls may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "TRELLIS_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    shutdown_grace: Duration,
    /// How often an idle Watch stream that asked for checkpoints gets one.
    #[arg(long, env = "TRELLIS_WATCH_API_HEARTBEAT", default_value = "1s", value_parser = parse_duration)]
    watch_api_heartbeat: Duration,
    /// Watch events buffered per stream for a slow reader.
    #[arg(
        long,
        env = "TRELLIS_DATASTORE_WATCH_BUFFER_LENGTH",
        default_value_t = 1024
    )]
    datastore_watch_buffer_length: usize,
    /// How long a Watch event may wait for room in a full buffer before the
    /// stream is disconnected (RESOURCE_EXHAUSTED).
    #[arg(long, env = "TRELLIS_DATASTORE_WATCH_BUFFER_WRITE_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    datastore_watch_buffer_write_timeout: Duration,
    /// Cache check subproblems (answers at one revision, reused by every
    /// request in the same quantization window).
    #[arg(
        long,
        env = "TRELLIS_DISPATCH_CACHE_ENABLED",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    dispatch_cache_enabled: bool,
    /// Most memory the subproblem cache may hold: bytes (`256MiB`, `1GiB`)
    /// or a share of the memory available to the process (`30%`).
    #[arg(long, env = "TRELLIS_DISPATCH_CACHE_MAX_COST", default_value = "30%")]
    dispatch_cache_max_cost: CacheCapacity,
    /// Serve the dispatch peer protocol to the other nodes of a cluster, on
    /// `--dispatch-cluster-addr` (never on the public port).
    #[arg(
        long,
        env = "TRELLIS_DISPATCH_CLUSTER_ENABLED",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    dispatch_cluster_enabled: bool,
    /// Address of the dispatch peer port.
    #[arg(long, env = "TRELLIS_DISPATCH_CLUSTER_ADDR", default_value = ":50053", value_parser = parse_addr)]
    dispatch_cluster_addr: SocketAddr,
    /// Bearer token peers present and expect on the dispatch port; defaults
    /// to the first `--grpc-preshared-key`.
    #[arg(
        long,
        env = "TRELLIS_DISPATCH_CLUSTER_PRESHARED_KEY",
        default_value = "",
        hide_env_values = true
    )]
    dispatch_cluster_preshared_key: String,
    /// The dispatch cluster's members, `host:port` of their peer ports or
    /// `dns:///NAME:PORT` (every address NAME resolves to, re-resolved),
    /// comma-separated (may include this node). Each subproblem goes to its
    /// owner on a consistent hashring of them; empty: evaluate everything here.
    #[arg(long, env = "TRELLIS_DISPATCH_UPSTREAM_ADDR", default_value = "")]
    dispatch_upstream_addr: String,
    /// Longest a peer may take to answer a subproblem before it is marked
    /// down and the subproblem is evaluated here.
    #[arg(long, env = "TRELLIS_DISPATCH_UPSTREAM_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    dispatch_upstream_timeout: Duration,
    /// Virtual nodes per member on the hashring.
    #[arg(
        long,
        env = "TRELLIS_DISPATCH_HASHRING_REPLICATION_FACTOR",
        default_value_t = 100
    )]
    dispatch_hashring_replication_factor: u16,
    /// How often `dns:///NAME:PORT` upstreams are resolved again; the ring
    /// is rebuilt only when the set of addresses changes.
    #[arg(long, env = "TRELLIS_DISPATCH_UPSTREAM_REFRESH_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    dispatch_upstream_refresh_interval: Duration,
}

impl ServeArgs {
    fn config(self) -> anyhow::Result<Config> {
        let staleness = self.datastore_revision_quantization_max_staleness_percent;
        anyhow::ensure!(
            (0.0..=1.0).contains(&staleness),
            "--datastore-revision-quantization-max-staleness-percent must be between 0 and 1, got {staleness}"
        );
        // Parsed for every engine, so a bad flag fails at startup.
        let cockroach = self.cockroach.settings()?;
        let cockroach = (self.datastore_engine == DatastoreEngine::Cockroach).then_some(cockroach);
        Ok(Config {
            grpc_addr: self.grpc_addr,
            metrics_addr: parse_optional_addr(&self.metrics_addr)
                .map_err(|e| anyhow::anyhow!("--metrics-addr: {e}"))?,
            datastore_engine: self.datastore_engine,
            postgres: self.connection.postgres(cockroach),
            revisions: RevisionConfig {
                quantization: self.datastore_revision_quantization_interval,
                max_staleness_percent: (staleness * 100.0).round() as u32,
                gc_window: self.datastore_gc_window,
            },
            bootstrap_files: self.datastore_bootstrap_files,
            shutdown_grace: self.shutdown_grace,
            gc_interval: self.datastore_gc_interval,
            watch: WatchSettings {
                heartbeat: self.watch_api_heartbeat,
                buffer_length: self.datastore_watch_buffer_length,
                buffer_write_timeout: self.datastore_watch_buffer_write_timeout,
            },
            gateway: GatewaySettings {
                enabled: self.http_enabled,
                addr: self.http_addr,
            },
            dispatch: DispatchSettings {
                cache_enabled: self.dispatch_cache_enabled,
                cache_max_cost: self.dispatch_cache_max_cost,
                cluster: ClusterSettings {
                    enabled: self.dispatch_cluster_enabled,
                    addr: self.dispatch_cluster_addr,
                    preshared_key: cluster_key(
                        &self.dispatch_cluster_preshared_key,
                        &self.grpc_preshared_key,
                    ),
                    upstreams: parse_upstreams(&self.dispatch_upstream_addr),
                    self_addr: None,
                    upstream_timeout: self.dispatch_upstream_timeout,
                    replication_factor: self.dispatch_hashring_replication_factor,
                    refresh_interval: self.dispatch_upstream_refresh_interval,
                    upstream_ca: self.ops.dispatch_upstream_ca()?,
                },
            },
            preshared_keys: self.grpc_preshared_key,
            grpc_tls: self.ops.grpc_tls()?,
            dispatch_cluster_tls: self.ops.dispatch_cluster_tls()?,
            http_tls: self.ops.http_tls()?,
            grpc_limits: self.ops.grpc_limits(),
        })
    }
}

/// The dispatch cluster's key: its own flag, else the first public key.
fn cluster_key(own: &str, public: &[String]) -> Option<String> {
    Some(own)
        .filter(|k| !k.is_empty())
        .or_else(|| public.iter().map(String::as_str).find(|k| !k.is_empty()))
        .map(str::to_string)
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Compile schema files (`.zed`, or validation `.yaml` files) and report
    /// every error with its position. Exits 1 if any file has errors.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a schema in canonical form (SpiceDB's ReadSchema format).
    Fmt { file: PathBuf },
    #[command(flatten)]
    Remote(trellis::client::RemoteSchemaCommand),
}

impl Cli {
    /// Parses the process's arguments, reading `serve --config FILE` first.
    pub fn parse_with_config_file() -> anyhow::Result<Self> {
        Ok(config_file::parse(std::env::args_os().collect())?)
    }

    /// How to log: `serve`'s `--log-level`/`--log-format`; the other
    /// commands log at `RUST_LOG` (default `info`) as text.
    pub fn log_settings(&self) -> trellis::telemetry::LogSettings {
        match &self.command {
            Command::Serve(args) => args.ops.log_settings(),
            _ => trellis::telemetry::LogSettings {
                level: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                ..trellis::telemetry::LogSettings::default()
            },
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args.config()?).await,
        Command::Validate { files } => validate(&files).await,
        Command::Schema(SchemaCommand::Check { files }) => check(&files),
        Command::Schema(SchemaCommand::Fmt { file }) => fmt(&file),
        Command::Datastore(DatastoreCommand::Migrate(args)) | Command::Migrate(args) => {
            migrate(args).await
        }
        Command::Bench(command) => bench(command).await,
        Command::Schema(SchemaCommand::Remote(command)) => {
            client(ClientCommand::Schema(command)).await
        }
        Command::Relationship(command) => client(ClientCommand::Relationship(command)).await,
        Command::Permission(command) => client(ClientCommand::Permission(command)).await,
        Command::Import(args) => client(ClientCommand::Import(args)).await,
        Command::Export(args) => client(ClientCommand::Export(args)).await,
    }
}

async fn client(command: ClientCommand) -> anyhow::Result<ExitCode> {
    Ok(trellis::client::run(command).await?)
}

/// A GC window: a duration, or `forever`.
fn parse_retention(text: &str) -> Result<Duration, String> {
    if text == "forever" {
        return Ok(Duration::MAX);
    }
    parse_duration(text)
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.target == "head",
        "unknown migration target `{}`: only `head` is supported",
        args.target
    );
    anyhow::ensure!(
        args.datastore_engine.is_sql(),
        "the {:?} datastore has no migrations",
        args.datastore_engine
    );
    // Migrations depend on the dialect only, not on CockroachDB's settings.
    let cockroach =
        (args.datastore_engine == DatastoreEngine::Cockroach).then(CockroachSettings::default);
    let config = args.connection.postgres(cockroach);
    anyhow::ensure!(
        !config.uri.is_empty(),
        "--datastore-conn-uri is required to migrate"
    );
    let report = PostgresDatastore::migrate(&config)
        .await
        .with_context(|| format!("migrating {}", redact_uri(&config.uri)))?;
    if report.applied.is_empty() {
        println!("already at head (migration {})", report.version);
    } else {
        for name in &report.applied {
            println!("applied {name}");
        }
        println!("now at head (migration {})", report.version);
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("binding the gRPC address {}", config.grpc_addr))?;
    match config.datastore_engine {
        DatastoreEngine::Memory => {
            let datastore = Arc::new(MemoryDatastore::new(
                config.revisions,
                Arc::new(SystemClock),
            ));
            let collector = spawn_garbage_collector(Arc::downgrade(&datastore), config.gc_interval);
            let result = trellis::server::run(
                datastore,
                config,
                listener,
                trellis::server::shutdown_signal(),
            )
            .await;
            collector.abort();
            result?;
        }
        DatastoreEngine::Postgres | DatastoreEngine::Cockroach => {
            anyhow::ensure!(
                !config.postgres.uri.is_empty(),
                "--datastore-conn-uri is required with --datastore-engine {}",
                config.postgres.dialect().engine()
            );
            // Opened without touching the database: until it is reachable
            // and migrated, health reports NOT_SERVING and calls fail with
            // UNAVAILABLE or FAILED_PRECONDITION, and service starts by
            // itself once it is.
            let datastore = Arc::new(Metered::new(PostgresDatastore::open(
                &config.postgres,
                config.revisions,
                Arc::new(SystemClock),
            )?));
            let collector = spawn_garbage_collector(Arc::downgrade(&datastore), config.gc_interval);
            let reaper = datastore.inner().spawn_pool_maintenance(&config.postgres);
            let result = trellis::server::run(
                datastore,
                config,
                listener,
                trellis::server::shutdown_signal(),
            )
            .await;
            collector.abort();
            reaper.abort();
            result?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Each file runs against its own fresh in-memory datastore.
async fn validate(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut failed_files = 0;
    for path in files {
        let loaded = match validationfile::load(path) {
            Ok(loaded) => loaded,
            Err(e) => {
                eprintln!("{e}");
                failed_files += 1;
                continue;
            }
        };
        let report = trellis::server::validate_in_memory(&loaded).await;
        if report.failures.is_empty() {
            println!(
                "{}: ok ({} assertions)",
                path.display(),
                report.assertions_passed
            );
        } else {
            failed_files += 1;
            for failure in &report.failures {
                eprintln!("{failure}");
            }
            eprintln!(
                "{}: {} assertions passed, {} failed",
                path.display(),
                report.assertions_passed,
                report.failures.len()
            );
        }
    }
    if failed_files > 0 {
        eprintln!("{failed_files} of {} files failed validation", files.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// A schema's text and the name to report errors under.
fn read_schema(path: &Path) -> anyhow::Result<(String, String)> {
    if validationfile::is_validation_file(path) {
        let loaded = validationfile::load(path)?;
        let label = if loaded.schema_path == path {
            format!("{} (schema block)", path.display())
        } else {
            loaded.schema_path.display().to_string()
        };
        return Ok((loaded.schema, label));
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok((text, path.display().to_string()))
}

fn check(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut failed = 0;
    for path in files {
        let (source, label) = read_schema(path)?;
        match schema::compile(&source) {
            Ok(compiled) => println!(
                "{label}: ok ({} definitions, {} caveats)",
                compiled.definitions().len(),
                compiled.caveats().len()
            ),
            Err(errors) => {
                failed += 1;
                eprint!("{}", errors.render(&label, &source));
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} files have errors", files.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt(path: &Path) -> anyhow::Result<ExitCode> {
    let (source, label) = read_schema(path)?;
    match schema::compile(&source) {
        Ok(compiled) => {
            println!("{}", schema::format(&compiled));
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprint!("{}", errors.render(&label, &source));
            Ok(ExitCode::FAILURE)
        }
    }
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Write the social-network schema and load a generated network.
    Generate(GenerateArgs),
    /// Drive the server with the test's request mix and report latency,
    /// answers, errors and server CPU against a health-call floor.
    Run(RunArgs),
    /// Print the checks `run` asks (its first worker's), one per line as
    /// `kind<TAB>resource#permission@subject`, for other drivers.
    Plan(PlanArgs),
}

/// The server to talk to (plain `authzed.api.v1`).
#[derive(Debug, Args)]
struct TargetArgs {
    /// The server's gRPC address, `HOST:PORT`.
    #[arg(long, default_value = "localhost:50051")]
    endpoint: String,
    /// The preshared key (sent as `authorization: Bearer TOKEN`).
    #[arg(long, env = "TRELLIS_BENCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Plaintext connection, as `zed --insecure`: the benchmark's default
    /// (TLS only for an `https://` endpoint), accepted so zed's flags work.
    #[arg(long)]
    insecure: bool,
}

impl TargetArgs {
    fn target(&self) -> trellis::loadgen::Target {
        trellis::loadgen::Target {
            endpoint: self.endpoint.clone(),
            token: self.token.clone(),
            transport: trellis::loadgen::Transport::Plaintext,
        }
    }
}

/// Which network: its size and seed. `run` and `plan` must be given
/// `generate`'s, since they fix the ids the requests name.
#[derive(Debug, Args)]
struct NetworkArgs {
    /// About how many relationships the network has.
    #[arg(long, default_value_t = 100_000)]
    relationships: usize,
    /// Seed of the generator (same seed, same network).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Via {
    /// One ImportBulkRelationships stream (the server must not hold them yet).
    Import,
    /// WriteRelationships calls of 1,000 TOUCH updates each.
    Write,
}

#[derive(Debug, Args)]
struct GenerateArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    network: NetworkArgs,
    /// The RPC that loads the relationships.
    #[arg(long, value_enum, default_value = "import")]
    via: Via,
    /// Write the relationships to FILE (one per line) instead of loading them.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    network: NetworkArgs,
    /// Share of the user pool that asks the checks, drawn uniformly.
    #[arg(long, default_value_t = 0.01)]
    sample: f64,
    /// Share of requests that are writes (a TOUCH of one follow).
    #[arg(long, default_value_t = 0.01)]
    write_share: f64,
    /// Share of requests that are lookups: LookupResources content#view for
    /// a sampled user, one page of 100 (the seed's test has none).
    #[arg(long, default_value_t = 0.0)]
    lookup_share: f64,
    /// Closed loop: this many requests in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Open loop instead: this many requests per second on a fixed schedule
    /// (latency counted from each request's intended send time).
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: most requests outstanding; beyond it sends wait (and the
    /// wait counts as latency).
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// HTTP/2 connections to spread the requests over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Unmeasured warm-up before the measured mix.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    warmup: Duration,
    /// How long the mix is measured.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    duration: Duration,
    /// How long the floor (grpc.health.v1 Health/Check only) is measured.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    floor_duration: Duration,
    /// The server's process id on this machine: its CPU time is read from
    /// /proc before and after each phase.
    #[arg(long)]
    server_pid: Option<u32>,
    /// How long to wait for the loaded data to show at minimize_latency.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    visible_timeout: Duration,
    /// Write the full report as JSON here.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Write the latency-distribution plot (SVG) here.
    #[arg(long)]
    plot_out: Option<PathBuf>,
}

impl RunArgs {
    fn config(&self) -> anyhow::Result<trellis::loadgen::RunConfig> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.sample) && self.sample > 0.0,
            "--sample must be in (0, 1], got {}",
            self.sample
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.write_share),
            "--write-share must be in [0, 1], got {}",
            self.write_share
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.lookup_share),
            "--lookup-share must be in [0, 1], got {}",
            self.lookup_share
        );
        let pace = match self.rate {
            Some(rate) => {
                anyhow::ensure!(rate > 0.0, "--rate must be positive, got {rate}");
                trellis::loadgen::Pace::Open {
                    rate,
                    max_in_flight: self.max_in_flight,
                }
            }
            None => trellis::loadgen::Pace::Closed {
                concurrency: self.concurrency.max(1),
            },
        };
        Ok(trellis::loadgen::RunConfig {
            relationships: self.network.relationships,
            seed: self.network.seed,
            sample: self.sample,
            write_share: self.write_share,
            lookup_share: self.lookup_share,
            pace,
            warmup: self.warmup,
            duration: self.duration,
            floor_duration: self.floor_duration,
            server_pid: self.server_pid,
            visible_timeout: self.visible_timeout,
            endpoint: self.target.endpoint.clone(),
        })
    }
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    network: NetworkArgs,
    /// Share of the user pool that asks the checks (as `run --sample`).
    #[arg(long, default_value_t = 0.01)]
    sample: f64,
    /// How many checks.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
}

async fn bench(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Generate(args) => bench_generate(args).await,
        BenchCommand::Run(args) => bench_run(args).await,
        BenchCommand::Plan(args) => {
            let shape =
                trellis::workload::SocialShape::for_relationships(args.network.relationships);
            for line in
                trellis::loadgen::check_plan(shape, args.sample, args.network.seed, args.count)
            {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn bench_generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let relationships =
        trellis::workload::social_network(args.network.relationships, args.network.seed);
    if let Some(out) = &args.out {
        trellis::loadgen::write_relationships_file(out, &relationships)?;
        eprintln!(
            "{} relationships written to {}",
            relationships.len(),
            out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let connection = trellis::loadgen::Connection::open(&args.target.target(), 1).await?;
    let progress = loading_bar();
    let via = match args.via {
        Via::Import => trellis::loadgen::LoadVia::Import,
        Via::Write => trellis::loadgen::LoadVia::Write,
    };
    let loaded = trellis::loadgen::generate(&connection, &relationships, via, &progress).await;
    progress.finish_and_clear();
    let loaded = loaded.with_context(|| format!("loading into {}", args.target.endpoint))?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{loaded} relationships loaded into {} in {seconds:.1} s ({:.0}/s), with schema-examples/social-network.zed",
        args.target.endpoint,
        loaded as f64 / seconds
    );
    Ok(ExitCode::SUCCESS)
}

/// A bar on stderr (hidden when stderr is not a terminal, by indicatif).
fn loading_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} relationships, {per_sec}, eta {eta}",
    )
    .expect("a constant, valid template");
    bar.set_style(style);
    bar
}

async fn bench_run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    let connection =
        trellis::loadgen::Connection::open(&args.target.target(), args.connections).await?;
    let report = trellis::loadgen::run(&connection, &config).await?;
    print!("{}", report.summary());
    if let Some(path) = &args.json_out {
        std::fs::write(path, report.to_json())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot_out {
        let title = format!(
            "trellis bench run: {} relationships, {}",
            config.relationships, report.pace
        );
        let svg = trellis::loadgen::latency_svg(&title, &report.curves());
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
