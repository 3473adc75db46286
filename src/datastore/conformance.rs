//! Owns the datastore conformance suite: one set of async tests written
//! against the port's traits (`Datastore`, `Reader`) that every backend
//! passes. A backend runs it with `datastore_conformance_tests!(factory)`,
//! where the factory builds a fresh, empty datastore from a
//! `RevisionConfig` and a `ManualClock`. Depends on the port and `model`.
//!
//! Compiled for tests, and for other crates' tests with the `test-support`
//! feature (PostgreSQL's run lives in `tests/`, against a real server).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{
    Change, CounterChange, Datastore, DatastoreError, DeleteByFilter, ManualClock, Page, Reader,
    RelationshipCounter, ReverseQuery, RevisionConfig, StoredSchema, TransactionMetadata,
    WriteBatch, WriteOutcome,
};
use crate::model::{
    ContextualizedCaveat, ELLIPSIS, ObjectRef, Precondition, PreconditionKind, Relationship,
    RelationshipFilter, RelationshipKey, RelationshipUpdate, Revision, SubjectFilter, SubjectRef,
    UpdateOperation, parse_relationship,
};

/// Builds a fresh, empty datastore for one test.
pub trait DatastoreFactory: Sync {
    type Datastore: Datastore;

    fn create(
        &self,
        config: RevisionConfig,
        clock: Arc<ManualClock>,
    ) -> impl Future<Output = Self::Datastore> + Send;
}

impl<F, Fut, D> DatastoreFactory for F
where
    F: Fn(RevisionConfig, Arc<ManualClock>) -> Fut + Sync,
    Fut: Future<Output = D> + Send,
    D: Datastore,
{
    type Datastore = D;

    fn create(
        &self,
        config: RevisionConfig,
        clock: Arc<ManualClock>,
    ) -> impl Future<Output = D> + Send {
        self(config, clock)
    }
}

/// Expands to one `#[tokio::test]` per conformance case, each calling the
/// case with `$factory` (an expression implementing `DatastoreFactory`).
#[macro_export]
macro_rules! datastore_conformance_tests {
    ($factory:expr) => {
        $crate::datastore_conformance_tests!($factory, available = true);
    };
    // `available` is evaluated first in every case; when false the case
    // returns at once (a backend whose server is not installed skips).
    ($factory:expr, available = $available:expr) => {
        $crate::datastore_conformance_tests!($factory, available = $available, server_clock);
        $crate::datastore_conformance_tests!(@cases $factory, $available;
            check_revision_range,
            optimized_revision_is_quantized,
            counters_survive_garbage_collection,
            gc_keeps_what_readers_see,
            gc_reclaims_expired_relationships,
            gc_truncates_the_change_feed,
        );
    };
    // The cases that hold whatever clock the datastore's revisions follow:
    // every case but those above, which step the suite's `ManualClock`
    // across GC and quantization windows (a backend whose revisions follow
    // a server's clock, such as CockroachDB's HLC, runs only these).
    ($factory:expr, available = $available:expr, server_clock) => {
        $crate::datastore_conformance_tests!(@cases $factory, $available;
            snapshot_isolation,
            revisions_increase_per_write,
            must_match_precondition,
            must_not_match_precondition,
            first_failing_precondition_is_reported,
            preconditions_ignore_expired_relationships,
            create_touch_delete,
            failed_create_changes_nothing,
            create_replaces_an_expired_relationship,
            delete_by_filter_without_limit,
            delete_by_filter_with_limit,
            delete_by_filter_then_recreate,
            bulk_load_inserts_all,
            bulk_load_rejects_existing,
            bulk_load_rejects_duplicates,
            query_filters_and_order,
            query_by_subject,
            query_resources_batches_ids,
            query_subjects_by_subject_relation,
            paging_has_no_gaps_or_duplicates,
            paging_resumes_after_a_deleted_cursor,
            resource_id_prefix,
            expired_relationships_are_hidden,
            schema_history_per_revision,
            counters_are_versioned,
            counter_changes_that_conflict_change_nothing,
            counter_changes_in_one_batch_apply_in_order,
            changes_since_lists_changes_in_order,
            changes_since_respects_limit_and_head,
            changes_since_omits_expiry,
            wait_for_commit_wakes_on_the_next_commit,
            matches_a_reference_model,
        );
    };
    (@cases $factory:expr, $available:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                if !$available {
                    return;
                }
                $crate::datastore::conformance::$case(&$factory).await;
            }
        )*
    };
}

// ---- fixtures ----

/// Mid-way through a 5 s quantization window (1_900_000_000 is a multiple of 5).
fn start_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(1_900_000_002_500)
}

fn config() -> RevisionConfig {
    RevisionConfig {
        quantization: Duration::from_secs(5),
        max_staleness_percent: 10,
        gc_window: Duration::from_secs(3600),
    }
}

struct Fixture<D> {
    ds: D,
    clock: Arc<ManualClock>,
}

async fn fixture<F: DatastoreFactory>(factory: &F) -> Fixture<F::Datastore> {
    let clock = Arc::new(ManualClock::new(start_time()));
    let ds = factory.create(config(), clock.clone()).await;
    Fixture { ds, clock }
}

fn rel(text: &str) -> Relationship {
    parse_relationship(text).expect("fixture relationship parses")
}

fn update(operation: UpdateOperation, text: &str) -> RelationshipUpdate {
    RelationshipUpdate {
        operation,
        relationship: rel(text),
    }
}

fn updates(operation: UpdateOperation, texts: &[&str]) -> WriteBatch {
    WriteBatch {
        updates: texts.iter().map(|t| update(operation, t)).collect(),
        ..WriteBatch::default()
    }
}

async fn touch<D: Datastore>(ds: &D, texts: &[&str]) -> Revision {
    let outcome = ds.write(updates(UpdateOperation::Touch, texts)).await;
    outcome.expect("touch succeeds").revision
}

async fn delete<D: Datastore>(ds: &D, texts: &[&str]) -> Revision {
    let outcome = ds.write(updates(UpdateOperation::Delete, texts)).await;
    outcome.expect("delete succeeds").revision
}

fn filter(resource_type: &str) -> RelationshipFilter {
    RelationshipFilter {
        resource_type: Some(resource_type.into()),
        ..RelationshipFilter::default()
    }
}

fn subject_filter(subject_type: &str, id: Option<&str>, relation: Option<&str>) -> SubjectFilter {
    SubjectFilter {
        subject_type: subject_type.into(),
        subject_id: id.map(Into::into),
        relation: relation.map(Into::into),
    }
}

fn texts(rels: &[Relationship]) -> Vec<String> {
    rels.iter().map(ToString::to_string).collect()
}

async fn read<R: Reader>(reader: &R, filter: &RelationshipFilter) -> Vec<String> {
    let rels = reader
        .query(filter, &Page::default())
        .await
        .expect("query succeeds");
    assert_key_order(&rels);
    texts(&rels)
}

async fn read_at<D: Datastore>(ds: &D, revision: Revision, f: &RelationshipFilter) -> Vec<String> {
    read(&ds.snapshot(revision), f).await
}

async fn head<D: Datastore>(ds: &D) -> Revision {
    ds.head_revision().await.expect("head revision")
}

/// Head is `revision` as far as any reader can tell: no revision was
/// committed after it, and head is not older. Exactly `head == revision`
/// where head is the last commit (memory, PostgreSQL); on CockroachDB head
/// is the server's clock, newer than any commit, and nothing committed
/// since is what "a failed write consumes no revision" means there.
async fn assert_head_is<D: Datastore>(ds: &D, revision: Revision, why: &str) {
    let now = head(ds).await;
    assert!(
        now >= revision,
        "{why}: head {now} is older than {revision}"
    );
    let later = ds.changes_since(revision, 1).await.expect("feed");
    assert!(
        later.is_empty(),
        "{why}: revision {} was committed after {revision}",
        later[0].revision
    );
}

