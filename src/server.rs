//! The composition root: builds the datastore, the dispatcher chains and
//! the services, loads bootstrap files, and serves the public gRPC API (plus
//! health and reflection, and Prometheus metrics on their own address) and,
//! in a dispatch cluster, the peer protocol on its own port, until
//! shutdown. Nothing depends on this module but `main`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::api::auth::PresharedKeys;
use crate::api::handlers::{Api, WatchApi};
use crate::api::limits::LimitsLayer;
use crate::api::proto::{self, v1};
use crate::config::Config;
use crate::datastore::schema_cache::SchemaCache;
use crate::datastore::{Datastore, RevisionConfig};
use crate::dispatch::builder::{self, Chains};
use crate::dispatch::settings::{DispatchSettings, identify_self};
use crate::service::{Limits, Services};
use crate::tls::TlsAcceptor;
use crate::validationfile;
use tonic::service::interceptor::InterceptedService;

/// Builds the services over `datastore` with the default dispatcher chain
/// (subproblem cache on, sized and timed by the defaults).
pub fn services<D: Datastore>(datastore: Arc<D>, limits: Limits) -> Arc<Services<D>> {
    services_with(
        datastore,
        limits,
        &DispatchSettings::default(),
        &RevisionConfig::default(),
    )
}

/// Builds the services over `datastore` with the dispatcher chain
/// `dispatch` describes; `revisions` (the datastore's quantization) sets
/// how long cached answers live.
pub fn services_with<D: Datastore>(
    datastore: Arc<D>,
    limits: Limits,
    dispatch: &DispatchSettings,
    revisions: &RevisionConfig,
) -> Arc<Services<D>> {
    let schemas = Arc::new(SchemaCache::new());
    let dispatcher = builder::build(datastore.clone(), schemas.clone(), dispatch, revisions);
    Arc::new(Services::new(datastore, schemas, dispatcher, limits))
}

/// One node: its services, and the dispatcher chains behind them (the
/// serving chain answers peers).
pub struct Node<D: Datastore> {
    pub services: Arc<Services<D>>,
    pub dispatch: Chains,
}

/// Builds a node over `datastore` as `config` describes. `peer_addr` is
/// where its peer server listens, if it serves one: the upstream with that
/// address (or naming this host at that port) is this node, and its
/// subproblems are evaluated here without a network hop.
pub fn node<D: Datastore>(
    datastore: Arc<D>,
    config: &Config,
    peer_addr: Option<SocketAddr>,
) -> anyhow::Result<Node<D>> {
    let mut dispatch = config.dispatch.clone();
    if dispatch.cluster.self_addr.is_none()
        && let Some(addr) = peer_addr
    {
        let hostname = crate::dispatch::remote::membership::hostname();
        dispatch.cluster.self_addr =
            identify_self(&dispatch.cluster.upstreams, addr, hostname.as_deref());
    }
    let schemas = Arc::new(SchemaCache::new());
    let chains = builder::build_node(
        datastore.clone(),
        schemas.clone(),
        &dispatch,
        &config.revisions,
    )
    .context("building the dispatch cluster")?;
    if !dispatch.cluster.upstreams.is_empty() {
        tracing::info!(
            upstreams = ?dispatch.cluster.upstreams,
            this_node = ?dispatch.cluster.self_addr,
            replication_factor = dispatch.cluster.replication_factor,
            "dispatching over the hashring"
        );
    }
    let services = Arc::new(Services::new(
        datastore,
        schemas,
        chains.head.clone(),
        Limits::default(),
    ));
    Ok(Node {
        services,
        dispatch: chains,
    })
}

/// Runs one validation file against a fresh in-memory datastore, as
/// `trellis validate` does for each file.
pub async fn validate_in_memory(
    loaded: &validationfile::LoadedFile,
) -> crate::service::validation_file::Report {
    let datastore = Arc::new(crate::datastore::memory::MemoryDatastore::new(
        crate::datastore::RevisionConfig::default(),
        Arc::new(crate::datastore::SystemClock),
    ));
    services(datastore, Limits::default())
        .run_validation_file(loaded)
        .await
}

