//! Owns the PostgreSQL datastore's migrations: the versioned `.sql` files
//! embedded in the binary, applying the missing ones, and telling whether a
//! database is at head. Applying is idempotent and safe from several pods at
//! once: each run holds a transaction-scoped advisory lock, re-reads what is
//! applied under it, and applies each migration in its own transaction with
//! its version row.

use tokio_postgres::{Client, GenericClient};

use super::error::from_pg;
use crate::datastore::{DatastoreError, DatastoreResult};

/// One migration: a version (applied in increasing order), a name and SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, oldest first. Append only: an applied migration never changes.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "relationships",
    sql: include_str!("migrations/0001_relationships.sql"),
}];

/// The version of the newest migration this binary knows.
pub fn head_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Arbitrary but fixed: the advisory lock key that serializes migrators.
const MIGRATION_LOCK: i64 = 0x7472_656c_6c69_7301;

const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS trellis_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The names of the migrations applied by this run, in order.
    pub applied: Vec<String>,
    pub version: i32,
}

/// Applies every migration newer than the database's version.
pub async fn migrate(client: &mut Client) -> DatastoreResult<MigrationReport> {
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        let tx = client
            .transaction()
            .await
            .map_err(|e| from_pg("starting a migration", e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| from_pg("taking the migration lock", e))?;
        // Checked first so that a database already set up logs no notice.
        if current_version(&tx).await? == 0 {
            tx.batch_execute(CREATE_VERSION_TABLE)
                .await
                .map_err(|e| from_pg("creating the migration table", e))?;
        }
        let done = tx
            .query_opt(
                "SELECT 1 FROM trellis_migrations WHERE version = $1",
                &[&migration.version],
            )
            .await
            .map_err(|e| from_pg("reading applied migrations", e))?
            .is_some();
        if done {
            continue;
        }
        tx.batch_execute(migration.sql).await.map_err(|e| {
            from_pg(
                &format!(
                    "applying migration {} ({})",
                    migration.version, migration.name
                ),
                e,
            )
        })?;
        tx.execute(
            "INSERT INTO trellis_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(|e| from_pg("recording a migration", e))?;
        tx.commit()
            .await
            .map_err(|e| from_pg("committing a migration", e))?;
        applied.push(migration.name.to_string());
    }
    Ok(MigrationReport {
        applied,
        version: current_version(client).await?,
    })
}

/// The newest migration applied (0 for a fresh database).
pub async fn current_version(client: &impl GenericClient) -> DatastoreResult<i32> {
    let exists: bool = client
        .query_one("SELECT to_regclass('trellis_migrations') IS NOT NULL", &[])
        .await
        .map_err(|e| from_pg("reading the migration version", e))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let version: Option<i32> = client
        .query_one("SELECT max(version) FROM trellis_migrations", &[])
        .await
        .map_err(|e| from_pg("reading the migration version", e))?
        .get(0);
    Ok(version.unwrap_or(0))
}

/// Ok when the database is at this binary's head migration.
pub async fn ensure_at_head(client: &Client) -> DatastoreResult<()> {
    let version = current_version(client).await?;
    let head = head_version();
    if version == head {
        return Ok(());
    }
    let advice = if version < head {
        "run `trellis datastore migrate head`"
    } else {
        "this binary is older than the database; upgrade it"
    };
    Err(DatastoreError::NotMigrated(format!(
        "the database is at migration {version}, this binary needs {head}: {advice}"
    )))
}
