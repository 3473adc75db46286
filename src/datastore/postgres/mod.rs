//! Owns `PostgresDatastore`: the port's datastore on SQL through
//! tokio-postgres and deadpool-postgres (separate read and write pools),
//! with relationships versioned by revision in SQL, on PostgreSQL or, as a
//! dialect of the same code, CockroachDB (`dialect` holds every difference;
//! `revisions` CockroachDB's HLC revision policy). Depends on the port
//! (`datastore`) and `model` only.
//!
//! On PostgreSQL, revisions are a gap-free commit sequence kept in a one-row table whose
//! row lock every write transaction takes first (ARCHITECTURE.md, "PostgreSQL
//! revisions", has the argument). So: revision N+1 exists only after N has
//! committed; a reader at R sees exactly the rows with
//! `created_revision <= R < deleted_revision`, which no later commit can
//! change; commit order is revision order, which is real-time order
//! (new-enemy safety); and the change feed is a scan of consecutive
//! revisions that cannot skip one committed out of order.
//!
//! On CockroachDB, revisions are the write transactions' HLC commit
//! timestamps and reads run `AS OF SYSTEM TIME` (ARCHITECTURE.md,
//! "CockroachDB revisions").
//!
//! Layout: `sql` (statements built from filters, row decoding), `reader`
//! (`PostgresReader`), `write` (write transactions and COPY bulk loads),
//! `feed` (the change feed), `gc` (garbage collection), `migrate`
//! (embedded migrations), `error` (failures → `DatastoreError`).

pub mod dialect;
mod error;
mod feed;
mod gc;
pub mod migrate;
mod reader;
mod revisions;
mod sql;
mod write;

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

pub use dialect::{CockroachSettings, Dialect, OverlapStrategy};
pub use reader::PostgresReader;

use self::error::{from_pg, from_pool};
use self::sql::Rev;
use super::{
    Clock, Datastore, DatastoreError, DatastoreResult, RevisionChanges, RevisionConfig,
    TransactionMetadata, WriteBatch, WriteOutcome, window_start,
};
use crate::model::{Relationship, Revision};

/// Limits of one connection pool (SpiceDB's `--datastore-conn-pool-*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// `…-max-open`: connections at most.
    pub max_open: usize,
    /// `…-max-lifetime`: a connection older than this is closed when idle.
    pub max_lifetime: Duration,
    /// `…-max-idletime`: a connection unused this long is closed.
    pub max_idle: Duration,
}

impl PoolSettings {
    fn spicedb_default(max_open: usize) -> Self {
        Self {
            max_open,
            max_lifetime: Duration::from_secs(30 * 60),
            max_idle: Duration::from_secs(30 * 60),
        }
    }
}

/// How to reach PostgreSQL and how patiently.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `--datastore-conn-uri`: a libpq URI or key=value string.
    pub uri: String,
    pub read_pool: PoolSettings,
    pub write_pool: PoolSettings,
    /// How long opening a connection or waiting for a pooled one may take
    /// before the call fails with UNAVAILABLE (never an unbounded hang).
    pub connect_timeout: Duration,
    /// `Some`: the database is CockroachDB (`--datastore-engine
    /// cockroachdb`), with its settings; `None`: PostgreSQL.
    pub cockroach: Option<CockroachSettings>,
}

impl PostgresConfig {
    /// The SQL dialect this configuration speaks.
    pub fn dialect(&self) -> Dialect {
        match self.cockroach {
            Some(_) => Dialect::Cockroach,
            None => Dialect::Postgres,
        }
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            uri: String::new(),
            read_pool: PoolSettings::spicedb_default(20),
            write_pool: PoolSettings::spicedb_default(10),
            connect_timeout: Duration::from_secs(2),
            cockroach: None,
        }
    }
}

impl std::fmt::Debug for PostgresConfig {
    /// The URI may hold a password: only its host part is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("uri", &redact_uri(&self.uri))
            .field("read_pool", &self.read_pool)
            .field("write_pool", &self.write_pool)
            .field("connect_timeout", &self.connect_timeout)
            .field("cockroach", &self.cockroach)
            .finish()
    }
}