fn assert_key_order(rels: &[Relationship]) {
    for pair in rels.windows(2) {
        assert!(
            pair[0].key() < pair[1].key(),
            "out of key order: {} then {}",
            pair[0],
            pair[1]
        );
    }
}

fn already_exists(text: &str) -> DatastoreError {
    DatastoreError::AlreadyExists(Box::new(rel(text).key()))
}

fn strs(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Social-network-ish data used by the query cases, in key order.
const SOCIAL: &[&str] = &[
    "document:alpha#owner@user:ann",
    "document:alpha#viewer@group:eng#member",
    "document:alpha#viewer@user:*",
    "document:alpha#viewer@user:bob",
    "document:alphabet#viewer@user:bob",
    "document:beta#owner@user:bob",
    "document:beta#viewer@group:eng",
    "document:beta#viewer@user:ann",
    "document:gamma#viewer@user:carl",
    "group:eng#member@user:ann",
    "group:eng#member@user:bob",
    "user:ann#follower@user:bob",
    "user:bob#follower@user:ann",
];

// ---- revisions and snapshots ----

/// A reader at an old revision keeps seeing the old state after later writes.
pub async fn snapshot_isolation<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let r0 = head(&ds).await;
    let r1 = touch(&ds, &["doc:a#viewer@user:x", "doc:b#viewer@user:y"]).await;
    let old = ds.snapshot(r1);
    let r2 = ds
        .write(WriteBatch {
            updates: vec![
                update(UpdateOperation::Delete, "doc:a#viewer@user:x"),
                update(UpdateOperation::Touch, "doc:c#viewer@user:z"),
            ],
            ..WriteBatch::default()
        })
        .await
        .expect("write succeeds")
        .revision;
    let all = filter("doc");
    assert_eq!(
        read(&old, &all).await,
        strs(&["doc:a#viewer@user:x", "doc:b#viewer@user:y"])
    );
    assert_eq!(
        read_at(&ds, r2, &all).await,
        strs(&["doc:b#viewer@user:y", "doc:c#viewer@user:z"])
    );
    assert!(read_at(&ds, r0, &all).await.is_empty());
    assert_eq!(old.revision(), r1);
    assert_head_is(&ds, r2, "the last write").await;
}

/// Every committed write gets a revision after the previous one.
pub async fn revisions_increase_per_write<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let mut last = head(&ds).await;
    for i in 0..5 {
        let revision = touch(&ds, &[&format!("doc:{i}#viewer@user:x")]).await;
        assert!(revision > last);
        assert_head_is(&ds, revision, "the last write").await;
        last = revision;
    }
}

// ---- preconditions ----

fn precondition(kind: PreconditionKind, filter: RelationshipFilter) -> Precondition {
    Precondition { kind, filter }
}

fn doc_filter(id: &str) -> RelationshipFilter {
    RelationshipFilter {
        resource_id: Some(id.into()),
        ..filter("doc")
    }
}

pub async fn must_match_precondition<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let r1 = touch(&ds, &["doc:a#viewer@user:x"]).await;
    let mut batch = updates(UpdateOperation::Touch, &["doc:new#viewer@user:y"]);
    batch.preconditions = vec![precondition(
        PreconditionKind::MustMatch,
        doc_filter("missing"),
    )];
    let err = ds
        .write(batch.clone())
        .await
        .expect_err("precondition fails");
    assert_eq!(err, DatastoreError::PreconditionFailed { index: 0 });
    assert_head_is(&ds, r1, "a failed write consumes no revision").await;
    assert!(read_at(&ds, r1, &doc_filter("new")).await.is_empty());

    batch.preconditions = vec![precondition(PreconditionKind::MustMatch, doc_filter("a"))];
    let r2 = ds.write(batch).await.expect("precondition holds").revision;
    assert_eq!(read_at(&ds, r2, &doc_filter("new")).await.len(), 1);
}

pub async fn must_not_match_precondition<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    touch(&ds, &["doc:a#viewer@user:x"]).await;
    let mut batch = updates(UpdateOperation::Delete, &["doc:a#viewer@user:x"]);
    batch.preconditions = vec![precondition(
        PreconditionKind::MustNotMatch,
        doc_filter("a"),
    )];
    let err = ds
        .write(batch.clone())
        .await
        .expect_err("precondition fails");
    assert_eq!(err, DatastoreError::PreconditionFailed { index: 0 });
    assert_eq!(read_at(&ds, head(&ds).await, &filter("doc")).await.len(), 1);

    batch.preconditions = vec![precondition(
        PreconditionKind::MustNotMatch,
        doc_filter("zzz"),
    )];
    let r = ds.write(batch).await.expect("precondition holds").revision;
    assert!(read_at(&ds, r, &filter("doc")).await.is_empty());
}

pub async fn first_failing_precondition_is_reported<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    touch(&ds, &["doc:a#viewer@user:x"]).await;
    let subject = RelationshipFilter {
        subject: Some(subject_filter("user", Some("x"), Some(ELLIPSIS))),
        ..RelationshipFilter::default()
    };
    let mut batch = updates(UpdateOperation::Touch, &["doc:b#viewer@user:y"]);
    batch.preconditions = vec![
        precondition(PreconditionKind::MustMatch, subject.clone()),
        precondition(PreconditionKind::MustNotMatch, doc_filter("a")),
        precondition(PreconditionKind::MustMatch, doc_filter("none")),
    ];
    let err = ds.write(batch).await.expect_err("precondition 1 fails");
    assert_eq!(err, DatastoreError::PreconditionFailed { index: 1 });
}

pub async fn preconditions_ignore_expired_relationships<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, clock } = fixture(factory).await;
    let mut expiring = rel("doc:a#viewer@user:x");
    expiring.expires_at = Some(clock.now_plus(Duration::from_secs(10)));
    write_one(&ds, UpdateOperation::Touch, expiring).await;
    clock.advance(Duration::from_secs(10));
    let mut batch = updates(UpdateOperation::Touch, &["doc:b#viewer@user:y"]);
    batch.preconditions = vec![precondition(PreconditionKind::MustMatch, doc_filter("a"))];
    let err = ds
        .write(batch.clone())
        .await
        .expect_err("expired does not match");
    assert_eq!(err, DatastoreError::PreconditionFailed { index: 0 });
    batch.preconditions = vec![precondition(
        PreconditionKind::MustNotMatch,
        doc_filter("a"),
    )];
    ds.write(batch).await.expect("expired counts as absent");
}

trait NowPlus {
    fn now_plus(&self, by: Duration) -> SystemTime;
}

impl NowPlus for ManualClock {
    fn now_plus(&self, by: Duration) -> SystemTime {
        super::Clock::now(self) + by
    }
}

async fn write_one<D: Datastore>(ds: &D, op: UpdateOperation, rel: Relationship) -> WriteOutcome {
    let batch = WriteBatch {
        updates: vec![RelationshipUpdate {
            operation: op,
            relationship: rel,
        }],
        ..WriteBatch::default()
    };
    ds.write(batch).await.expect("write succeeds")
}

// ---- updates ----

