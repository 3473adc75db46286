//! Owns every difference between the two engines the SQL datastore runs on,
//! PostgreSQL and CockroachDB: the `Dialect` the datastore carries, the SQL
//! text that differs (revision column type and sentinel, `AS OF SYSTEM
//! TIME`, typed arrays, migrations, the GC and migration locks), and
//! CockroachDB's own mechanisms that need no I/O to state: HLC timestamps
//! as revisions, the optimized revision behind the follower-read delay, and
//! transaction overlap keys. Everything else (table layout, filters, write
//! planning, the change feed's queries) is shared. Depends on the port's
//! types and `migrate::Migration` only.
//!
//! Everything here is a pure function of its arguments, so the SQL the
//! CockroachDB dialect generates is pinned by unit tests even where no
//! CockroachDB server is at hand.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use super::migrate::Migration;
use super::sql::Rev;
use crate::datastore::{RevisionConfig, WriteBatch, window_start};
use crate::model::Relationship;

/// Which SQL engine. Cheap to copy: statements carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// Revisions are a gap-free commit sequence (ARCHITECTURE.md).
    #[default]
    Postgres,
    /// Revisions are the transactions' HLC commit timestamps.
    Cockroach,
}

/// CockroachDB's flags (SpiceDB's names and defaults); the datastore
/// carries them beside its `Dialect::Cockroach`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CockroachSettings {
    /// `--datastore-follower-read-delay-duration` (4.8 s): how far behind
    /// now the optimized revision and the change feed read, so that any
    /// replica can serve them and no transaction can still commit below.
    pub follower_read_delay: Duration,
    /// `--datastore-tx-overlap-strategy` and `--datastore-tx-overlap-key`.
    pub overlap: OverlapStrategy,
    /// `--datastore-max-tx-retries` (10): retries of a write that lost a
    /// serialization race (40001), after the first attempt.
    pub max_tx_retries: u32,
}

impl Default for CockroachSettings {
    fn default() -> Self {
        Self {
            follower_read_delay: Duration::from_millis(4800),
            overlap: OverlapStrategy::Static(DEFAULT_OVERLAP_KEY.to_string()),
            max_tx_retries: 10,
        }
    }
}

/// `--datastore-tx-overlap-key`'s default.
pub const DEFAULT_OVERLAP_KEY: &str = "key";

/// Which overlap keys a write upserts (ARCHITECTURE.md, "CockroachDB
/// revisions"): writes that share a key are ordered by CockroachDB, so a
/// write that commits after another one finished gets a later timestamp
/// even when their relationships are disjoint (new-enemy safety).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlapStrategy {
    /// Every write upserts this one key: all writes are ordered.
    Static(String),
    /// Each object type prefix (`tenant` of `tenant/doc`) is a key; types
    /// without a prefix, and writes that name no type, use this key.
    Prefix(String),
    /// No key: disjoint writes may commit out of real-time order.
    Insecure,
}

impl OverlapStrategy {
    /// Parses the two flags. `request` (keys from the
    /// `io.spicedb.requestoverlapkey` header) needs request metadata in the
    /// datastore port, which it does not carry yet: refused at startup.
    pub fn parse(strategy: &str, key: &str) -> Result<Self, String> {
        match strategy {
            "static" => Ok(Self::Static(key.to_string())),
            "prefix" => Ok(Self::Prefix(key.to_string())),
            "insecure" => Ok(Self::Insecure),
            "request" => Err(
                "--datastore-tx-overlap-strategy request is not supported yet: \
                 request metadata (io.spicedb.requestoverlapkey) does not reach the datastore; \
                 use static or prefix"
                    .to_string(),
            ),
            other => Err(format!(
                "unknown --datastore-tx-overlap-strategy `{other}`; \
                 available: static, prefix, insecure"
            )),
        }
    }

