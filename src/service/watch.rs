//! Watch: the datastore's change feed as a stream of events, after a start
//! revision, filtered by object type or relationship filter, with
//! schema-change events and checkpoints on request. Transport-free: the API
//! turns `WatchEvent`s into `WatchResponse`s.
//!
//! One task per stream follows the feed (`Datastore::changes_since`, then
//! `Datastore::wait_for_commit` when caught up) and hands events to the
//! consumer through a bounded buffer. A consumer that stops reading fills
//! the buffer; once a hand-over has waited `buffer_write_timeout`, the
//! stream ends with `WatchDisconnected` (RESOURCE_EXHAUSTED) instead of the
//! server holding an ever-growing backlog, as SpiceDB does.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::datastore::{Change, Datastore, RevisionChanges, TransactionMetadata};
use crate::model::{Relationship, RelationshipFilter, Revision};

use super::write_validation::validate_filter;
use super::{ServiceError, Services};

/// Revisions read from the change feed at once.
const FEED_BATCH: usize = 100;

/// The shortest heartbeat honoured; a zero interval would spin.
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);

/// Watch's server settings, with SpiceDB's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSettings {
    /// `--watch-api-heartbeat`: how long a caught-up stream stays silent
    /// before it sends a checkpoint (when checkpoints were asked for).
    pub heartbeat: Duration,
    /// `--datastore-watch-buffer-length`: events buffered per stream for a
    /// consumer that reads slower than changes arrive.
    pub buffer_length: usize,
    /// `--datastore-watch-buffer-write-timeout`: how long an event may wait
    /// for room in a full buffer before the stream is disconnected.
    pub buffer_write_timeout: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(1),
            buffer_length: 1024,
            buffer_write_timeout: Duration::from_secs(1),
        }
    }
}

/// What to watch.
#[derive(Debug, Clone, Default)]
pub struct WatchParams {
    /// Report changes strictly after this revision; `None` starts at the
    /// optimized revision, as SpiceDB does.
    pub start: Option<Revision>,
    /// Only relationships whose resource is of one of these types (all
    /// when empty).
    pub object_types: Vec<String>,
    /// Only relationships matching at least one filter (all when empty).
    pub filters: Vec<RelationshipFilter>,
    /// Report revisions that changed the schema.
    pub schema_updates: bool,
    /// Report checkpoints: after each batch of revisions read, and on every
    /// heartbeat while nothing changes.
    pub checkpoints: bool,
}

/// One item of a Watch stream. Relationship changes are always reported
/// (SpiceDB watches them whatever kinds are asked for).
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// The matching relationship changes of one revision; never empty.
    /// Creates are reported as touches.
    Relationships {
        revision: Revision,
        changes: Vec<Change>,
        metadata: TransactionMetadata,
    },
    /// The schema was written at this revision.
    SchemaChanged {
        revision: Revision,
        metadata: TransactionMetadata,
    },
    /// Every change through this revision has been reported.
    Checkpoint { revision: Revision },
}

impl<D: Datastore> Services<D> {
    /// Starts a Watch stream. Fails before streaming if the start revision
    /// is outside the GC window or a filter names an unknown type or
    /// relation in the schema at the start revision.
    pub async fn watch(
        &self,
        params: WatchParams,
        settings: WatchSettings,
    ) -> Result<WatchStream, ServiceError> {
        let after = match params.start {
            Some(revision) => {
                self.datastore.check_revision(revision).await?;
                revision
            }
            None => self.datastore.optimized_revision().await?,
        };
        if let Some(first) = params.filters.first() {
            let type_name = first.resource_type.clone().unwrap_or_default();
            let (_, schema) = self.snapshot_with_schema(after, &type_name).await?;
            for filter in &params.filters {
                validate_filter(&schema, filter)?;
            }
        }
        let (events, receiver) = mpsc::channel(settings.buffer_length.max(1));
        let (failure, failed) = oneshot::channel();
        let follower = Follower {
            datastore: self.datastore.clone(),
            selection: Selection {
                object_types: params.object_types.into_iter().collect(),
                filters: params.filters,
            },
            schema_updates: params.schema_updates,
            checkpoints: params.checkpoints,
            heartbeat: settings.heartbeat.max(MIN_HEARTBEAT),
            write_timeout: settings.buffer_write_timeout,
            events,
        };
        let task = tokio::spawn(async move {
            if let Err(Stop::Failed(e)) = follower.follow(after).await {
                // The consumer may be gone already; then nobody needs to know.
                let _ = failure.send(e);
            }
        });
        Ok(WatchStream {
            events: receiver,
            failed: Some(failed),
            done: false,
            task,
        })
    }
}

/// The events of one Watch, in revision order, ending only with an error
/// (or never). Dropping it stops the task that follows the feed.
pub struct WatchStream {
    events: mpsc::Receiver<WatchEvent>,
    /// Taken once it has answered (a resolved oneshot must not be polled).
    failed: Option<oneshot::Receiver<ServiceError>>,
    done: bool,
    task: tokio::task::JoinHandle<()>,
}

