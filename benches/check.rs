//! End-to-end CheckPermission on the social-network example
//! (schema-examples/social-network.zed, data from `workload::social_network`)
//! at 100k and 1M relationships, through the whole in-process stack that
//! `server::services_with` builds: `Services` → dispatcher chain → graph
//! engine → memory datastore. No gRPC. Each size is measured twice over the
//! same loaded datastore: `cache_off` (singleflight → local) and `cache_on`
//! (the dispatch cache in front, as `trellis serve` runs by default).
//!
//! `cargo bench --bench check` prints, per size:
//! - the bulk-load rate through `Services::import_relationships` and the
//!   resident memory per stored relationship, each measured once in a fresh
//!   child process (loading 1M is too slow for a criterion loop, and memory
//!   one run freed must not flatter the next);
//! - p50/p95/p99 of 100k single checks timed one by one after a warm-up
//!   pass, with the answer mix, so a broken engine cannot look fast; with
//!   the cache on, the warm-up pass starts from an empty cache and fills it
//!   (requests repeat: 1 % of the users ask), the timed pass draws as many
//!   new requests from the same users, and the hit ratio of both passes is
//!   printed;
//! - a criterion benchmark `check/social_network/{100k,1M}/cache_{off,on}`
//!   over the same requests (its median is in
//!   `target/criterion/check/*/*/new/estimates.json`).
//!
//! `TRELLIS_BENCH_CHECK_SIZE=100k` (or `1M`) measures one size only.
//!
//! Everything runs on one current-thread tokio runtime: one thread, one
//! request at a time.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use trellis::datastore::memory::MemoryDatastore;
use trellis::datastore::{RevisionConfig, SystemClock};
use trellis::dispatch::settings::DispatchSettings;
use trellis::model::{Consistency, Relationship};
use trellis::service::{CheckParams, Limits, Permissionship, Services};
use trellis::workload::{self, SocialShape, SplitMix64};

const SCHEMA: &str = include_str!("../schema-examples/social-network.zed");
/// Seeds the network and the check requests; any fixed value will do.
const SEED: u64 = 1_000_000;
/// Relationships per `import_relationships` call: one transaction each, as
/// an import client streams them; small enough that the input of one call
/// never dominates the heap.
const IMPORT_CHUNK: usize = 10_000;
/// Set in a child process: load this many relationships, print the load
/// rate and resident bytes per relationship.
const LOAD_ENV: &str = "TRELLIS_BENCH_CHECK_LOAD_N";
/// Restricts a run to the size with this label (`100k`, `1M`).
const SIZE_ENV: &str = "TRELLIS_BENCH_CHECK_SIZE";

/// What one run measures.
struct Plan {
    sizes: &'static [(usize, &'static str)],
    /// Pre-generated requests; the warm-up pass and the timed pass each
    /// go through all of them once.
    checks: usize,
}

const FULL: Plan = Plan {
    sizes: &[(100_000, "100k"), (1_000_000, "1M")],
    checks: 100_000,
};
/// `cargo test --benches` runs this binary without `--bench`: a smoke test.
const SMOKE: Plan = Plan {
    sizes: &[(10_000, "10k")],
    checks: 1_000,
};

type Stack = Arc<Services<MemoryDatastore>>;

fn datastore() -> Arc<MemoryDatastore> {
    Arc::new(MemoryDatastore::new(
        RevisionConfig::default(),
        Arc::new(SystemClock),
    ))
}

/// The service stack the server builds over `datastore`, with the dispatch
/// cache on or off (default size and time to live otherwise).
fn stack(datastore: Arc<MemoryDatastore>, cache: bool) -> Stack {
    let dispatch = DispatchSettings {
        cache_enabled: cache,
        ..DispatchSettings::default()
    };
    trellis::server::services_with(
        datastore,
        Limits::default(),
        &dispatch,
        &RevisionConfig::default(),
    )
}

/// Writes the schema, then imports `relationships` in chunks; returns the
/// time spent inside `import_relationships` (copying each chunk, which
/// stands in for decoding a request, is not counted).
fn load(
    rt: &tokio::runtime::Runtime,
    services: &Stack,
    relationships: &[Relationship],
) -> Duration {
    rt.block_on(services.write_schema(SCHEMA))
        .expect("write the social-network schema");
    let mut importing = Duration::ZERO;
    for chunk in relationships.chunks(IMPORT_CHUNK) {
        let batch = chunk.to_vec();
        let started = Instant::now();
        rt.block_on(services.import_relationships(batch))
            .expect("import relationships");
        importing += started.elapsed();
    }
    importing
}

