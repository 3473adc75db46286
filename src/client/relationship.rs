//! `trellis relationship create|touch|delete|read|bulk-delete`:
//! WriteRelationships updates of the relationship the arguments name, or
//! of those on standard input in batches (the last ZedToken printed), streamed
//! ReadRelationships printed as zed prints them (`document:1 viewer
//! user:alice`), and DeleteRelationships by filter, in batches with
//! `--force`.

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;

use super::command::{
    BulkDeleteArgs, ConnectArgs, DeleteArgs, ReadArgs, RelationshipArgs, RelationshipCommand,
    WriteArgs,
};
use super::connect::Connection;
use super::output::token;
use super::schema::read_input;
use super::{ClientError, output};
use crate::api::proto::v1;
use crate::api::proto::v1::delete_relationships_response::DeletionProgress;
use crate::api::proto::v1::relationship_update::Operation;

/// Runs one `relationship` subcommand.
pub async fn run(command: RelationshipCommand) -> Result<ExitCode, ClientError> {
    match command {
        RelationshipCommand::Create(args) => write(args, Operation::Create).await,
        RelationshipCommand::Touch(args) => write(args, Operation::Touch).await,
        RelationshipCommand::Delete(args) => delete(args).await,
        RelationshipCommand::Read(args) => read(args).await,
        RelationshipCommand::BulkDelete(args) => bulk_delete(args).await,
    }
}

async fn write(args: WriteArgs, operation: Operation) -> Result<ExitCode, ClientError> {
    let mut relationships = relationships(&args.relationship)?;
    for relationship in &mut relationships {
        if let Some(caveat) = &args.caveat {
            relationship.optional_caveat = Some(caveat.0.clone());
        }
        if let Some(at) = args.expiration_time {
            relationship.optional_expires_at = Some(at);
        }
    }
    let batch = args.relationship.batch_size;
    update(&args.connect, relationships, operation, batch, args.json).await
}

async fn delete(args: DeleteArgs) -> Result<ExitCode, ClientError> {
    let relationships = relationships(&args.relationship)?;
    let batch = args.relationship.batch_size;
    update(
        &args.connect,
        relationships,
        Operation::Delete,
        batch,
        args.json,
    )
    .await
}

/// The relationship the three arguments name, or those on standard input.
fn relationships(args: &RelationshipArgs) -> Result<Vec<v1::Relationship>, ClientError> {
    if let (Some(resource), Some(relation), Some(subject)) =
        (&args.resource, &args.relation, &args.subject)
    {
        return Ok(vec![v1::Relationship {
            resource: Some(resource.0.clone()),
            relation: relation.clone(),
            subject: Some(subject.0.clone()),
            optional_caveat: None,
            optional_expires_at: None,
        }]);
    }
    if std::io::stdin().is_terminal() {
        return Err(ClientError::Input(
            "expected RESOURCE RELATION SUBJECT, or relationships on standard input, one per line"
                .to_string(),
        ));
    }
    let text = read_input(Path::new("-"))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with("//"))
        .map(|(number, line)| {
            stdin_line(line)
                .map(|r| v1::Relationship::from(&r))
                .map_err(|e| ClientError::Input(format!("standard input line {number}: {e}")))
        })
        .collect()
}

/// `resource relation subject[suffix]` (zed's form, which `relationship
/// read` prints) or `resource#relation@subject[suffix]`.
fn stdin_line(line: &str) -> Result<crate::model::Relationship, String> {
    let text = match line.split_once(char::is_whitespace) {
        None => line.to_string(),
        Some((resource, rest)) => {
            let (relation, subject) = rest
                .trim_start()
                .split_once(char::is_whitespace)
                .ok_or("expected `resource relation subject`")?;
            format!("{resource}#{relation}@{}", subject.trim_start())
        }
    };
    crate::model::parse_relationship(&text).map_err(|e| e.to_string())
}

