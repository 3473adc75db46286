//! `trellis schema write FILE|-` (WriteSchema; prints the ZedToken) and
//! `trellis schema read` (ReadSchema; prints the schema).

use std::io::Read as _;
use std::path::Path;
use std::process::ExitCode;

use super::command::{RemoteSchemaCommand, SchemaReadArgs, SchemaWriteArgs};
use super::connect::Connection;
use super::output::{display, token};
use super::{ClientError, output};
use crate::api::proto::v1;

/// Runs `schema write` or `schema read`.
pub async fn run(command: RemoteSchemaCommand) -> Result<ExitCode, ClientError> {
    match command {
        RemoteSchemaCommand::Write(args) => write(args).await,
        RemoteSchemaCommand::Read(args) => read(args).await,
    }
}

async fn write(args: SchemaWriteArgs) -> Result<ExitCode, ClientError> {
    let schema = read_input(&args.file)?;
    if schema.trim().is_empty() {
        return Err(ClientError::Input(format!(
            "{}: the schema is empty",
            display(&args.file)
        )));
    }
    let connection = Connection::open(&args.connect.target(), 1).await?;
    let response = connection
        .schema()
        .write_schema(v1::WriteSchemaRequest { schema })
        .await
        .map_err(|s| ClientError::call("WriteSchema", s))?
        .into_inner();
    if args.json {
        output::print_json(&response, "authzed.api.v1.WriteSchemaResponse")?;
    } else {
        output::line(&token(response.written_at.as_ref()))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn read(args: SchemaReadArgs) -> Result<ExitCode, ClientError> {
    let connection = Connection::open(&args.connect.target(), 1).await?;
    let response = connection
        .schema()
        .read_schema(v1::ReadSchemaRequest {})
        .await
        .map_err(|s| ClientError::call("ReadSchema", s))?
        .into_inner();
    if args.json {
        output::print_json(&response, "authzed.api.v1.ReadSchemaResponse")?;
    } else {
        output::line(response.schema_text.trim_end())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The text of `path`, or of standard input for `-`.
pub fn read_input(path: &Path) -> Result<String, ClientError> {
    let fail = |source| ClientError::Read {
        path: display(path),
        source,
    };
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(fail)?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(fail)
}