/// A connection URI with its user information hidden.
pub fn redact_uri(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://[redacted]@{}", &uri[..scheme], &uri[at + 1..])
        }
        _ if uri.contains("password") => "[redacted]".to_string(),
        _ => uri.to_string(),
    }
}

/// The SQL datastore (PostgreSQL or CockroachDB). Cloning shares the pools.
#[derive(Clone)]
pub struct PostgresDatastore {
    inner: Arc<Inner>,
}

struct Inner {
    read: Pool,
    write: Pool,
    config: RevisionConfig,
    clock: Arc<dyn Clock>,
    dialect: Dialect,
    /// CockroachDB's settings (defaults, unused, on PostgreSQL).
    cockroach: CockroachSettings,
    /// Write attempts before a serialization failure is final.
    max_attempts: u32,
    /// The database's id (`metadata.unique_id`), read once it is migrated.
    unique_id: OnceLock<String>,
    /// The newest revision this process has seen committed: a lower bound
    /// of head, so a revision at or below it needs no round trip to be
    /// known committed.
    known_head: Mutex<Rev>,
    /// PostgreSQL: the oldest readable revision seen lately and its commit
    /// time: while that time is inside the GC window, every revision from
    /// it on is readable too (commit times never decrease with revisions).
    oldest_readable: Mutex<Option<(Rev, SystemTime)>>,
    /// PostgreSQL: quantized revisions by window start: the newest revision
    /// committed by an instant in the past never changes, so each window
    /// costs one query (two around a smeared hand-over).
    optimized: Mutex<Vec<(SystemTime, Rev)>>,
    /// CockroachDB: the server's HLC as last read, and when, so the server
    /// time can be estimated without a round trip (`revisions`).
    server_clock: Mutex<Option<(Rev, Instant)>>,
    /// CockroachDB: this process's name as the GC lease holder.
    gc_holder: String,
    /// The newest schema seen and the revisions it is known to cover.
    schema: reader::SchemaMemo,
}

impl std::fmt::Debug for PostgresDatastore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDatastore")
            .field("unique_id", &self.unique_id())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl PostgresDatastore {
    /// Connects the pools and checks that the database is migrated to this
    /// binary's head (`NotMigrated` otherwise; run `migrate` first).
    pub async fn connect(
        config: &PostgresConfig,
        revisions: RevisionConfig,
        clock: Arc<dyn Clock>,
    ) -> DatastoreResult<Self> {
        let datastore = Self::open(config, revisions, clock)?;
        datastore.inner.initialize().await?;
        Ok(datastore)
    }

    /// The pools, without touching the database yet, so a server can start,
    /// report NOT_SERVING and wait for the database or its migration
    /// (`ready` initializes once they are there).
    pub fn open(
        config: &PostgresConfig,
        revisions: RevisionConfig,
        clock: Arc<dyn Clock>,
    ) -> DatastoreResult<Self> {
        let cockroach = config.cockroach.clone().unwrap_or_default();
        let max_attempts = match config.dialect() {
            Dialect::Postgres => error::MAX_ATTEMPTS,
            Dialect::Cockroach => cockroach.max_tx_retries.saturating_add(1),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                read: pool(config, &config.read_pool)?,
                write: pool(config, &config.write_pool)?,
                config: revisions,
                clock,
                dialect: config.dialect(),
                cockroach,
                max_attempts,
                unique_id: OnceLock::new(),
                known_head: Mutex::new(Rev(0)),
                oldest_readable: Mutex::new(None),
                optimized: Mutex::new(Vec::new()),
                server_clock: Mutex::new(None),
                gc_holder: format!("{:016x}", super::random_u64()),
                schema: reader::SchemaMemo::default(),
            }),
        })
    }

    /// Applies the embedded migrations this database lacks.
    pub async fn migrate(config: &PostgresConfig) -> DatastoreResult<migrate::MigrationReport> {
        let pool = pool(config, &PoolSettings::spicedb_default(1))?;
        let mut client = pool.get().await.map_err(from_pool)?;
        migrate::migrate(&mut client, config.dialect()).await
    }

    /// Every few seconds records the pools' usage (`datastore::metrics`),
    /// and every minute closes connections past their lifetime or idle
    /// time; ends when the datastore is dropped.
    pub fn spawn_pool_maintenance(&self, config: &PostgresConfig) -> tokio::task::JoinHandle<()> {
        const SAMPLE: Duration = Duration::from_secs(5);
        const REAP_EVERY: u32 = 12;
        let inner: Weak<Inner> = Arc::downgrade(&self.inner);
        let (read, write) = (config.read_pool, config.write_pool);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SAMPLE);
            for tick in 0u32.. {
                ticks.tick().await;
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                for (name, pool, limits) in
                    [("read", &inner.read, read), ("write", &inner.write, write)]
                {
                    record_pool_usage(name, pool);
                    if tick % REAP_EVERY == REAP_EVERY - 1 {
                        pool.retain(|_, m| {
                            m.age() < limits.max_lifetime && m.last_used() < limits.max_idle
                        });
                    }
                }
            }
        })
    }
}

