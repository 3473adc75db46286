//! The remote dispatcher: routes each check subproblem, and each of the
//! lookups' read steps, to the peer that owns it on the consistent hashring
//! (`ring`), over the peer protocol (`proto`, `convert`), and evaluates it
//! here when the owner is this node.
//! While the owner is down the next member up on the ring takes its share;
//! a peer call that fails is answered here. A peer that fails or times out
//! is marked down at once and probed with gRPC health every second until
//! it answers again; the ring itself stays as it was (see `ring`). With `dns:///` upstreams
//! (`membership`) the names are resolved again every refresh interval and
//! the ring is rebuilt only when the set of addresses changes. Proto types
//! exist only here and in `dispatch::server`.

pub mod convert;
pub mod membership;
pub mod proto;
pub mod ring;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::Duration;

use std::future::Future;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use self::membership::{Resolver, SelfAddresses, SystemResolver, Upstream};
use self::proto::dispatch_service_client::DispatchServiceClient;
use self::ring::Ring;
use super::keys::RoutingKey;
use super::settings::ClusterSettings;
use super::{
    BoxFuture, CheckError, CheckRequest, CheckResult, Dispatcher, ReadRequest, ReadResult, metrics,
};

/// The shortest interval between two resolutions of `dns:///` upstreams
/// (a zero interval would spin).
const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(10);
/// How often down peers are asked for their health.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long connecting to a peer may take. Short, so that subproblems of a
/// peer whose host is gone fail over in a second rather than waiting out
/// the whole upstream timeout on each new connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A peer list that cannot make a ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterConfigError {
    #[error("invalid --dispatch-upstream-addr `{0}`: expected `host:port` or `dns:///name:port`")]
    InvalidUpstream(String),
    #[error(
        "the dispatch cluster needs a key: set --dispatch-cluster-preshared-key or --grpc-preshared-key"
    )]
    MissingKey,
    #[error("--dispatch-upstream-ca-path: cannot dial `{0}` over TLS with it")]
    Tls(String),
}

/// Why a peer's answer could not be used; each makes the peer down.
#[derive(Debug, thiserror::Error)]
enum PeerFailure {
    #[error("peer call failed: {0}")]
    Status(#[from] tonic::Status),
    #[error("peer did not answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Malformed(#[from] convert::DecodeError),
}

/// One member of the ring.
struct Peer {
    address: String,
    /// This node: its subproblems never cross the network.
    is_self: bool,
    endpoint: Endpoint,
    /// Connected on first use, so building the chain needs no runtime and
    /// no peer has to be up yet.
    channel: OnceLock<Channel>,
    down: AtomicBool,
    /// Check subproblems this peer answered (for tests and operators: is
    /// the ring using it?).
    answered: AtomicU64,
    /// Read steps this peer answered.
    answered_reads: AtomicU64,
}

impl Peer {
    fn channel(&self) -> Channel {
        self.channel
            .get_or_init(|| self.endpoint.connect_lazy())
            .clone()
    }
}

/// The ring and the peers it places, as one snapshot: replaced whole when
/// membership changes, so a subproblem is routed by one consistent view.
struct Members {
    ring: Ring,
    peers: Vec<Arc<Peer>>,
}

/// Routes subproblems to their owners; see the module docs.
pub struct RemoteDispatcher {
    members: RwLock<Arc<Members>>,
    /// Times the ring was (re)built, the first build included.
    ring_builds: AtomicU64,
    upstreams: Vec<Upstream>,
    settings: ClusterSettings,
    resolver: Arc<dyn Resolver>,
    /// Found on the first refresh (it needs a lookup of the hostname).
    self_addresses: OnceLock<SelfAddresses>,
    /// Where this node evaluates: its local dispatcher.
    local: Arc<dyn Dispatcher>,
    /// `authorization` metadata every peer call carries.
    bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    timeout: Duration,
    prober_started: AtomicBool,
    discovery_started: AtomicBool,
    me: Weak<RemoteDispatcher>,
}

/// Where one subproblem goes.
enum Route {
    Here,
    Peer(Arc<Peer>),
}

/// The two kinds of subproblem a peer answers, for metrics and counters.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Check,
    Read,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Check => "check",
            Kind::Read => "read",
        }
    }

    /// How many of this kind `peer` has answered.
    fn answered(self, peer: &Peer) -> &AtomicU64 {
        match self {
            Kind::Check => &peer.answered,
            Kind::Read => &peer.answered_reads,
        }
    }
}