pub async fn create_touch_delete<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let created = ds
        .write(updates(UpdateOperation::Create, &["doc:a#viewer@user:x"]))
        .await
        .expect("create of a new relationship succeeds");
    let err = ds
        .write(updates(UpdateOperation::Create, &["doc:a#viewer@user:x"]))
        .await
        .expect_err("create of an existing one fails");
    assert_eq!(err, already_exists("doc:a#viewer@user:x"));
    assert_head_is(&ds, created.revision, "a failed create").await;

    let mut caveated = rel("doc:a#viewer@user:x");
    caveated.caveat = Some(ContextualizedCaveat {
        name: "on_weekdays".into(),
        context: serde_json::Map::from_iter([("day".to_string(), serde_json::json!(3))]),
    });
    let touched = write_one(&ds, UpdateOperation::Touch, caveated.clone()).await;
    assert_eq!(
        read_at(&ds, touched.revision, &filter("doc")).await,
        vec![caveated.to_string()],
        "touch replaces the caveat"
    );
    assert_eq!(
        read_at(&ds, created.revision, &filter("doc")).await,
        strs(&["doc:a#viewer@user:x"]),
        "the old version stays visible at its revision"
    );
    let plain = touch(&ds, &["doc:a#viewer@user:x"]).await;
    assert_eq!(
        read_at(&ds, plain, &filter("doc")).await,
        strs(&["doc:a#viewer@user:x"])
    );

    let noop = delete(&ds, &["doc:missing#viewer@user:x"]).await;
    assert_eq!(read_at(&ds, noop, &filter("doc")).await.len(), 1);
    let deleted = delete(&ds, &["doc:a#viewer@user:x"]).await;
    assert!(read_at(&ds, deleted, &filter("doc")).await.is_empty());
}

pub async fn failed_create_changes_nothing<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let r1 = touch(&ds, &["doc:a#viewer@user:x"]).await;
    let batch = WriteBatch {
        updates: vec![
            update(UpdateOperation::Touch, "doc:b#viewer@user:y"),
            update(UpdateOperation::Delete, "doc:a#viewer@user:x"),
            update(UpdateOperation::Create, "doc:c#viewer@user:z"),
            update(UpdateOperation::Create, "doc:c#viewer@user:z"),
        ],
        schema: Some(schema("v1")),
        ..WriteBatch::default()
    };
    let err = ds.write(batch).await.expect_err("duplicate create fails");
    assert!(matches!(err, DatastoreError::AlreadyExists(_)));
    assert_head_is(&ds, r1, "a failed write").await;
    let reader = ds.snapshot(r1);
    assert_eq!(
        read(&reader, &filter("doc")).await,
        strs(&["doc:a#viewer@user:x"])
    );
    assert_eq!(reader.schema().await.expect("schema reads"), None);
}

pub async fn create_replaces_an_expired_relationship<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, clock } = fixture(factory).await;
    let mut expiring = rel("doc:a#viewer@user:x");
    expiring.expires_at = Some(clock.now_plus(Duration::from_secs(5)));
    write_one(&ds, UpdateOperation::Create, expiring).await;
    clock.advance(Duration::from_secs(6));
    let created = write_one(&ds, UpdateOperation::Create, rel("doc:a#viewer@user:x")).await;
    assert_eq!(
        read_at(&ds, created.revision, &filter("doc")).await,
        strs(&["doc:a#viewer@user:x"])
    );
    // Bulk load treats an expired relationship as absent too.
    let mut again = rel("doc:b#viewer@user:x");
    again.expires_at = Some(clock.now_plus(Duration::from_secs(5)));
    write_one(&ds, UpdateOperation::Create, again).await;
    clock.advance(Duration::from_secs(6));
    let loaded = ds
        .bulk_load(vec![rel("doc:b#viewer@user:x")], TransactionMetadata::new())
        .await
        .expect("bulk load over an expired relationship");
    assert_eq!(read_at(&ds, loaded.revision, &filter("doc")).await.len(), 2);
}

// ---- delete by filter ----

fn delete_batch(
    filter: RelationshipFilter,
    limit: Option<usize>,
    allow_partial: bool,
) -> WriteBatch {
    WriteBatch {
        delete_by_filter: Some(DeleteByFilter {
            filter,
            limit,
            allow_partial,
        }),
        ..WriteBatch::default()
    }
}

pub async fn delete_by_filter_without_limit<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    touch(&ds, SOCIAL).await;
    let by_subject = RelationshipFilter {
        subject: Some(subject_filter("user", Some("bob"), None)),
        ..filter("document")
    };
    let outcome = ds
        .write(delete_batch(by_subject.clone(), None, false))
        .await
        .expect("delete succeeds");
    assert_eq!(outcome.deleted_by_filter, 3);
    assert!(!outcome.partial);
    assert!(read_at(&ds, outcome.revision, &by_subject).await.is_empty());
    assert_eq!(
        read_at(&ds, outcome.revision, &filter("document"))
            .await
            .len(),
        6
    );
}

pub async fn delete_by_filter_with_limit<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let r1 = touch(&ds, SOCIAL).await;
    let docs = filter("document");
    let err = ds
        .write(delete_batch(docs.clone(), Some(5), false))
        .await
        .expect_err("too many to delete");
    assert_eq!(err, DatastoreError::TooManyToDelete { limit: 5 });
    assert_head_is(&ds, r1, "a failed write").await;

    let partial = ds
        .write(delete_batch(docs.clone(), Some(5), true))
        .await
        .expect("partial delete");
    assert_eq!(partial.deleted_by_filter, 5);
    assert!(partial.partial);
    // The first five in key order went.
    assert_eq!(
        read_at(&ds, partial.revision, &docs).await,
        strs(&SOCIAL[5..9])
    );

    let exact = ds
        .write(delete_batch(docs.clone(), Some(4), false))
        .await
        .expect("exactly the limit");
    assert_eq!(exact.deleted_by_filter, 4);
    assert!(!exact.partial);
    assert!(read_at(&ds, exact.revision, &docs).await.is_empty());
}

pub async fn delete_by_filter_then_recreate<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    touch(&ds, &["doc:a#viewer@user:x", "doc:b#viewer@user:y"]).await;
    let mut batch = delete_batch(filter("doc"), None, false);
    batch.updates = vec![update(UpdateOperation::Create, "doc:a#viewer@user:x")];
    let outcome = ds
        .write(batch)
        .await
        .expect("create after the filter delete");
    assert_eq!(outcome.deleted_by_filter, 2);
    assert_eq!(
        read_at(&ds, outcome.revision, &filter("doc")).await,
        strs(&["doc:a#viewer@user:x"])
    );
}

// ---- bulk load ----

pub async fn bulk_load_inserts_all<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let r0 = head(&ds).await;
    let rels: Vec<Relationship> = (0..2000)
        .rev()
        .map(|i| rel(&format!("doc:{i:05}#viewer@user:u{}", i % 37)))
        .collect();
    let mut metadata = TransactionMetadata::new();
    metadata.insert("source".into(), serde_json::json!("import"));
    let outcome = ds
        .bulk_load(rels, metadata.clone())
        .await
        .expect("bulk load");
    let read = read_at(&ds, outcome.revision, &filter("doc")).await;
    assert_eq!(read.len(), 2000);
    assert_eq!(read[0], "doc:00000#viewer@user:u0");
    let changes = ds.changes_since(r0, 10).await.expect("changes since 0");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].changes.len(), 2000);
    assert_eq!(changes[0].metadata, metadata);
}

pub async fn bulk_load_rejects_existing<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let r1 = touch(&ds, &["doc:b#viewer@user:x"]).await;
    let rels = [
        "doc:a#viewer@user:x",
        "doc:b#viewer@user:x",
        "doc:c#viewer@user:x",
    ]
    .map(rel)
    .to_vec();
    let err = ds
        .bulk_load(rels, TransactionMetadata::new())
        .await
        .expect_err("existing relationship");
    assert_eq!(err, already_exists("doc:b#viewer@user:x"));
    assert_head_is(&ds, r1, "a failed write").await;
    assert_eq!(read_at(&ds, r1, &filter("doc")).await.len(), 1);
}

pub async fn bulk_load_rejects_duplicates<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let r0 = head(&ds).await;
    let mut caveated = rel("doc:a#viewer@user:x");
    caveated.caveat = Some(ContextualizedCaveat {
        name: "c".into(),
        context: serde_json::Map::new(),
    });
    let rels = vec![
        rel("doc:a#viewer@user:x"),
        rel("doc:z#viewer@user:x"),
        caveated,
    ];
    let err = ds
        .bulk_load(rels, TransactionMetadata::new())
        .await
        .expect_err("duplicate in the batch");
    assert_eq!(err, already_exists("doc:a#viewer@user:x"));
    assert_head_is(&ds, r0, "a failed load").await;
    assert!(read_at(&ds, r0, &filter("doc")).await.is_empty());
}

