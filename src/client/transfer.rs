//! `trellis import FILE` and `trellis export [FILE]`: a validation YAML's
//! schema (WriteSchema) and relationships (one ImportBulkRelationships
//! stream, so all or nothing), or a file of relationships alone; and the
//! server's schema and every relationship (ExportBulkRelationships at the
//! schema's revision, so the two agree) written back as a YAML `import`
//! reads. Both show progress on a terminal.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use futures::StreamExt as _;

use super::command::{ExportArgs, ImportArgs};
use super::connect::Connection;
use super::output::{bar, display};
use super::schema::read_input;
use super::{ClientError, output};
use crate::api::proto::v1;
use crate::model::{Relationship, parse_relationship};
use crate::validationfile;

/// What a file to import holds.
struct ImportFile {
    schema: String,
    relationships: Vec<Relationship>,
}

/// Loads `args.file`, then writes its schema and imports its relationships.
pub async fn import(args: ImportArgs) -> Result<ExitCode, ClientError> {
    let file = read_import_file(&args.file)?;
    let connection = Connection::open(&args.connect.target(), 1).await?;
    if args.schema && !file.schema.trim().is_empty() {
        let response = connection
            .schema()
            .write_schema(v1::WriteSchemaRequest {
                schema: file.schema.clone(),
            })
            .await
            .map_err(|s| ClientError::call("WriteSchema", s))?
            .into_inner();
        output::line(&format!(
            "schema written at {}",
            output::token(response.written_at.as_ref())
        ))?;
    }
    if args.relationships && !file.relationships.is_empty() {
        let loaded =
            import_relationships(&connection, &file.relationships, args.batch_size).await?;
        output::line(&format!("{loaded} relationships imported"))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A `.yaml`/`.yml` validation file (schema and relationships), else a text
/// file of relationships, one per line.
fn read_import_file(path: &Path) -> Result<ImportFile, ClientError> {
    if validationfile::is_validation_file(path) {
        let loaded = validationfile::load(path).map_err(|e| ClientError::Input(e.to_string()))?;
        let text = loaded.file.relationships.clone().unwrap_or_default();
        return Ok(ImportFile {
            schema: loaded.schema,
            relationships: parse_lines(path, &text)?,
        });
    }
    let text = read_input(path)?;
    Ok(ImportFile {
        schema: String::new(),
        relationships: parse_lines(path, &text)?,
    })
}

/// Relationships, one per line; blank lines and `//` comments are skipped.
/// An error names the file and line.
fn parse_lines(path: &Path, text: &str) -> Result<Vec<Relationship>, ClientError> {
    text.lines()
        .enumerate()
        .map(|(i, raw)| (i + 1, raw.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with("//"))
        .map(|(number, line)| {
            parse_relationship(line).map_err(|e| {
                ClientError::Input(format!(
                    "{}: relationship line {number}: {e}",
                    display(path)
                ))
            })
        })
        .collect()
}

/// One ImportBulkRelationships stream of `batch_size` relationships per
/// message; the bar advances as messages are handed to the transport.
async fn import_relationships(
    connection: &Connection,
    relationships: &[Relationship],
    batch_size: u32,
) -> Result<u64, ClientError> {
    let progress = bar(
        relationships.len() as u64,
        "{bar:40} {pos}/{len} relationships, {per_sec}, eta {eta}",
    );
    let messages: Vec<v1::ImportBulkRelationshipsRequest> = relationships
        .chunks(batch_size.max(1) as usize)
        .map(|chunk| v1::ImportBulkRelationshipsRequest {
            relationships: chunk.iter().map(Into::into).collect(),
        })
        .collect();
    let counter = progress.clone();
    let stream = futures::stream::iter(messages).inspect(move |m| {
        counter.inc(m.relationships.len() as u64);
    });
    let response = connection
        .permissions(0)
        .import_bulk_relationships(stream)
        .await;
    progress.finish_and_clear();
    let loaded = response
        .map_err(|s| ClientError::call("ImportBulkRelationships", s))?
        .into_inner()
        .num_loaded;
    if loaded != relationships.len() as u64 {
        return Err(ClientError::Malformed {
            what: "import response",
            reason: format!(
                "{loaded} relationships loaded, {} sent",
                relationships.len()
            ),
        });
    }
    Ok(loaded)
}

/// Reads the schema, then every relationship at the schema's revision, and
/// writes them as a validation YAML.
pub async fn export(args: ExportArgs) -> Result<ExitCode, ClientError> {
    let connection = Connection::open(&args.connect.target(), 1).await?;
    let schema = connection
        .schema()
        .read_schema(v1::ReadSchemaRequest {})
        .await
        .map_err(|s| ClientError::call("ReadSchema", s))?
        .into_inner();
    let at = schema
        .read_at
        .clone()
        .ok_or_else(|| ClientError::Malformed {
            what: "ReadSchema response",
            reason: "no read_at".to_string(),
        })?;
    let relationships = export_relationships(&connection, at).await?;
    let yaml = validation_yaml(&schema.schema_text, &relationships);
    write_output(&args.file, &yaml)?;
    if args.file != Path::new("-") {
        output::line(&format!(
            "{} relationships exported to {}",
            relationships.len(),
            args.file.display()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn export_relationships(
    connection: &Connection,
    at: v1::ZedToken,
) -> Result<Vec<String>, ClientError> {
    let request = v1::ExportBulkRelationshipsRequest {
        consistency: Some(v1::Consistency {
            requirement: Some(v1::consistency::Requirement::AtExactSnapshot(at)),
        }),
        ..Default::default()
    };
    let call = |s| ClientError::call("ExportBulkRelationships", s);
    let mut stream = connection
        .permissions(0)
        .export_bulk_relationships(request)
        .await
        .map_err(call)?
        .into_inner();
    let progress = bar(0, "{spinner} {pos} relationships exported, {per_sec}");
    let mut lines = Vec::new();
    while let Some(page) = stream.next().await {
        let page = match page {
            Ok(page) => page,
            Err(status) => {
                progress.finish_and_clear();
                return Err(call(status));
            }
        };
        for relationship in &page.relationships {
            let model = crate::api::convert::relationship(Some(relationship), "relationship")
                .map_err(|e| ClientError::Malformed {
                    what: "relationship",
                    reason: e.to_string(),
                })?;
            lines.push(model.to_string());
        }
        progress.inc(page.relationships.len() as u64);
    }
    progress.finish_and_clear();
    Ok(lines)
}

/// `schema:` and `relationships:` as literal blocks. The explicit indent
/// (`|2`) keeps a first line that starts with spaces from being misread.
fn validation_yaml(schema: &str, relationships: &[String]) -> String {
    let mut yaml = String::new();
    push_block(&mut yaml, "schema", schema.lines());
    push_block(
        &mut yaml,
        "relationships",
        relationships.iter().map(String::as_str),
    );
    yaml
}

fn push_block<'a>(yaml: &mut String, key: &str, lines: impl Iterator<Item = &'a str>) {
    let mut lines = lines.peekable();
    if lines.peek().is_none() {
        yaml.push_str(&format!("{key}: \"\"\n"));
        return;
    }
    yaml.push_str(&format!("{key}: |2\n"));
    for line in lines {
        if !line.is_empty() {
            yaml.push_str("  ");
            yaml.push_str(line);
        }
        yaml.push('\n');
    }
}

fn write_output(path: &Path, text: &str) -> Result<(), ClientError> {
    let fail = |source| ClientError::Write {
        path: display(path),
        source,
    };
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(fail);
    }
    std::fs::write(path, text).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_yaml_reads_back_as_a_validation_file() {
        let schema = "definition user {}\n\n  // indented comment\ndefinition document {\n\trelation viewer: user\n}";
        let relationships = vec![
            "document:1#viewer@user:alice".to_string(),
            r#"document:2#viewer@user:bob[expiration:2030-01-01T00:00:00Z]"#.to_string(),
        ];
        let yaml = validation_yaml(schema, &relationships);
        let file: validationfile::ValidationFile = serde_yaml_ng::from_str(&yaml).expect("parses");
        assert_eq!(file.schema.expect("schema").trim_end(), schema);
        assert_eq!(
            file.relationships
                .expect("relationships")
                .lines()
                .collect::<Vec<_>>(),
            relationships
        );
    }

    #[test]
    fn empty_parts_are_empty_strings() {
        let file: validationfile::ValidationFile =
            serde_yaml_ng::from_str(&validation_yaml("", &[])).expect("parses");
        assert_eq!(file.schema.as_deref(), Some(""));
        assert_eq!(file.relationships.as_deref(), Some(""));
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number() {
        let text = "// a comment\ndocument:1#viewer@user:alice\n\nnot a relationship\n";
        let error = parse_lines(Path::new("rels.txt"), text).expect_err("line 4 is bad");
        let message = error.to_string();
        assert!(
            message.starts_with("rels.txt: relationship line 4: "),
            "{message}"
        );
    }
}
