//! `trellis bench`: generate a small social network into an in-process
//! server, run the mix closed- and open-loop, and check the report's
//! plumbing (never its timings: machines are noisy).

#[path = "common/server.rs"]
mod server;

use std::time::Duration;

use server::{KEY, TestServer};
use trellis::config::Config;
use trellis::datastore::RevisionConfig;
use trellis::loadgen::{
    self, Connection, LoadVia, Pace, RequestKind, RunConfig, Target, Transport,
};

/// Small, but not so small that everyone follows everyone: at 2,000
/// relationships the network has 10 users and more follows than pairs, so
/// every check answers HAS and the NO side would go untested.
const RELATIONSHIPS: usize = 10_000;
const SEED: u64 = 7;

/// A server whose minimize_latency revision catches up within 0.2 s.
async fn start() -> TestServer {
    let revisions = RevisionConfig {
        quantization: Duration::from_millis(200),
        ..RevisionConfig::default()
    };
    TestServer::start(Config::default(), revisions).await
}

async fn connect(server: &TestServer) -> Connection {
    let target = Target {
        endpoint: server.addr.to_string(),
        token: Some(KEY.to_string()),
        transport: Transport::Plaintext,
    };
    Connection::open(&target, 2).await.expect("connects")
}

async fn load(connection: &Connection, via: LoadVia) {
    let relationships = trellis::workload::social_network(RELATIONSHIPS, SEED);
    let hidden = indicatif::ProgressBar::hidden();
    let loaded = loadgen::generate(connection, &relationships, via, &hidden)
        .await
        .expect("loads");
    assert_eq!(loaded as usize, relationships.len());
}

fn config(server: &TestServer, pace: Pace) -> RunConfig {
    RunConfig {
        relationships: RELATIONSHIPS,
        seed: SEED,
        sample: 0.01,
        write_share: 0.01,
        lookup_share: 0.0,
        pace,
        warmup: Duration::from_millis(200),
        duration: Duration::from_secs(1),
        floor_duration: Duration::from_millis(500),
        // The server runs in this process, so its CPU is ours (the
        // client's included): enough to check the plumbing.
        server_pid: Some(std::process::id()),
        visible_timeout: Duration::from_secs(10),
        endpoint: server.addr.to_string(),
    }
}

