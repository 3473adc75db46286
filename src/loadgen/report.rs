//! The results of a run: per-kind percentiles and curves, the answer and
//! error mix, and the server's CPU per request against the health-call
//! floor; as JSON (serde) and as a one-screen text summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::record::{KindStats, Recorder};
use super::runner::{Pace, PhaseOutcome, RunConfig};
use super::workload::RequestKind;

/// AuthZed's published figure: 1M checks/s on 21 machines of 32 vCPUs.
pub const SPICEDB_CHECKS_PER_VCPU: f64 = 1_000_000.0 / (21.0 * 32.0);

/// Percentile points of one kind, for plots: (percentile, microseconds).
pub type Curve = Vec<(f64, u64)>;

/// One request kind in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    pub kind: String,
    pub count: u64,
    pub per_second: f64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub answers: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub curve: Curve,
}

impl KindReport {
    fn new(kind: &str, stats: &KindStats, elapsed: Duration) -> Self {
        let h = &stats.latency;
        let q = |q: f64| h.value_at_quantile(q);
        Self {
            kind: kind.to_string(),
            count: stats.count(),
            per_second: per_second(stats.count(), elapsed),
            mean_us: h.mean(),
            p50_us: q(0.50),
            p90_us: q(0.90),
            p95_us: q(0.95),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: h.max(),
            answers: stats
                .answers
                .iter()
                .map(|(a, n)| (a.name().to_string(), *n))
                .collect(),
            errors: stats.errors.clone(),
            curve: curve(stats),
        }
    }
}

/// The percentile spectrum, five points per halving of the tail, the
/// usual HDR plot's sampling; up to 99.9999 and the maximum.
fn curve(stats: &KindStats) -> Curve {
    let h = &stats.latency;
    if h.is_empty() {
        return Vec::new();
    }
    let mut points: Curve = Vec::new();
    for v in h.iter_quantiles(5) {
        let p = v.quantile_iterated_to() * 100.0;
        if p > 99.9999 {
            break;
        }
        let point = (p, v.value_iterated_to());
        if points.last() != Some(&point) {
            points.push(point);
        }
    }
    points.push((100.0, h.max()));
    points
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// One phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub elapsed_s: f64,
    pub requests: u64,
    pub checks: u64,
    pub checks_per_second: f64,
    pub errors: u64,
    /// All checks together, then each kind seen.
    pub all_checks: Option<KindReport>,
    pub kinds: Vec<KindReport>,
    pub server_cpu_s: Option<f64>,
    pub client_cpu_s: Option<f64>,
}

impl PhaseReport {
    fn new(outcome: &PhaseOutcome) -> Self {
        let recorder: &Recorder = &outcome.recorder;
        let elapsed = outcome.elapsed;
        let kinds: Vec<KindReport> = recorder
            .kinds()
            .map(|(kind, stats)| KindReport::new(kind.name(), stats, elapsed))
            .collect();
        let checks = recorder.checks();
        Self {
            elapsed_s: elapsed.as_secs_f64(),
            requests: kinds.iter().map(|k| k.count).sum(),
            checks: checks.count(),
            checks_per_second: per_second(checks.count(), elapsed),
            errors: recorder.kinds().map(|(_, s)| s.error_count()).sum(),
            all_checks: (checks.count() > 0).then(|| KindReport::new("checks", &checks, elapsed)),
            kinds,
            server_cpu_s: outcome.server_cpu.map(|d| d.as_secs_f64()),
            client_cpu_s: outcome.client_cpu.map(|d| d.as_secs_f64()),
        }
    }

    /// A kind's report, if any was sent.
    pub fn kind(&self, kind: RequestKind) -> Option<&KindReport> {
        self.kinds.iter().find(|k| k.kind == kind.name())
    }

    fn answers(&self) -> BTreeMap<String, u64> {
        self.all_checks
            .as_ref()
            .map(|c| c.answers.clone())
            .unwrap_or_default()
    }
}

/// The server's CPU, charged to the requests of each phase.
#[derive(Debug, Clone, Serialize)]
pub struct ServerCpu {
    /// Server CPU per request of the mix (its writes included).
    pub per_request_us: f64,
    /// Server CPU per health call: the floor.
    pub per_health_call_us: f64,
    /// per_request_us ÷ per_health_call_us.
    pub ratio_to_floor: f64,
    /// Checks answered per second of server CPU (one core fully busy).
    pub checks_per_core_second: f64,
    /// Cores the server kept busy during the mix.
    pub cores_busy: f64,
    /// checks_per_core_second ÷ SpiceDB's published per-vCPU figure.
    pub vs_spicedb_per_vcpu: f64,
}