/// One pool's connections in use, idle and at most, as gauges.
fn record_pool_usage(name: &'static str, pool: &Pool) {
    use crate::datastore::metrics::POOL_CONNECTIONS;
    let status = pool.status();
    let in_use = status.size.saturating_sub(status.available);
    for (state, value) in [
        ("in_use", in_use),
        ("idle", status.available),
        ("max", status.max_size),
    ] {
        metrics::gauge!(POOL_CONNECTIONS, "pool" => name, "state" => state).set(value as f64);
    }
}

/// Gives the empty datastore's revision 0 the opening time, as a fresh
/// memory datastore has, so it is readable for a GC window from then.
async fn stamp_genesis(client: &Object, now: SystemTime) -> DatastoreResult<()> {
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| from_pg("stamping revision 0", e))?;
    let result = async {
        client
            .execute(
                "UPDATE revision_counter SET committed_at = $1 WHERE revision = 0",
                &[&now],
            )
            .await?;
        client
            .execute(
                "UPDATE transactions SET committed_at = $1 WHERE revision = 0 \
                 AND (SELECT revision FROM revision_counter) = 0",
                &[&now],
            )
            .await?;
        client.batch_execute("COMMIT").await
    }
    .await;
    if result.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result.map_err(|e| from_pg("stamping revision 0", e))
}

fn pool(config: &PostgresConfig, limits: &PoolSettings) -> DatastoreResult<Pool> {
    let mut pg: tokio_postgres::Config = config.uri.parse().map_err(|e| {
        DatastoreError::Unavailable(format!(
            "invalid --datastore-conn-uri `{}`: {e}",
            redact_uri(&config.uri)
        ))
    })?;
    pg.connect_timeout(config.connect_timeout);
    pg.keepalives(true);
    pg.keepalives_idle(Duration::from_secs(30));
    if config.dialect() == Dialect::Postgres {
        // Statements stay prepared per connection, and after five runs
        // PostgreSQL may switch one to a generic plan made without the
        // values: for a read by full key on a skewed table (one type and
        // relation holding most rows) that plan scans, 0.5 ms becoming
        // 6 ms. Planning with the values costs far less than that.
        let options = match pg.get_options() {
            Some(existing) => format!("{existing} -c plan_cache_mode=force_custom_plan"),
            None => "-c plan_cache_mode=force_custom_plan".to_string(),
        };
        pg.options(&options);
    }
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            // A connection whose server went away reports closed and is
            // dropped on recycle; no test query per checkout.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(limits.max_open.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.connect_timeout))
        .create_timeout(Some(config.connect_timeout))
        .recycle_timeout(Some(config.connect_timeout))
        .build()
        .map_err(|e| DatastoreError::Internal(format!("building the connection pool: {e}")))
}

impl Inner {
    /// Checks the migration, reads the datastore's id and stamps revision 0.
    async fn initialize(&self) -> DatastoreResult<()> {
        let client = self.write_client().await?;
        migrate::ensure_at_head(&client, self.dialect).await?;
        if self.unique_id.get().is_none() {
            let id: String = client
                .query_one("SELECT unique_id FROM metadata", &[])
                .await
                .map_err(|e| from_pg("reading the datastore id", e))?
                .get(0);
            // CockroachDB has no revision 0 to stamp: its revisions are
            // timestamps, readable for the GC window whatever was written.
            if self.dialect == Dialect::Postgres {
                stamp_genesis(&client, self.clock.now()).await?;
            }
            let _ = self
                .unique_id
                .set(format!("{}-{id}", self.dialect.engine()));
        }
        Ok(())
    }