/// Loads `--datastore-bootstrap-files`: validation YAML (schema and
/// relationships) or plain schema files.
pub async fn bootstrap<D: Datastore>(
    services: &Services<D>,
    config: &Config,
) -> anyhow::Result<()> {
    for path in &config.bootstrap_files {
        if validationfile::is_validation_file(path) {
            let loaded = validationfile::load(path)?;
            let report = services.run_validation_file(&loaded).await;
            // Bootstrap loads data; assertion outcomes are the validator's business.
            if let Some(failure) = report.failures.iter().find(|f| {
                f.message.starts_with("schema")
                    || f.message.starts_with("relationships")
                    || f.message.contains("invalid relationship")
            }) {
                anyhow::bail!("bootstrap file {}: {failure}", path.display());
            }
        } else {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            services
                .write_schema(&text)
                .await
                .with_context(|| format!("bootstrap schema {}", path.display()))?;
        }
        tracing::info!(file = %path.display(), "loaded bootstrap file");
    }
    Ok(())
}

/// Serves the public API on `listener` (and, with
/// `--dispatch-cluster-enabled`, the peer protocol on
/// `--dispatch-cluster-addr`) until `shutdown` resolves, then lets
/// in-flight calls finish (up to the configured grace period).
pub async fn run<D: Datastore>(
    datastore: Arc<D>,
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let cluster = &config.dispatch.cluster;
    let peer_listener = if cluster.enabled {
        let listener = TcpListener::bind(cluster.addr)
            .await
            .with_context(|| format!("binding the dispatch cluster address {}", cluster.addr))?;
        Some(listener)
    } else {
        None
    };
    let peer_addr = peer_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let node = node(datastore.clone(), &config, peer_addr)?;
    run_node(node, datastore, config, listener, peer_listener, shutdown).await
}

