//! The caching dispatcher: a decorator that answers a check subproblem from
//! a bounded in-memory cache (moka) when the same question was answered at
//! the same revision with no more depth than the request has left, and
//! otherwise asks the dispatcher behind it and keeps successful answers.
//! The lookups' read steps are cached beside the checks, under the same
//! budget and the same rule (one revision, nothing that expires). Keys are
//! `keys::CacheKey`; costs are estimated bytes (`cost`).

use std::sync::Arc;
use std::time::Duration;

use moka::notification::RemovalCause;
use moka::sync::Cache;

use super::keys::{CacheKey, CheckKey};
use super::{
    BoxFuture, CheckError, CheckRequest, CheckResult, Dispatcher, ReadRequest, ReadResult, cost,
    metrics,
};

/// A cached answer. Both kinds are reference-counted because moka hands out
/// clones of values: one count instead of a copy of the map or list.
#[derive(Debug, Clone)]
pub enum Cached {
    Check(Arc<CheckResult>),
    Read(ReadResult),
}

/// Answers stored by subproblem.
type AnswerCache = Cache<CacheKey, Cached, foldhash::quality::RandomState>;

/// A dispatcher that remembers answers in front of another.
pub struct CachingDispatcher {
    inner: Arc<dyn Dispatcher>,
    cache: AnswerCache,
}

impl CachingDispatcher {
    /// A cache of at most `max_bytes` (estimated) whose entries live `ttl`
    /// after they are written, in front of `inner`.
    pub fn new(inner: Arc<dyn Dispatcher>, max_bytes: u64, ttl: Duration) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(cost::entry_cost)
            .time_to_live(ttl)
            .eviction_listener(record_eviction)
            .build_with_hasher(foldhash::quality::RandomState::default());
        Self { inner, cache }
    }

    /// A cached answer good for a request with `depth_remaining` left: one
    /// that needed no more depth than that (a shallower request could not
    /// have computed an answer that needed more).
    fn lookup(&self, key: CheckKey, depth_remaining: u32) -> (CacheKey, Option<Arc<CheckResult>>) {
        let key = CacheKey::Check(key);
        let found = match self.cache.get(&key) {
            Some(Cached::Check(cached)) if cached.depth_required <= depth_remaining => Some(cached),
            _ => None,
        };
        (key, found)
    }

    /// Keeps a successful answer, replacing any entry for the key (which,
    /// on this path, needed more depth than this request had). Answers that
    /// read a relationship with an expiration may change at the same
    /// revision once it passes (expiry is judged by the datastore's clock,
    /// which this layer does not see), so they are recomputed every time.
    /// `entry` is built only for an answer that is kept.
    fn remember(
        &self,
        key: CacheKey,
        expires_at: Option<std::time::SystemTime>,
        entry: impl FnOnce() -> Cached,
    ) {
        if expires_at.is_none() {
            let entry = entry();
            metrics::cache_added(cost::entry_cost(&key, &entry));
            self.cache.insert(key, entry);
        }
    }

    /// Entries held now (after pending maintenance).
    #[cfg(test)]
    pub(crate) fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}

impl Dispatcher for CachingDispatcher {
    fn check(&self, request: CheckRequest) -> BoxFuture<'_, Result<CheckResult, CheckError>> {
        Box::pin(async move {
            let (key, cached) = self.lookup(CheckKey::of(&request), request.depth_remaining);
            if let Some(cached) = cached {
                metrics::cache_hit("check");
                return Ok(served_from_cache(&cached));
            }
            metrics::cache_miss("check");
            let result = self.inner.check(request).await?;
            self.remember(key, result.expires_at, || {
                Cached::Check(Arc::new(result.clone()))
            });
            Ok(result)
        })
    }

    fn read(&self, request: ReadRequest) -> BoxFuture<'_, Result<ReadResult, CheckError>> {
        Box::pin(async move {
            let key = CacheKey::Read(request.clone());
            if let Some(Cached::Read(cached)) = self.cache.get(&key) {
                metrics::cache_hit("read");
                return Ok(cached);
            }
            metrics::cache_miss("read");
            let result = self.inner.read(request).await?;
            self.remember(key, result.expires_at, || Cached::Read(result.clone()));
            Ok(result)
        })
    }
}

/// A cached answer as the caller sees it: nothing was computed for it, so
/// what computing it once took moves to `cached_dispatch_count`, as in
/// SpiceDB.
fn served_from_cache(cached: &CheckResult) -> CheckResult {
    CheckResult {
        memberships: cached.memberships.clone(),
        dispatch_count: 0,
        cached_dispatch_count: cached
            .dispatch_count
            .saturating_add(cached.cached_dispatch_count),
        depth_required: cached.depth_required,
        expires_at: cached.expires_at,
    }
}

/// Counts entries that left for lack of room or of time; replaced and
/// explicitly removed ones are not evictions.
fn record_eviction(key: Arc<CacheKey>, value: Cached, cause: RemovalCause) {
    let reason = match cause {
        RemovalCause::Size => "size",
        RemovalCause::Expired => "expired",
        RemovalCause::Explicit | RemovalCause::Replaced => return,
    };
    metrics::cache_evicted(reason, cost::entry_cost(&key, &value));
}
