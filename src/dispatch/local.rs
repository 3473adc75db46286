//! The local dispatcher: evaluates a subproblem in this process against a
//! snapshot of the datastore, sending its own subproblems back to the head
//! of the dispatcher chain (itself when standalone; a cache later), and
//! answers the lookups' read steps from the same datastore.

use std::sync::{Arc, Weak};

use super::stack::GrowStack;
use super::{
    BoxFuture, CheckError, CheckRequest, CheckResult, Dispatcher, ReadRequest, ReadResult,
};
use crate::datastore::Datastore;
use crate::datastore::schema_cache::{SchemaCache, SchemaLoadError};
use crate::graph;

pub struct LocalDispatcher<D: Datastore> {
    datastore: Arc<D>,
    schemas: Arc<SchemaCache>,
    /// Where subproblems go: the head of the chain this dispatcher ends.
    head: Weak<dyn Dispatcher>,
}

impl<D: Datastore> LocalDispatcher<D> {
    /// A dispatcher whose subproblems go to `head` (built with
    /// `Arc::new_cyclic` by whoever assembles the chain).
    pub fn new(datastore: Arc<D>, schemas: Arc<SchemaCache>, head: Weak<dyn Dispatcher>) -> Self {
        Self {
            datastore,
            schemas,
            head,
        }
    }

    /// A dispatcher that is the whole chain: subproblems come back to it.
    pub fn standalone(datastore: Arc<D>, schemas: Arc<SchemaCache>) -> Arc<Self> {
        Arc::new_cyclic(|me: &Weak<Self>| {
            let head: Weak<dyn Dispatcher> = me.clone();
            Self::new(datastore, schemas, head)
        })
    }
}

impl<D: Datastore> Dispatcher for LocalDispatcher<D> {
    fn check(&self, request: CheckRequest) -> BoxFuture<'_, Result<CheckResult, CheckError>> {
        // The recursion point: each level's walk starts here, on enough stack.
        Box::pin(GrowStack(Box::pin(async move {
            if request.depth_remaining == 0 {
                return Err(CheckError::MaxDepthExceeded);
            }
            let head = self.head.upgrade().ok_or_else(|| {
                CheckError::Datastore(crate::datastore::DatastoreError::Unavailable(
                    "dispatcher is shutting down".into(),
                ))
            })?;
            let reader = self.datastore.snapshot(request.revision);
            let schema = self.schemas.at(&reader).await.map_err(|e| match e {
                SchemaLoadError::NoSchema => CheckError::NoSchema,
                SchemaLoadError::Datastore(d) => CheckError::Datastore(d),
            })?;
            graph::check::check(&reader, &schema, head.as_ref(), &request).await
        })))
    }

    fn read(&self, request: ReadRequest) -> BoxFuture<'_, Result<ReadResult, CheckError>> {
        Box::pin(async move {
            let reader = self.datastore.snapshot(request.revision());
            Ok(super::read::evaluate(&reader, request.query()).await?)
        })
    }
}