    /// The keys a write upserts, sorted (writers take row locks in one
    /// order, so two writers never wait on each other in a cycle).
    pub fn keys(&self, batch: &WriteBatch) -> Vec<String> {
        let relationships = batch.updates.iter().map(|u| &u.relationship);
        let mut types: Vec<&str> = object_types(relationships).collect();
        // What names no single type (schema, counters, a filter delete
        // without a resource type) takes the shared key.
        let mut shared = batch.schema.is_some() || !batch.counters.is_empty();
        if let Some(delete) = &batch.delete_by_filter {
            match &delete.filter.resource_type {
                Some(t) => types.push(t),
                None => shared = true,
            }
        }
        self.keys_of(types.into_iter(), shared)
    }

    /// The keys a bulk load of `relationships` upserts.
    pub fn keys_for_load(&self, relationships: &[Relationship]) -> Vec<String> {
        self.keys_of(object_types(relationships.iter()), false)
    }

    fn keys_of<'t>(&self, types: impl Iterator<Item = &'t str>, shared: bool) -> Vec<String> {
        match self {
            Self::Insecure => Vec::new(),
            Self::Static(key) => vec![key.clone()],
            Self::Prefix(default) => {
                // Unprefixed types share the default key.
                let mut keys: BTreeSet<String> = types
                    .map(|t| t.split_once('/').map_or(default.as_str(), |(p, _)| p))
                    .map(str::to_string)
                    .collect();
                if shared || keys.is_empty() {
                    keys.insert(default.clone());
                }
                keys.into_iter().collect()
            }
        }
    }
}

/// The resource and subject types of some relationships.
fn object_types<'r>(
    relationships: impl Iterator<Item = &'r Relationship>,
) -> impl Iterator<Item = &'r str> {
    relationships.flat_map(|r| {
        [
            r.resource.object_type.as_str(),
            r.subject.object.object_type.as_str(),
        ]
    })
}

/// `deleted_revision` of a living version on PostgreSQL (BIGINT's maximum).
const PG_ALIVE: &str = "9223372036854775807";
/// On CockroachDB: 38 nines, above every packed HLC (< 2^96, 29 digits).
const CRDB_ALIVE: &str = "99999999999999999999999999999999999999";

