//! Dispatch settings (`--dispatch-cache-*`): whether the subproblem cache is
//! on and how large it may grow, given as bytes (`256MiB`) or as a share of
//! the memory this process may use (`30%`, SpiceDB's default), and the
//! cache's time to live, derived from the revision quantization window;
//! and the cluster's settings (`--dispatch-cluster-*`, `--dispatch-upstream-*`,
//! `--dispatch-hashring-*`): the peer port, its key, the peers and the ring.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::datastore::RevisionConfig;

/// SpiceDB's `--dispatch-cache-max-cost` default.
pub const DEFAULT_CACHE_SHARE_PERCENT: f64 = 30.0;

/// A time to live below this would expire entries before a burst of
/// identical subproblems (one request's fan-out) could share them, which
/// happens when quantization is off (a zero window).
const MIN_CACHE_TTL: Duration = Duration::from_secs(1);

/// SpiceDB's `--dispatch-hashring-replication-factor` default.
pub const DEFAULT_REPLICATION_FACTOR: u16 = 100;
/// SpiceDB's `--dispatch-upstream-timeout` default.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// How often `dns:///` upstreams are resolved again by default.
pub const DEFAULT_UPSTREAM_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// SpiceDB's `--dispatch-cluster-addr` default port.
pub const DEFAULT_CLUSTER_PORT: u16 = 50053;

/// How the dispatcher chain is assembled.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchSettings {
    /// `--dispatch-cache-enabled`.
    pub cache_enabled: bool,
    /// `--dispatch-cache-max-cost`.
    pub cache_max_cost: CacheCapacity,
    /// The peers and the ring; empty upstreams mean a node on its own.
    pub cluster: ClusterSettings,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            cache_enabled: true,
            cache_max_cost: CacheCapacity::Share(DEFAULT_CACHE_SHARE_PERCENT),
            cluster: ClusterSettings::default(),
        }
    }
}

/// The dispatch cluster: whether this node serves peers, where, with which
/// key, and which peers it routes subproblems to.
#[derive(Clone, PartialEq)]
pub struct ClusterSettings {
    /// `--dispatch-cluster-enabled`: serve the peer protocol.
    pub enabled: bool,
    /// `--dispatch-cluster-addr`: the peer port (never the public one).
    pub addr: SocketAddr,
    /// `--dispatch-cluster-preshared-key`: the bearer token peers present
    /// and expect. `None` only when no key is configured at all.
    pub preshared_key: Option<String>,
    /// `--dispatch-upstream-addr`: every member of the ring, `host:port` of
    /// its peer port, or `dns:///NAME:PORT` for every address NAME resolves
    /// to; may include this node (see `self_addr`).
    pub upstreams: Vec<String>,
    /// Which upstream is this node: subproblems it owns are evaluated here
    /// without a network hop. `None`: this node is not in the list.
    pub self_addr: Option<String>,
    /// `--dispatch-upstream-timeout`: longest a peer may take to answer
    /// before the subproblem is evaluated here instead.
    pub upstream_timeout: Duration,
    /// `--dispatch-hashring-replication-factor`: virtual nodes per member.
    pub replication_factor: u16,
    /// `--dispatch-upstream-refresh-interval`: how often `dns:///`
    /// upstreams are resolved again.
    pub refresh_interval: Duration,
    /// `--dispatch-upstream-ca-path`'s certificates (PEM): peers are dialed
    /// over TLS and must present a certificate they sign. `None`: plaintext.
    pub upstream_ca: Option<Vec<u8>>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            addr: SocketAddr::from(([0, 0, 0, 0], DEFAULT_CLUSTER_PORT)),
            preshared_key: None,
            upstreams: Vec::new(),
            self_addr: None,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            replication_factor: DEFAULT_REPLICATION_FACTOR,
            refresh_interval: DEFAULT_UPSTREAM_REFRESH_INTERVAL,
            upstream_ca: None,
        }
    }
}

