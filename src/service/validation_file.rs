//! Runs a SpiceDB validation file through the services, as `zed validate`
//! does: write the schema, write the relationships, check every assertion at
//! the newest revision. Each failure names the file and line it comes from.

use std::path::PathBuf;

use crate::datastore::Datastore;
use crate::model::{Consistency, RelationshipUpdate, UpdateOperation, parse_relationship};
use crate::validationfile::LoadedFile;

use super::{CheckParams, Permissionship, ServiceError, Services, WriteParams};

/// One thing that went wrong, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// The outcome of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub assertions_passed: usize,
    pub failures: Vec<Failure>,
}

/// What an assertion list expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    True,
    Caveated,
    False,
}

impl<D: Datastore> Services<D> {
    /// Loads the file's schema and relationships into this (empty) service
    /// and checks its assertions.
    pub async fn run_validation_file(&self, loaded: &LoadedFile) -> Report {
        let yaml = std::fs::read_to_string(&loaded.path).unwrap_or_default();
        let mut report = Report::default();
        let fail = |line: usize, message: String| Failure {
            path: loaded.path.clone(),
            line,
            message,
        };

        if let Err(e) = self.write_schema(&loaded.schema).await {
            report.failures.push(self.schema_failure(loaded, &yaml, e));
            return report;
        }
        if let Err(failure) = self.load_relationships(loaded, &yaml).await {
            report.failures.push(failure);
            return report;
        }
        let assertions = loaded.file.assertions.clone().unwrap_or_default();
        let lists = [
            (Expected::True, &assertions.assert_true),
            (Expected::Caveated, &assertions.assert_caveated),
            (Expected::False, &assertions.assert_false),
        ];
        for (expected, items) in lists {
            for item in items {
                let line = line_of(&yaml, item);
                match self.check_assertion(item, expected).await {
                    Ok(()) => report.assertions_passed += 1,
                    Err(message) => report.failures.push(fail(line, message)),
                }
            }
        }
        report
    }

    /// A schema error, placed on the line of the YAML (or schema file) it
    /// comes from.
    fn schema_failure(&self, loaded: &LoadedFile, yaml: &str, e: ServiceError) -> Failure {
        match &e {
            ServiceError::SchemaParse {
                errors,
                source_text,
            }
            | ServiceError::SchemaType {
                errors,
                source_text,
            } => {
                let first = errors.first();
                let (line, col) = first.line_col(source_text);
                let block_start = if loaded.schema_path == loaded.path {
                    schema_block_line(yaml, source_text)
                } else {
                    0
                };
                Failure {
                    path: loaded.schema_path.clone(),
                    line: block_start + line,
                    message: format!(
                        "column {col}: schema error[{}]: {}",
                        first.kind, first.message
                    ),
                }
            }
            other => Failure {
                path: loaded.path.clone(),
                line: 1,
                message: format!("schema rejected: {other}"),
            },
        }
    }

    async fn load_relationships(&self, loaded: &LoadedFile, yaml: &str) -> Result<(), Failure> {
        let text = loaded.file.relationships.clone().unwrap_or_default();
        let mut updates = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with("//") {
                continue;
            }
            let at = line_of(yaml, line);
            let relationship = parse_relationship(line).map_err(|e| Failure {
                path: loaded.path.clone(),
                line: at,
                message: e.to_string(),
            })?;
            if !seen.insert(relationship.key()) {
                return Err(Failure {
                    path: loaded.path.clone(),
                    line: at,
                    message: format!("relationship `{line}` is listed twice"),
                });
            }
            updates.push((
                at,
                RelationshipUpdate {
                    operation: UpdateOperation::Touch,
                    relationship,
                },
            ));
        }
        for chunk in updates.chunks(self.limits.max_updates_per_write.max(1)) {
            let params = WriteParams {
                updates: chunk.iter().map(|(_, u)| u.clone()).collect(),
                ..Default::default()
            };
            if let Err(e) = self.write_relationships(params).await {
                // Name the first relationship the write refused when we can tell.
                let line = chunk.first().map_or(1, |(at, _)| *at);
                return Err(Failure {
                    path: loaded.path.clone(),
                    line,
                    message: format!("relationships rejected: {e}"),
                });
            }
        }
        Ok(())
    }

    async fn check_assertion(&self, item: &str, expected: Expected) -> Result<(), String> {
        let (relationship, context) = match item.split_once(" with ") {
            Some((rel, json)) => {
                let context: serde_json::Value = serde_json::from_str(json.trim())
                    .map_err(|e| format!("invalid context in `{item}`: {e}"))?;
                let context = context
                    .as_object()
                    .cloned()
                    .ok_or_else(|| format!("context in `{item}` must be a JSON object"))?;
                (rel, context)
            }
            None => (item, serde_json::Map::new()),
        };
        let rel = parse_relationship(relationship).map_err(|e| e.to_string())?;
        let params = CheckParams {
            resource: rel.resource,
            permission: rel.relation,
            subject: rel.subject,
            context,
        };
        // As SpiceDB's harness: CheckPermission and CheckBulkPermissions
        // must both give the expected answer.
        let outcome = self
            .check(params.clone(), Consistency::FullyConsistent)
            .await
            .map_err(|e| format!("`{item}` failed to check: {e}"))?;
        let (_, mut bulk) = self
            .check_bulk(vec![params], Consistency::FullyConsistent)
            .await
            .map_err(|e| format!("`{item}` failed to bulk check: {e}"))?;
        let bulk = bulk
            .pop()
            .ok_or_else(|| format!("`{item}`: bulk check answered nothing"))?
            .map_err(|e| format!("`{item}` failed to bulk check: {e}"))?;
        if bulk != outcome.permissionship {
            return Err(format!(
                "`{item}`: CheckPermission says {:?} but CheckBulkPermissions says {bulk:?}",
                outcome.permissionship
            ));
        }
        let got = match outcome.permissionship {
            Permissionship::HasPermission => Expected::True,
            Permissionship::NoPermission => Expected::False,
            Permissionship::Conditional { .. } => Expected::Caveated,
        };
        if got == expected {
            return Ok(());
        }
        let name = |e: Expected| match e {
            Expected::True => "true (HAS_PERMISSION)",
            Expected::Caveated => "caveated (CONDITIONAL_PERMISSION)",
            Expected::False => "false (NO_PERMISSION)",
        };
        Err(format!(
            "expected `{item}` to be {}, but it is {}",
            name(expected),
            name(got)
        ))
    }
}

/// 1-based line of the first occurrence of `needle` in `text` (1 if absent).
fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle)
        .map_or(1, |offset| text[..offset].matches('\n').count() + 1)
}

/// The YAML line just before the inline schema's first line, so schema
/// line N is YAML line `result + N`.
fn schema_block_line(yaml: &str, schema: &str) -> usize {
    let first = schema
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if first.is_empty() {
        return 0;
    }
    let blank_lead = schema.lines().take_while(|l| l.trim().is_empty()).count();
    line_of(yaml, first).saturating_sub(1 + blank_lead)
}
