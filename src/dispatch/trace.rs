//! Debug traces of a check (`with_tracing`): a decorator at the head of the
//! dispatcher chain that, only inside `traced`, records every subproblem
//! the check dispatches — what was asked, what came back, how long it took,
//! whether the cache answered — as a tree. Outside `traced` it adds nothing
//! to a dispatch but one task-local lookup, so untraced checks pay nothing.
//!
//! The tree follows the futures, not the call stack: each recorded
//! subproblem's future runs with its own node as the task-local parent
//! (tokio polls a `scope`d future with that value set), so sibling
//! subproblems evaluated concurrently in one task still nest correctly.
//! Subproblems answered by a peer are recorded as one node without
//! children: the trace does not cross the network.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{
    BoxFuture, CheckError, CheckRequest, CheckResult, Dispatcher, ReadRequest, ReadResult,
};

tokio::task_local! {
    /// The node that subproblems dispatched from the current future belong
    /// under; unset outside `traced`.
    static PARENT: Arc<Node>;
}

/// One recorded subproblem and what it dispatched in turn.
#[derive(Debug, Clone)]
pub struct DispatchTrace {
    pub request: CheckRequest,
    /// The answer, or the error that ended it.
    pub outcome: Result<CheckResult, CheckError>,
    pub duration: Duration,
    /// Served from the dispatch cache: nothing below it was computed now.
    pub cached: bool,
    /// Subproblems in the order they were dispatched.
    pub children: Vec<DispatchTrace>,
}

/// A node while its subproblem runs: children are appended as they finish.
#[derive(Default)]
struct Node {
    children: Mutex<Vec<DispatchTrace>>,
}

impl Node {
    fn push(&self, trace: DispatchTrace) {
        self.children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(trace);
    }

    fn take_children(&self) -> Vec<DispatchTrace> {
        std::mem::take(&mut *self.children.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Whether the current future runs inside `traced`. Decorators that would
/// merge a traced subproblem with someone else's computation (singleflight)
/// step aside then, so the trace shows what this check evaluated.
pub fn is_active() -> bool {
    PARENT.try_with(|_| ()).is_ok()
}

/// Runs `future` (a check through a chain headed by `TracingDispatcher`)
/// and returns its output with the subproblems it dispatched at the top
/// level, each with its own subtree.
pub async fn traced<T>(future: impl Future<Output = T>) -> (T, Vec<DispatchTrace>) {
    let root = Arc::new(Node::default());
    let output = PARENT.scope(root.clone(), future).await;
    (output, root.take_children())
}

/// The decorator: records each subproblem under the current parent when a
/// trace is being taken, and passes straight through otherwise.
pub struct TracingDispatcher {
    inner: Arc<dyn Dispatcher>,
}

impl TracingDispatcher {
    pub fn new(inner: Arc<dyn Dispatcher>) -> Self {
        Self { inner }
    }
}

impl Dispatcher for TracingDispatcher {
    fn check(&self, request: CheckRequest) -> BoxFuture<'_, Result<CheckResult, CheckError>> {
        let Ok(parent) = PARENT.try_with(Arc::clone) else {
            return self.inner.check(request);
        };
        Box::pin(async move {
            let node = Arc::new(Node::default());
            let started = Instant::now();
            let outcome = PARENT
                .scope(node.clone(), self.inner.check(request.clone()))
                .await;
            let cached = outcome
                .as_ref()
                .is_ok_and(|r| r.dispatch_count == 0 && r.cached_dispatch_count > 0);
            parent.push(DispatchTrace {
                request,
                outcome: outcome.clone(),
                duration: started.elapsed(),
                cached,
                children: node.take_children(),
            });
            outcome
        })
    }

    /// Traces are of checks; a lookup's reads pass through.
    fn read(&self, request: ReadRequest) -> BoxFuture<'_, Result<ReadResult, CheckError>> {
        self.inner.read(request)
    }
}
