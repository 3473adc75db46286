//! Assembles the dispatcher chain, in one place: `caching` → `singleflight`
//! → `local`, where local's own subproblems re-enter at the head (the
//! cache), so every level of a check is cached and deduplicated, not only
//! the top. The cycle head → … → local → head is closed with
//! `Arc::new_cyclic`: local holds a `Weak` to the head, so dropping the
//! chain frees it.

use std::sync::{Arc, Weak};

use super::Dispatcher;
use super::caching::CachingDispatcher;
use super::local::LocalDispatcher;
use super::settings::{DispatchSettings, cache_ttl};
use super::singleflight::SingleflightDispatcher;
use crate::datastore::schema_cache::SchemaCache;
use crate::datastore::{Datastore, RevisionConfig};

/// The chain for one process: with the cache on, caching → singleflight →
/// local; with it off, singleflight → local. The cache's time to live
/// follows `revisions` (the datastore's quantization settings).
pub fn build<D: Datastore>(
    datastore: Arc<D>,
    schemas: Arc<SchemaCache>,
    settings: &DispatchSettings,
    revisions: &RevisionConfig,
) -> Arc<dyn Dispatcher> {
    if settings.cache_enabled {
        let max_bytes = settings.cache_max_cost.bytes();
        let ttl = cache_ttl(revisions);
        Arc::new_cyclic(|head: &Weak<CachingDispatcher>| {
            let head: Weak<dyn Dispatcher> = head.clone();
            let local = Arc::new(LocalDispatcher::new(datastore, schemas, head));
            let singleflight = Arc::new(SingleflightDispatcher::new(local));
            CachingDispatcher::new(singleflight, max_bytes, ttl)
        })
    } else {
        Arc::new_cyclic(|head: &Weak<SingleflightDispatcher>| {
            let head: Weak<dyn Dispatcher> = head.clone();
            SingleflightDispatcher::new(Arc::new(LocalDispatcher::new(datastore, schemas, head)))
        })
    }
}