impl RemoteDispatcher {
    /// Checks that `settings` can make a ring (every upstream an address
    /// or a `dns:///` name, a key present) before anything is built.
    pub fn validate(settings: &ClusterSettings) -> Result<(), ClusterConfigError> {
        bearer(settings)?;
        for upstream in membership::parse_all(&settings.upstreams)? {
            if let Upstream::Static(address) = upstream {
                endpoint(&address, settings)?;
            }
        }
        Ok(())
    }

    /// A dispatcher over the ring of `settings.upstreams`, evaluating on
    /// `local` what this node owns or cannot send; `dns:///` upstreams are
    /// resolved by the system's resolver.
    pub fn new(
        settings: &ClusterSettings,
        local: Arc<dyn Dispatcher>,
    ) -> Result<Arc<Self>, ClusterConfigError> {
        Self::with_resolver(settings, local, Arc::new(SystemResolver))
    }

    /// As `new`, resolving `dns:///` upstreams with `resolver`. The static
    /// members make the first ring; names join it on the first refresh
    /// (which the first subproblem starts), until when their share is
    /// evaluated here.
    pub fn with_resolver(
        settings: &ClusterSettings,
        local: Arc<dyn Dispatcher>,
        resolver: Arc<dyn Resolver>,
    ) -> Result<Arc<Self>, ClusterConfigError> {
        Self::validate(settings)?;
        let bearer = bearer(settings)?;
        let upstreams = membership::parse_all(&settings.upstreams)?;
        let static_members: Vec<String> = upstreams
            .iter()
            .filter_map(|u| match u {
                Upstream::Static(address) => Some(address.clone()),
                Upstream::Dns { .. } => None,
            })
            .collect();
        let dispatcher = Arc::new_cyclic(|me| Self {
            members: RwLock::new(Arc::new(Members {
                ring: Ring::new(&[], settings.replication_factor),
                peers: Vec::new(),
            })),
            ring_builds: AtomicU64::new(0),
            upstreams,
            settings: settings.clone(),
            resolver,
            self_addresses: OnceLock::new(),
            local,
            bearer,
            timeout: settings.upstream_timeout,
            prober_started: AtomicBool::new(false),
            discovery_started: AtomicBool::new(false),
            me: me.clone(),
        });
        dispatcher.rebuild(&static_members, &SelfAddresses::default());
        Ok(dispatcher)
    }

    /// The members of the ring now, sorted as the ring was built from them.
    pub fn members(&self) -> Vec<String> {
        self.snapshot()
            .peers
            .iter()
            .map(|p| p.address.clone())
            .collect()
    }

    /// How many times the ring has been built: once at start, then once per
    /// change of membership (never for a peer going down or idle).
    pub fn ring_builds(&self) -> u64 {
        self.ring_builds.load(Ordering::Relaxed)
    }

    /// Resolves the upstreams once and rebuilds the ring if the set of
    /// members changed; returns whether it did. A failed lookup changes
    /// nothing (a DNS hiccup must not shrink the ring).
    pub async fn refresh(&self) -> std::io::Result<bool> {
        let resolved = membership::resolve(&self.upstreams, self.resolver.as_ref()).await?;
        let me = match self.self_addresses.get() {
            Some(me) => me.clone(),
            None => {
                let me = SelfAddresses {
                    listen: self.settings.enabled.then_some(self.settings.addr),
                    host_ips: membership::host_ips(self.resolver.as_ref()).await,
                };
                self.self_addresses.get_or_init(|| me).clone()
            }
        };
        if resolved == self.members() {
            return Ok(false);
        }
        self.rebuild(&resolved, &me);
        Ok(true)
    }

