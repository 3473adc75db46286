//! The zed-like client commands (`trellis schema write|read`, `trellis
//! relationship …`, `trellis permission …`, `trellis import|export`): a
//! client of a running server's public API, never of the service in-process.
//! Owns the commands' arguments (`command.rs`), their parsing into API
//! messages (`refs.rs`), what they print (`output.rs`, `tree.rs`) and one
//! module per command group; `connect.rs` is the connection the load
//! generator shares.

pub mod command;
pub mod connect;
mod output;
mod permission;
mod refs;
mod relationship;
mod schema;
mod transfer;
mod tree;

use std::process::ExitCode;

pub use command::{
    ClientCommand, ExportArgs, ImportArgs, PermissionCommand, RelationshipCommand,
    RemoteSchemaCommand,
};

/// Why a client command failed. A failed call keeps the server's gRPC code
/// and message, which are what the user needs to see.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection could be opened.
    #[error(transparent)]
    Connect(#[from] connect::ConnectError),
    /// The server answered a call with an error.
    #[error("{call} failed: {code}: {message}")]
    Call {
        call: &'static str,
        /// The gRPC code's canonical name, e.g. `UNAUTHENTICATED`.
        code: &'static str,
        message: String,
    },
    /// A file to read (schema, import) could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Output (stdout or the export file) could not be written.
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    /// The input is not what the command takes; the message names it.
    #[error("{0}")]
    Input(String),
    /// The server's answer could not be understood.
    #[error("the server sent a malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
}

impl ClientError {
    /// A failed call, with the status's code and message.
    fn call(call: &'static str, status: tonic::Status) -> Self {
        Self::Call {
            call,
            code: code_name(status.code()),
            message: status.message().to_string(),
        }
    }
}

/// gRPC's canonical upper-case code names, as every gRPC tool prints them.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Runs one client command against the server its flags name. The exit code
/// is success unless the command says otherwise (`permission check
/// --error-on-no-permission`); failures are errors.
pub async fn run(command: ClientCommand) -> Result<ExitCode, ClientError> {
    match command {
        ClientCommand::Schema(command) => schema::run(command).await,
        ClientCommand::Relationship(command) => relationship::run(command).await,
        ClientCommand::Permission(command) => permission::run(command).await,
        ClientCommand::Import(args) => transfer::import(args).await,
        ClientCommand::Export(args) => transfer::export(args).await,
    }
}