impl Dialect {
    /// The `--datastore-engine` name; also the datastore id's prefix.
    pub fn engine(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Cockroach => "cockroachdb",
        }
    }

    pub fn is_cockroach(self) -> bool {
        matches!(self, Self::Cockroach)
    }

    /// `deleted_revision` of a living version, as an SQL literal.
    pub fn alive(self) -> &'static str {
        match self {
            Self::Postgres => PG_ALIVE,
            Self::Cockroach => CRDB_ALIVE,
        }
    }

    /// The newest revision a reader may ask for: one below `alive`.
    pub fn newest_revision(self) -> Rev {
        match self {
            Self::Postgres => Rev(i64::MAX as u128 - 1),
            Self::Cockroach => Rev(10u128.pow(38) - 2),
        }
    }

    /// A revision parameter where the statement gives it no type of its own
    /// (CockroachDB infers none in a select list; PostgreSQL infers BIGINT).
    pub fn revision_param(self, placeholder: &str) -> String {
        match self {
            Self::Postgres => placeholder.to_string(),
            Self::Cockroach => format!("{placeholder}::DECIMAL"),
        }
    }

    /// ` AS OF SYSTEM TIME '…'` after a FROM clause on CockroachDB, so a
    /// read at `revision` runs at that timestamp (no conflict with newer
    /// writers; any replica may serve it once closed). Empty on PostgreSQL,
    /// whose visibility filter alone pins the snapshot.
    pub fn as_of(self, revision: Rev) -> String {
        match self {
            Self::Postgres => String::new(),
            Self::Cockroach => format!(" AS OF SYSTEM TIME '{}'", format_hlc(revision)),
        }
    }

    /// Whether statements are prepared once per connection. A CockroachDB
    /// read names its timestamp in its text, so caching would keep one
    /// statement per revision on every connection: prepared per use.
    pub fn caches_reads(self) -> bool {
        matches!(self, Self::Postgres)
    }

    /// The array type caveat contexts are bound as, and how a row of the
    /// unnested array becomes JSONB. CockroachDB before 23.1 has no JSONB
    /// arrays, so there the contexts travel as text.
    pub fn json_array(self) -> (&'static str, &'static str) {
        match self {
            Self::Postgres => ("jsonb[]", "caveat_context"),
            Self::Cockroach => ("STRING[]", "caveat_context::JSONB"),
        }
    }

    /// Every migration of this engine, oldest first.
    pub fn migrations(self) -> &'static [Migration] {
        match self {
            Self::Postgres => super::migrate::MIGRATIONS,
            Self::Cockroach => super::migrate::COCKROACH_MIGRATIONS,
        }
    }

    /// Whether the migration table exists (CockroachDB: no `to_regclass`
    /// before 21.2, so the information schema, which both have).
    pub fn migration_table_exists(self) -> &'static str {
        match self {
            Self::Postgres => "SELECT to_regclass('trellis_migrations') IS NOT NULL",
            Self::Cockroach => {
                "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = 'trellis_migrations')"
            }
        }
    }

    /// Statements run before the migration transaction (idempotent).
    pub fn migration_setup(self) -> &'static [&'static str] {
        match self {
            Self::Postgres => &[],
            // No advisory locks: a row lock serializes migrators instead.
            Self::Cockroach => &[
                "CREATE TABLE IF NOT EXISTS trellis_migration_lock \
                 (singleton BOOL PRIMARY KEY DEFAULT true CHECK (singleton))",
                "INSERT INTO trellis_migration_lock (singleton) VALUES (true) \
                 ON CONFLICT (singleton) DO NOTHING",
            ],
        }
    }

    /// The first statement of a migration transaction: waits for any other
    /// migrator and holds it off until COMMIT.
    pub fn migration_lock(self) -> &'static str {
        match self {
            Self::Postgres => "SELECT pg_advisory_xact_lock(8390880572094378753)",
            Self::Cockroach => "SELECT singleton FROM trellis_migration_lock FOR UPDATE",
        }
    }

    /// Batched deletes of relationship versions for GC: `$1` is the horizon
    /// (dead versions), then `$1` now and `$2` the horizon (expired ones).
    /// PostgreSQL has no `DELETE … LIMIT` (so: by ctid); CockroachDB has no
    /// ctid (so: `LIMIT`).
    pub fn gc_deletes(self, batch: i64) -> [String; 2] {
        let alive = self.alive();
        let dead = format!("deleted_revision <= $1 AND deleted_revision < {alive}");
        let expired =
            format!("expiration <= $1 AND deleted_revision = {alive} AND created_revision <= $2");
        match self {
            Self::Postgres => [dead, expired].map(|condition| {
                format!(
                    "DELETE FROM relation_tuple WHERE ctid = ANY(ARRAY(\
                       SELECT ctid FROM relation_tuple WHERE {condition} LIMIT {batch}))"
                )
            }),
            Self::Cockroach => [dead, expired].map(|condition| {
                format!("DELETE FROM relation_tuple WHERE {condition} LIMIT {batch}")
            }),
        }
    }
}

// ---- CockroachDB's HLC timestamps as revisions ----

/// The statement that pins a CockroachDB transaction's commit timestamp
/// (run inside it) or reads the gateway's clock (outside one), as text so
/// no DECIMAL decoding is involved.
pub const CLUSTER_TIMESTAMP: &str = "SELECT cluster_logical_timestamp()::STRING";

/// Digits of the logical part in `cluster_logical_timestamp()`'s decimal.
const LOGICAL_DIGITS: usize = 10;