    /// Prepares a read: once per connection on PostgreSQL, per use on
    /// CockroachDB, whose reads name their timestamp in their text
    /// (`Dialect::caches_reads`).
    async fn prepare_read(
        &self,
        client: &Object,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        if self.dialect.caches_reads() {
            client.prepare_cached(sql).await
        } else {
            client.prepare(sql).await
        }
    }

    async fn read_client(&self) -> DatastoreResult<Object> {
        self.read.get().await.map_err(from_pool)
    }

    async fn write_client(&self) -> DatastoreResult<Object> {
        self.write.get().await.map_err(from_pool)
    }

    fn saw_head(&self, head: Rev) {
        let mut known = lock(&self.known_head);
        *known = (*known).max(head);
    }

    fn known_head(&self) -> Rev {
        *lock(&self.known_head)
    }

    /// Head and the oldest revision committed inside the GC window at `now`
    /// (head when none is), in one round trip. PostgreSQL only.
    async fn revision_range(&self, now: SystemTime) -> DatastoreResult<(Rev, Rev)> {
        let cutoff = now.checked_sub(self.config.gc_window);
        let row = reader::read_retrying(self, "reading the revision range", |client| async move {
            let statement = client
                .prepare_cached(
                    "SELECT c.revision, c.committed_at, \
                            (SELECT t.revision FROM transactions t \
                             WHERE $1::timestamptz IS NULL OR t.committed_at >= $1 \
                             ORDER BY t.revision LIMIT 1), \
                            (SELECT t.committed_at FROM transactions t \
                             WHERE $1::timestamptz IS NULL OR t.committed_at >= $1 \
                             ORDER BY t.revision LIMIT 1) \
                     FROM revision_counter c",
                )
                .await?;
            client.query_one(&statement, &[&cutoff]).await
        })
        .await?;
        let head: Rev = row.get(0);
        let head_at: SystemTime = row.get(1);
        let oldest: Option<Rev> = row.get(2);
        let oldest_at: Option<SystemTime> = row.get(3);
        self.saw_head(head);
        let (oldest, oldest_at) = match (oldest, oldest_at) {
            (Some(r), Some(at)) => (r, at),
            _ => (head, head_at),
        };
        *lock(&self.oldest_readable) = Some((oldest, oldest_at));
        Ok((head, oldest))
    }

    /// Whether the memo alone proves `revision` readable at `now`.
    fn known_readable(&self, revision: Rev, now: SystemTime) -> bool {
        if revision > self.known_head() {
            return false;
        }
        let Some((oldest, at)) = *lock(&self.oldest_readable) else {
            return false;
        };
        let inside = now
            .checked_sub(self.config.gc_window)
            .is_none_or(|cutoff| at >= cutoff);
        inside && revision >= oldest
    }

    async fn optimized_revision(&self) -> DatastoreResult<Rev> {
        if self.dialect.is_cockroach() {
            return revisions::optimized(self).await;
        }
        let now = self.clock.now();
        let Some(instant) = window_start(now, &self.config) else {
            return self.head().await;
        };
        let memo = lock(&self.optimized)
            .iter()
            .find(|(at, _)| *at == instant)
            .map(|(_, r)| *r);
        if let Some(revision) = memo
            && self.known_readable(revision, now)
        {
            return Ok(revision);
        }
        let row = reader::read_retrying(
            self,
            "reading the optimized revision",
            |client| async move {
                let statement = client
                    .prepare_cached(
                        "SELECT max(revision) FROM transactions WHERE committed_at <= $1",
                    )
                    .await?;
                client.query_one(&statement, &[&instant]).await
            },
        )
        .await?;
        let quantized: Option<Rev> = row.get(0);
        let (_, oldest) = self.revision_range(now).await?;
        let revision = quantized.unwrap_or(oldest).max(oldest);
        let mut memo = lock(&self.optimized);
        memo.retain(|(at, _)| *at >= instant.checked_sub(self.config.quantization).unwrap_or(*at));
        memo.push((instant, revision));
        Ok(revision)
    }

