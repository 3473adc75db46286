//! Command-line commands: `serve`, `validate`, `schema check` and
//! `schema fmt`. Every `serve` flag also reads `TRELLIS_<FLAG_NAME>`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use trellis::config::{Config, DatastoreEngine, parse_addr, parse_duration, parse_optional_addr};
use trellis::datastore::memory::MemoryDatastore;
use trellis::datastore::{RevisionConfig, SystemClock};
use trellis::dispatch::settings::{CacheCapacity, DispatchSettings};
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
    /// Work with schema files.
    #[command(subcommand)]
    Schema(SchemaCommand),
}

/// `trellis serve` flags, named as SpiceDB names them.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Address of the gRPC API (`:PORT` listens on every interface).
    #[arg(long, env = "TRELLIS_GRPC_ADDR", default_value = ":50051", value_parser = parse_addr)]
    grpc_addr: SocketAddr,
    /// Address of the Prometheus `/metrics` endpoint; empty disables it.
    #[arg(long, env = "TRELLIS_METRICS_ADDR", default_value = ":9090")]
    metrics_addr: String,
    /// Bearer token every call must present; repeat (or separate with
    /// commas) to accept several during rotation. Without it, no auth.
    #[arg(
        long = "grpc-preshared-key",
        env = "TRELLIS_GRPC_PRESHARED_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    grpc_preshared_key: Vec<String>,
    /// Datastore engine.
    #[arg(long, env = "TRELLIS_DATASTORE_ENGINE", default_value = "memory")]
    datastore_engine: DatastoreEngine,
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
    /// How long old revisions stay readable (older: OUT_OF_RANGE).
    #[arg(long, env = "TRELLIS_DATASTORE_GC_WINDOW", default_value = "24h", value_parser = parse_duration)]
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
}

impl ServeArgs {
    fn config(self) -> anyhow::Result<Config> {
        let staleness = self.datastore_revision_quantization_max_staleness_percent;
        anyhow::ensure!(
            (0.0..=1.0).contains(&staleness),
            "--datastore-revision-quantization-max-staleness-percent must be between 0 and 1, got {staleness}"
        );
        Ok(Config {
            grpc_addr: self.grpc_addr,
            metrics_addr: parse_optional_addr(&self.metrics_addr)
                .map_err(|e| anyhow::anyhow!("--metrics-addr: {e}"))?,
            preshared_keys: self.grpc_preshared_key,
            datastore_engine: self.datastore_engine,
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
            dispatch: DispatchSettings {
                cache_enabled: self.dispatch_cache_enabled,
                cache_max_cost: self.dispatch_cache_max_cost,
            },
        })
    }
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
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args.config()?).await,
        Command::Validate { files } => validate(&files).await,
        Command::Schema(SchemaCommand::Check { files }) => check(&files),
        Command::Schema(SchemaCommand::Fmt { file }) => fmt(&file),
    }
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
            let collector = datastore.spawn_garbage_collector(config.gc_interval);
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