    /// Replaces the ring by one of `addresses`, keeping the `Peer` (its
    /// connection, down state and counters) of every member that stays.
    fn rebuild(&self, addresses: &[String], me: &SelfAddresses) {
        let old = self.snapshot();
        let peers: Vec<Arc<Peer>> = addresses
            .iter()
            .filter_map(
                |address| match old.peers.iter().find(|p| &p.address == address) {
                    Some(kept) => Some(kept.clone()),
                    None => peer(address, &self.settings, me).ok().map(Arc::new),
                },
            )
            .collect();
        let members: Vec<String> = peers.iter().map(|p| p.address.clone()).collect();
        let ring = Ring::new(&members, self.settings.replication_factor);
        *self.members.write().expect("no writer panics") = Arc::new(Members { ring, peers });
        let builds = self.ring_builds.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::ring_members(members.len());
        if builds > 1 || self.upstreams.iter().any(Upstream::is_dns) {
            tracing::info!(?members, "dispatch ring built for a new membership");
        }
    }

    fn snapshot(&self) -> Arc<Members> {
        self.members.read().expect("no writer panics").clone()
    }

    /// One refresher per dispatcher with `dns:///` upstreams, started by
    /// the first subproblem (the chain may be built outside a runtime); it
    /// ends when the dispatcher does.
    fn start_discovery(&self) {
        if self.discovery_started.load(Ordering::Relaxed)
            || !self.upstreams.iter().any(Upstream::is_dns)
            || self.discovery_started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        tokio::spawn(refresh_membership(
            self.me.clone(),
            self.settings.refresh_interval,
        ));
    }

    /// Whether the peer at `address` is up as far as this node knows.
    pub fn is_up(&self, address: &str) -> Option<bool> {
        self.member(address)
            .map(|p| !p.down.load(Ordering::Acquire))
    }

    /// The ring's member at `address`, if it is one.
    fn member(&self, address: &str) -> Option<Arc<Peer>> {
        self.snapshot()
            .peers
            .iter()
            .find(|p| p.address == address)
            .cloned()
    }

    /// How many check subproblems the peer at `address` has answered for
    /// this node (always 0 for this node itself: it is never called).
    pub fn answered_by(&self, address: &str) -> Option<u64> {
        self.answered_of(address, Kind::Check)
    }

    /// How many read steps the peer at `address` has answered for this node.
    pub fn reads_answered_by(&self, address: &str) -> Option<u64> {
        self.answered_of(address, Kind::Read)
    }

    fn answered_of(&self, address: &str, kind: Kind) -> Option<u64> {
        self.member(address)
            .map(|p| kind.answered(&p).load(Ordering::Relaxed))
    }

    /// The owner, or while the owner is down the next member on the ring
    /// that is up (so one node, not every asker, caches a down member's
    /// share); this node when it comes first.
    fn route(&self, key: &RoutingKey<'_>) -> Route {
        self.start_discovery();
        let members = self.snapshot();
        let Some(owner) = members.ring.owner(key) else {
            return Route::Here;
        };
        let peer = &members.peers[owner];
        if peer.is_self {
            return Route::Here;
        }
        if !peer.down.load(Ordering::Acquire) {
            return Route::Peer(peer.clone());
        }
        for next in members.ring.successors(key).into_iter().skip(1) {
            let peer = &members.peers[next];
            if peer.is_self {
                return Route::Here;
            }
            if !peer.down.load(Ordering::Acquire) {
                return Route::Peer(peer.clone());
            }
        }
        Route::Here
    }

