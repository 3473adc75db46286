//! Memory datastore: bulk-load throughput (criterion) and resident memory
//! per stored relationship, on social-network-shaped data: users follow
//! each other, posts are owned by users and visible to `user:*` or to the
//! owner's `user:…#follower`.
//!
//! `cargo bench --bench memory_datastore` prints bytes per relationship at
//! 100k and 1M first (each measured in a fresh child process, so memory one
//! run freed cannot flatter the next), then runs the throughput benchmark.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use trellis::datastore::memory::MemoryDatastore;
use trellis::datastore::{Datastore, RevisionConfig, SystemClock, TransactionMetadata};
use trellis::model::{ObjectRef, Relationship, SubjectRef};

/// Set in a child process: load this many relationships and report RSS.
const RSS_ENV: &str = "TRELLIS_BENCH_RSS_N";
/// Relationships per bulk-load call in the RSS measurement (as an import
/// tool would send them), so the input never dominates the heap.
const LOAD_BATCH: usize = 10_000;

/// splitmix64: deterministic data without a dependency.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The `i`-th of `n` relationships: the first half are follows (each user
/// is followed by five distinct others), the rest posts (owner + viewer).
fn social(i: usize, n: usize) -> Relationship {
    let users = (n / 10).max(10);
    let follows = n / 2;
    if i < follows {
        let (user, j) = (i / 5, i % 5);
        let band = users / 5;
        let offset = 1 + j * band + (mix(i as u64) as usize) % (band - 1).max(1);
        let follower = (user + offset) % users;
        return relationship(
            ("user", format!("u{user}")),
            "follower",
            SubjectRef::object("user", format!("u{follower}")),
        );
    }
    let post = (i - follows) / 2;
    let owner = (mix(post as u64) as usize) % users;
    let resource = ("post", format!("p{post}"));
    if (i - follows).is_multiple_of(2) {
        return relationship(
            resource,
            "owner",
            SubjectRef::object("user", format!("u{owner}")),
        );
    }
    let subject = if mix(post as u64 ^ 0xABCD) % 10 < 3 {
        SubjectRef::object("user", "*")
    } else {
        SubjectRef::set("user", format!("u{owner}"), "follower")
    };
    relationship(resource, "viewer", subject)
}

fn relationship(resource: (&str, String), relation: &str, subject: SubjectRef) -> Relationship {
    Relationship {
        resource: ObjectRef::new(resource.0, resource.1),
        relation: relation.into(),
        subject,
        caveat: None,
        expires_at: None,
    }
}

/// In a child: loads `n` relationships in batches and prints
/// `bytes_per_relationship seconds`.
fn measure_rss(n: usize) {
    let rt = support::runtime();
    let ds = MemoryDatastore::new(RevisionConfig::default(), Arc::new(SystemClock));
    // Warm the allocator with one batch's worth of input first.
    drop((0..LOAD_BATCH).map(|i| social(i, n)).collect::<Vec<_>>());
    let before = support::rss_bytes();
    let started = Instant::now();
    for start in (0..n).step_by(LOAD_BATCH) {
        let batch: Vec<Relationship> = (start..(start + LOAD_BATCH).min(n))
            .map(|i| social(i, n))
            .collect();
        rt.block_on(ds.bulk_load(batch, TransactionMetadata::new()))
            .expect("bulk load");
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = support::rss_bytes();
    println!(
        "{} {seconds}",
        after.saturating_sub(before) as f64 / n as f64
    );
    drop(ds);
}

/// Runs `measure_rss` for each size in a fresh process and prints it.
fn report_rss() {
    let exe = std::env::current_exe().expect("bench executable path");
    for n in [100_000, 1_000_000] {
        let output = Command::new(&exe)
            .env(RSS_ENV, n.to_string())
            .output()
            .expect("run the RSS child");
        let text = String::from_utf8_lossy(&output.stdout);
        let mut fields = text.split_whitespace();
        let (Some(bytes), Some(seconds)) = (fields.next(), fields.next()) else {
            eprintln!(
                "rss/{n}: child failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            continue;
        };
        let seconds: f64 = seconds.parse().unwrap_or(f64::NAN);
        println!(
            "memory_datastore/rss/{n}: {bytes} bytes per relationship \
             (loaded in batches of {LOAD_BATCH} at {:.0} relationships/s)",
            n as f64 / seconds
        );
    }
}

fn bulk_load(c: &mut Criterion) {
    let rt = support::runtime();
    let n = 100_000;
    let mut group = c.benchmark_group("memory_datastore");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function("bulk_load/100k", |b| {
        b.iter_batched(
            || {
                let ds = MemoryDatastore::new(RevisionConfig::default(), Arc::new(SystemClock));
                let rels: Vec<Relationship> = (0..n).map(|i| social(i, n)).collect();
                (ds, rels)
            },
            |(ds, rels)| {
                rt.block_on(ds.bulk_load(rels, TransactionMetadata::new()))
                    .expect("bulk load");
                ds
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bulk_load);

fn main() {
    if let Ok(n) = std::env::var(RSS_ENV) {
        measure_rss(n.parse().expect("a relationship count"));
        return;
    }
    // `cargo test --benches` runs this binary with `--bench` absent: keep it quick.
    if std::env::args().any(|a| a == "--bench") {
        report_rss();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
