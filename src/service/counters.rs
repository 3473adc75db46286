//! Relationship counters (SpiceDB's experimental counter RPCs): a named
//! relationship filter registered in the datastore, versioned with the
//! relationships, and counted on request. The count is computed on read: an
//! exact count of what the filter matches at head (SpiceDB also reads at
//! head), paged through the datastore so memory stays bounded however many
//! match. SpiceDB's "still calculating" answer never arises.

use crate::datastore::{
    CounterChange, Datastore, DatastoreError, Page, Reader, RelationshipCounter,
};
use crate::model::{RelationshipFilter, Revision};
use crate::schema;

use super::write_validation::validate_filter;
use super::{ServiceError, Services};

/// Relationships read per datastore call while counting.
const COUNT_PAGE: usize = 10_000;

impl<D: Datastore> Services<D> {
    /// Registers `filter` under `name`, after checking the filter's names
    /// against the schema at head.
    pub async fn register_counter(
        &self,
        name: &str,
        filter: RelationshipFilter,
    ) -> Result<Revision, ServiceError> {
        let (_, schema) = self.head_schema().await?;
        let schema = schema.unwrap_or_else(|| std::sync::Arc::new(schema::empty()));
        validate_filter(&schema, &filter)?;
        let change = CounterChange::Register(RelationshipCounter {
            name: name.to_string(),
            filter: filter.clone(),
        });
        self.change_counters(change).await.map_err(|e| match e {
            DatastoreError::CounterAlreadyRegistered(name) => {
                ServiceError::CounterAlreadyRegistered {
                    name,
                    filter: Box::new(filter),
                }
            }
            other => other.into(),
        })
    }

    /// Removes the counter `name`.
    pub async fn unregister_counter(&self, name: &str) -> Result<Revision, ServiceError> {
        let change = CounterChange::Unregister(name.to_string());
        Ok(self.change_counters(change).await?)
    }

    /// How many relationships the counter `name` matches at head, and head.
    pub async fn count_relationships(&self, name: &str) -> Result<(u64, Revision), ServiceError> {
        let head = self.datastore.head_revision().await?;
        let reader = self.datastore.snapshot(head);
        let counter = reader
            .counters()
            .await?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| ServiceError::CounterNotRegistered {
                name: name.to_string(),
            })?;
        let mut count = 0u64;
        let mut page = Page {
            limit: Some(COUNT_PAGE),
            ..Page::default()
        };
        loop {
            let found = reader.query(&counter.filter, &page).await?;
            count += found.len() as u64;
            match found.last() {
                Some(last) if found.len() == COUNT_PAGE => page.after = Some(last.key()),
                _ => break,
            }
        }
        Ok((count, head))
    }

    async fn change_counters(&self, change: CounterChange) -> Result<Revision, DatastoreError> {
        let batch = crate::datastore::WriteBatch {
            counters: vec![change],
            ..Default::default()
        };
        Ok(self.datastore.write(batch).await?.revision)
    }
}

#[cfg(test)]
mod tests;