fn assert_sound(report: &loadgen::Report) {
    let summary = report.summary();
    assert!(report.main.checks > 0, "{summary}");
    let checks = report.main.all_checks.as_ref().expect("checks answered");
    assert!(
        checks.answers.get("HAS").is_some_and(|&n| n > 0),
        "{summary}"
    );
    assert!(
        checks.answers.get("NO").is_some_and(|&n| n > 0),
        "{summary}"
    );
    assert_eq!(report.main.errors, 0, "{summary}");
    assert_eq!(report.floor.errors, 0, "{summary}");
    let health = report
        .floor
        .kind(RequestKind::Health)
        .expect("floor measured");
    assert!(health.count > 0);
    assert_eq!(health.answers.get("OK"), Some(&health.count));
    assert!(report.server_cpu.is_some(), "{summary}");
    for kind in [RequestKind::ContentView, RequestKind::ProfileView] {
        assert!(
            report.main.kind(kind).is_some_and(|k| k.count > 0),
            "{summary}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_then_closed_loop() {
    let server = start().await;
    let connection = connect(&server).await;
    load(&connection, LoadVia::Import).await;
    let report = loadgen::run(
        &connection,
        &config(&server, Pace::Closed { concurrency: 4 }),
    )
    .await
    .expect("runs");
    assert_sound(&report);
    let svg = loadgen::latency_svg("test", &report.curves());
    assert!(svg.matches("<polyline").count() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_then_open_loop() {
    let server = start().await;
    let connection = connect(&server).await;
    load(&connection, LoadVia::Write).await;
    let pace = Pace::Open {
        rate: 300.0,
        max_in_flight: 64,
    };
    let report = loadgen::run(&connection, &config(&server, pace))
        .await
        .expect("runs");
    assert_sound(&report);
    // The schedule, not the server, sets the number sent (one more for
    // the interval's rounding to whole nanoseconds).
    assert!(report.main.requests <= 301, "{}", report.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_join_the_mix_when_asked_for() {
    let server = start().await;
    let connection = connect(&server).await;
    load(&connection, LoadVia::Import).await;
    let config = RunConfig {
        lookup_share: 0.2,
        ..config(&server, Pace::Closed { concurrency: 4 })
    };
    let report = loadgen::run(&connection, &config).await.expect("runs");
    assert_sound(&report);
    let lookups = report
        .main
        .kind(RequestKind::Lookup)
        .expect("lookups measured");
    assert!(lookups.count > 0, "{}", report.summary());
    assert_eq!(lookups.answers.get("OK"), Some(&lookups.count));
    assert!(report.summary().contains("20.0 % lookups"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_import_is_refused_and_says_why() {
    let server = start().await;
    let connection = connect(&server).await;
    load(&connection, LoadVia::Import).await;
    let relationships = trellis::workload::social_network(RELATIONSHIPS, SEED);
    let hidden = indicatif::ProgressBar::hidden();
    let err = loadgen::generate(&connection, &relationships, LoadVia::Import, &hidden)
        .await
        .expect_err("the relationships exist");
    assert!(err.to_string().contains("ImportBulkRelationships"), "{err}");
}

/// The command line end to end: `bench run` against the in-process server,
/// with its JSON and SVG outputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_writes_summary_json_and_plot() {
    let server = start().await;
    load(&connect(&server).await, LoadVia::Import).await;
    let dir = std::env::temp_dir().join(format!("trellis-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (json, svg) = (dir.join("run.json"), dir.join("run.svg"));
    let addr = server.addr.to_string();
    let args: Vec<String> = [
        "bench",
        "run",
        "--endpoint",
        &addr,
        "--token",
        KEY,
        "--relationships",
        "10000",
        "--seed",
        "7",
        "--concurrency",
        "2",
        "--warmup",
        "0",
        "--duration",
        "1s",
        "--floor-duration",
        "300ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["--json-out".into(), json.display().to_string()])
    .chain(["--plot-out".into(), svg.display().to_string()])
    .collect();
    // Blocking on its own thread: the server shares this runtime.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(&args)
            .output()
    })
    .await
    .expect("joins")
    .expect("trellis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("content#view") && stdout.contains("errors: none"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("json");
    assert!(report["main"]["checks"].as_u64().is_some_and(|n| n > 0));
    assert!(
        std::fs::read_to_string(&svg)
            .expect("svg written")
            .contains("<polyline")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn trellis_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(args)
        .output()
        .expect("trellis runs")
}

/// `bench plan` prints the mix's checks; `bench generate --out` the
/// network, without a server; both deterministic per seed.
#[test]
fn plan_and_generate_out_need_no_server() {
    let plan = trellis_cli(&[
        "bench",
        "plan",
        "--relationships",
        "10000",
        "--seed",
        "3",
        "--count",
        "200",
    ]);
    assert!(plan.status.success());
    let text = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert_eq!(text.lines().count(), 200);
    for line in text.lines() {
        let (kind, check) = line.split_once('\t').expect("kind<TAB>check");
        assert!(["content#view", "user#view_profile", "interaction#view"].contains(&kind));
        trellis::model::parse_relationship(check).expect("relationship syntax");
    }
    let again = trellis_cli(&[
        "bench",
        "plan",
        "--relationships",
        "10000",
        "--seed",
        "3",
        "--count",
        "200",
    ]);
    assert_eq!(String::from_utf8_lossy(&again.stdout), text);

    let path = std::env::temp_dir().join(format!("trellis-bench-out-{}.txt", std::process::id()));
    let out = trellis_cli(&[
        "bench",
        "generate",
        "--relationships",
        "3000",
        "--seed",
        "3",
        "--out",
        &path.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(&path).expect("written");
    let _ = std::fs::remove_file(&path);
    let expected: Vec<String> = trellis::workload::social_network(3000, 3)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(written.lines().collect::<Vec<_>>(), expected);
}