    async fn head(&self) -> DatastoreResult<Rev> {
        if self.dialect.is_cockroach() {
            return revisions::server_now(self).await;
        }
        let row = reader::read_retrying(self, "reading the head revision", |client| async move {
            let statement = client
                .prepare_cached("SELECT revision FROM revision_counter")
                .await?;
            client.query_one(&statement, &[]).await
        })
        .await?;
        let head: Rev = row.get(0);
        self.saw_head(head);
        Ok(head)
    }

    /// A revision as the database stores it; past the newest a reader may
    /// ask for (`Dialect::newest_revision`), none exists.
    fn to_db(&self, revision: Revision) -> Option<Rev> {
        Some(Rev(revision.0)).filter(|r| *r <= self.dialect.newest_revision())
    }

    /// PostgreSQL's check of a revision against head and the GC window.
    async fn check_sequence_revision(&self, revision: Revision) -> DatastoreResult<()> {
        let now = self.clock.now();
        let Some(wanted) = self.to_db(revision) else {
            return Err(DatastoreError::RevisionOutOfRange(format!(
                "revision {revision} is newer than the head revision"
            )));
        };
        if self.known_readable(wanted, now) {
            return Ok(());
        }
        let (head, oldest) = self.revision_range(now).await?;
        if wanted > head {
            return Err(DatastoreError::RevisionOutOfRange(format!(
                "revision {revision} is newer than the head revision {}",
                head.0
            )));
        }
        if wanted < oldest {
            return Err(DatastoreError::RevisionOutOfRange(format!(
                "revision {revision} is older than the garbage collection window"
            )));
        }
        Ok(())
    }
}

/// Locks a memo; a panic while holding one cannot leave it inconsistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn from_db(revision: Rev) -> Revision {
    Revision(revision.0)
}

impl Datastore for PostgresDatastore {
    type Reader = PostgresReader;

    /// Until the database has been reached and found migrated, a
    /// placeholder; nothing is served then, so no token carries it.
    fn unique_id(&self) -> &str {
        match (self.inner.unique_id.get(), self.inner.dialect) {
            (Some(id), _) => id,
            (None, Dialect::Postgres) => "postgres-uninitialized",
            (None, Dialect::Cockroach) => "cockroachdb-uninitialized",
        }
    }

    async fn ready(&self) -> DatastoreResult<()> {
        self.inner.initialize().await
    }

    async fn head_revision(&self) -> DatastoreResult<Revision> {
        self.inner.head().await.map(from_db)
    }

    async fn optimized_revision(&self) -> DatastoreResult<Revision> {
        self.inner.optimized_revision().await.map(from_db)
    }

    async fn check_revision(&self, revision: Revision) -> DatastoreResult<()> {
        match self.inner.dialect {
            Dialect::Postgres => self.inner.check_sequence_revision(revision).await,
            Dialect::Cockroach => revisions::check(&self.inner, revision).await,
        }
    }

    fn snapshot(&self, revision: Revision) -> PostgresReader {
        PostgresReader::new(self.inner.clone(), revision)
    }

    async fn write(&self, batch: WriteBatch) -> DatastoreResult<WriteOutcome> {
        let outcome = write::write(&self.inner, batch).await?;
        Ok(outcome)
    }

    async fn bulk_load(
        &self,
        relationships: Vec<Relationship>,
        metadata: TransactionMetadata,
    ) -> DatastoreResult<WriteOutcome> {
        write::bulk_load(&self.inner, relationships, metadata).await
    }

    async fn changes_since(
        &self,
        after: Revision,
        limit: usize,
    ) -> DatastoreResult<Vec<RevisionChanges>> {
        feed::changes_since(&self.inner, after, limit).await
    }

    /// On CockroachDB head is the server's clock, always newer than any
    /// commit: wait for the change feed to hold a newer revision instead.
    async fn wait_for_commit(&self, after: Revision) -> DatastoreResult<Revision> {
        loop {
            let newest = match self.inner.dialect {
                Dialect::Postgres => self.inner.head().await.map(from_db)?,
                Dialect::Cockroach => feed::newest_commit(&self.inner).await?,
            };
            if newest > after {
                return Ok(newest);
            }
            tokio::time::sleep(super::COMMIT_POLL_INTERVAL).await;
        }
    }

    async fn collect_garbage(&self) -> DatastoreResult<usize> {
        gc::collect_garbage(&self.inner).await
    }
}
