//! A throwaway PostgreSQL 15 cluster for the tests of one test binary:
//! initialised in a temporary folder, run on a free loopback port (as the
//! `postgres` user when the tests run as root, since PostgreSQL refuses
//! root), and stopped and removed by a watchdog once the test process ends.
//! Each test gets a database of its own. Included by path
//! (`#[path = "common/postgres.rs"] mod postgres;`) where needed.
//!
//! Without the server binaries (`TRELLIS_PG_BIN`, default
//! `/usr/lib/postgresql/15/bin`) the tests that need it skip with a message.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::sync::Arc;

use trellis::datastore::postgres::{PoolSettings, PostgresConfig, PostgresDatastore};
use trellis::datastore::{Clock, RevisionConfig, SystemClock};

/// A running cluster.
pub struct Cluster {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    root: PathBuf,
    as_postgres: bool,
}

static SHARED: OnceLock<Option<Cluster>> = OnceLock::new();
static NEXT_DATABASE: AtomicUsize = AtomicUsize::new(0);

/// The cluster this test binary shares, started on first use; `None` (after
/// printing why) when PostgreSQL is not installed.
pub fn shared() -> Option<&'static Cluster> {
    SHARED
        .get_or_init(|| match Cluster::start() {
            Ok(cluster) => Some(cluster),
            Err(why) => {
                eprintln!("skipping PostgreSQL tests: {why}");
                None
            }
        })
        .as_ref()
}

fn server_binaries() -> Result<PathBuf, String> {
    let bin = PathBuf::from(
        std::env::var("TRELLIS_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
    );
    if bin.join("postgres").exists() && bin.join("initdb").exists() {
        Ok(bin)
    } else {
        Err(format!(
            "no PostgreSQL server binaries in {}",
            bin.display()
        ))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Cluster {
    /// Initialises and starts a new cluster (fsync off: test data only).
    pub fn start() -> Result<Cluster, String> {
        let bin = server_binaries()?;
        let root = std::env::temp_dir().join(format!(
            "trellis-pg-{}-{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown").args(["postgres:postgres"]).arg(&root))?;
        }
        let cluster = Cluster {
            port: free_port(),
            data: root.join("data"),
            bin,
            root,
            as_postgres,
        };
        cluster.pg(
            "initdb",
            &[
                "-D",
                &cluster.data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        cluster.resume()?;
        cluster.watch_parent()?;
        Ok(cluster)
    }

    /// Runs a server binary, as `postgres` when we are root.
    fn pg(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        run(command.args(args).current_dir(&self.root))
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn resume(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c full_page_writes=off -c max_connections=400",
            self.port,
            self.root.display()
        );
        let log = self.root.join("server.log");
        self.pg(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                &self.data.to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &options,
            ],
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err("PostgreSQL did not accept connections within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops the server the hard way (no checkpoint, connections cut), as a
    /// crash would.
    pub fn stop_immediately(&self) -> Result<(), String> {
        self.pg(
            "pg_ctl",
            &[
                "stop",
                "-m",
                "immediate",
                "-D",
                &self.data.to_string_lossy(),
            ],
        )
    }

    /// Stops the server and removes its folder once this process has ended.
    fn watch_parent(&self) -> Result<(), String> {
        let script = format!(
            "while [ -d /proc/{parent} ]; do sleep 1; done; \
             {pg_ctl} stop -m immediate -D {data} >/dev/null 2>&1; rm -rf {root}",
            parent = std::process::id(),
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data.display(),
            root = self.root.display(),
        );
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "setsid", "sh", "-c", &script]);
            c
        } else {
            let mut c = Command::new("setsid");
            c.args(["sh", "-c", &script]);
            c
        };
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map(|_| ())
            .map_err(|e| format!("starting the cluster watchdog: {e}"))
    }

    pub fn uri(&self, database: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={database}",
            self.port
        )
    }

    /// Creates an empty database and returns a datastore config for it
    /// (small pools: many tests run at once).
    pub async fn fresh_database(&self) -> PostgresConfig {
        let name = format!("t{}", NEXT_DATABASE.fetch_add(1, Ordering::Relaxed));
        create_database(&self.uri("postgres"), &name).await;
        self.config(&name)
    }

    /// A fresh, migrated database and a datastore connected to it, reading
    /// time from `clock` with revision settings `revisions`.
    pub async fn migrated_datastore(
        &self,
        revisions: RevisionConfig,
        clock: Arc<dyn Clock>,
    ) -> (PostgresConfig, PostgresDatastore) {
        let pg = self.fresh_database().await;
        PostgresDatastore::migrate(&pg).await.expect("migrate");
        let datastore = PostgresDatastore::connect(&pg, revisions, clock)
            .await
            .expect("connect");
        (pg, datastore)
    }

    /// A fresh, migrated database with default settings and the system clock.
    pub async fn default_datastore(&self) -> (PostgresConfig, PostgresDatastore) {
        self.migrated_datastore(RevisionConfig::default(), Arc::new(SystemClock))
            .await
    }

    /// A datastore config for `database`.
    pub fn config(&self, database: &str) -> PostgresConfig {
        let small = |max_open| PoolSettings {
            max_open,
            max_lifetime: Duration::from_secs(1800),
            max_idle: Duration::from_secs(1800),
        };
        PostgresConfig {
            uri: self.uri(database),
            read_pool: small(4),
            write_pool: small(2),
            connect_timeout: Duration::from_secs(2),
            cockroach: None,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("running {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Creates the database `name` through a connection to `url` (PostgreSQL
/// or CockroachDB, which speaks the same protocol).
pub async fn create_database(url: &str, name: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to create a test database");
    let task = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    drop(client);
    let _ = task.await;
}