// ---- queries ----

pub async fn query_filters_and_order<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    // Written in reverse to show the order comes from the datastore.
    let mut reversed = SOCIAL.to_vec();
    reversed.reverse();
    let r = touch(&ds, &reversed).await;
    let reader = ds.snapshot(r);
    assert_eq!(read(&reader, &filter("document")).await, strs(&SOCIAL[..9]));
    let alpha = RelationshipFilter {
        resource_id: Some("alpha".into()),
        ..filter("document")
    };
    assert_eq!(read(&reader, &alpha).await, strs(&SOCIAL[..4]));
    let viewers = RelationshipFilter {
        relation: Some("viewer".into()),
        ..filter("document")
    };
    assert_eq!(
        read(&reader, &viewers).await,
        strs(&[
            SOCIAL[1], SOCIAL[2], SOCIAL[3], SOCIAL[4], SOCIAL[6], SOCIAL[7], SOCIAL[8]
        ])
    );
    let alpha_viewers_bob = RelationshipFilter {
        subject: Some(subject_filter("user", Some("bob"), None)),
        ..RelationshipFilter {
            relation: Some("viewer".into()),
            ..alpha.clone()
        }
    };
    assert_eq!(read(&reader, &alpha_viewers_bob).await, strs(&[SOCIAL[3]]));
    let unknown = RelationshipFilter {
        relation: Some("nothing".into()),
        ..filter("document")
    };
    assert!(read(&reader, &unknown).await.is_empty());
    assert!(read(&reader, &filter("unknown")).await.is_empty());
}

pub async fn query_by_subject<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let reader = ds.snapshot(touch(&ds, SOCIAL).await);
    let by = |id: Option<&str>, relation: Option<&str>| RelationshipFilter {
        subject: Some(subject_filter("user", id, relation)),
        ..RelationshipFilter::default()
    };
    assert_eq!(
        read(&reader, &by(Some("ann"), None)).await,
        strs(&[SOCIAL[0], SOCIAL[7], SOCIAL[9], SOCIAL[12]])
    );
    assert_eq!(
        read(&reader, &by(Some("*"), Some(ELLIPSIS))).await,
        strs(&[SOCIAL[2]])
    );
    // Every user subject, any id.
    assert_eq!(read(&reader, &by(None, None)).await.len(), 11);
    let groups_plain = RelationshipFilter {
        subject: Some(subject_filter("group", None, Some(ELLIPSIS))),
        ..RelationshipFilter::default()
    };
    assert_eq!(read(&reader, &groups_plain).await, strs(&[SOCIAL[6]]));
    let groups_member = RelationshipFilter {
        subject: Some(subject_filter("group", Some("eng"), Some("member"))),
        ..filter("document")
    };
    assert_eq!(read(&reader, &groups_member).await, strs(&[SOCIAL[1]]));
    let bob_on_documents = RelationshipFilter {
        subject: Some(subject_filter("user", Some("bob"), Some(ELLIPSIS))),
        ..filter("document")
    };
    assert_eq!(
        read(&reader, &bob_on_documents).await,
        strs(&[SOCIAL[3], SOCIAL[4], SOCIAL[5]])
    );
}

pub async fn query_resources_batches_ids<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let reader = ds.snapshot(touch(&ds, SOCIAL).await);
    let found = reader
        .query_resources("document", &["beta", "alpha", "nothing"], "viewer", &[])
        .await
        .expect("query_resources");
    let mut got = texts(&found);
    got.sort();
    assert_eq!(
        got,
        strs(&[SOCIAL[1], SOCIAL[2], SOCIAL[3], SOCIAL[6], SOCIAL[7]])
    );
    let users_only = reader
        .query_resources("document", &["alpha", "beta"], "viewer", &["user"])
        .await
        .expect("query_resources");
    let mut got = texts(&users_only);
    got.sort();
    assert_eq!(got, strs(&[SOCIAL[2], SOCIAL[3], SOCIAL[7]]));
    let none = reader
        .query_resources("document", &["alpha"], "viewer", &["team"])
        .await
        .expect("query_resources");
    assert!(none.is_empty());
}

pub async fn query_subjects_by_subject_relation<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let reader = ds.snapshot(touch(&ds, SOCIAL).await);
    let query = |ids: &[&str], relation: Option<&str>| ReverseQuery {
        subject_type: "user".into(),
        subject_ids: ids.iter().map(|s| s.to_string()).collect(),
        subject_relation: relation.map(Into::into),
        resource_type: "document".into(),
        resource_relation: "viewer".into(),
    };
    let run = |q: ReverseQuery| {
        let reader = reader.clone();
        async move {
            let rels = reader
                .query_subjects(&q, &Page::default())
                .await
                .expect("query_subjects");
            assert_key_order(&rels);
            texts(&rels)
        }
    };
    assert_eq!(
        run(query(&["bob", "ann", "*"], Some(ELLIPSIS))).await,
        strs(&[SOCIAL[2], SOCIAL[3], SOCIAL[4], SOCIAL[7]])
    );
    assert_eq!(run(query(&["carl"], None)).await, strs(&[SOCIAL[8]]));
    let groups = ReverseQuery {
        subject_type: "group".into(),
        ..query(&["eng"], None)
    };
    assert_eq!(run(groups.clone()).await, strs(&[SOCIAL[1], SOCIAL[6]]));
    let members = ReverseQuery {
        subject_relation: Some("member".into()),
        ..groups
    };
    assert_eq!(run(members).await, strs(&[SOCIAL[1]]));
}

// ---- paging ----

fn many() -> Vec<String> {
    let mut rels = Vec::new();
    for doc in 0..12 {
        for relation in ["editor", "owner", "viewer"] {
            for user in 0..3 {
                rels.push(format!("doc:d{doc:02}#{relation}@user:u{user}"));
            }
        }
    }
    rels.push("doc:d03#viewer@group:g#member".into());
    rels.push("doc:d03#viewer@group:g".into());
    rels
}

/// Reads every page of `fetch` and checks it against `all`.
async fn page_through<Fut>(all: &[String], limit: usize, fetch: impl Fn(Page) -> Fut)
where
    Fut: Future<Output = Vec<Relationship>>,
{
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = fetch(Page {
            after: after.clone(),
            limit: Some(limit),
            ..Default::default()
        })
        .await;
        assert!(page.len() <= limit);
        after = page.last().map(Relationship::key);
        let done = page.len() < limit;
        seen.extend(texts(&page));
        if done {
            break;
        }
    }
    assert_eq!(seen, all, "pages concatenate to the whole result");
}

