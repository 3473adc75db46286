//! Assembles the dispatcher chains, in one place. On its own a node's chain
//! is `caching` → `singleflight` → `local`; in a cluster (upstreams
//! configured) it is `tracing` → `caching` → `singleflight` → `remote`, whose local
//! branch is the local dispatcher. Either way local's own subproblems
//! re-enter at the head, so every level of a check is cached, deduplicated
//! and, in a cluster, routed to its owner. The cycle head → … → local →
//! head is closed with `Arc::new_cyclic`: local holds a `Weak` to the head,
//! so dropping the chain frees it.
//!
//! A cluster node also has a serving chain for what peers send it: its own
//! `tracing` → `caching` → `singleflight` in front of the same local dispatcher (the
//! owner's cache, as SpiceDB's cluster dispatch cache). It never routes the
//! subproblem itself again, so two nodes can never bounce one between them.

use std::sync::{Arc, Weak};

use super::Dispatcher;
use super::caching::CachingDispatcher;
use super::local::LocalDispatcher;
use super::remote::{ClusterConfigError, RemoteDispatcher};
use super::settings::{DispatchSettings, cache_ttl};
use super::singleflight::SingleflightDispatcher;
use super::trace::TracingDispatcher;
use crate::datastore::schema_cache::SchemaCache;
use crate::datastore::{Datastore, RevisionConfig};

/// A node's dispatchers.
pub struct Chains {
    /// Where the services send every check.
    pub head: Arc<dyn Dispatcher>,
    /// Where the peer server sends what peers route here.
    pub serving: Arc<dyn Dispatcher>,
    /// The router, when upstreams are configured (for its peer states).
    pub remote: Option<Arc<RemoteDispatcher>>,
}

/// The chain for one process on its own: caching → singleflight → local
/// (singleflight → local with the cache off). The cache's time to live
/// follows `revisions` (the datastore's quantization settings).
pub fn build<D: Datastore>(
    datastore: Arc<D>,
    schemas: Arc<SchemaCache>,
    settings: &DispatchSettings,
    revisions: &RevisionConfig,
) -> Arc<dyn Dispatcher> {
    chain_over(settings, revisions, |head| {
        Arc::new(LocalDispatcher::new(datastore, schemas, head))
    })
}

/// A node's chains: routed through the hashring when
/// `settings.cluster.upstreams` is set, else `build`'s chain (which then
/// also serves peers).
pub fn build_node<D: Datastore>(
    datastore: Arc<D>,
    schemas: Arc<SchemaCache>,
    settings: &DispatchSettings,
    revisions: &RevisionConfig,
) -> Result<Chains, ClusterConfigError> {
    if settings.cluster.upstreams.is_empty() {
        let head = build(datastore, schemas, settings, revisions);
        return Ok(Chains {
            serving: head.clone(),
            head,
            remote: None,
        });
    }
    RemoteDispatcher::validate(&settings.cluster)?;
    let mut local: Option<Arc<dyn Dispatcher>> = None;
    let mut remote: Option<Arc<RemoteDispatcher>> = None;
    let head = chain_over(settings, revisions, |head| {
        let evaluator: Arc<dyn Dispatcher> =
            Arc::new(LocalDispatcher::new(datastore, schemas, head));
        local = Some(evaluator.clone());
        let router = RemoteDispatcher::new(&settings.cluster, evaluator)
            .expect("validated before the chain was built");
        remote = Some(router.clone());
        router
    });
    let local = local.expect("chain_over calls its closure once");
    let serving = chain_over(settings, revisions, |_| local);
    Ok(Chains {
        head,
        serving,
        remote,
    })
}

/// The head decorators (tracing, then caching if on, then singleflight) in
/// front of what `below` builds, which receives a `Weak` to that head for
/// its own subproblems, so every level of a traced check is recorded.
fn chain_over(
    settings: &DispatchSettings,
    revisions: &RevisionConfig,
    below: impl FnOnce(Weak<dyn Dispatcher>) -> Arc<dyn Dispatcher>,
) -> Arc<dyn Dispatcher> {
    Arc::new_cyclic(|head: &Weak<TracingDispatcher>| {
        let head: Weak<dyn Dispatcher> = head.clone();
        let singleflight: Arc<dyn Dispatcher> = Arc::new(SingleflightDispatcher::new(below(head)));
        let cached: Arc<dyn Dispatcher> = if settings.cache_enabled {
            let max_bytes = settings.cache_max_cost.bytes();
            Arc::new(CachingDispatcher::new(
                singleflight,
                max_bytes,
                cache_ttl(revisions),
            ))
        } else {
            singleflight
        };
        TracingDispatcher::new(cached)
    })
}