impl fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.preshared_key.as_ref().map(|_| "[redacted]");
        f.debug_struct("ClusterSettings")
            .field("enabled", &self.enabled)
            .field("addr", &self.addr)
            .field("preshared_key", &key)
            .field("upstreams", &self.upstreams)
            .field("self_addr", &self.self_addr)
            .field("upstream_timeout", &self.upstream_timeout)
            .field("replication_factor", &self.replication_factor)
            .field("refresh_interval", &self.refresh_interval)
            .field("upstream_tls", &self.upstream_ca.is_some())
            .finish()
    }
}

/// Splits `--dispatch-upstream-addr`'s comma-separated list, dropping
/// blanks and duplicates (a member listed twice is still one member).
pub fn parse_upstreams(text: &str) -> Vec<String> {
    let mut upstreams: Vec<String> = Vec::new();
    for addr in text.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        if !upstreams.iter().any(|known| known == addr) {
            upstreams.push(addr.to_string());
        }
    }
    upstreams
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

/// Which of `upstreams` is the node whose peer server listens on `addr`:
/// one at the same port whose host is that address, loopback or
/// `localhost` when the node listens on every interface or on loopback, or
/// this machine's `hostname` (alone, or as the first label of a DNS name,
/// as a StatefulSet pod's `trellis-0.trellis-peers…`).
pub fn identify_self(
    upstreams: &[String],
    addr: SocketAddr,
    hostname: Option<&str>,
) -> Option<String> {
    upstreams
        .iter()
        .find(|upstream| names_this_node(upstream, addr, hostname))
        .cloned()
}

fn names_this_node(upstream: &str, addr: SocketAddr, hostname: Option<&str>) -> bool {
    let Some((host, port)) = upstream.rsplit_once(':') else {
        return false;
    };
    if port.parse::<u16>().ok() != Some(addr.port()) {
        return false;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let local = addr.ip().is_unspecified() || addr.ip().is_loopback();
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip == addr.ip() || (local && ip.is_loopback()),
        Err(_) if host == "localhost" => local,
        Err(_) => hostname.is_some_and(|name| {
            host == name
                || host
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('.'))
        }),
    }
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
    fn upstream_lists() {
        assert_eq!(
            parse_upstreams(" a:1, b:2,,a:1 ,c:3"),
            vec!["a:1", "b:2", "c:3"]
        );
        assert!(parse_upstreams("").is_empty());
        let redacted = ClusterSettings {
            preshared_key: Some("hunter2".into()),
            ..ClusterSettings::default()
        };
        assert!(!format!("{redacted:?}").contains("hunter2"));
    }

    #[test]
    fn a_node_finds_itself_among_the_upstreams() {
        let loopback = parse_upstreams("127.0.0.1:50053,127.0.0.1:50054,127.0.0.1:50055");
        let every: SocketAddr = "0.0.0.0:50054".parse().expect("address");
        assert_eq!(
            identify_self(&loopback, every, None).as_deref(),
            Some("127.0.0.1:50054")
        );
        let exact: SocketAddr = "127.0.0.1:50055".parse().expect("address");
        assert_eq!(
            identify_self(&loopback, exact, None).as_deref(),
            Some("127.0.0.1:50055")
        );
        let elsewhere: SocketAddr = "10.0.0.9:50053".parse().expect("address");
        assert_eq!(identify_self(&loopback, elsewhere, None), None);
        let pods = parse_upstreams(
            "trellis-0.trellis-peers.trellis.svc.cluster.local:50053,trellis-1.trellis-peers.trellis.svc.cluster.local:50053",
        );
        let pod: SocketAddr = "0.0.0.0:50053".parse().expect("address");
        assert_eq!(
            identify_self(&pods, pod, Some("trellis-1")).as_deref(),
            Some("trellis-1.trellis-peers.trellis.svc.cluster.local:50053")
        );
        assert_eq!(identify_self(&pods, pod, Some("trellis")), None);
    }

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
