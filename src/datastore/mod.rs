//! The storage port: the traits every datastore implements (memory today,
//! PostgreSQL and CockroachDB later) and the one conformance suite they all
//! pass. The engine and services see only these traits.
//!
//! The shape follows what PostgreSQL and CockroachDB can do natively:
//! - every write is one transaction that checks its preconditions and either
//!   applies fully at a new revision or not at all (`Datastore::write`);
//! - reads happen through a `Reader` pinned to one revision, which never
//!   changes what it returns (MVCC snapshot; `AS OF SYSTEM TIME` on CRDB);
//! - revisions are totally ordered and the datastore says which are still
//!   readable (GC window) and which one is "optimized" (quantized);
//! - the stored schema and the registered relationship counters live in the
//!   same history, so they and the relationships written beside them are
//!   read at one revision;
//! - a change feed lists committed changes after a revision (Watch).

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub mod memory;
pub mod metrics;
pub mod postgres;
pub mod proxy;
pub mod schema_cache;
pub mod update_plan;

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::model::{
    Precondition, Relationship, RelationshipFilter, RelationshipKey, RelationshipUpdate, Revision,
};

/// Why a datastore operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DatastoreError {
    /// A revision older than the GC window, or newer than head.
    #[error("invalid revision: {0}")]
    RevisionOutOfRange(String),
    /// A precondition of a write did not hold; `index` is its position.
    #[error("precondition {index} failed")]
    PreconditionFailed { index: usize },
    /// A CREATE (or bulk import) of a relationship that already exists.
    /// Boxed so every `DatastoreResult` stays small (a key is 144 bytes).
    #[error("relationship {0} already exists")]
    AlreadyExists(Box<RelationshipKey>),
    /// A delete by filter would remove more than its limit, and partial
    /// deletion was not allowed.
    #[error("the filter matches more than {limit} relationships")]
    TooManyToDelete { limit: usize },
    /// A cursor that does not belong to this datastore or query.
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    /// The datastore cannot be reached or refused the operation for now.
    #[error("datastore unavailable: {0}")]
    Unavailable(String),
    /// Two transactions conflicted and retries ran out.
    #[error("serialization failure: {0}")]
    SerializationFailure(String),
    /// The datastore's schema has not been migrated.
    #[error("datastore not migrated: {0}")]
    NotMigrated(String),
    /// A counter change registered a name already registered.
    #[error("counter `{0}` is already registered")]
    CounterAlreadyRegistered(String),
    /// A counter change unregistered a name not registered.
    #[error("counter `{0}` is not registered")]
    CounterNotRegistered(String),
    #[error("datastore error: {0}")]
    Internal(String),
}

pub type DatastoreResult<T> = Result<T, DatastoreError>;

/// The schema as stored: the text as WriteSchema received it (so doc
/// comments stay as written, as ReflectSchema and DiffSchema report them)
/// and a hash identifying that text. Compiling it is the caller's business
/// (and cached there, by `hash`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchema {
    pub text: String,
    pub hash: [u8; 32],
}

/// Free-form data a writer attaches to a transaction (WriteRelationships'
/// `optional_transaction_metadata`), returned by the change feed.
pub type TransactionMetadata = serde_json::Map<String, serde_json::Value>;

/// Delete everything a filter matches, up to an optional limit.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteByFilter {
    pub filter: RelationshipFilter,
    pub limit: Option<usize>,
    /// With a limit: delete up to it and report more remain, instead of failing.
    pub allow_partial: bool,
}

/// A named relationship filter whose matches can be counted (SpiceDB's
/// relationship counters). Registrations are versioned like everything
/// else: a reader sees the counters registered at its revision.
#[derive(Debug, Clone, PartialEq)]
pub struct RelationshipCounter {
    pub name: String,
    pub filter: RelationshipFilter,
}

/// A change to the registered counters, made by a write batch.
#[derive(Debug, Clone, PartialEq)]
pub enum CounterChange {
    /// Fails the batch with `CounterAlreadyRegistered` if the name is taken.
    Register(RelationshipCounter),
    /// Fails the batch with `CounterNotRegistered` if the name is free.
    Unregister(String),
}

/// Everything one write transaction does, applied atomically in this order:
/// preconditions are checked, counter changes apply (in order), the filter
/// delete runs, updates apply, the schema is replaced.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    pub preconditions: Vec<Precondition>,
    pub counters: Vec<CounterChange>,
    pub delete_by_filter: Option<DeleteByFilter>,
    pub updates: Vec<RelationshipUpdate>,
    pub schema: Option<StoredSchema>,
    pub metadata: TransactionMetadata,
}

/// What a committed write did.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutcome {
    pub revision: Revision,
    /// Relationships removed by `delete_by_filter`.
    pub deleted_by_filter: usize,
    /// `delete_by_filter` stopped at its limit with more left.
    pub partial: bool,
}

/// A page request over relationships in key order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// Return only relationships strictly after this key.
    pub after: Option<RelationshipKey>,
    pub limit: Option<usize>,
    /// The caller reads everything and needs no key order (reverse walks):
    /// the datastore may answer in its cheapest order, which must still be
    /// the same for the same snapshot and query. Ignored with `after` or
    /// `limit`, which need key order.
    pub any_order: bool,
}