    /// The owner's answer, when `route` names a peer and `call` (given the
    /// peer's channel) succeeds; `None` when this node must evaluate: it
    /// owns the subproblem, or the call failed in any way, and then the
    /// peer is marked down, so a subproblem never fails because a peer did.
    async fn ask_owner<T, F>(
        &self,
        route: Route,
        kind: Kind,
        call: impl FnOnce(Channel) -> F,
    ) -> Option<Result<T, CheckError>>
    where
        F: Future<Output = Result<Result<T, CheckError>, PeerFailure>>,
    {
        let Route::Peer(peer) = route else {
            metrics::remote_dispatch(kind.label(), "local");
            return None;
        };
        match call(peer.channel()).await {
            Ok(outcome) => {
                kind.answered(&peer).fetch_add(1, Ordering::Relaxed);
                metrics::remote_dispatch(kind.label(), "peer");
                Some(outcome)
            }
            Err(failure) => {
                self.mark_down(&peer, &failure);
                metrics::remote_dispatch(kind.label(), "failover");
                None
            }
        }
    }

    /// A peer call's message with the cluster key and the deadline.
    fn peer_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        request.set_timeout(self.timeout);
        request
    }

    /// `call`, failing with `Timeout` when it takes longer than the
    /// upstream timeout (however the transport honours the deadline).
    async fn within_timeout<T>(
        &self,
        call: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, PeerFailure> {
        let answer = tokio::time::timeout(self.timeout, call).await;
        Ok(answer.map_err(|_| PeerFailure::Timeout(self.timeout))??)
    }

    async fn call_check(
        &self,
        channel: Channel,
        message: proto::DispatchCheckRequest,
    ) -> Result<Result<CheckResult, CheckError>, PeerFailure> {
        let mut client = DispatchServiceClient::new(channel);
        let response = self
            .within_timeout(client.dispatch_check(self.peer_request(message)))
            .await?;
        Ok(convert::decode_outcome(response.into_inner())?)
    }

    /// The read's whole answer, every chunk of it within the timeout: a
    /// stream cut short is a failure like any other, and the read is
    /// answered here instead.
    async fn call_read(
        &self,
        channel: Channel,
        message: proto::DispatchReadRequest,
    ) -> Result<Result<ReadResult, CheckError>, PeerFailure> {
        use futures::TryStreamExt as _;
        let mut client = DispatchServiceClient::new(channel);
        let request = self.peer_request(message);
        let messages = self
            .within_timeout(async {
                let stream = client.dispatch_read(request).await?.into_inner();
                stream.try_collect::<Vec<_>>().await
            })
            .await?;
        Ok(convert::decode_read_outcome(messages)?)
    }

    /// Takes `peer` out of routing until it answers health again. Logged
    /// here, where the failure is handled, once per outage.
    fn mark_down(&self, peer: &Peer, failure: &PeerFailure) {
        if !peer.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(peer = %peer.address, error = %failure, "dispatch peer down: evaluating its subproblems locally");
            metrics::peer_down(&peer.address, true);
        }
        self.start_prober();
    }

    /// One prober per dispatcher, started by the first outage (the chain
    /// may be built outside a runtime); it ends when the dispatcher does.
    fn start_prober(&self) {
        if self.prober_started.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(probe_down_peers(self.me.clone()));
    }

    async fn probe(&self, peer: &Peer) {
        if !peer.down.load(Ordering::Acquire) {
            return;
        }
        let mut health = tonic_health::pb::health_client::HealthClient::new(peer.channel());
        let ask = health.check(tonic_health::pb::HealthCheckRequest {
            service: proto::SERVICE_NAME.to_string(),
        });
        let serving = matches!(
            tokio::time::timeout(PROBE_INTERVAL, ask).await,
            Ok(Ok(response)) if response.get_ref().status
                == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
        if serving && peer.down.swap(false, Ordering::AcqRel) {
            tracing::info!(peer = %peer.address, "dispatch peer back: routing to it again");
            metrics::peer_down(&peer.address, false);
        }
    }
}