impl WatchStream {
    /// The follower's failure, if it has reported one.
    fn poll_failure(&mut self, cx: &mut Context<'_>) -> Option<ServiceError> {
        let failed = self.failed.as_mut()?;
        match Pin::new(failed).poll(cx) {
            Poll::Ready(result) => {
                self.failed = None;
                result.ok()
            }
            Poll::Pending => None,
        }
    }
}

impl futures::Stream for WatchStream {
    type Item = Result<WatchEvent, ServiceError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        // A failure goes before the backlog: a consumer that fell behind
        // learns it now, not after reading what no longer resumes cleanly.
        if let Some(e) = this.poll_failure(cx) {
            this.done = true;
            return Poll::Ready(Some(Err(e)));
        }
        match this.events.poll_recv(cx) {
            Poll::Ready(Some(event)) => Poll::Ready(Some(Ok(event))),
            Poll::Ready(None) => {
                // The follower reports its failure before it lets go of the
                // buffer, so it is ready now if there is one.
                this.done = true;
                Poll::Ready(this.poll_failure(cx).map(Err))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which relationship changes a stream reports.
struct Selection {
    object_types: HashSet<String>,
    filters: Vec<RelationshipFilter>,
}

impl Selection {
    fn admits(&self, rel: &Relationship) -> bool {
        (self.object_types.is_empty() || self.object_types.contains(&rel.resource.object_type))
            && (self.filters.is_empty() || {
                let key = rel.key();
                self.filters.iter().any(|f| f.matches(&key))
            })
    }
}

/// Why a follower stopped.
enum Stop {
    /// The consumer went away.
    Closed,
    /// The stream ends with this error.
    Failed(ServiceError),
}

/// Follows the change feed for one stream.
struct Follower<D> {
    datastore: Arc<D>,
    selection: Selection,
    schema_updates: bool,
    checkpoints: bool,
    heartbeat: Duration,
    write_timeout: Duration,
    events: mpsc::Sender<WatchEvent>,
}

impl<D: Datastore> Follower<D> {
    /// Reports every revision after `cursor`, forever: reads what the feed
    /// has, then waits for the next commit.
    async fn follow(&self, mut cursor: Revision) -> Result<(), Stop> {
        loop {
            let feed = self
                .datastore
                .changes_since(cursor, FEED_BATCH)
                .await
                .map_err(|e| Stop::Failed(e.into()))?;
            let Some(last) = feed.last().map(|c| c.revision) else {
                self.idle(cursor).await?;
                continue;
            };
            for revision in feed {
                self.report(revision).await?;
            }
            cursor = last;
            // As SpiceDB's PostgreSQL watch: a checkpoint after each batch,
            // so a consumer whose filter matched nothing still advances.
            if self.checkpoints {
                self.deliver(WatchEvent::Checkpoint { revision: cursor })
                    .await?;
            }
        }
    }

    /// Reports one revision: its matching relationship changes, then its
    /// schema change, each as its own event.
    async fn report(&self, revision: RevisionChanges) -> Result<(), Stop> {
        let RevisionChanges {
            revision,
            changes,
            schema_changed,
            metadata,
        } = revision;
        let changes: Vec<Change> = changes
            .into_iter()
            .filter(|change| match change {
                Change::Touch(rel) | Change::Delete(rel) => self.selection.admits(rel),
            })
            .collect();
        let schema_event =
            (self.schema_updates && schema_changed).then(|| WatchEvent::SchemaChanged {
                revision,
                metadata: metadata.clone(),
            });
        if !changes.is_empty() {
            self.deliver(WatchEvent::Relationships {
                revision,
                changes,
                metadata,
            })
            .await?;
        }
        if let Some(event) = schema_event {
            self.deliver(event).await?;
        }
        Ok(())
    }

    /// Waits for a commit after `cursor`; a heartbeat passing first sends a
    /// checkpoint at `cursor` (everything through it has been reported).
    async fn idle(&self, cursor: Revision) -> Result<(), Stop> {
        tokio::select! {
            woken = self.datastore.wait_for_commit(cursor) => {
                woken.map_err(|e| Stop::Failed(e.into()))?;
                Ok(())
            }
            () = tokio::time::sleep(self.heartbeat) => {
                if self.checkpoints {
                    self.deliver(WatchEvent::Checkpoint { revision: cursor }).await?;
                }
                Ok(())
            }
            () = self.events.closed() => Err(Stop::Closed),
        }
    }

    /// Hands an event to the consumer, waiting at most `write_timeout` for
    /// room in the buffer.
    async fn deliver(&self, event: WatchEvent) -> Result<(), Stop> {
        match tokio::time::timeout(self.write_timeout, self.events.send(event)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Closed),
            Err(_) => Err(Stop::Failed(ServiceError::WatchDisconnected)),
        }
    }
}
