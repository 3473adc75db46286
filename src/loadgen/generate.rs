//! `trellis bench generate`: writes the social-network schema and loads a
//! generated network through ImportBulkRelationships or WriteRelationships,
//! or writes it to a file, one relationship per line.

use std::io::Write as _;
use std::path::Path;

use futures::StreamExt as _;
use indicatif::ProgressBar;

use super::{Connection, LoadgenError, SCHEMA};
use crate::api::proto::v1;
use crate::model::Relationship;

/// Relationships per message: `zed import`'s batch, and SpiceDB's default
/// limit of updates per WriteRelationships.
const BATCH: usize = 1_000;

/// Which RPC loads the relationships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadVia {
    /// One ImportBulkRelationships stream (fails if any already exists).
    Import,
    /// WriteRelationships calls of TOUCH updates (idempotent, slower).
    Write,
}

/// Writes the schema, then loads `relationships`; `progress` counts
/// relationships as they are handed to the transport. Returns how many the
/// server reports loaded (Import) or how many were written (Write).
pub async fn generate(
    connection: &Connection,
    relationships: &[Relationship],
    via: LoadVia,
    progress: &ProgressBar,
) -> Result<u64, LoadgenError> {
    connection
        .schema()
        .write_schema(v1::WriteSchemaRequest {
            schema: SCHEMA.to_string(),
        })
        .await
        .map_err(|s| LoadgenError::call("WriteSchema", s))?;
    progress.set_length(relationships.len() as u64);
    match via {
        LoadVia::Import => import(connection, relationships, progress).await,
        LoadVia::Write => write(connection, relationships, progress).await,
    }
}

async fn import(
    connection: &Connection,
    relationships: &[Relationship],
    progress: &ProgressBar,
) -> Result<u64, LoadgenError> {
    let messages: Vec<v1::ImportBulkRelationshipsRequest> = relationships
        .chunks(BATCH)
        .map(|chunk| v1::ImportBulkRelationshipsRequest {
            relationships: chunk.iter().map(Into::into).collect(),
        })
        .collect();
    let bar = progress.clone();
    let stream = futures::stream::iter(messages).inspect(move |m| {
        bar.inc(m.relationships.len() as u64);
    });
    let loaded = connection
        .permissions(0)
        .import_bulk_relationships(stream)
        .await
        .map_err(|s| LoadgenError::call("ImportBulkRelationships", s))?
        .into_inner()
        .num_loaded;
    let want = relationships.len() as u64;
    if loaded != want {
        return Err(LoadgenError::ShortLoad {
            call: "ImportBulkRelationships",
            got: loaded,
            want,
        });
    }
    Ok(loaded)
}

async fn write(
    connection: &Connection,
    relationships: &[Relationship],
    progress: &ProgressBar,
) -> Result<u64, LoadgenError> {
    let mut client = connection.permissions(0);
    for chunk in relationships.chunks(BATCH) {
        let updates = chunk
            .iter()
            .map(|r| v1::RelationshipUpdate {
                operation: v1::relationship_update::Operation::Touch as i32,
                relationship: Some(r.into()),
            })
            .collect();
        client
            .write_relationships(v1::WriteRelationshipsRequest {
                updates,
                optional_preconditions: Vec::new(),
                optional_transaction_metadata: None,
            })
            .await
            .map_err(|s| LoadgenError::call("WriteRelationships", s))?;
        progress.inc(chunk.len() as u64);
    }
    Ok(relationships.len() as u64)
}

/// Writes `relationships` to `path` in SpiceDB's text form
/// (`content:c1#owner@user:u5`), one per line, for other tools to load.
pub fn write_relationships_file(
    path: &Path,
    relationships: &[Relationship],
) -> Result<(), LoadgenError> {
    let io = |source| LoadgenError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut out = std::io::BufWriter::new(file);
    for relationship in relationships {
        writeln!(out, "{relationship}").map_err(io)?;
    }
    out.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_holds_one_parseable_relationship_per_line() {
        let relationships = crate::workload::social_network(500, 3);
        let path = std::env::temp_dir().join(format!("trellis-gen-{}.txt", std::process::id()));
        write_relationships_file(&path, &relationships).expect("written");
        let text = std::fs::read_to_string(&path).expect("read back");
        let _ = std::fs::remove_file(&path);
        let parsed: Vec<Relationship> = text
            .lines()
            .map(|l| crate::model::parse_relationship(l).expect("parses"))
            .collect();
        assert_eq!(parsed, relationships);
    }
}
