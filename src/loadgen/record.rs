//! Recording outcomes: an HDR latency histogram per request kind, the
//! answer mix (so a broken engine cannot look fast) and errors by gRPC code.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::workload::RequestKind;

/// Latencies are recorded in microseconds, 1 µs to 60 s, 3 significant
/// digits (0.1 % resolution at every magnitude).
const HIGHEST_MICROS: u64 = 60_000_000;
const SIGFIGS: u8 = 3;

/// What a call answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Answer {
    Has,
    No,
    Conditional,
    /// A write or health call that succeeded.
    Ok,
    /// A CheckPermission answer with an unknown or unspecified enum value.
    Unspecified,
}

impl Answer {
    /// The name reports use (`HAS`, `NO`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Has => "HAS",
            Self::No => "NO",
            Self::Conditional => "CONDITIONAL",
            Self::Ok => "OK",
            Self::Unspecified => "UNSPECIFIED",
        }
    }
}

/// Per kind: latency, answers, errors.
#[derive(Debug, Clone)]
pub struct KindStats {
    /// Microseconds from the intended send time to the answer.
    pub latency: Histogram<u64>,
    pub answers: BTreeMap<Answer, u64>,
    pub errors: BTreeMap<String, u64>,
}

impl KindStats {
    fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, HIGHEST_MICROS, SIGFIGS)
                .expect("constant histogram bounds are valid"),
            answers: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    /// Calls that completed, with or without an error.
    pub fn count(&self) -> u64 {
        self.latency.len()
    }

    /// Calls that failed, whatever their code.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The outcomes of one phase.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    kinds: BTreeMap<RequestKind, KindStats>,
}

impl Recorder {
    /// Records one call: its latency (from its intended send time) and its
    /// answer, or the name of its gRPC error code.
    pub fn record(
        &mut self,
        kind: RequestKind,
        latency: Duration,
        outcome: Result<Answer, tonic::Code>,
    ) {
        let stats = self.kinds.entry(kind).or_insert_with(KindStats::new);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        stats
            .latency
            .saturating_record(micros.clamp(1, HIGHEST_MICROS));
        match outcome {
            Ok(answer) => *stats.answers.entry(answer).or_default() += 1,
            Err(code) => *stats.errors.entry(code_name(code)).or_default() += 1,
        }
    }

    /// Adds another recorder's outcomes to this one.
    pub fn merge(&mut self, other: &Recorder) {
        for (kind, theirs) in &other.kinds {
            let ours = self.kinds.entry(*kind).or_insert_with(KindStats::new);
            ours.latency
                .add(&theirs.latency)
                .expect("histograms share their bounds");
            for (answer, n) in &theirs.answers {
                *ours.answers.entry(*answer).or_default() += n;
            }
            for (code, n) in &theirs.errors {
                *ours.errors.entry(code.clone()).or_default() += n;
            }
        }
    }

    /// The kinds seen, in report order.
    pub fn kinds(&self) -> impl Iterator<Item = (RequestKind, &KindStats)> {
        self.kinds.iter().map(|(k, s)| (*k, s))
    }

    /// One kind's outcomes, if any was recorded.
    pub fn get(&self, kind: RequestKind) -> Option<&KindStats> {
        self.kinds.get(&kind)
    }

    /// All check kinds merged into one histogram (for the headline line).
    pub fn checks(&self) -> KindStats {
        let mut all = KindStats::new();
        for (_, stats) in self.kinds().filter(|(k, _)| k.is_check()) {
            all.latency
                .add(&stats.latency)
                .expect("histograms share their bounds");
            for (answer, n) in &stats.answers {
                *all.answers.entry(*answer).or_default() += n;
            }
            for (code, n) in &stats.errors {
                *all.errors.entry(code.clone()).or_default() += n;
            }
        }
        all
    }
}

/// gRPC's canonical upper-snake name (`DEADLINE_EXCEEDED`).
pub fn code_name(code: tonic::Code) -> String {
    use tonic::Code::*;
    let name = match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_come_from_the_recorded_latencies() {
        let mut r = Recorder::default();
        for i in 1..=1000 {
            r.record(
                RequestKind::ContentView,
                Duration::from_micros(i * 10),
                Ok(Answer::Has),
            );
        }
        let stats = r.get(RequestKind::ContentView).expect("recorded");
        assert_eq!(stats.count(), 1000);
        let p50 = stats.latency.value_at_quantile(0.5);
        let p99 = stats.latency.value_at_quantile(0.99);
        assert!((4_990..=5_010).contains(&p50), "p50 {p50}");
        assert!((9_890..=9_910).contains(&p99), "p99 {p99}");
        assert!(stats.latency.max() >= 9_990);
    }

    #[test]
    fn answers_errors_and_merging() {
        let mut a = Recorder::default();
        a.record(RequestKind::ProfileView, ms(1), Ok(Answer::Has));
        a.record(RequestKind::ProfileView, ms(2), Ok(Answer::No));
        a.record(
            RequestKind::ProfileView,
            ms(3),
            Err(tonic::Code::Unavailable),
        );
        let mut b = Recorder::default();
        b.record(RequestKind::ProfileView, ms(4), Ok(Answer::No));
        b.record(RequestKind::Health, ms(1), Ok(Answer::Ok));
        b.record(RequestKind::ContentView, ms(1), Ok(Answer::Conditional));
        a.merge(&b);
        let profile = a.get(RequestKind::ProfileView).expect("recorded");
        assert_eq!(profile.count(), 4);
        assert_eq!(profile.answers[&Answer::No], 2);
        assert_eq!(profile.errors["UNAVAILABLE"], 1);
        assert_eq!(profile.error_count(), 1);
        let checks = a.checks();
        assert_eq!(checks.count(), 5, "health is not a check");
        assert_eq!(checks.answers[&Answer::Conditional], 1);
    }

    #[test]
    fn out_of_range_latencies_are_clamped_not_lost() {
        let mut r = Recorder::default();
        r.record(RequestKind::Write, Duration::ZERO, Ok(Answer::Ok));
        r.record(
            RequestKind::Write,
            Duration::from_secs(3600),
            Ok(Answer::Ok),
        );
        let stats = r.get(RequestKind::Write).expect("recorded");
        assert_eq!(stats.count(), 2);
        assert!(stats.latency.max() >= HIGHEST_MICROS - HIGHEST_MICROS / 1000);
    }
}