/// Every `PROBE_INTERVAL`, asks each down peer for its health; holds the
/// dispatcher only weakly, so dropping the chain stops it.
async fn probe_down_peers(dispatcher: Weak<RemoteDispatcher>) {
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(dispatcher) = dispatcher.upgrade() else {
            return;
        };
        let members = dispatcher.snapshot();
        let probes = members.peers.iter().map(|peer| dispatcher.probe(peer));
        futures::future::join_all(probes).await;
    }
}

/// Every `interval`, resolves the upstreams again (see
/// `RemoteDispatcher::refresh`); holds the dispatcher only weakly, so
/// dropping the chain stops it. The first refresh runs at once.
async fn refresh_membership(dispatcher: Weak<RemoteDispatcher>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval.max(MIN_REFRESH_INTERVAL));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(dispatcher) = dispatcher.upgrade() else {
            return;
        };
        // Logged here, where it is handled; the ring stays as it was.
        if let Err(e) = dispatcher.refresh().await {
            tracing::warn!(error = %e, "resolving the dispatch upstreams failed: keeping the ring");
        }
    }
}

impl Dispatcher for RemoteDispatcher {
    fn check(&self, request: CheckRequest) -> BoxFuture<'_, Result<CheckResult, CheckError>> {
        Box::pin(async move {
            let route = self.route(&RoutingKey::of(&request));
            let asked = self.ask_owner(route, Kind::Check, |channel| {
                self.call_check(channel, convert::encode_request(&request))
            });
            match asked.await {
                Some(answer) => answer,
                None => self.local.check(request).await,
            }
        })
    }

    fn read(&self, request: ReadRequest) -> BoxFuture<'_, Result<ReadResult, CheckError>> {
        Box::pin(async move {
            let route = self.route(&RoutingKey::of_read(&request));
            let asked = self.ask_owner(route, Kind::Read, |channel| {
                self.call_read(channel, convert::encode_read_request(&request))
            });
            match asked.await {
                Some(answer) => answer,
                None => self.local.read(request).await,
            }
        })
    }
}

fn bearer(
    settings: &ClusterSettings,
) -> Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>, ClusterConfigError> {
    let key = settings
        .preshared_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or(ClusterConfigError::MissingKey)?;
    format!("Bearer {key}")
        .parse()
        .map_err(|_| ClusterConfigError::MissingKey)
}

/// The peer's endpoint: TLS, trusting `--dispatch-upstream-ca-path`, when
/// that is set (the peer's name is the host of its address), else plaintext.
fn endpoint(address: &str, settings: &ClusterSettings) -> Result<Endpoint, ClusterConfigError> {
    let invalid = || ClusterConfigError::InvalidUpstream(address.to_string());
    if address.contains("://") || !address.contains(':') {
        return Err(invalid());
    }
    let scheme = if settings.upstream_ca.is_some() {
        "https"
    } else {
        "http"
    };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|_| invalid())?
        .connect_timeout(CONNECT_TIMEOUT.min(settings.upstream_timeout))
        .tcp_nodelay(true);
    match &settings.upstream_ca {
        Some(ca) => endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
            .map_err(|e| ClusterConfigError::Tls(format!("{address}: {e}"))),
        None => Ok(endpoint),
    }
}

fn peer(
    address: &str,
    settings: &ClusterSettings,
    me: &SelfAddresses,
) -> Result<Peer, ClusterConfigError> {
    Ok(Peer {
        address: address.to_string(),
        is_self: settings.self_addr.as_deref() == Some(address) || me.is_self(address),
        endpoint: endpoint(address, settings)?,
        channel: OnceLock::new(),
        down: AtomicBool::new(false),
        answered: AtomicU64::new(0),
        answered_reads: AtomicU64::new(0),
    })
}

#[cfg(test)]
mod tests;
