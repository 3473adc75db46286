//! Who the ring's members are: `--dispatch-upstream-addr`'s entries, each a
//! static `host:port` (a member as written) or `dns:///NAME:PORT` (one
//! member per address the name resolves to, as a Kubernetes headless
//! Service lists its pods), and how a node recognises itself among them.
//! Resolution sits behind the small `Resolver` trait so the refresh logic
//! can be tested without DNS. Depends on nothing but the standard library
//! and tokio's resolver.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use super::ClusterConfigError;
use crate::dispatch::BoxFuture;

/// The scheme of an upstream that names a DNS record to re-resolve.
const DNS_SCHEME: &str = "dns:///";

/// One `--dispatch-upstream-addr` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// `host:port`: one member, named as written.
    Static(String),
    /// `dns:///NAME:PORT`: a member per address NAME resolves to.
    Dns { name: String, port: u16 },
}

impl Upstream {
    /// Reads one entry; anything but `host:port` or `dns:///NAME:PORT` is
    /// refused, naming the flag.
    pub fn parse(entry: &str) -> Result<Self, ClusterConfigError> {
        let invalid = || ClusterConfigError::InvalidUpstream(entry.to_string());
        if let Some(target) = entry.strip_prefix(DNS_SCHEME) {
            let (name, port) = target.rsplit_once(':').ok_or_else(invalid)?;
            let port: u16 = port.parse().map_err(|_| invalid())?;
            if name.is_empty() || name.contains('/') {
                return Err(invalid());
            }
            return Ok(Upstream::Dns {
                name: name.to_string(),
                port,
            });
        }
        if entry.contains("://") || !entry.contains(':') {
            return Err(invalid());
        }
        Ok(Upstream::Static(entry.to_string()))
    }

    /// Whether this entry must be resolved (again) to know the members.
    pub fn is_dns(&self) -> bool {
        matches!(self, Upstream::Dns { .. })
    }
}

/// Reads every entry of the upstream list.
pub fn parse_all(entries: &[String]) -> Result<Vec<Upstream>, ClusterConfigError> {
    entries.iter().map(|e| Upstream::parse(e)).collect()
}

/// Name resolution, as the membership refresh needs it.
pub trait Resolver: Send + Sync {
    /// The addresses `name` resolves to, each with `port`.
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>>;
}

/// The operating system's resolver (through tokio's blocking pool).
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((name, port)).await?.collect()) })
    }
}

/// The members `upstreams` stand for now: static entries as written, DNS
/// entries as the addresses they resolve to; sorted and without
/// duplicates, so two resolutions compare equal exactly when membership is
/// the same, whatever order the records came in. A failed lookup fails the
/// whole resolution, so the caller keeps the members it has rather than
/// shrinking the ring on a DNS hiccup.
pub async fn resolve(
    upstreams: &[Upstream],
    resolver: &dyn Resolver,
) -> std::io::Result<Vec<String>> {
    let mut members = BTreeSet::new();
    for upstream in upstreams {
        match upstream {
            Upstream::Static(address) => {
                members.insert(address.clone());
            }
            Upstream::Dns { name, port } => {
                let addresses = resolver.lookup(name, *port).await?;
                members.extend(one_family(addresses).map(|a| a.to_string()));
            }
        }
    }
    Ok(members.into_iter().collect())
}

/// The IPv4 addresses among `addresses` if there are any, else the IPv6
/// ones. A dual-stack name lists each host once per family (`localhost` is
/// 127.0.0.1 and ::1; a dual-stack headless Service has an A and an AAAA
/// record per pod); taking both would put every node on the ring twice,
/// and a node listening on one family only would look down on the other.
fn one_family(addresses: Vec<SocketAddr>) -> impl Iterator<Item = SocketAddr> {
    let any_v4 = addresses.iter().any(SocketAddr::is_ipv4);
    addresses.into_iter().filter(move |a| a.is_ipv4() == any_v4)
}

/// How a node recognises its own peer port among resolved members: the
/// address it listens on, and the addresses its hostname resolves to
/// (a pod's own IP, from its `/etc/hosts`) when it listens on every
/// interface.
#[derive(Debug, Clone, Default)]
pub struct SelfAddresses {
    pub listen: Option<SocketAddr>,
    pub host_ips: Vec<IpAddr>,
}

impl SelfAddresses {
    /// Whether the resolved member `address` (`ip:port`) is this node.
    pub fn is_self(&self, address: &str) -> bool {
        let (Some(listen), Ok(member)) = (self.listen, address.parse::<SocketAddr>()) else {
            return false;
        };
        if member.port() != listen.port() {
            return false;
        }
        let ip = member.ip();
        let everywhere = listen.ip().is_unspecified();
        ip == listen.ip()
            || ((everywhere || listen.ip().is_loopback()) && ip.is_loopback())
            || (everywhere && self.host_ips.contains(&ip))
    }
}

/// The addresses this machine's hostname resolves to (none if it has no
/// name or the lookup fails: the node then reaches itself over the peer
/// port like any other member, which is slower but still correct).
pub async fn host_ips(resolver: &dyn Resolver) -> Vec<IpAddr> {
    let Some(name) = hostname() else {
        return Vec::new();
    };
    resolver
        .lookup(&name, 0)
        .await
        .map(|addresses| addresses.iter().map(SocketAddr::ip).collect())
        .unwrap_or_default()
}

/// This machine's name (a Kubernetes pod's name), to find it among the
/// upstreams.
pub fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_entries() {
        assert_eq!(
            Upstream::parse("dns:///trellis-peers.ns.svc.cluster.local:50053"),
            Ok(Upstream::Dns {
                name: "trellis-peers.ns.svc.cluster.local".into(),
                port: 50053
            })
        );
        assert_eq!(
            Upstream::parse("10.0.0.1:50053"),
            Ok(Upstream::Static("10.0.0.1:50053".into()))
        );
        for bad in [
            "dns:///name",
            "dns:///:50053",
            "dns:///name:port",
            "dns://authority/name:1",
            "http://a:1",
            "nohost",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_node_recognises_itself_among_resolved_members() {
        let everywhere = SelfAddresses {
            listen: Some("0.0.0.0:50053".parse().expect("address")),
            host_ips: vec!["10.1.0.7".parse().expect("ip")],
        };
        assert!(everywhere.is_self("10.1.0.7:50053"));
        assert!(everywhere.is_self("127.0.0.1:50053"));
        assert!(!everywhere.is_self("10.1.0.8:50053"));
        assert!(!everywhere.is_self("10.1.0.7:50054"));
        let loopback = SelfAddresses {
            listen: Some("127.0.0.1:4000".parse().expect("address")),
            host_ips: Vec::new(),
        };
        assert!(loopback.is_self("127.0.0.1:4000"));
        assert!(loopback.is_self("[::1]:4000"));
        assert!(!loopback.is_self("127.0.0.1:4001"));
        assert!(!SelfAddresses::default().is_self("127.0.0.1:4000"));
    }
}
