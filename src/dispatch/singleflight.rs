//! Singleflight: a decorator that computes identical in-flight check
//! subproblems once. The first request for a `keys::FlightKey` starts the
//! computation as a shared future; requests for the same key that arrive
//! before it finishes wait on that future instead of computing again.
//!
//! # Why this cannot deadlock
//!
//! A request waits only on a computation with the same flight key, and the
//! flight key includes `depth_remaining`. Every subproblem a computation
//! dispatches has strictly less depth remaining than the computation itself
//! (`graph::check` dispatches with `depth_remaining - 1`). So in the
//! wait-for graph (request → the computation it waits on → the subproblems
//! that computation waits on → ...) depth strictly decreases along every
//! edge, and it is bounded below by zero: the graph is acyclic, and a
//! computation can never wait, directly or through others, on itself. A
//! subproblem that recurs in cyclic data (`group:a#member` needing
//! `group:a#member` again) recurs one level deeper, under a different key,
//! and the depth budget ends the recursion with `MaxDepthExceeded`.
//!
//! # Cancellation
//!
//! The computation is a `futures::future::Shared`: every waiter, not only
//! the one that started it, can drive it. If the request that started it is
//! dropped (its caller went away), the others keep polling the same
//! computation and get its result; nobody waits on a task that no longer
//! exists. When every waiter is gone the computation is dropped with them,
//! and the next request for the key starts afresh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::FutureExt as _;
use futures::future::{Shared, WeakShared};

use super::keys::FlightKey;
use super::{
    BoxFuture, CheckError, CheckRequest, CheckResult, Dispatcher, ReadRequest, ReadResult, metrics,
    trace,
};

/// Computations in flight by key (foldhash: see the dispatch cache).
type Flights = HashMap<FlightKey, InFlight, foldhash::quality::RandomState>;

/// One computation, awaited by every request that shares it.
type Flight = Shared<BoxFuture<'static, Result<CheckResult, CheckError>>>;

/// A dispatcher that merges identical concurrent subproblems.
pub struct SingleflightDispatcher {
    inner: Arc<dyn Dispatcher>,
    /// Computations in flight. Held weakly: the waiters own a computation,
    /// so it is dropped when they all are, whatever this map holds.
    flights: Mutex<Flights>,
    next_id: AtomicU64,
}

/// A map entry; the id tells a waiter whether the entry is still its own
/// computation's or a later one's for the same key.
struct InFlight {
    id: u64,
    flight: WeakShared<BoxFuture<'static, Result<CheckResult, CheckError>>>,
}

impl SingleflightDispatcher {
    pub fn new(inner: Arc<dyn Dispatcher>) -> Self {
        Self {
            inner,
            flights: Mutex::new(Flights::default()),
            next_id: AtomicU64::new(0),
        }
    }

    /// Computations in flight now.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.lock().len()
    }

    /// The map lock is never held across an `.await`, so a panic while it
    /// is held leaves the map consistent: poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Flights> {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The computation for `key`: the one in flight if any (`true`: shared),
    /// else a new one for `request`.
    fn join_or_start(&self, key: &FlightKey, request: CheckRequest) -> (Flight, u64, bool) {
        let mut flights = self.lock();
        if let Some(existing) = flights.get(key)
            && let Some(flight) = existing.flight.upgrade()
        {
            return (flight, existing.id, true);
        }
        let inner = Arc::clone(&self.inner);
        let flight = async move { inner.check(request).await }.boxed().shared();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Some(weak) = flight.downgrade() {
            flights.insert(key.clone(), InFlight { id, flight: weak });
        }
        (flight, id, false)
    }

    /// Removes `key`'s entry if it is still computation `id`'s and that
    /// computation is over: finished, or abandoned by every waiter.
    fn forget(&self, key: &FlightKey, id: u64, finished: bool) {
        let mut flights = self.lock();
        let over = flights
            .get(key)
            .is_some_and(|f| f.id == id && (finished || f.flight.upgrade().is_none()));
        if over {
            flights.remove(key);
        }
    }
}

impl Dispatcher for SingleflightDispatcher {
    fn check(&self, request: CheckRequest) -> BoxFuture<'_, Result<CheckResult, CheckError>> {
        // A traced check evaluates its own subproblems: a shared computation
        // would record them in whichever waiter polled it.
        if trace::is_active() {
            return self.inner.check(request);
        }
        let key = FlightKey::of(&request);
        let (flight, id, shared) = self.join_or_start(&key, request);
        metrics::singleflight(shared);
        let mut waiter = Waiter {
            owner: self,
            key,
            id,
            flight: Some(flight),
            finished: false,
        };
        Box::pin(async move { waiter.wait().await })
    }

    /// Reads pass through: a lookup walk issues each of its reads once, and
    /// two lookups meeting on the same read at the same moment is rare
    /// enough that the cache, not a shared flight, is what serves repeats.
    fn read(&self, request: ReadRequest) -> BoxFuture<'_, Result<ReadResult, CheckError>> {
        self.inner.read(request)
    }
}

/// One request's wait; on drop (finished or cancelled) it lets go of the
/// computation and clears the map entry if nobody else needs it.
struct Waiter<'a> {
    owner: &'a SingleflightDispatcher,
    key: FlightKey,
    id: u64,
    flight: Option<Flight>,
    finished: bool,
}

impl Waiter<'_> {
    async fn wait(&mut self) -> Result<CheckResult, CheckError> {
        let flight = self.flight.as_mut().expect("taken only on drop");
        let result = flight.await;
        self.finished = true;
        result
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        // Let go first, so that the last waiter sees the computation dead.
        drop(self.flight.take());
        self.owner.forget(&self.key, self.id, self.finished);
    }
}
