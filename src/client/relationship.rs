//! `trellis relationship create|touch|delete|read|bulk-delete`: one
//! WriteRelationships update per write (the ZedToken printed), streamed
//! ReadRelationships printed as zed prints them (`document:1 viewer
//! user:alice`), and DeleteRelationships by filter, in batches with
//! `--force`.

use std::process::ExitCode;

use futures::StreamExt as _;

use super::command::{
    BulkDeleteArgs, ConnectArgs, DeleteArgs, ReadArgs, RelationshipCommand, WriteArgs,
};
use super::connect::Connection;
use super::output::token;
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
    let relationship = v1::Relationship {
        resource: Some(args.resource.0),
        relation: args.relation,
        subject: Some(args.subject.0),
        optional_caveat: args.caveat.map(|c| c.0),
        optional_expires_at: args.expiration_time,
    };
    update(&args.connect, relationship, operation, args.json).await
}

async fn delete(args: DeleteArgs) -> Result<ExitCode, ClientError> {
    let relationship = v1::Relationship {
        resource: Some(args.resource.0),
        relation: args.relation,
        subject: Some(args.subject.0),
        optional_caveat: None,
        optional_expires_at: None,
    };
    update(&args.connect, relationship, Operation::Delete, args.json).await
}

async fn update(
    connect: &ConnectArgs,
    relationship: v1::Relationship,
    operation: Operation,
    json: bool,
) -> Result<ExitCode, ClientError> {
    let connection = Connection::open(&connect.target(), 1).await?;
    let request = v1::WriteRelationshipsRequest {
        updates: vec![v1::RelationshipUpdate {
            operation: operation as i32,
            relationship: Some(relationship),
        }],
        optional_preconditions: Vec::new(),
        optional_transaction_metadata: None,
    };
    let response = connection
        .permissions(0)
        .write_relationships(request)
        .await
        .map_err(|s| ClientError::call("WriteRelationships", s))?
        .into_inner();
    if json {
        output::print_json(&response, "authzed.api.v1.WriteRelationshipsResponse")?;
    } else {
        output::line(&token(response.written_at.as_ref()))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn read(args: ReadArgs) -> Result<ExitCode, ClientError> {
    let connection = Connection::open(&args.connect.target(), 1).await?;
    let request = v1::ReadRelationshipsRequest {
        consistency: Some(args.consistency.consistency()),
        relationship_filter: Some(args.filter.filter()),
        optional_limit: args.limit.unwrap_or(0),
        optional_cursor: None,
    };
    let call = |s| ClientError::call("ReadRelationships", s);
    let mut stream = connection
        .permissions(0)
        .read_relationships(request)
        .await
        .map_err(call)?
        .into_inner();
    while let Some(response) = stream.next().await {
        let response = response.map_err(call)?;
        if args.json {
            output::print_json_line(&response, "authzed.api.v1.ReadRelationshipsResponse")?;
        } else {
            output::line(&zed_line(response.relationship.as_ref())?)?;
        }
    }
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