pub async fn paging_has_no_gaps_or_duplicates<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let data = many();
    let refs: Vec<&str> = data.iter().map(String::as_str).collect();
    let reader = ds.snapshot(touch(&ds, &refs).await);
    let all_docs = read(&reader, &filter("doc")).await;
    assert_eq!(all_docs.len(), data.len());
    for limit in [1, 5, 7, 200] {
        page_through(&all_docs, limit, |page| {
            let reader = reader.clone();
            async move {
                let rels = reader.query(&filter("doc"), &page).await;
                rels.expect("query page")
            }
        })
        .await;
    }
    let by_user = RelationshipFilter {
        subject: Some(subject_filter("user", Some("u1"), None)),
        ..RelationshipFilter::default()
    };
    let all_u1 = read(&reader, &by_user).await;
    assert_eq!(all_u1.len(), 36);
    page_through(&all_u1, 5, |page| {
        let (reader, by_user) = (reader.clone(), by_user.clone());
        async move { reader.query(&by_user, &page).await.expect("query page") }
    })
    .await;
    let reverse = ReverseQuery {
        subject_type: "user".into(),
        subject_ids: vec!["u2".into(), "u0".into()],
        subject_relation: Some(ELLIPSIS.into()),
        resource_type: "doc".into(),
        resource_relation: "viewer".into(),
    };
    let all_reverse = texts(
        &reader
            .query_subjects(&reverse, &Page::default())
            .await
            .expect("query_subjects"),
    );
    assert_eq!(all_reverse.len(), 24);
    // Any order: the same relationships, and the same order every time.
    let unordered = texts(
        &reader
            .query_subjects(&reverse, &Page::everything_any_order())
            .await
            .expect("query_subjects in any order"),
    );
    let again = texts(
        &reader
            .query_subjects(&reverse, &Page::everything_any_order())
            .await
            .expect("query_subjects in any order"),
    );
    assert_eq!(unordered, again);
    let mut sorted = unordered.clone();
    sorted.sort();
    let mut expected = all_reverse.clone();
    expected.sort();
    assert_eq!(sorted, expected);
    page_through(&all_reverse, 5, |page| {
        let (reader, reverse) = (reader.clone(), reverse.clone());
        async move {
            let rels = reader.query_subjects(&reverse, &page).await;
            rels.expect("query_subjects page")
        }
    })
    .await;
}

pub async fn paging_resumes_after_a_deleted_cursor<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    touch(
        &ds,
        &[
            "doc:a#viewer@user:x",
            "doc:b#viewer@user:x",
            "doc:c#viewer@user:x",
        ],
    )
    .await;
    let r = delete(&ds, &["doc:b#viewer@user:x"]).await;
    let page = Page {
        after: Some(rel("doc:b#viewer@user:x").key()),
        limit: Some(10),
        ..Default::default()
    };
    let rels = ds
        .snapshot(r)
        .query(&filter("doc"), &page)
        .await
        .expect("query after a deleted key");
    assert_eq!(texts(&rels), strs(&["doc:c#viewer@user:x"]));
}

pub async fn resource_id_prefix<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let reader = ds.snapshot(touch(&ds, SOCIAL).await);
    let prefixed = |prefix: &str| RelationshipFilter {
        resource_id_prefix: Some(prefix.into()),
        ..filter("document")
    };
    assert_eq!(read(&reader, &prefixed("alpha")).await, strs(&SOCIAL[..5]));
    assert_eq!(read(&reader, &prefixed("alphab")).await, strs(&[SOCIAL[4]]));
    assert_eq!(read(&reader, &prefixed("b")).await, strs(&SOCIAL[5..8]));
    assert!(read(&reader, &prefixed("delta")).await.is_empty());
    let paged = reader
        .query(
            &prefixed("alpha"),
            &Page {
                after: Some(rel(SOCIAL[2]).key()),
                limit: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("prefix page");
    assert_eq!(texts(&paged), strs(&[SOCIAL[3]]));
}

// ---- expiration ----

pub async fn expired_relationships_are_hidden<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, clock } = fixture(factory).await;
    let mut expiring = rel("doc:a#viewer@user:x");
    expiring.expires_at = Some(clock.now_plus(Duration::from_secs(10)));
    let r = write_one(&ds, UpdateOperation::Touch, expiring.clone())
        .await
        .revision;
    touch(&ds, &["doc:b#viewer@user:x"]).await;
    let reader = ds.snapshot(r);
    assert_eq!(
        read(&reader, &filter("doc")).await,
        vec![expiring.to_string()]
    );
    clock.advance(Duration::from_secs(10));
    assert!(
        read(&reader, &filter("doc")).await.is_empty(),
        "expired at exactly expires_at"
    );
    let now = ds.snapshot(head(&ds).await);
    assert_eq!(
        read(&now, &filter("doc")).await,
        strs(&["doc:b#viewer@user:x"])
    );
    let resources = now
        .query_resources("doc", &["a", "b"], "viewer", &[])
        .await
        .expect("query_resources");
    assert_eq!(texts(&resources), strs(&["doc:b#viewer@user:x"]));
    let reverse = ReverseQuery {
        subject_type: "user".into(),
        subject_ids: vec!["x".into()],
        subject_relation: None,
        resource_type: "doc".into(),
        resource_relation: "viewer".into(),
    };
    let subjects = now
        .query_subjects(&reverse, &Page::default())
        .await
        .expect("query_subjects");
    assert_eq!(texts(&subjects), strs(&["doc:b#viewer@user:x"]));
}

// ---- schema ----

fn schema(text: &str) -> StoredSchema {
    StoredSchema {
        text: text.into(),
        hash: [text.len() as u8; 32],
    }
}

pub async fn schema_history_per_revision<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let r0 = head(&ds).await;
    let write_schema = |text: &'static str| {
        let ds = &ds;
        async move {
            let batch = WriteBatch {
                schema: Some(schema(text)),
                ..WriteBatch::default()
            };
            ds.write(batch).await.expect("schema write").revision
        }
    };
    let r1 = write_schema("definition user {}").await;
    let r2 = write_schema("definition user {}\ndefinition doc {}").await;
    let r3 = touch(&ds, &["doc:a#viewer@user:x"]).await;
    let at = |r: Revision| {
        let reader = ds.snapshot(r);
        async move {
            let schema = reader.schema().await.expect("schema read");
            schema.map(|s| s.text.clone())
        }
    };
    assert_eq!(at(r0).await, None);
    assert_eq!(at(r1).await.as_deref(), Some("definition user {}"));
    let v2 = Some("definition user {}\ndefinition doc {}");
    assert_eq!(at(r2).await.as_deref(), v2);
    assert_eq!(at(r3).await.as_deref(), v2);
    let stored = ds.snapshot(r1).schema().await.expect("schema read");
    assert_eq!(
        stored.map(|s| s.hash),
        Some(schema("definition user {}").hash)
    );
}

// ---- relationship counters ----

fn register(name: &str, resource_type: &str) -> CounterChange {
    CounterChange::Register(RelationshipCounter {
        name: name.into(),
        filter: filter(resource_type),
    })
}

fn unregister(name: &str) -> CounterChange {
    CounterChange::Unregister(name.into())
}

async fn change_counters<D: Datastore>(
    ds: &D,
    changes: Vec<CounterChange>,
) -> Result<Revision, DatastoreError> {
    let batch = WriteBatch {
        counters: changes,
        ..WriteBatch::default()
    };
    ds.write(batch).await.map(|outcome| outcome.revision)
}

/// `name=resource_type` for each counter registered at `revision`.
async fn counters_at<D: Datastore>(ds: &D, revision: Revision) -> Vec<String> {
    let counters = ds
        .snapshot(revision)
        .counters()
        .await
        .expect("counters read");
    counters
        .iter()
        .map(|c| {
            let resource_type = c.filter.resource_type.as_deref().unwrap_or("");
            format!("{}={resource_type}", c.name)
        })
        .collect()
}

/// Registrations are part of the versioned state: each takes a revision,
/// and a reader sees those made at or before its own, sorted by name.
pub async fn counters_are_versioned<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let r0 = head(&ds).await;
    let r1 = change_counters(&ds, vec![register("zeta", "doc")])
        .await
        .expect("register");
    assert!(r1 > r0, "a registration commits a revision");
    let r2 = change_counters(&ds, vec![register("alpha", "user")])
        .await
        .expect("register");
    let r3 = change_counters(&ds, vec![unregister("zeta")])
        .await
        .expect("unregister");
    let r4 = touch(&ds, &["doc:a#viewer@user:x"]).await;
    assert!(counters_at(&ds, r0).await.is_empty());
    assert_eq!(counters_at(&ds, r1).await, ["zeta=doc"]);
    assert_eq!(counters_at(&ds, r2).await, ["alpha=user", "zeta=doc"]);
    assert_eq!(counters_at(&ds, r3).await, ["alpha=user"]);
    assert_eq!(counters_at(&ds, r4).await, ["alpha=user"]);
    // The whole filter comes back.
    let full = RelationshipFilter {
        resource_type: Some("doc".into()),
        resource_id_prefix: Some("a".into()),
        relation: Some("viewer".into()),
        subject: Some(subject_filter("user", Some("x"), Some(ELLIPSIS))),
        ..RelationshipFilter::default()
    };
    let counter = RelationshipCounter {
        name: "full".into(),
        filter: full,
    };
    let r5 = change_counters(&ds, vec![CounterChange::Register(counter.clone())])
        .await
        .expect("register");
    let stored = ds.snapshot(r5).counters().await.expect("counters read");
    assert_eq!(stored.iter().find(|c| c.name == "full"), Some(&counter));
}