/// Serves `node`: the public API on `listener`, the peer protocol on
/// `peer_listener` if given, until `shutdown` resolves.
pub async fn run_node<D: Datastore>(
    node: Node<D>,
    datastore: Arc<D>,
    config: Config,
    listener: TcpListener,
    peer_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(
        enabled = config.dispatch.cache_enabled,
        max_cost = %config.dispatch.cache_max_cost,
        "dispatch cache"
    );
    let services = node.services;
    bootstrap(&services, &config).await?;
    let (stop_peers, peers_stopped) = tokio::sync::oneshot::channel::<()>();
    let _peer_server = match peer_listener {
        Some(listener) => Some(AbortOnDrop(spawn_peer_server(
            listener,
            node.dispatch.serving.clone(),
            &config,
            peers_stopped,
        )?)),
        None => None,
    };
    let metrics = match config.metrics_addr {
        Some(addr) => {
            let listener = crate::metrics::bind(addr).await?;
            // Before the first call, so none goes unrecorded.
            crate::metrics::install();
            tracing::info!(addr = %listener.local_addr()?, "serving Prometheus metrics on /metrics");
            Some(AbortOnDrop(tokio::spawn(crate::metrics::serve(listener))))
        }
        None => None,
    };

    let keys = PresharedKeys::new(&config.preshared_keys);
    let authenticate = move |request: tonic::Request<()>| match &keys {
        Some(keys) => keys.check(request),
        None => Ok(request),
    };
    // Every public service refuses messages over the configured size.
    let max_message = config.grpc_limits.max_message_size;
    let permissions = InterceptedService::new(
        v1::permissions_service_server::PermissionsServiceServer::new(Api::new(services.clone()))
            .max_decoding_message_size(max_message),
        authenticate.clone(),
    );
    let schema = InterceptedService::new(
        v1::schema_service_server::SchemaServiceServer::new(Api::new(services.clone()))
            .max_decoding_message_size(max_message),
        authenticate.clone(),
    );
    // Watch streams never finish on their own; flipping this ends them
    // when shutdown begins, so draining does not wait out the grace period.
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    let watch = InterceptedService::new(
        v1::watch_service_server::WatchServiceServer::new(WatchApi::new(
            services.clone(),
            config.watch,
            closing_rx,
        ))
        .max_decoding_message_size(max_message),
        authenticate.clone(),
    );
    let experimental = InterceptedService::new(
        v1::experimental_service_server::ExperimentalServiceServer::new(Api::new(services.clone()))
            .max_decoding_message_size(max_message),
        authenticate,
    );

    let (health_reporter, health) = tonic_health::server::health_reporter();
    // One set of permits for the gRPC port and the gateway: the limit is
    // on calls the server handles at once, whichever way they came.
    let limits = LimitsLayer::new(&config.grpc_limits);
    let gateway = spawn_gateway(
        &services,
        &config,
        health_reporter.clone(),
        limits.clone(),
        closing.subscribe(),
    )
    .await?;
    let readiness = Readiness {
        reporter: health_reporter,
    };
    let ready = readiness.report(datastore.ready().await).await;
    let _readiness = AbortOnDrop(tokio::spawn(readiness.track(datastore, ready)));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;

    let addr = listener.local_addr()?;
    let tls = config
        .grpc_tls
        .clone()
        .map(|files| TlsAcceptor::load(files, &[b"h2"]))
        .transpose()?;
    let _reloader = tls.as_ref().map(|tls| AbortOnDrop(tls.spawn_reloader()));
    tracing::info!(%addr, engine = ?config.datastore_engine, tls = tls.is_some(), "serving authzed.api.v1");
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let grace = config.shutdown_grace;
    let router = tonic::transport::Server::builder()
        .layer(crate::api::metrics::GrpcMetricsLayer)
        .layer(crate::api::request_id::RequestIdLayer)
        .layer(limits)
        .add_service(health)
        .add_service(reflection)
        .add_service(permissions)
        .add_service(schema)
        .add_service(watch)
        .add_service(experimental);
    let stopping = async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight calls");
        closing.send_replace(true);
        let _ = stop_peers.send(());
        let _ = drained_tx.send(());
    };
    let server: std::pin::Pin<
        Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>,
    > = match tls {
        Some(tls) => {
            Box::pin(router.serve_with_incoming_shutdown(tls.incoming(listener), stopping))
        }
        None => {
            Box::pin(router.serve_with_incoming_shutdown(crate::net::incoming(listener), stopping))
        }
    };
    let mut server = std::pin::pin!(server);
    tokio::select! {
        result = &mut server => result.context("serving gRPC")?,
        _ = async {
            let _ = drained_rx.await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!(grace = ?grace, "in-flight calls did not finish within the grace period"),
    }
    if let Some(mut gateway) = gateway {
        // It drains its own connections once `closing` flips (open streams
        // end with their last line); give it the same grace.
        if tokio::time::timeout(grace, &mut gateway.0).await.is_err() {
            tracing::warn!(grace = ?grace, "HTTP gateway requests did not finish within the grace period");
        }
    }
    drop(metrics);
    Ok(())
}

/// With `--http-enabled`, binds `--http-addr` and serves the HTTP/JSON
/// gateway there over the same handlers, keys and health as the gRPC API;
/// it stops accepting when `closing` flips and is aborted when dropped.
async fn spawn_gateway<D: Datastore>(
    services: &Arc<Services<D>>,
    config: &Config,
    health: tonic_health::server::HealthReporter,
    limits: LimitsLayer,
    mut closing: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<AbortOnDrop>> {
    if !config.gateway.enabled {
        return Ok(None);
    }
    let addr = config.gateway.addr;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the HTTP gateway address {addr}"))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        tls = config.http_tls.is_some(),
        "serving the HTTP/JSON gateway"
    );
    let handlers = crate::gateway::Handlers {
        permissions: Arc::new(Api::new(services.clone())),
        schema: Arc::new(Api::new(services.clone())),
        watch: Arc::new(WatchApi::new(
            services.clone(),
            config.watch,
            closing.clone(),
        )),
        experimental: Arc::new(Api::new(services.clone())),
    };
    let gateway = Arc::new(crate::gateway::Gateway::new(
        handlers,
        PresharedKeys::new(&config.preshared_keys),
        limits,
        health,
    ));
    let stopped = async move {
        let _ = closing.wait_for(|closing| *closing).await;
    };
    let tls = config
        .http_tls
        .clone()
        .map(|files| TlsAcceptor::load(files, &[b"h2", b"http/1.1"]))
        .transpose()?;
    Ok(Some(AbortOnDrop(tokio::spawn(async move {
        match tls {
            Some(tls) => {
                let _reloader = AbortOnDrop(tls.spawn_reloader());
                crate::gateway::serve(gateway, tls.incoming(listener), stopped).await;
            }
            None => {
                let incoming = crate::net::incoming(listener);
                crate::gateway::serve(gateway, incoming, stopped).await;
            }
        }
    }))))
}