impl Page {
    /// Everything, in whatever order is cheapest (fixed per snapshot).
    pub fn everything_any_order() -> Page {
        Page {
            any_order: true,
            ..Page::default()
        }
    }

    pub fn wants_key_order(&self) -> bool {
        !self.any_order || self.after.is_some() || self.limit.is_some()
    }
}

/// Where a read should start in the reverse (by subject) index: subject
/// type, id and relation first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReverseQuery {
    pub subject_type: String,
    /// Several ids at once (the engine batches).
    pub subject_ids: Vec<String>,
    /// `Some("...")` for plain objects; `None` for any relation.
    pub subject_relation: Option<String>,
    pub resource_type: String,
    pub resource_relation: String,
}

/// One change in the feed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Written (created or touched) at this revision.
    Touch(Relationship),
    /// Deleted at this revision (not by expiry).
    Delete(Relationship),
}

/// The changes of one committed revision.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionChanges {
    pub revision: Revision,
    pub changes: Vec<Change>,
    pub schema_changed: bool,
    pub metadata: TransactionMetadata,
}

/// Reads at one revision. Cheap to clone; safe to share across tasks.
/// Expired relationships (datastore clock) are never returned.
pub trait Reader: Clone + Send + Sync + 'static {
    fn revision(&self) -> Revision;

    /// Relationships matching `filter`, ordered by `RelationshipKey`.
    fn query(
        &self,
        filter: &RelationshipFilter,
        page: &Page,
    ) -> impl Future<Output = DatastoreResult<Vec<Relationship>>> + Send;

    /// The relationships of `resource_type:id#relation` for each id, whose
    /// subject is of one of `subject_types` (all types when empty). This is
    /// the engine's hot path: one call per relation per batch of ids.
    fn query_resources(
        &self,
        resource_type: &str,
        resource_ids: &[&str],
        relation: &str,
        subject_types: &[&str],
    ) -> impl Future<Output = DatastoreResult<Vec<Relationship>>> + Send;

    /// Relationships by subject, for reverse walks (LookupResources).
    fn query_subjects(
        &self,
        query: &ReverseQuery,
        page: &Page,
    ) -> impl Future<Output = DatastoreResult<Vec<Relationship>>> + Send;

    /// The schema in force at this revision, if one was ever written.
    fn schema(&self) -> impl Future<Output = DatastoreResult<Option<Arc<StoredSchema>>>> + Send;

    /// The relationship counters registered at this revision, by name.
    fn counters(&self) -> impl Future<Output = DatastoreResult<Vec<RelationshipCounter>>> + Send;
}

/// A datastore: revisions, snapshots, atomic writes, the change feed.
pub trait Datastore: Send + Sync + 'static {
    type Reader: Reader;

    /// A stable id of this datastore instance; ZedTokens carry its prefix so
    /// a token from another datastore is recognised.
    fn unique_id(&self) -> &str;

    /// The newest committed revision.
    fn head_revision(&self) -> impl Future<Output = DatastoreResult<Revision>> + Send;

    /// The quantized revision that nearby requests share (SpiceDB's
    /// optimized revision): the newest revision committed before the start
    /// of the current quantization window, with `now` smeared back by up to
    /// the max staleness so windows hand over gradually.
    fn optimized_revision(&self) -> impl Future<Output = DatastoreResult<Revision>> + Send;

    /// Ok if `revision` can be read: not older than the GC window and not
    /// newer than head; else `RevisionOutOfRange`.
    fn check_revision(
        &self,
        revision: Revision,
    ) -> impl Future<Output = DatastoreResult<()>> + Send;

    /// A reader pinned to `revision` (which the caller has checked).
    fn snapshot(&self, revision: Revision) -> Self::Reader;

    /// Applies a batch atomically at a new revision, or changes nothing.
    fn write(
        &self,
        batch: WriteBatch,
    ) -> impl Future<Output = DatastoreResult<WriteOutcome>> + Send;

    /// Inserts relationships in one transaction; fails with `AlreadyExists`
    /// (and inserts nothing) if any exists.
    fn bulk_load(
        &self,
        relationships: Vec<Relationship>,
        metadata: TransactionMetadata,
    ) -> impl Future<Output = DatastoreResult<WriteOutcome>> + Send;

    /// Committed changes strictly after `after`, oldest first, at most
    /// `limit` revisions. `RevisionOutOfRange` if `after` was collected.
    fn changes_since(
        &self,
        after: Revision,
        limit: usize,
    ) -> impl Future<Output = DatastoreResult<Vec<RevisionChanges>>> + Send;

    /// Resolves with the head revision once one newer than `after` has
    /// been committed (at once if one already has). Watch waits on this
    /// between reads of the change feed; callers bound the wait with their
    /// own timeout. The default polls `head_revision` every
    /// `COMMIT_POLL_INTERVAL`, which any backend can do; a backend that
    /// knows when it commits (memory) wakes waiters instead.
    fn wait_for_commit(
        &self,
        after: Revision,
    ) -> impl Future<Output = DatastoreResult<Revision>> + Send {
        async move {
            loop {
                let head = self.head_revision().await?;
                if head > after {
                    return Ok(head);
                }
                tokio::time::sleep(COMMIT_POLL_INTERVAL).await;
            }
        }
    }

    /// Ok when the datastore can serve: reachable and migrated. Health
    /// checks report NOT_SERVING while this fails. The default (a datastore
    /// in this process) is always ready.
    fn ready(&self) -> impl Future<Output = DatastoreResult<()>> + Send {
        async { Ok(()) }
    }

    /// Removes versions no reader inside the GC window can see; returns how
    /// many relationship versions were reclaimed.
    fn collect_garbage(&self) -> impl Future<Output = DatastoreResult<usize>> + Send;
}

