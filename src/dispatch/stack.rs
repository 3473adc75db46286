//! Stack for deep recursion: a future wrapper that polls a subproblem on a
//! fresh stack segment when the thread's stack runs low. A check recurses
//! through the dispatcher chain once per level, and each level's `poll`
//! nests inside its parent's (caching → singleflight → local → graph →
//! caching …), so up to the depth limit (50) of frames pile up on whichever
//! thread polls the request. How much that is depends on the build (debug
//! frames are large) and the schema, not on anything a thread's fixed stack
//! could be sized for; overflowing it aborts the whole process.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// When less than this is left, the next poll moves to a new segment. It
/// must cover what one level uses between two checks (a debug build's
/// frames for one trip around the chain and the graph walk).
const RED_ZONE: usize = 256 * 1024;
/// The size of each new segment.
const SEGMENT: usize = 2 * 1024 * 1024;

/// Polls the inner future with at least `RED_ZONE` of stack available.
pub struct GrowStack<F>(pub F);

impl<F: Future + Unpin> Future for GrowStack<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let inner = &mut self.0;
        stacker::maybe_grow(RED_ZONE, SEGMENT, || Pin::new(inner).poll(cx))
    }
}