/// One WriteRelationships call per `batch` updates; prints the last token.
/// A failure after some batches says how many were written.
async fn update(
    connect: &ConnectArgs,
    relationships: Vec<v1::Relationship>,
    operation: Operation,
    batch: u32,
    json: bool,
) -> Result<ExitCode, ClientError> {
    let connection = Connection::open(&connect.target(), 1).await?;
    let mut client = connection.permissions(0);
    let mut written = 0usize;
    let mut last = None;
    for chunk in relationships.chunks(batch.max(1) as usize) {
        let request = v1::WriteRelationshipsRequest {
            updates: chunk
                .iter()
                .map(|relationship| v1::RelationshipUpdate {
                    operation: operation as i32,
                    relationship: Some(relationship.clone()),
                })
                .collect(),
            optional_preconditions: Vec::new(),
            optional_transaction_metadata: None,
        };
        let response = client
            .write_relationships(request)
            .await
            .map_err(|s| partly_written(ClientError::call("WriteRelationships", s), written))?
            .into_inner();
        written += chunk.len();
        last = Some(response);
    }
    let Some(last) = last else {
        return Err(ClientError::Input(
            "no relationships on standard input".to_string(),
        ));
    };
    if json {
        output::print_json(&last, "authzed.api.v1.WriteRelationshipsResponse")?;
    } else {
        output::line(&token(last.written_at.as_ref()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A failed batch after `written` relationships went through: say so, since
/// those stay written.
fn partly_written(error: ClientError, written: usize) -> ClientError {
    match error {
        ClientError::Call {
            call,
            code,
            message,
        } if written > 0 => ClientError::Call {
            call,
            code,
            message: format!("{message} (the {written} relationships before it were written)"),
        },
        other => other,
    }
}

async fn read(args: ReadArgs) -> Result<ExitCode, ClientError> {
    let connection = Connection::open(&args.connect.target(), 1).await?;
    let request = v1::ReadRelationshipsRequest {
        consistency: Some(args.consistency.consistency()),
        relationship_filter: Some(args.filter.filter()),
        optional_limit: args.limit.unwrap_or(0),
        optional_cursor: None,
    };
    let stream = connection
        .permissions(0)
        .read_relationships(request)
        .await
        .map_err(|s| ClientError::call("ReadRelationships", s))?
        .into_inner();
    output::print_stream(
        stream,
        "ReadRelationships",
        args.json,
        "authzed.api.v1.ReadRelationshipsResponse",
        |response| zed_line(response.relationship.as_ref()).map(Some),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// A relationship as zed prints it: `resource relation subject`, then the
/// caveat and expiration in the relationship syntax's brackets.
fn zed_line(relationship: Option<&v1::Relationship>) -> Result<String, ClientError> {
    let model = crate::api::convert::relationship(relationship, "relationship").map_err(|e| {
        ClientError::Malformed {
            what: "relationship",
            reason: e.to_string(),
        }
    })?;
    let mut text = format!("{} {} {}", model.resource, model.relation, model.subject);
    let full = model.to_string();
    let key_len = model.key().to_string().len();
    // The caveat and expiration suffix, exactly as the syntax writes it.
    text.push_str(&full[key_len..]);
    Ok(text)
}

async fn bulk_delete(args: BulkDeleteArgs) -> Result<ExitCode, ClientError> {
    let connection = Connection::open(&args.connect.target(), 1).await?;
    let mut client = connection.permissions(0);
    let filter = args.filter.filter();
    let progress = output::bar(0, "{spinner} {pos} relationships deleted");
    let mut deleted = 0u64;
    let last = loop {
        let request = v1::DeleteRelationshipsRequest {
            relationship_filter: Some(filter.clone()),
            optional_preconditions: Vec::new(),
            optional_limit: args.optional_limit,
            optional_allow_partial_deletions: args.force,
            optional_transaction_metadata: None,
        };
        let response = client.delete_relationships(request).await;
        let response = match response {
            Ok(response) => response.into_inner(),
            Err(status) => {
                progress.finish_and_clear();
                return Err(too_many_hint(ClientError::call(
                    "DeleteRelationships",
                    status,
                )));
            }
        };
        deleted += response.relationships_deleted_count;
        progress.set_position(deleted);
        if response.deletion_progress != DeletionProgress::Partial as i32 {
            break response;
        }
    };
    progress.finish_and_clear();
    if args.json {
        output::print_json(&last, "authzed.api.v1.DeleteRelationshipsResponse")?;
    } else {
        output::line(&token(last.deleted_at.as_ref()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Without `--force`, more matches than the limit fail the whole delete:
/// say how to go on.
fn too_many_hint(error: ClientError) -> ClientError {
    match error {
        ClientError::Call {
            call,
            code,
            message,
        } if message.contains("partial deletion was not requested") => ClientError::Call {
            call,
            code,
            message: format!(
                "{message} (nothing was deleted; raise --optional-limit or pass --force to delete in batches)"
            ),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_lines_take_zeds_form_or_the_relationship_syntax() {
        let zed =
            stdin_line(r#"document:1   viewer user:bob[weekday:{"day":"mon"}]"#).expect("zed form");
        let syntax =
            stdin_line(r#"document:1#viewer@user:bob[weekday:{"day":"mon"}]"#).expect("syntax");
        assert_eq!(zed, syntax);
        assert!(stdin_line("document:1 viewer").is_err());
        assert!(stdin_line("document:1").is_err());
    }

    #[test]
    fn relationships_print_as_zed_prints_them() {
        let relationship = v1::Relationship::from(
            &crate::model::parse_relationship(
                r#"document:1#viewer@group:eng#member[weekday:{"day":"mon"}][expiration:2030-01-01T00:00:00Z]"#,
            )
            .expect("parses"),
        );
        assert_eq!(
            zed_line(Some(&relationship)).expect("prints"),
            r#"document:1 viewer group:eng#member[weekday:{"day":"mon"}][expiration:2030-01-01T00:00:00Z]"#
        );
    }
}
