//! The caching dispatcher: a decorator that answers a check subproblem from
//! a bounded in-memory cache (moka) when the same question was answered at
//! the same revision with no more depth than the request has left, and
//! otherwise asks the dispatcher behind it and keeps successful answers.
//! Keys are `keys::CheckKey`; costs are estimated bytes (`cost`).

use std::sync::Arc;
use std::time::Duration;

use moka::notification::RemovalCause;
use moka::sync::Cache;

use super::keys::CheckKey;
use super::{BoxFuture, CheckError, CheckRequest, CheckResult, Dispatcher, cost, metrics};

/// Answers stored by subproblem. The value is an `Arc` because moka hands
/// out clones of values: one reference count instead of a map copy.
type AnswerCache = Cache<CheckKey, Arc<CheckResult>, foldhash::quality::RandomState>;

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
    fn lookup(&self, key: &CheckKey, depth_remaining: u32) -> Option<Arc<CheckResult>> {
        self.cache
            .get(key)
            .filter(|cached| cached.depth_required <= depth_remaining)
    }

    /// Keeps a successful answer, replacing any entry for the key (which,
    /// on this path, needed more depth than this request had).
    fn remember(&self, key: CheckKey, result: &CheckResult) {
        if cacheable(result) {
            let entry = Arc::new(result.clone());
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
            let key = CheckKey::of(&request);
            if let Some(cached) = self.lookup(&key, request.depth_remaining) {
                metrics::cache_hit();
                return Ok(served_from_cache(&cached));
            }
            metrics::cache_miss();
            let result = self.inner.check(request).await?;
            self.remember(key, &result);
            Ok(result)
        })
    }
}

/// Whether an answer may be reused. Answers that read a relationship with
/// an expiration may change at the same revision once it passes (expiry is
/// judged by the datastore's clock, which this layer does not see), so
/// they are recomputed every time.
fn cacheable(result: &CheckResult) -> bool {
    result.expires_at.is_none()
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
fn record_eviction(key: Arc<CheckKey>, value: Arc<CheckResult>, cause: RemovalCause) {
    let reason = match cause {
        RemovalCause::Size => "size",
        RemovalCause::Expired => "expired",
        RemovalCause::Explicit | RemovalCause::Replaced => return,
    };
    metrics::cache_evicted(reason, cost::entry_cost(&key, &value));
}