/// Runs `collect_garbage` every `period` on the current tokio runtime until
/// the datastore is dropped (the task holds only a weak reference between
/// runs) or the task is aborted, recording each run's duration, what it
/// reclaimed and its failures (`metrics`).
pub fn spawn_garbage_collector<D: Datastore>(
    datastore: std::sync::Weak<D>,
    period: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(datastore) = datastore.upgrade() else {
                return;
            };
            let started = std::time::Instant::now();
            let outcome = datastore.collect_garbage().await;
            ::metrics::histogram!(metrics::GC_SECONDS).record(started.elapsed().as_secs_f64());
            match outcome {
                Ok(0) => {}
                Ok(reclaimed) => {
                    ::metrics::counter!(metrics::GC_RELATIONSHIPS_TOTAL)
                        .increment(reclaimed as u64);
                    tracing::info!(reclaimed, "garbage collected");
                }
                Err(e) => {
                    ::metrics::counter!(metrics::GC_FAILURES_TOTAL).increment(1);
                    tracing::warn!(error = %e, "garbage collection failed");
                }
            }
        }
    })
}

/// How often the default `Datastore::wait_for_commit` looks at head:
/// SpiceDB's minimum sleep between polls of a PostgreSQL change feed.
pub const COMMIT_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Revision timing shared by datastores (SpiceDB's flags and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevisionConfig {
    /// `--datastore-revision-quantization-interval` (5 s).
    pub quantization: Duration,
    /// `--datastore-revision-quantization-max-staleness-percent` (10 %).
    pub max_staleness_percent: u32,
    /// `--datastore-gc-window` (24 h).
    pub gc_window: Duration,
}

impl Default for RevisionConfig {
    fn default() -> Self {
        Self {
            quantization: Duration::from_secs(5),
            max_staleness_percent: 10,
            gc_window: Duration::from_secs(24 * 3600),
        }
    }
}

/// The start of the quantization window `now` (less a random staleness)
/// falls in; `None` when quantization is off or time is before the epoch.
pub(crate) fn window_start(now: SystemTime, config: &RevisionConfig) -> Option<SystemTime> {
    let quantum = config.quantization.as_nanos();
    if quantum == 0 {
        return None;
    }
    // Staleness is a share of the window, and stays below the GC window so
    // the result is always readable.
    let max_stale = (quantum * u128::from(config.max_staleness_percent) / 100)
        .min(config.gc_window.as_nanos() / 2);
    let stale = if max_stale == 0 {
        0
    } else {
        u128::from(random_u64()) % max_stale
    };
    let since_epoch = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_nanos();
    let floored = since_epoch.saturating_sub(stale) / quantum * quantum;
    let nanos = u64::try_from(floored).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// A random number from std's per-process-seeded SipHash keys; quantization
/// smearing needs no better randomness, and this needs no dependency.
pub(crate) fn random_u64() -> u64 {
    RandomState::new().hash_one(std::time::Instant::now())
}

/// The counters after `changes` apply in order to `registered`, sorted by
/// name; the first change that cannot apply fails the write.
pub(crate) fn apply_counter_changes(
    registered: &[RelationshipCounter],
    changes: Vec<CounterChange>,
) -> DatastoreResult<Vec<RelationshipCounter>> {
    let mut counters = registered.to_vec();
    for change in changes {
        match change {
            CounterChange::Register(counter) => {
                match counters.binary_search_by(|c| c.name.cmp(&counter.name)) {
                    Ok(_) => return Err(DatastoreError::CounterAlreadyRegistered(counter.name)),
                    Err(at) => counters.insert(at, counter),
                }
            }
            CounterChange::Unregister(name) => {
                match counters.binary_search_by(|c| c.name.cmp(&name)) {
                    Ok(at) => {
                        counters.remove(at);
                    }
                    Err(_) => return Err(DatastoreError::CounterNotRegistered(name)),
                }
            }
        }
    }
    Ok(counters)
}

/// The datastore clock. Tests substitute a manual clock to step through GC
/// windows and expirations without sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to, for stepping through expirations
/// and GC windows in tests without sleeping.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug)]
pub struct ManualClock {
    now: std::sync::Mutex<SystemTime>,
}

#[cfg(any(test, feature = "test-support"))]
impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        Self {
            now: std::sync::Mutex::new(start),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}
