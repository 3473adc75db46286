//! Dispatch settings (`--dispatch-cache-*`): whether the subproblem cache is
//! on and how large it may grow, given as bytes (`256MiB`) or as a share of
//! the memory this process may use (`30%`, SpiceDB's default), and the
//! cache's time to live, derived from the revision quantization window.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::datastore::RevisionConfig;

/// SpiceDB's `--dispatch-cache-max-cost` default.
pub const DEFAULT_CACHE_SHARE_PERCENT: f64 = 30.0;

/// A time to live below this would expire entries before a burst of
/// identical subproblems (one request's fan-out) could share them, which
/// happens when quantization is off (a zero window).
const MIN_CACHE_TTL: Duration = Duration::from_secs(1);

/// How the dispatcher chain is assembled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DispatchSettings {
    /// `--dispatch-cache-enabled`.
    pub cache_enabled: bool,
    /// `--dispatch-cache-max-cost`.
    pub cache_max_cost: CacheCapacity,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            cache_enabled: true,
            cache_max_cost: CacheCapacity::Share(DEFAULT_CACHE_SHARE_PERCENT),
        }
    }
}

/// The cache's budget, in bytes of keys and values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CacheCapacity {
    Bytes(u64),
    /// Percent of the memory available to the process (0 to 100).
    Share(f64),
}

impl CacheCapacity {
    /// The budget in bytes on this machine.
    pub fn bytes(self) -> u64 {
        match self {
            CacheCapacity::Bytes(bytes) => bytes,
            CacheCapacity::Share(percent) => {
                (available_memory() as f64 * percent / 100.0).round() as u64
            }
        }
    }
}

impl fmt::Display for CacheCapacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheCapacity::Bytes(bytes) => write!(f, "{bytes}B"),
            CacheCapacity::Share(percent) => write!(f, "{percent}%"),
        }
    }
}

impl FromStr for CacheCapacity {
    type Err = String;

    /// `30%`, or a byte size as SpiceDB's flag takes it: `1073741824`,
    /// `256MiB`, `1GiB`, `500MB`, `64KB` (SI units are powers of 1000,
    /// binary ones of 1024; case and a space before the unit don't matter).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Some(percent) = text.strip_suffix('%') {
            return parse_percent(percent.trim()).map(CacheCapacity::Share);
        }
        parse_bytes(text).map(CacheCapacity::Bytes)
    }
}

fn parse_percent(text: &str) -> Result<f64, String> {
    let bad = || format!("invalid share `{text}%`: expected a percentage from 0 to 100");
    let value: f64 = text.parse().map_err(|_| bad())?;
    if (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(bad())
    }
}

fn parse_bytes(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid size `{text}`: expected e.g. `256MiB`, `1GiB`, `500MB` or `30%`");
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let multiplier = unit_bytes(unit.trim()).ok_or_else(bad)?;
    let bytes = value * multiplier as f64;
    if bytes.is_finite() && bytes < u64::MAX as f64 {
        Ok(bytes.round() as u64)
    } else {
        Err(bad())
    }
}

/// Bytes per unit, as go-humanize's `ParseBytes` reads units.
fn unit_bytes(unit: &str) -> Option<u64> {
    const KI: u64 = 1024;
    const K: u64 = 1000;
    Some(match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => K,
        "ki" | "kib" => KI,
        "m" | "mb" => K.pow(2),
        "mi" | "mib" => KI.pow(2),
        "g" | "gb" => K.pow(3),
        "gi" | "gib" => KI.pow(3),
        "t" | "tb" => K.pow(4),
        "ti" | "tib" => KI.pow(4),
        _ => return None,
    })
}

/// How long a cached answer lives: twice the longest a quantized revision
/// stays in use (the window plus its smeared hand-over), as SpiceDB sets
/// it. Entries of a revision no request picks any more then age out
/// instead of waiting for eviction. (SpiceDB adds the follower-read delay,
/// which is zero for the memory and PostgreSQL engines.)
pub fn cache_ttl(revisions: &RevisionConfig) -> Duration {
    let staleness = 1.0 + f64::from(revisions.max_staleness_percent) / 100.0;
    revisions
        .quantization
        .mul_f64(2.0 * staleness)
        .max(MIN_CACHE_TTL)
}

/// Bytes of memory this process may use: the machine's total, or the
/// cgroup's limit when that is lower (a container).
pub fn available_memory() -> u64 {
    let total = read("/proc/meminfo").and_then(|text| mem_total(&text));
    let limit = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|text| cgroup_limit(&text));
    match (total, limit) {
        (Some(total), Some(limit)) => total.min(limit),
        (Some(bytes), None) | (None, Some(bytes)) => bytes,
        // Neither readable (not Linux): assume a small machine rather than
        // none, so the cache still works.
        (None, None) => FALLBACK_MEMORY,
    }
}

/// What `available_memory` assumes when it cannot find out.
const FALLBACK_MEMORY: u64 = 1 << 30;

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// `MemTotal:  16318412 kB` → bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// A cgroup memory limit; `max` (v2) or an absurdly large number (v1's
/// "unlimited") means none.
fn cgroup_limit(text: &str) -> Option<u64> {
    let bytes: u64 = text.trim().parse().ok()?;
    (bytes < (1 << 60)).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_spicedb_takes_them() {
        let parse = |s: &str| s.parse::<CacheCapacity>();
        assert_eq!(parse("256MiB"), Ok(CacheCapacity::Bytes(256 << 20)));
        assert_eq!(parse("1GiB"), Ok(CacheCapacity::Bytes(1 << 30)));
        assert_eq!(parse("1gib"), Ok(CacheCapacity::Bytes(1 << 30)));
        assert_eq!(parse("500MB"), Ok(CacheCapacity::Bytes(500_000_000)));
        assert_eq!(parse("1.5 KiB"), Ok(CacheCapacity::Bytes(1536)));
        assert_eq!(parse("4096"), Ok(CacheCapacity::Bytes(4096)));
        assert_eq!(parse("30%"), Ok(CacheCapacity::Share(30.0)));
        assert_eq!(parse("12.5%"), Ok(CacheCapacity::Share(12.5)));
        for bad in ["", "%", "101%", "-1%", "12XB", "MiB", "1e400"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shares_resolve_against_available_memory() {
        let all = CacheCapacity::Share(100.0).bytes();
        assert!(all > 0);
        assert_eq!(all, available_memory());
        let some = CacheCapacity::Share(30.0).bytes();
        assert!(some < all && some > 0);
        assert_eq!(CacheCapacity::Bytes(10).bytes(), 10);
    }

    #[test]
    fn memory_sources() {
        assert_eq!(
            mem_total("MemTotal:       16318412 kB\nMemFree: 1 kB\n"),
            Some(16318412 * 1024)
        );
        assert_eq!(mem_total("nothing"), None);
        assert_eq!(cgroup_limit("max\n"), None);
        assert_eq!(cgroup_limit("9223372036854771712\n"), None);
        assert_eq!(cgroup_limit("2147483648\n"), Some(2 << 30));
    }

    #[test]
    fn ttl_outlives_the_quantization_window() {
        let default = RevisionConfig::default();
        // 2 × (5 s × 1.1)
        assert_eq!(cache_ttl(&default), Duration::from_secs(11));
        let off = RevisionConfig {
            quantization: Duration::ZERO,
            ..default
        };
        assert_eq!(cache_ttl(&off), MIN_CACHE_TTL);
    }
}