/// A registration of a taken name, or an unregistration of a free one,
/// fails the whole batch: no revision, no relationship written.
pub async fn counter_changes_that_conflict_change_nothing<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let r1 = change_counters(&ds, vec![register("views", "doc")])
        .await
        .expect("register");
    assert_eq!(
        change_counters(&ds, vec![register("views", "user")]).await,
        Err(DatastoreError::CounterAlreadyRegistered("views".into()))
    );
    assert_eq!(
        change_counters(&ds, vec![unregister("nosuch")]).await,
        Err(DatastoreError::CounterNotRegistered("nosuch".into()))
    );
    let mut batch = updates(UpdateOperation::Touch, &["doc:a#viewer@user:x"]);
    batch.counters = vec![register("views", "doc")];
    assert_eq!(
        ds.write(batch).await,
        Err(DatastoreError::CounterAlreadyRegistered("views".into()))
    );
    assert_head_is(&ds, r1, "a failed write").await;
    assert_eq!(counters_at(&ds, r1).await, ["views=doc"]);
    assert!(read_at(&ds, r1, &filter("doc")).await.is_empty());
}

/// The changes of one batch apply in order, each seeing the ones before.
pub async fn counter_changes_in_one_batch_apply_in_order<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let r1 = change_counters(
        &ds,
        vec![
            register("temp", "doc"),
            unregister("temp"),
            register("kept", "doc"),
        ],
    )
    .await
    .expect("changes apply in order");
    assert_eq!(counters_at(&ds, r1).await, ["kept=doc"]);
    assert_eq!(
        change_counters(&ds, vec![unregister("kept"), unregister("kept")]).await,
        Err(DatastoreError::CounterNotRegistered("kept".into()))
    );
    assert_eq!(counters_at(&ds, head(&ds).await).await, ["kept=doc"]);
}

/// Garbage collection keeps the counters in force at every readable
/// revision, however long ago they were registered.
pub async fn counters_survive_garbage_collection<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, clock } = fixture(factory).await;
    change_counters(&ds, vec![register("views", "doc")])
        .await
        .expect("register");
    clock.advance(Duration::from_secs(2 * 3600));
    let r2 = touch(&ds, &["doc:a#viewer@user:x"]).await;
    clock.advance(Duration::from_secs(2 * 3600));
    let r3 = touch(&ds, &["doc:b#viewer@user:x"]).await;
    ds.collect_garbage().await.expect("gc");
    assert_eq!(counters_at(&ds, r3).await, ["views=doc"]);
    assert!(ds.check_revision(r2).await.is_err());
}

// ---- change feed ----

pub async fn changes_since_lists_changes_in_order<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let r0 = head(&ds).await;
    let r1 = touch(&ds, &["doc:a#viewer@user:x", "doc:b#viewer@user:x"]).await;
    let mut metadata = TransactionMetadata::new();
    metadata.insert("request".into(), serde_json::json!("42"));
    let r2 = ds
        .write(WriteBatch {
            updates: vec![
                update(UpdateOperation::Delete, "doc:a#viewer@user:x"),
                update(UpdateOperation::Create, "doc:c#viewer@user:x"),
                update(UpdateOperation::Touch, "doc:b#viewer@user:x"),
                update(UpdateOperation::Delete, "doc:missing#viewer@user:x"),
            ],
            metadata: metadata.clone(),
            ..WriteBatch::default()
        })
        .await
        .expect("write")
        .revision;
    let r3 = ds
        .write(WriteBatch {
            delete_by_filter: Some(DeleteByFilter {
                filter: doc_filter("c"),
                limit: None,
                allow_partial: false,
            }),
            schema: Some(schema("definition doc {}")),
            ..WriteBatch::default()
        })
        .await
        .expect("write")
        .revision;
    let feed = ds.changes_since(r0, 100).await.expect("changes since r0");
    let revisions: Vec<Revision> = feed.iter().map(|c| c.revision).collect();
    assert_eq!(revisions, vec![r1, r2, r3]);
    assert_eq!(
        feed[0].changes,
        vec![
            Change::Touch(rel("doc:a#viewer@user:x")),
            Change::Touch(rel("doc:b#viewer@user:x")),
        ]
    );
    assert_eq!(
        feed[1].changes,
        vec![
            Change::Delete(rel("doc:a#viewer@user:x")),
            Change::Touch(rel("doc:c#viewer@user:x")),
            Change::Touch(rel("doc:b#viewer@user:x")),
        ]
    );
    assert_eq!(feed[1].metadata, metadata);
    assert!(!feed[1].schema_changed);
    assert_eq!(
        feed[2].changes,
        vec![Change::Delete(rel("doc:c#viewer@user:x"))]
    );
    assert!(feed[2].schema_changed);
}

pub async fn changes_since_respects_limit_and_head<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let mut revisions = Vec::new();
    for i in 0..4 {
        revisions.push(touch(&ds, &[&format!("doc:{i}#viewer@user:x")]).await);
    }
    let two = ds.changes_since(revisions[0], 2).await.expect("feed");
    let got: Vec<Revision> = two.iter().map(|c| c.revision).collect();
    assert_eq!(got, revisions[1..3]);
    let at_head = ds.changes_since(revisions[3], 10).await.expect("feed");
    assert!(at_head.is_empty());
}

/// Expiry is not a change: a relationship that expires appears in the feed
/// only when written, and deleting or GC-ing it once expired adds nothing
/// (Watch does not report expiry-driven deletions).
pub async fn changes_since_omits_expiry<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, clock } = fixture(factory).await;
    let r0 = head(&ds).await;
    let mut expiring = rel("doc:a#viewer@user:x");
    expiring.expires_at = Some(clock.now_plus(Duration::from_secs(10)));
    let r1 = write_one(&ds, UpdateOperation::Touch, expiring.clone())
        .await
        .revision;
    clock.advance(Duration::from_secs(10));
    let r2 = delete(&ds, &["doc:a#viewer@user:x"]).await;
    let r3 = touch(&ds, &["doc:b#viewer@user:x"]).await;
    let feed = ds.changes_since(r1, 10).await.expect("feed");
    assert_eq!(
        feed.iter().map(|c| c.revision).collect::<Vec<_>>(),
        vec![r2, r3]
    );
    assert!(
        feed[0].changes.is_empty(),
        "deleting an expired relationship is no change: {:?}",
        feed[0].changes
    );
    assert_eq!(
        feed[1].changes,
        vec![Change::Touch(rel("doc:b#viewer@user:x"))]
    );
    let feed = ds.changes_since(r0, 10).await.expect("feed");
    assert_eq!(feed[0].changes, vec![Change::Touch(expiring)]);
}