/// In a child: loads a network of `n` relationships and prints
/// `count seconds bytes_per_relationship`.
///
/// The RSS delta covers everything the stack holds after the load: the
/// datastore (record slab, interner, forward and reverse indexes, revision
/// history with its change log), the compiled schema, the services and the
/// dispatcher, plus whatever the allocator keeps of one chunk's copy. The
/// generated input and the runtime exist before the first reading, so they
/// are not counted; one chunk is copied and freed before it so that the
/// allocator's pool for chunk copies is already there.
fn measure_load(n: usize) {
    let rt = support::runtime();
    let relationships = workload::social_network(n, SEED);
    drop(relationships[..IMPORT_CHUNK.min(relationships.len())].to_vec());
    let before = support::rss_bytes();
    let services = stack(datastore(), true);
    let importing = load(&rt, &services, &relationships);
    let after = support::rss_bytes();
    let count = relationships.len();
    println!(
        "{count} {} {}",
        importing.as_secs_f64(),
        after.saturating_sub(before) as f64 / count as f64
    );
    drop(services);
}

/// Runs `measure_load` for each size in a fresh process and prints it.
fn report_load(sizes: &[(usize, &'static str)]) {
    let exe = std::env::current_exe().expect("bench executable path");
    for &(n, label) in sizes {
        let output = Command::new(&exe)
            .env(LOAD_ENV, n.to_string())
            .output()
            .expect("run the load child");
        let text = String::from_utf8_lossy(&output.stdout);
        let fields: Vec<f64> = text
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let [count, seconds, bytes] = fields[..] else {
            eprintln!(
                "check/load/{label}: child failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            continue;
        };
        println!(
            "check/load/{label}: {count} relationships imported in {seconds:.2} s \
             ({:.0} relationships/s, chunks of {IMPORT_CHUNK}); \
             {bytes:.1} bytes RSS per relationship for the whole stack",
            count / seconds
        );
    }
}

/// The test's request mix (`workload::sample_check`: 60 % content#view,
/// 30 % user#view_profile, 10 % interaction#view), asked by a uniform 1 %
/// sample of the users (at least 10).
fn check_requests(n: usize, count: usize) -> Vec<CheckParams> {
    let shape = SocialShape::for_relationships(n);
    let mut rng = SplitMix64::new(SEED ^ 0xC4EC);
    let users = workload::user_sample(&shape, 0.01, &mut rng);
    (0..count)
        .map(|_| {
            let (resource, permission, subject) = workload::sample_check(&shape, &mut rng, &users);
            CheckParams {
                resource,
                permission: permission.to_string(),
                subject,
                context: Default::default(),
            }
        })
        .collect()
}

/// Checks read at the newest revision. Not MinimizeLatency: it quantizes
/// to a revision up to 5 s old, which right after the load may predate it
/// (or the schema), so the bench would time answers over an empty graph.
/// An exact snapshot would need its GC-window check instead; head costs
/// one read lock, like the optimized revision does.
const CONSISTENCY: Consistency = Consistency::FullyConsistent;

/// HAS/NO/CONDITIONAL counts per kind of request.
#[derive(Default)]
struct Mix {
    /// Indexed by kind (content#view, user#view_profile, interaction#view),
    /// then answer (HAS, NO, CONDITIONAL).
    counts: [[usize; 3]; 3],
    dispatches: u64,
    /// Checks whose whole answer came from the cache.
    answered_from_cache: usize,
    /// Subproblem lookups in the dispatch cache (every level of a check).
    cache_hits: f64,
    cache_misses: f64,
}

impl Mix {
    const KINDS: [&'static str; 3] = ["content#view", "user#view_profile", "interaction#view"];

    fn record(&mut self, params: &CheckParams, answer: &Permissionship, dispatches: u32) {
        let kind = Self::KINDS
            .iter()
            .position(|k| {
                k.split_once('#')
                    == Some((
                        params.resource.object_type.as_str(),
                        params.permission.as_str(),
                    ))
            })
            .expect("sample_check asks one of three kinds");
        let answer = match answer {
            Permissionship::HasPermission => 0,
            Permissionship::NoPermission => 1,
            Permissionship::Conditional { .. } => 2,
        };
        self.counts[kind][answer] += 1;
        self.dispatches += u64::from(dispatches);
    }

    fn total(&self, answer: usize) -> usize {
        self.counts.iter().map(|c| c[answer]).sum()
    }

    fn print(&self, label: &str) {
        let checks: usize = self.counts.iter().flatten().sum();
        println!(
            "check/answers/{label}: HAS {} / NO {} / CONDITIONAL {} of {checks}; \
             {:.2} dispatches per check",
            self.total(0),
            self.total(1),
            self.total(2),
            self.dispatches as f64 / checks as f64
        );
        for (kind, [has, no, conditional]) in Self::KINDS.iter().zip(self.counts) {
            println!("    {kind:<18} HAS {has:>6} / NO {no:>6} / CONDITIONAL {conditional}");
        }
        let lookups = self.cache_hits + self.cache_misses;
        if lookups > 0.0 {
            println!(
                "check/cache/{label}: hit ratio {:.2} % ({} hits / {} subproblem lookups); \
                 {:.2} % of checks answered whole from the cache",
                100.0 * self.cache_hits / lookups,
                self.cache_hits,
                lookups,
                100.0 * self.answered_from_cache as f64 / checks as f64
            );
        }
    }
}

/// The value of a counter in the process's metrics recorder.
fn counter(name: &str) -> f64 {
    trellis::metrics::install()
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Dispatch cache hits and misses so far.
fn cache_counts() -> (f64, f64) {
    (
        counter(trellis::dispatch::metrics::CACHE_HITS_TOTAL),
        counter(trellis::dispatch::metrics::CACHE_MISSES_TOTAL),
    )
}

/// Prints the cache's hit ratio since the counts were `hits_before` and
/// `misses_before` (nothing when no lookups happened: the cache is off).
fn print_hit_ratio(label: &str, hits_before: f64, misses_before: f64) {
    let (hits, misses) = cache_counts();
    let (hits, misses) = (hits - hits_before, misses - misses_before);
    if hits + misses > 0.0 {
        println!(
            "check/cache/{label}: hit ratio {:.2} % ({hits} hits / {} subproblem lookups)",
            100.0 * hits / (hits + misses),
            hits + misses
        );
    }
}

/// One warm-up pass over `warm`, then one pass over `checks` timing each
/// check alone (fresh draws from the same users: with the cache on, its
/// steady state); prints percentiles and the answer mix of the timed pass,
/// and the cache's hit ratio over each pass (the first starts from an
/// empty cache).
fn report_latency(
    rt: &tokio::runtime::Runtime,
    services: &Stack,
    (warm, checks): (&[CheckParams], &[CheckParams]),
    label: &str,
) {
    // All checks run inside one task: the memory datastore never yields, so
    // each `.await` completes in place and the timings hold no scheduling.
    let (mut times, mix) = rt.block_on(async {
        let (cold_hits, cold_misses) = cache_counts();
        for params in warm {
            services
                .check(params.clone(), CONSISTENCY)
                .await
                .expect("warm-up check");
        }
        print_hit_ratio(&format!("{label}/first_pass"), cold_hits, cold_misses);
        let mut times = Vec::with_capacity(checks.len());
        let mut mix = Mix::default();
        let (hits_before, misses_before) = cache_counts();
        for params in checks {
            let request = params.clone();
            let started = Instant::now();
            let outcome = services.check(request, CONSISTENCY).await;
            times.push(started.elapsed());
            let outcome = outcome.expect("timed check");
            mix.record(params, &outcome.permissionship, outcome.dispatch_count);
            mix.answered_from_cache += usize::from(outcome.dispatch_count == 0);
        }
        let (hits, misses) = cache_counts();
        mix.cache_hits = hits - hits_before;
        mix.cache_misses = misses - misses_before;
        (times, mix)
    });
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "check/latency/{label}: p50 {:?} / p95 {:?} / p99 {:?} / max {:?} (mean {mean:?}) over {} checks",
        at(0.50),
        at(0.95),
        at(0.99),
        at(1.0),
        times.len()
    );
    mix.print(label);
}

/// Loads a network of `n` once; then, with the cache off and on, reports
/// latency and lets criterion time the same requests round-robin.
fn bench_size(criterion: &mut Criterion, plan: &Plan, n: usize, label: &str) {
    let rt = support::runtime();
    let datastore = datastore();
    let relationships = workload::social_network(n, SEED);
    load(&rt, &stack(datastore.clone(), false), &relationships);
    drop(relationships);
    let requests = check_requests(n, 2 * plan.checks);
    let (warm, checks) = requests.split_at(plan.checks);
    for (mode, cache) in [("cache_off", false), ("cache_on", true)] {
        let services = stack(datastore.clone(), cache);
        let label = format!("{label}/{mode}");
        report_latency(&rt, &services, (warm, checks), &label);
        bench_mode(criterion, &rt, &services, checks, &label);
    }
}

/// Criterion's timing of `checks`, round-robin, through `services`.
fn bench_mode(
    criterion: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    services: &Stack,
    checks: &[CheckParams],
    label: &str,
) {
    let mut group = criterion.benchmark_group("check");
    let mut next = 0;
    group.bench_function(format!("social_network/{label}"), |b| {
        b.iter_batched(
            || {
                next = (next + 1) % checks.len();
                checks[next].clone()
            },
            |params| {
                rt.block_on(services.check(params, CONSISTENCY))
                    .expect("check")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn main() {
    if let Ok(n) = std::env::var(LOAD_ENV) {
        measure_load(n.parse().expect("a relationship count"));
        return;
    }
    let plan = if std::env::args().any(|a| a == "--bench") {
        &FULL
    } else {
        &SMOKE
    };
    let only = std::env::var(SIZE_ENV).ok();
    let sizes: Vec<_> = plan
        .sizes
        .iter()
        .filter(|(_, label)| only.as_deref().is_none_or(|o| o == *label))
        .copied()
        .collect();
    report_load(&sizes);
    let mut criterion = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    for &(n, label) in &sizes {
        bench_size(&mut criterion, plan, n, label);
    }
    criterion.final_summary();
}