impl ServerCpu {
    fn new(main: &PhaseReport, floor: &PhaseReport) -> Option<Self> {
        let main_cpu = main.server_cpu_s?;
        let floor_cpu = floor.server_cpu_s?;
        if main.requests == 0 || floor.requests == 0 || main_cpu <= 0.0 || floor_cpu <= 0.0 {
            return None;
        }
        let per_request_us = main_cpu * 1e6 / main.requests as f64;
        let per_health_call_us = floor_cpu * 1e6 / floor.requests as f64;
        let checks_per_core_second = main.checks as f64 / main_cpu;
        Some(Self {
            per_request_us,
            per_health_call_us,
            ratio_to_floor: per_request_us / per_health_call_us,
            checks_per_core_second,
            cores_busy: main_cpu / main.elapsed_s.max(1e-9),
            vs_spicedb_per_vcpu: checks_per_core_second / SPICEDB_CHECKS_PER_VCPU,
        })
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub endpoint: String,
    pub relationships: usize,
    pub seed: u64,
    pub sample: f64,
    pub write_share: f64,
    pub lookup_share: f64,
    /// `closed N` or `open R/s`.
    pub pace: String,
    pub warmup_s: f64,
    pub consistency: &'static str,
    /// The mix (checks and writes).
    pub main: PhaseReport,
    /// Health calls only, paced the same way.
    pub floor: PhaseReport,
    /// Present when the server's pid was given and both phases used CPU.
    pub server_cpu: Option<ServerCpu>,
}

impl Report {
    /// The report of a run from its two measured phases.
    pub fn build(config: &RunConfig, main: &PhaseOutcome, floor: &PhaseOutcome) -> Self {
        let main = PhaseReport::new(main);
        let floor = PhaseReport::new(floor);
        let server_cpu = ServerCpu::new(&main, &floor);
        Self {
            endpoint: config.endpoint.clone(),
            relationships: config.relationships,
            seed: config.seed,
            sample: config.sample,
            write_share: config.write_share,
            lookup_share: config.lookup_share,
            pace: match config.pace {
                Pace::Closed { concurrency } => format!("closed loop, {concurrency} in flight"),
                Pace::Open { rate, .. } => format!("open loop, {rate} requests/s"),
            },
            warmup_s: config.warmup.as_secs_f64(),
            consistency: "minimize_latency",
            main,
            floor,
            server_cpu,
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// The latency curves of the mix's kinds and of the floor, for plots.
    pub fn curves(&self) -> Vec<(String, Curve)> {
        let mut curves: Vec<(String, Curve)> = self
            .main
            .kinds
            .iter()
            .map(|k| (k.kind.clone(), k.curve.clone()))
            .collect();
        if let Some(health) = self.floor.kind(RequestKind::Health) {
            curves.push(("health (floor)".to_string(), health.curve.clone()));
        }
        curves
    }

    /// A one-screen summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "trellis bench run: {} relationships (seed {}), {} at {}, {:.1} s measured after {:.1} s warm-up",
            self.relationships,
            self.seed,
            self.pace,
            self.endpoint,
            self.main.elapsed_s,
            self.warmup_s
        );
        let _ = writeln!(
            s,
            "mix: 60/30/10 content/profile/interaction checks at minimize_latency, {:.1} % writes, {:.1} % lookups (pages of {}), users from a {:.2} % sample",
            self.write_share * 100.0,
            self.lookup_share * 100.0,
            super::workload::LOOKUP_PAGE,
            self.sample * 100.0
        );
        let _ = writeln!(
            s,
            "\n{:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "request", "count", "per s", "p50 ms", "p95 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        let rows = self
            .main
            .all_checks
            .iter()
            .chain(&self.main.kinds)
            .chain(self.floor.kind(RequestKind::Health));
        for k in rows {
            let ms = |us: u64| us as f64 / 1000.0;
            let _ = writeln!(
                s,
                "{:<20} {:>9} {:>9.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                k.kind,
                k.count,
                k.per_second,
                ms(k.p50_us),
                ms(k.p95_us),
                ms(k.p99_us),
                ms(k.p999_us),
                ms(k.max_us)
            );
        }
        let answers: Vec<String> = self
            .main
            .answers()
            .iter()
            .map(|(a, n)| format!("{a} {n}"))
            .collect();
        let _ = writeln!(s, "\nanswers: {}", answers.join(", "));
        let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
        for k in self.main.kinds.iter().chain(&self.floor.kinds) {
            for (code, n) in &k.errors {
                *errors.entry(code).or_default() += n;
            }
        }
        let errors: Vec<String> = errors.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let _ = writeln!(
            s,
            "errors: {}",
            if errors.is_empty() {
                "none".to_string()
            } else {
                errors.join(", ")
            }
        );
        self.summarize_cpu(&mut s);
        s
    }

    fn summarize_cpu(&self, s: &mut String) {
        match &self.server_cpu {
            Some(cpu) => {
                let _ = writeln!(
                    s,
                    "server CPU: {:.1} µs per request, {:.1} µs per health call: {:.2}× the floor",
                    cpu.per_request_us, cpu.per_health_call_us, cpu.ratio_to_floor
                );
                let _ = writeln!(
                    s,
                    "            {:.0} checks per core-second ({:.1}× SpiceDB's published {:.0}/vCPU), {:.2} cores busy",
                    cpu.checks_per_core_second,
                    cpu.vs_spicedb_per_vcpu,
                    SPICEDB_CHECKS_PER_VCPU,
                    cpu.cores_busy
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "server CPU: not measured (pass --server-pid PID on the server's machine)"
                );
            }
        }
        if let Some(client) = self.main.client_cpu_s {
            let _ = writeln!(
                s,
                "load generator CPU: {:.2} cores during the mix",
                client / self.main.elapsed_s.max(1e-9)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::record::Answer;

    fn config() -> RunConfig {
        RunConfig {
            relationships: 1000,
            seed: 1,
            sample: 0.01,
            write_share: 0.01,
            lookup_share: 0.0,
            pace: Pace::Closed { concurrency: 4 },
            warmup: Duration::ZERO,
            duration: Duration::from_secs(2),
            floor_duration: Duration::from_secs(1),
            server_pid: Some(1),
            visible_timeout: Duration::from_secs(1),
            endpoint: "localhost:50051".into(),
        }
    }

    fn outcome(kinds: &[(RequestKind, u64, Answer)], cpu_ms: u64) -> PhaseOutcome {
        let mut recorder = Recorder::default();
        for &(kind, n, answer) in kinds {
            for i in 0..n {
                recorder.record(kind, Duration::from_micros(100 + i), Ok(answer));
            }
        }
        PhaseOutcome {
            recorder,
            elapsed: Duration::from_secs(2),
            server_cpu: Some(Duration::from_millis(cpu_ms)),
            client_cpu: Some(Duration::from_millis(500)),
        }
    }

    #[test]
    fn cpu_per_request_is_compared_with_the_floor() {
        let main = outcome(
            &[
                (RequestKind::ContentView, 600, Answer::Has),
                (RequestKind::ProfileView, 300, Answer::No),
                (RequestKind::InteractionView, 100, Answer::No),
            ],
            1000,
        );
        let floor = outcome(&[(RequestKind::Health, 2000, Answer::Ok)], 500);
        let report = Report::build(&config(), &main, &floor);
        assert_eq!(report.main.checks, 1000);
        assert_eq!(report.main.checks_per_second, 500.0);
        let cpu = report.server_cpu.as_ref().expect("measured");
        assert_eq!(cpu.per_request_us, 1000.0);
        assert_eq!(cpu.per_health_call_us, 250.0);
        assert_eq!(cpu.ratio_to_floor, 4.0);
        assert_eq!(cpu.checks_per_core_second, 1000.0);
        assert_eq!(cpu.cores_busy, 0.5);
        let checks = report.main.all_checks.as_ref().expect("checks");
        assert_eq!(checks.answers["HAS"], 600);
        assert_eq!(checks.answers["NO"], 400);
        assert!(report.summary().contains("4.00× the floor"));
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("json");
        assert_eq!(json["floor"]["kinds"][0]["kind"], "health");
        assert_eq!(json["server_cpu"]["ratio_to_floor"], 4.0);
    }

    #[test]
    fn curves_rise_to_the_maximum() {
        let main = outcome(&[(RequestKind::ContentView, 10_000, Answer::Has)], 10);
        let floor = outcome(&[(RequestKind::Health, 100, Answer::Ok)], 10);
        let report = Report::build(&config(), &main, &floor);
        let curves = report.curves();
        assert_eq!(curves.len(), 2);
        let (_, points) = &curves[0];
        assert!(points.len() > 10);
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1)
        );
        assert_eq!(points.last().map(|p| p.0), Some(100.0));
        let p50 = report.main.kinds[0].p50_us;
        assert!((5_090..=5_110).contains(&p50), "{p50}");
    }

    #[test]
    fn no_cpu_figures_without_a_pid() {
        let mut main = outcome(&[(RequestKind::ContentView, 10, Answer::Has)], 10);
        main.server_cpu = None;
        let floor = outcome(&[(RequestKind::Health, 10, Answer::Ok)], 10);
        let report = Report::build(&config(), &main, &floor);
        assert!(report.server_cpu.is_none());
        assert!(report.summary().contains("not measured"));
    }
}
