//! LookupResources on the social-network example
//! (schema-examples/social-network.zed): a user who can see 10,000 of
//! 1,000,000 content objects. Each content object is owned by one of
//! 10,000 users and visible to that owner's followers; the looking user
//! follows 100 of the owners, so exactly 10,000 posts are visible (2M
//! relationships in all). Every result goes through the exclusion in
//! `view = (owner + visibility) - owner->blocked`, so every candidate the
//! reverse walk finds is confirmed by a batched check.
//!
//! `cargo bench --bench lookup` prints the median time to the first result
//! and to the last (whole stream drained), over the in-process service
//! stack (`Services` → walk → local dispatcher → memory datastore; no gRPC),
//! and checks the count is exactly 10,000 so a broken walk cannot look
//! fast. Without `--bench` (as `cargo test --all-targets` runs it) it is a
//! smoke test on 10,000 content objects.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use futures::StreamExt as _;
use trellis::datastore::memory::MemoryDatastore;
use trellis::datastore::{RevisionConfig, SystemClock};
use trellis::model::{Consistency, ObjectRef, Relationship, SubjectRef};
use trellis::service::{Limits, LookupResourcesParams, Services};

const SCHEMA: &str = include_str!("../schema-examples/social-network.zed");
const OWNERS: usize = 10_000;
const FOLLOWED: usize = 100;
const IMPORT_CHUNK: usize = 10_000;

type Stack = Arc<Services<MemoryDatastore>>;

fn rel(resource: ObjectRef, relation: &str, subject: SubjectRef) -> Relationship {
    Relationship {
        resource,
        relation: relation.to_string(),
        subject,
        caveat: None,
        expires_at: None,
    }
}

/// `contents` posts over `OWNERS` owners, and a reader following the
/// first `FOLLOWED` owners.
fn network(contents: usize) -> Vec<Relationship> {
    let mut rels = Vec::with_capacity(contents * 2 + FOLLOWED);
    for i in 0..contents {
        let owner = format!("u{}", i % OWNERS);
        let post = ObjectRef::new("content", format!("c{i}"));
        rels.push(rel(
            post.clone(),
            "owner",
            SubjectRef::object("user", &owner),
        ));
        rels.push(rel(
            post,
            "visibility",
            SubjectRef::set("user", &owner, "follower"),
        ));
    }
    for f in 0..FOLLOWED {
        rels.push(rel(
            ObjectRef::new("user", format!("u{f}")),
            "follower",
            SubjectRef::object("user", "reader"),
        ));
    }
    rels
}

async fn load(contents: usize) -> Stack {
    let datastore = Arc::new(MemoryDatastore::new(
        RevisionConfig::default(),
        Arc::new(SystemClock),
    ));
    let stack = trellis::server::services(datastore, Limits::default());
    stack.write_schema(SCHEMA).await.expect("schema");
    let rels = network(contents);
    for chunk in rels.chunks(IMPORT_CHUNK) {
        stack
            .import_relationships(chunk.to_vec())
            .await
            .expect("import");
    }
    stack
}

fn params() -> LookupResourcesParams {
    LookupResourcesParams {
        resource_type: "content".into(),
        permission: "view".into(),
        subject: SubjectRef::object("user", "reader"),
        context: Default::default(),
        limit: None,
        cursor: None,
    }
}

/// Results until the first (`first_only`) or the last; and the time.
async fn lookup(stack: &Stack, first_only: bool) -> (usize, Duration) {
    let started = Instant::now();
    let (_, mut stream) = stack
        .lookup_resources(params(), Consistency::FullyConsistent)
        .await
        .expect("lookup");
    let mut count = 0;
    while let Some(item) = stream.next().await {
        item.expect("result");
        count += 1;
        if first_only {
            break;
        }
    }
    (count, started.elapsed())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let contents = if full { 1_000_000 } else { 10_000 };
    let expected = FOLLOWED * contents / OWNERS;
    let rt = support::runtime();
    let loading = Instant::now();
    let stack = rt.block_on(load(contents));
    eprintln!(
        "loaded {} relationships in {:.1?}",
        contents * 2 + FOLLOWED,
        loading.elapsed()
    );
    let (count, once) = rt.block_on(lookup(&stack, false));
    assert_eq!(count, expected, "the reader sees exactly {expected} posts");
    eprintln!("one cold pass: {count} results in {once:.1?}");

    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(if full { 20 } else { 2 }))
        .configure_from_args();
    let label = if full { "10k_of_1M" } else { "100_of_10k" };
    let mut group = criterion.benchmark_group("lookup_resources");
    group.bench_function(format!("{label}/first_result"), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rt.block_on(lookup(&stack, true)).1)
                .sum()
        })
    });
    group.bench_function(format!("{label}/all_results"), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| rt.block_on(lookup(&stack, false)).1)
                .sum()
        })
    });
    group.finish();
    criterion.final_summary();
}
