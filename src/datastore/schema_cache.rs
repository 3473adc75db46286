//! Compiled schemas by hash. Every revision's reader names the stored schema
//! in force; compiling it once per distinct text serves every request and
//! subproblem that reads at any revision with that schema.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{DatastoreError, Reader, StoredSchema};
use crate::schema::{self, CompiledSchema};

/// How many distinct schemas stay compiled; old ones are rarely read again.
const CAPACITY: usize = 16;

#[derive(Debug, Default)]
pub struct SchemaCache {
    compiled: Mutex<HashMap<[u8; 32], Arc<CompiledSchema>>>,
}

/// Why no schema could be had at a revision.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaLoadError {
    #[error("no schema has been written at this revision")]
    NoSchema,
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
}

impl SchemaCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The compiled schema in force at the reader's revision.
    pub async fn at<R: Reader>(&self, reader: &R) -> Result<Arc<CompiledSchema>, SchemaLoadError> {
        let stored = reader.schema().await?.ok_or(SchemaLoadError::NoSchema)?;
        self.compiled(&stored).map_err(SchemaLoadError::Datastore)
    }

    /// Compiles (or finds) a stored schema. Stored schemas were validated on
    /// write, so a failure here means the datastore holds corrupt text.
    pub fn compiled(&self, stored: &StoredSchema) -> Result<Arc<CompiledSchema>, DatastoreError> {
        if let Some(found) = self.lock().get(&stored.hash) {
            return Ok(found.clone());
        }
        let compiled = schema::compile(&stored.text).map(Arc::new).map_err(|e| {
            DatastoreError::Internal(format!("stored schema does not compile: {e}"))
        })?;
        self.insert(stored.hash, compiled.clone());
        Ok(compiled)
    }

    /// Remembers a schema compiled elsewhere (WriteSchema compiles first).
    pub fn insert(&self, hash: [u8; 32], compiled: Arc<CompiledSchema>) {
        let mut map = self.lock();
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(hash, compiled);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<CompiledSchema>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
