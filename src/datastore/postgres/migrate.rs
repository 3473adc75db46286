//! Owns the SQL datastore's migrations: the versioned `.sql` files of each
//! engine embedded in the binary, applying the missing ones, and telling
//! whether a database is at head. Applying is idempotent and safe from
//! several pods at once: each run holds a transaction-scoped lock (an
//! advisory lock on PostgreSQL, a row lock on CockroachDB, which has no
//! advisory locks), re-reads what is applied under it, and applies each
//! migration in its own transaction with its version row.

use tokio_postgres::{Client, GenericClient};

use super::dialect::Dialect;
use super::error::from_pg;
use crate::datastore::{DatastoreError, DatastoreResult};

/// One migration: a version (applied in increasing order), a name and SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every PostgreSQL migration, oldest first. Append only: an applied
/// migration never changes.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "relationships",
    sql: include_str!("migrations/0001_relationships.sql"),
}];

/// Every CockroachDB migration, oldest first, version for version the same
/// change as PostgreSQL's in CockroachDB's SQL (`Dialect::migrations`).
pub const COCKROACH_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "relationships",
    sql: include_str!("migrations/cockroachdb/0001_relationships.sql"),
}];

/// The version of the newest migration this binary knows.
pub fn head_version(dialect: Dialect) -> i32 {
    dialect.migrations().last().map_or(0, |m| m.version)
}

// INT4, not INTEGER: CockroachDB's INTEGER is INT8, and versions bind as i32.
const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS trellis_migrations (
    version INT4 PRIMARY KEY,
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
pub async fn migrate(client: &mut Client, dialect: Dialect) -> DatastoreResult<MigrationReport> {
    for statement in dialect.migration_setup() {
        client
            .batch_execute(statement)
            .await
            .map_err(|e| from_pg("preparing the migration lock", e))?;
    }
    let mut applied = Vec::new();
    for migration in dialect.migrations() {
        let tx = client
            .transaction()
            .await
            .map_err(|e| from_pg("starting a migration", e))?;
        tx.batch_execute(dialect.migration_lock())
            .await
            .map_err(|e| from_pg("taking the migration lock", e))?;
        // Checked first so that a database already set up logs no notice.
        if current_version(&tx, dialect).await? == 0 {
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
        version: current_version(client, dialect).await?,
    })
}

/// The newest migration applied (0 for a fresh database).
pub async fn current_version(
    client: &impl GenericClient,
    dialect: Dialect,
) -> DatastoreResult<i32> {
    let exists: bool = client
        .query_one(dialect.migration_table_exists(), &[])
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
pub async fn ensure_at_head(client: &Client, dialect: Dialect) -> DatastoreResult<()> {
    let version = current_version(client, dialect).await?;
    let head = head_version(dialect);
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
