//! The remote dispatcher: routes each check subproblem to the peer that
//! owns it on the consistent hashring (`ring`), over the peer protocol
//! (`proto`, `convert`), and evaluates it here instead when the owner is
//! this node, or is down. A peer that fails or times out is marked down at
//! once and probed with gRPC health every second until it answers again;
//! the ring itself stays as it was (see `ring`). Proto types exist only
//! here and in `dispatch::server`.

pub mod convert;
pub mod proto;
pub mod ring;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use self::proto::dispatch_service_client::DispatchServiceClient;
use self::ring::Ring;
use super::keys::RoutingKey;
use super::settings::ClusterSettings;
use super::{BoxFuture, CheckError, CheckRequest, CheckResult, Dispatcher, metrics};

/// How often down peers are asked for their health.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long connecting to a peer may take. Short, so that subproblems of a
/// peer whose host is gone fail over in a second rather than waiting out
/// the whole upstream timeout on each new connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A peer list that cannot make a ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterConfigError {
    #[error("invalid --dispatch-upstream-addr `{0}`: expected `host:port`")]
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
    /// Subproblems this peer answered (for tests and operators: is the
    /// ring using it?).
    answered: AtomicU64,
}

impl Peer {
    fn channel(&self) -> Channel {
        self.channel
            .get_or_init(|| self.endpoint.connect_lazy())
            .clone()
    }
}

/// Routes subproblems to their owners; see the module docs.
pub struct RemoteDispatcher {
    ring: Ring,
    peers: Vec<Peer>,
    /// Where this node evaluates: its local dispatcher.
    local: Arc<dyn Dispatcher>,
    /// `authorization` metadata every peer call carries.
    bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    timeout: Duration,
    prober_started: AtomicBool,
    me: Weak<RemoteDispatcher>,
}

/// Where one subproblem goes.
enum Route {
    Here,
    Peer(usize),
}

impl RemoteDispatcher {
    /// Checks that `settings` can make a ring (every upstream an address,
    /// a key present) before anything is built.
    pub fn validate(settings: &ClusterSettings) -> Result<(), ClusterConfigError> {
        bearer(settings)?;
        for address in &settings.upstreams {
            endpoint(address, settings)?;
        }
        Ok(())
    }

    /// A dispatcher over the ring of `settings.upstreams`, evaluating on
    /// `local` what this node owns or cannot send.
    pub fn new(
        settings: &ClusterSettings,
        local: Arc<dyn Dispatcher>,
    ) -> Result<Arc<Self>, ClusterConfigError> {
        let bearer = bearer(settings)?;
        let peers = settings
            .upstreams
            .iter()
            .map(|address| peer(address, settings))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new_cyclic(|me| Self {
            ring: Ring::new(&settings.upstreams, settings.replication_factor),
            peers,
            local,
            bearer,
            timeout: settings.upstream_timeout,
            prober_started: AtomicBool::new(false),
            me: me.clone(),
        }))
    }

    /// Whether the peer at `address` is up as far as this node knows.
    pub fn is_up(&self, address: &str) -> Option<bool> {
        self.peers
            .iter()
            .find(|p| p.address == address)
            .map(|p| !p.down.load(Ordering::Acquire))
    }

    /// How many subproblems the peer at `address` has answered for this
    /// node (always 0 for this node itself: it is never called).
    pub fn answered_by(&self, address: &str) -> Option<u64> {
        self.peers
            .iter()
            .find(|p| p.address == address)
            .map(|p| p.answered.load(Ordering::Relaxed))
    }

    fn route(&self, request: &CheckRequest) -> Route {
        let Some(owner) = self.ring.owner(&RoutingKey::of(request)) else {
            return Route::Here;
        };
        let peer = &self.peers[owner];
        if peer.is_self || peer.down.load(Ordering::Acquire) {
            Route::Here
        } else {
            Route::Peer(owner)
        }
    }

    /// Asks peer `index`; on any failure marks it down and answers here,
    /// so a check never fails because a peer did.
    async fn dispatch_to(
        &self,
        index: usize,
        request: CheckRequest,
    ) -> Result<CheckResult, CheckError> {
        let peer = &self.peers[index];
        match self.call(peer, &request).await {
            Ok(outcome) => {
                peer.answered.fetch_add(1, Ordering::Relaxed);
                metrics::remote_dispatch("peer");
                outcome
            }
            Err(failure) => {
                self.mark_down(peer, &failure);
                metrics::remote_dispatch("failover");
                self.local.check(request).await
            }
        }
    }

    async fn call(
        &self,
        peer: &Peer,
        request: &CheckRequest,
    ) -> Result<Result<CheckResult, CheckError>, PeerFailure> {
        let mut message = tonic::Request::new(convert::encode_request(request));
        message
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        message.set_timeout(self.timeout);
        let mut client = DispatchServiceClient::new(peer.channel());
        let response = tokio::time::timeout(self.timeout, client.dispatch_check(message))
            .await
            .map_err(|_| PeerFailure::Timeout(self.timeout))??;
        Ok(convert::decode_outcome(response.into_inner())?)
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
        let probes = dispatcher.peers.iter().map(|peer| dispatcher.probe(peer));
        futures::future::join_all(probes).await;
    }
}

impl Dispatcher for RemoteDispatcher {
    fn check(&self, request: CheckRequest) -> BoxFuture<'_, Result<CheckResult, CheckError>> {
        Box::pin(async move {
            match self.route(&request) {
                Route::Here => {
                    metrics::remote_dispatch("local");
                    self.local.check(request).await
                }
                Route::Peer(index) => self.dispatch_to(index, request).await,
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

fn peer(address: &str, settings: &ClusterSettings) -> Result<Peer, ClusterConfigError> {
    Ok(Peer {
        address: address.to_string(),
        is_self: settings.self_addr.as_deref() == Some(address),
        endpoint: endpoint(address, settings)?,
        channel: OnceLock::new(),
        down: AtomicBool::new(false),
        answered: AtomicU64::new(0),
    })
}