/// Starts the peer server on `listener` (see `dispatch::server`); it stops
/// when `stop` fires or is dropped.
fn spawn_peer_server(
    listener: TcpListener,
    serving: Arc<dyn crate::dispatch::Dispatcher>,
    config: &Config,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let key = config
        .dispatch
        .cluster
        .preshared_key
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or(crate::dispatch::remote::ClusterConfigError::MissingKey)?;
    let tls = config
        .dispatch_cluster_tls
        .clone()
        .map(|files| TlsAcceptor::load(files, &[b"h2"]))
        .transpose()?;
    tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "serving trellis.dispatch.v1 to peers");
    Ok(tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.await;
        };
        let served = match tls {
            Some(tls) => {
                let _reloader = AbortOnDrop(tls.spawn_reloader());
                let incoming = tls.incoming(listener);
                crate::dispatch::server::serve_incoming(incoming, serving, &key, stopped).await
            }
            None => crate::dispatch::server::serve(listener, serving, &key, stopped).await,
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "the dispatch peer server failed");
        }
    }))
}

/// Health as the datastore's readiness: every service SERVING while the
/// datastore is reachable and migrated, NOT_SERVING otherwise (so a
/// Kubernetes readiness probe takes the pod out of rotation until then).
struct Readiness {
    reporter: tonic_health::server::HealthReporter,
}

/// How often readiness is re-checked: quickly while not ready, so service
/// resumes soon after the database returns.
const READY_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);
const NOT_READY_RECHECK: std::time::Duration = std::time::Duration::from_millis(500);

impl Readiness {
    async fn report(&self, ready: crate::datastore::DatastoreResult<()>) -> bool {
        let status = match &ready {
            Ok(()) => tonic_health::ServingStatus::Serving,
            Err(e) => {
                tracing::warn!(error = %e, "datastore not ready: health reports NOT_SERVING");
                tonic_health::ServingStatus::NotServing
            }
        };
        for service in HEALTH_SERVICES {
            self.reporter.set_service_status(service, status).await;
        }
        ready.is_ok()
    }

    async fn track<D: Datastore>(self, datastore: Arc<D>, mut was_ready: bool) {
        loop {
            let ready = datastore.ready().await;
            let now_ready = ready.is_ok();
            if now_ready != was_ready {
                self.report(ready).await;
                if now_ready {
                    tracing::info!("datastore ready: health reports SERVING");
                }
            }
            was_ready = now_ready;
            tokio::time::sleep(if now_ready {
                READY_RECHECK
            } else {
                NOT_READY_RECHECK
            })
            .await;
        }
    }
}

/// The names health answers for: the server as a whole and each service.
const HEALTH_SERVICES: [&str; 5] = [
    "",
    "authzed.api.v1.PermissionsService",
    "authzed.api.v1.SchemaService",
    "authzed.api.v1.WatchService",
    "authzed.api.v1.ExperimentalService",
];

/// Stops a spawned task (the metrics endpoint) when the server returns,
/// whichever way it returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A future that resolves on SIGTERM or SIGINT. The signals are listened
/// for from this call on (call it before serving), so none arrives between
/// startup and the first poll with its default action. A SIGHUP, which
/// operators' tooling sends to ask for a reload, never stops the server: it
/// reloads the TLS certificates where TLS is on (`tls`), and is logged and
/// otherwise ignored here.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    keep_running_on_hangup();
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match terminate {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = interrupt => {}
            _ = terminate => {}
        }
    }
}

/// Listens for SIGHUP for the life of the process, logging each one.
#[cfg(unix)]
fn keep_running_on_hangup() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut signal) => {
            tokio::spawn(async move {
                while signal.recv().await.is_some() {
                    tracing::info!(
                        "SIGHUP: reloads TLS certificates (where TLS is on); the server keeps running"
                    );
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP: it would stop the server"),
    }
}