/// `wait_for_commit` answers at once when a newer revision exists, and
/// otherwise wakes with the revision of the next commit.
pub async fn wait_for_commit_wakes_on_the_next_commit<F: DatastoreFactory>(factory: &F) {
    // Generous bounds: a hung wait fails the test instead of hanging it.
    const BOUND: Duration = Duration::from_secs(30);
    let Fixture { ds, .. } = fixture(factory).await;
    let r0 = head(&ds).await;
    let r1 = touch(&ds, &["doc:a#viewer@user:x"]).await;
    let already = tokio::time::timeout(BOUND, ds.wait_for_commit(r0))
        .await
        .expect("a newer revision exists: no wait")
        .expect("wait succeeds");
    assert_eq!(already, r1);
    let (woken, r2) = tokio::join!(tokio::time::timeout(BOUND, ds.wait_for_commit(r1)), async {
        // The waiter is polled first and finds nothing newer.
        tokio::task::yield_now().await;
        touch(&ds, &["doc:b#viewer@user:x"]).await
    });
    let woken = woken.expect("woken by the commit").expect("wait succeeds");
    assert_eq!(woken, r2);
    let idle = tokio::time::timeout(Duration::from_millis(20), ds.wait_for_commit(r2)).await;
    assert!(idle.is_err(), "no commit after r2, yet the wait ended");
}

// ---- revision policy ----

pub async fn check_revision_range<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, clock } = fixture(factory).await;
    let r1 = touch(&ds, &["doc:a#viewer@user:x"]).await;
    ds.check_revision(r1).await.expect("head is valid");
    ds.check_revision(Revision(0)).await.expect("in the window");
    let future = Revision(r1.0 + 1_000_000);
    match ds.check_revision(future).await {
        Err(DatastoreError::RevisionOutOfRange(message)) => {
            assert!(message.contains(&future.to_string()), "{message}");
        }
        other => panic!("a future revision must be out of range, got {other:?}"),
    }
    clock.advance(Duration::from_secs(2 * 3600));
    ds.check_revision(r1)
        .await
        .expect("the newest revision is always valid");
    let r2 = touch(&ds, &["doc:b#viewer@user:x"]).await;
    match ds.check_revision(r1).await {
        Err(DatastoreError::RevisionOutOfRange(message)) => {
            assert!(message.contains(&r1.to_string()), "{message}");
        }
        other => panic!("a revision older than the window must fail, got {other:?}"),
    }
    ds.check_revision(r2).await.expect("head is valid");
}

pub async fn optimized_revision_is_quantized<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, clock } = fixture(factory).await;
    let r1 = touch(&ds, &["doc:a#viewer@user:x"]).await;
    // r1 was committed in the current window: not yet shared.
    let first = ds.optimized_revision().await.expect("optimized");
    assert!(first < r1);
    // Next window (the smear is at most 10% of it, less than the 2.5 s
    // left before the boundary): r1 is the newest before its start.
    clock.advance(Duration::from_secs(5));
    let r2 = touch(&ds, &["doc:b#viewer@user:x"]).await;
    for _ in 0..20 {
        let optimized = ds.optimized_revision().await.expect("optimized");
        assert_eq!(optimized, r1, "stable within the window");
        assert!(optimized <= head(&ds).await);
    }
    clock.advance(Duration::from_secs(5));
    assert_eq!(ds.optimized_revision().await.expect("optimized"), r2);
    ds.check_revision(r2)
        .await
        .expect("optimized revisions are readable");
}

// ---- garbage collection ----

pub async fn gc_keeps_what_readers_see<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, clock } = fixture(factory).await;
    let r1 = touch(
        &ds,
        &[
            "doc:a#viewer@user:x",
            "doc:b#viewer@user:x",
            "doc:c#viewer@user:x",
        ],
    )
    .await;
    clock.advance(Duration::from_secs(600));
    let mut caveated = rel("doc:b#viewer@user:x");
    caveated.caveat = Some(ContextualizedCaveat {
        name: "c".into(),
        context: serde_json::Map::new(),
    });
    let r2 = ds
        .write(WriteBatch {
            updates: vec![
                update(UpdateOperation::Delete, "doc:a#viewer@user:x"),
                RelationshipUpdate {
                    operation: UpdateOperation::Touch,
                    relationship: caveated,
                },
            ],
            ..WriteBatch::default()
        })
        .await
        .expect("write")
        .revision;
    // r1 leaves the window; r2 (committed 10 minutes later) stays in it.
    clock.advance(Duration::from_secs(3600 - 300));
    let r3 = delete(&ds, &["doc:c#viewer@user:x"]).await;
    let readers = [ds.snapshot(r2), ds.snapshot(r3)];
    let mut before = Vec::new();
    for reader in &readers {
        before.push(read(reader, &filter("doc")).await);
    }
    let reclaimed = ds.collect_garbage().await.expect("gc");
    // doc:a and the old doc:b, both deleted at r2, the oldest readable revision.
    assert_eq!(reclaimed, 2);
    for (reader, seen) in readers.iter().zip(&before) {
        assert_eq!(&read(reader, &filter("doc")).await, seen);
    }
    assert!(ds.check_revision(r1).await.is_err());
    assert_eq!(
        ds.collect_garbage().await.expect("gc"),
        0,
        "nothing left to reclaim"
    );
    // Once r3 is the oldest readable revision, doc:c goes too.
    clock.advance(Duration::from_secs(3600));
    touch(&ds, &["doc:d#viewer@user:x"]).await;
    assert_eq!(ds.collect_garbage().await.expect("gc"), 1);
    let now = ds.snapshot(head(&ds).await);
    assert_eq!(read(&now, &filter("doc")).await.len(), 2);
}

pub async fn gc_reclaims_expired_relationships<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, clock } = fixture(factory).await;
    let mut expiring = rel("doc:a#viewer@user:x");
    expiring.expires_at = Some(clock.now_plus(Duration::from_secs(60)));
    write_one(&ds, UpdateOperation::Touch, expiring).await;
    touch(&ds, &["doc:b#viewer@user:x"]).await;
    clock.advance(Duration::from_secs(2 * 3600));
    touch(&ds, &["doc:c#viewer@user:x"]).await;
    assert_eq!(ds.collect_garbage().await.expect("gc"), 1);
    let now = ds.snapshot(head(&ds).await);
    assert_eq!(
        read(&now, &filter("doc")).await,
        strs(&["doc:b#viewer@user:x", "doc:c#viewer@user:x"])
    );
}

pub async fn gc_truncates_the_change_feed<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, clock } = fixture(factory).await;
    let r1 = touch(&ds, &["doc:a#viewer@user:x"]).await;
    clock.advance(Duration::from_secs(2 * 3600));
    let r2 = touch(&ds, &["doc:b#viewer@user:x"]).await;
    let r3 = touch(&ds, &["doc:c#viewer@user:x"]).await;
    ds.collect_garbage().await.expect("gc");
    let err = ds
        .changes_since(r1, 10)
        .await
        .expect_err("the feed before the window is gone");
    assert!(matches!(err, DatastoreError::RevisionOutOfRange(_)));
    let feed = ds.changes_since(r2, 10).await.expect("feed from r2");
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].revision, r3);
    assert_eq!(
        feed[0].changes,
        vec![Change::Touch(rel("doc:c#viewer@user:x"))]
    );
}

// ---- differential test against a reference model ----

/// splitmix64: a deterministic stream, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

type Model = BTreeMap<RelationshipKey, Relationship>;

const MODEL_TYPES: &[&str] = &["doc", "folder"];
const MODEL_RELATIONS: &[&str] = &["owner", "viewer"];

fn model_resource_id(rng: &mut Rng) -> String {
    // Shared prefixes ("a1", "a10", "a100") exercise prefix filters.
    let prefix = rng.pick(&["a", "b", "ab"]);
    format!("{prefix}{}", rng.below(150))
}

fn model_subject(rng: &mut Rng) -> SubjectRef {
    match rng.below(10) {
        0 => SubjectRef::object("user", "*"),
        1 => SubjectRef::set("group", format!("g{}", rng.below(4)), "member"),
        2 => SubjectRef::object("group", format!("g{}", rng.below(4))),
        _ => SubjectRef::object("user", format!("u{}", rng.below(12))),
    }
}