/// Parses `cluster_logical_timestamp()` (`wall_nanos.logical`, the logical
/// counter in ten fractional digits) into a packed revision
/// `wall_nanos << 32 | logical` (the `Revision` layout), which orders as
/// the HLC does.
pub fn parse_hlc(text: &str) -> Result<Rev, String> {
    let bad = |why: &str| format!("invalid HLC timestamp `{text}`: {why}");
    let (wall, fraction) = text.split_once('.').unwrap_or((text, ""));
    if wall.is_empty() || !wall.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the wall time is not a number"));
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the logical part is not a number"));
    }
    // A shorter fraction is the same decimal with its zeros trimmed; a
    // longer one may only add zeros.
    let (digits, rest) = fraction.split_at(fraction.len().min(LOGICAL_DIGITS));
    if rest.bytes().any(|b| b != b'0') {
        return Err(bad("the logical part has more than ten digits"));
    }
    let logical: u64 = format!("{digits:0<LOGICAL_DIGITS$}")
        .parse()
        .map_err(|_| bad("the logical part is not a number"))?;
    let logical = u32::try_from(logical).map_err(|_| bad("the logical part exceeds 32 bits"))?;
    let wall: u64 = wall
        .parse()
        .map_err(|_| bad("the wall time exceeds 64 bits"))?;
    Ok(pack(wall, logical))
}

/// A revision as `AS OF SYSTEM TIME` takes it: the HLC decimal.
pub fn format_hlc(revision: Rev) -> String {
    let (wall, logical) = unpack(revision);
    format!("{wall}.{logical:0LOGICAL_DIGITS$}")
}

pub fn pack(wall_nanos: u64, logical: u32) -> Rev {
    Rev(u128::from(wall_nanos) << 32 | u128::from(logical))
}

/// Wall nanoseconds and logical counter. A revision too large to be a
/// packed HLC (none is stored) saturates its wall time.
pub fn unpack(revision: Rev) -> (u64, u32) {
    let wall = u64::try_from(revision.0 >> 32).unwrap_or(u64::MAX);
    (wall, (revision.0 & 0xffff_ffff) as u32)
}

/// The wall time of an HLC revision.
pub fn wall_time(revision: Rev) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(unpack(revision).0)
}

/// The first HLC revision at `at` (logical 0); the epoch for earlier times.
pub fn at_wall_time(at: SystemTime) -> Rev {
    let nanos = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    pack(nanos, 0)
}

/// `now` moved back by `by` (HLC arithmetic on the wall time).
pub fn hlc_before(now: Rev, by: Duration) -> Rev {
    at_wall_time(
        wall_time(now)
            .checked_sub(by)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    )
}

/// The optimized revision at server time `now`: the start of the
/// quantization window (smeared as on every engine) that `now` less the
/// follower-read delay falls in, so nearby requests share it and every
/// replica can serve it. Never above `now`.
pub fn optimized_hlc(now: Rev, follower_read_delay: Duration, config: &RevisionConfig) -> Rev {
    let behind = wall_time(hlc_before(now, follower_read_delay));
    let start = window_start(behind, config).unwrap_or(behind);
    at_wall_time(start).min(now)
}

/// The oldest revision readable at server time `now`: the GC window back.
pub fn oldest_readable_hlc(now: Rev, gc_window: Duration) -> Rev {
    hlc_before(now, gc_window)
}

// ---- CockroachDB-only statements ----

/// Upserts the overlap keys (`$1`, a text array) as the last statement of
/// a write: a write-write conflict with every concurrent writer of a key.
pub const UPSERT_OVERLAP_KEYS: &str = "UPSERT INTO transaction_overlap (key, revision) \
     SELECT k, $2::DECIMAL FROM unnest($1::STRING[]) AS k";

/// Takes the GC lease when it is free, expired or already ours (`$1` the
/// holder, `$2` the lease length in seconds); one row back means held.
pub const TAKE_GC_LEASE: &str = "UPDATE gc_lease SET holder = $1, \
     expires_at = now() + $2::INT8 * INTERVAL '1 second' \
     WHERE holder = $1 OR expires_at < now() RETURNING singleton";

/// Gives the lease back and records the horizon collected up to, below
/// which the change feed is incomplete (`$1` holder, `$2` horizon).
pub const RELEASE_GC_LEASE: &str = "UPDATE gc_lease SET expires_at = now(), \
     horizon = greatest(horizon, $2::DECIMAL) WHERE holder = $1";

#[cfg(test)]
mod tests;