fn model_relationship(rng: &mut Rng) -> Relationship {
    Relationship {
        resource: ObjectRef::new(rng.pick(MODEL_TYPES), model_resource_id(rng)),
        relation: rng.pick(MODEL_RELATIONS).into(),
        subject: model_subject(rng),
        caveat: None,
        expires_at: None,
    }
}

fn model_filter(rng: &mut Rng) -> RelationshipFilter {
    let mut filter = RelationshipFilter::default();
    if rng.chance(75) {
        filter.resource_type = Some(rng.pick(MODEL_TYPES).into());
        match rng.below(3) {
            0 => filter.resource_id = Some(model_resource_id(rng)),
            1 => filter.resource_id_prefix = Some(rng.pick(&["a", "a1", "ab", "b12"]).into()),
            _ => {}
        }
    }
    if rng.chance(40) {
        filter.relation = Some(rng.pick(MODEL_RELATIONS).into());
    }
    if filter.resource_type.is_none() || rng.chance(30) {
        let subject = model_subject(rng);
        filter.subject = Some(SubjectFilter {
            subject_type: subject.object.object_type,
            subject_id: rng.chance(70).then_some(subject.object.object_id),
            relation: rng.chance(50).then_some(subject.relation),
        });
    }
    filter
}

fn model_query(model: &Model, filter: &RelationshipFilter) -> Vec<String> {
    let found: Vec<Relationship> = model
        .iter()
        .filter(|(key, _)| filter.matches(key))
        .map(|(_, rel)| rel.clone())
        .collect();
    texts(&found)
}

/// Applies one random write to the datastore and the model alike.
async fn model_write<D: Datastore>(ds: &D, model: &mut Model, rng: &mut Rng) {
    if rng.chance(15) {
        let mut seen = BTreeMap::new();
        for _ in 0..rng.below(1200) {
            let rel = model_relationship(rng);
            if !model.contains_key(&rel.key()) {
                seen.insert(rel.key(), rel);
            }
        }
        let rels: Vec<Relationship> = seen.values().cloned().collect();
        ds.bulk_load(rels, TransactionMetadata::new())
            .await
            .expect("bulk load of new relationships");
        model.extend(seen);
        return;
    }
    if rng.chance(10) {
        let filter = model_filter(rng);
        let matching: Vec<RelationshipKey> = model
            .keys()
            .filter(|key| filter.matches(key))
            .cloned()
            .collect();
        let limit = (!rng.chance(10)).then(|| rng.below(60));
        let outcome = ds.write(delete_batch(filter, limit, true)).await;
        let outcome = outcome.expect("partial delete by filter");
        let deleted = limit.map_or(matching.len(), |l| l.min(matching.len()));
        assert_eq!(outcome.deleted_by_filter, deleted);
        for key in &matching[..deleted] {
            model.remove(key);
        }
        return;
    }
    let mut batch = WriteBatch::default();
    let mut next = model.clone();
    let mut keys = std::collections::BTreeSet::new();
    let mut conflict = false;
    for _ in 0..1 + rng.below(30) {
        let rel = model_relationship(rng);
        if !keys.insert(rel.key()) {
            continue;
        }
        let operation = match rng.below(3) {
            0 => UpdateOperation::Create,
            1 => UpdateOperation::Touch,
            _ => UpdateOperation::Delete,
        };
        match operation {
            UpdateOperation::Create => {
                conflict |= next.insert(rel.key(), rel.clone()).is_some();
            }
            UpdateOperation::Touch => {
                next.insert(rel.key(), rel.clone());
            }
            UpdateOperation::Delete => {
                next.remove(&rel.key());
            }
        }
        batch.updates.push(RelationshipUpdate {
            operation,
            relationship: rel,
        });
    }
    match ds.write(batch).await {
        Ok(_) => {
            assert!(!conflict, "a CREATE of an existing relationship succeeded");
            *model = next;
        }
        Err(DatastoreError::AlreadyExists(_)) => assert!(conflict),
        Err(other) => panic!("unexpected write error: {other}"),
    }
}

/// Checks one random read of a past revision against the model.
async fn model_check<R: Reader>(reader: &R, model: &Model, rng: &mut Rng) {
    let filter = model_filter(rng);
    let expected = model_query(model, &filter);
    assert_eq!(read(reader, &filter).await, expected, "filter {filter:?}");
    let limit = 1 + rng.below(40);
    let mut after = None;
    let mut paged = Vec::new();
    loop {
        let page = Page {
            after: after.clone(),
            limit: Some(limit),
            ..Default::default()
        };
        let rels = reader.query(&filter, &page).await.expect("query page");
        after = rels.last().map(Relationship::key);
        paged.extend(texts(&rels));
        if rels.len() < limit {
            break;
        }
    }
    assert_eq!(paged, expected, "pages of {limit}, filter {filter:?}");

    let subject = model_subject(rng);
    let query = ReverseQuery {
        subject_type: subject.object.object_type.clone(),
        subject_ids: (0..1 + rng.below(3))
            .map(|_| model_subject(rng).object.object_id)
            .collect(),
        subject_relation: rng.chance(50).then(|| subject.relation.clone()),
        resource_type: rng.pick(MODEL_TYPES).into(),
        resource_relation: rng.pick(MODEL_RELATIONS).into(),
    };
    let expected: Vec<String> = model
        .values()
        .filter(|rel| {
            rel.resource.object_type == query.resource_type
                && rel.relation == query.resource_relation
                && rel.subject.object.object_type == query.subject_type
                && query.subject_ids.contains(&rel.subject.object.object_id)
                && query
                    .subject_relation
                    .as_ref()
                    .is_none_or(|r| *r == rel.subject.relation)
        })
        .map(ToString::to_string)
        .collect();
    let page = Page {
        after: None,
        limit: Some(limit),
        ..Default::default()
    };
    let got = reader.query_subjects(&query, &page).await;
    let got = texts(&got.expect("query_subjects"));
    let want = &expected[..limit.min(expected.len())];
    assert_eq!(got, want, "{query:?}");

    let resource_type = rng.pick(MODEL_TYPES);
    let relation = rng.pick(MODEL_RELATIONS);
    let ids: Vec<String> = (0..rng.below(6)).map(|_| model_resource_id(rng)).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut got = texts(
        &reader
            .query_resources(resource_type, &id_refs, relation, &["user"])
            .await
            .expect("query_resources"),
    );
    got.sort();
    let mut expected: Vec<String> = model
        .values()
        .filter(|rel| {
            rel.resource.object_type == resource_type
                && rel.relation == relation
                && ids.contains(&rel.resource.object_id)
                && rel.subject.object.object_type == "user"
        })
        .map(ToString::to_string)
        .collect();
    expected.sort();
    assert_eq!(
        got, expected,
        "query_resources {resource_type} {ids:?} {relation}"
    );
}

/// Random writes (sized to split and merge index chunks), each followed by
/// random reads at a random earlier revision, all checked against a plain
/// map of the expected state per revision.
pub async fn matches_a_reference_model<F: DatastoreFactory>(factory: &F) {
    let Fixture { ds, .. } = fixture(factory).await;
    let mut rng = Rng(0x007E_E115);
    let mut model = Model::new();
    // A bounded sample of past revisions and their expected states.
    let mut history = vec![(head(&ds).await, model.clone())];
    for _ in 0..120 {
        model_write(&ds, &mut model, &mut rng).await;
        if history.len() == 8 {
            history.remove(rng.below(history.len()));
        }
        history.push((head(&ds).await, model.clone()));
        let (revision, past) = &history[rng.below(history.len())];
        model_check(&ds.snapshot(*revision), past, &mut rng).await;
    }
    assert!(
        model.len() > 3000,
        "the run grew to {} relationships",
        model.len()
    );
}
