//! The client commands' arguments, shaped like `zed`'s: positional
//! `type:id` references, `--consistency-*`, `--json`, and the connection
//! flags every command takes (`--endpoint`, `--token`, `--insecure`,
//! `--certificate-path`). Values are parsed here (by `refs`), so a bad one is
//! reported by clap with the argument's name.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::connect::{Target, Transport};
use super::refs::{
    self, CaveatArg, ObjectArg, RelationshipFilterArg, SubjectArg, SubjectFilterArg, SubjectTypeArg,
};
use crate::api::proto::v1;

/// One client command; the CLI maps its subcommands onto these.
#[derive(Debug)]
pub enum ClientCommand {
    /// `trellis schema write|read`.
    Schema(RemoteSchemaCommand),
    /// `trellis relationship …`.
    Relationship(RelationshipCommand),
    /// `trellis permission …`.
    Permission(PermissionCommand),
    /// `trellis import FILE`.
    Import(ImportArgs),
    /// `trellis export [FILE]`.
    Export(ExportArgs),
}

/// How to reach the server.
#[derive(Clone, Args)]
pub struct ConnectArgs {
    /// The server's gRPC address: `HOST:PORT`, or a `http://` / `https://`
    /// URL (whose scheme then decides plaintext or TLS).
    #[arg(long, env = "TRELLIS_ENDPOINT", default_value = "localhost:50051")]
    pub endpoint: String,
    /// The preshared key, sent as `authorization: Bearer TOKEN`.
    #[arg(long, env = "TRELLIS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Connect in plaintext (no TLS), as `zed --insecure`.
    #[arg(long)]
    pub insecure: bool,
    /// A PEM file of the CA that signed the server's certificate, trusted
    /// instead of the system's roots.
    #[arg(long, value_name = "PATH", conflicts_with = "insecure")]
    pub certificate_path: Option<PathBuf>,
}

/// The token is a secret: debug output never shows it.
impl std::fmt::Debug for ConnectArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectArgs")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("insecure", &self.insecure)
            .field("certificate_path", &self.certificate_path)
            .finish()
    }
}

impl ConnectArgs {
    /// The server these flags name.
    pub fn target(&self) -> Target {
        let transport = if self.insecure {
            Transport::Plaintext
        } else {
            Transport::Tls {
                ca_certificate: self.certificate_path.clone(),
            }
        };
        Target {
            endpoint: self.endpoint.clone(),
            token: self.token.clone(),
            transport,
        }
    }
}

/// Which revision a read evaluates at (zed's flags; at most one; default
/// `--consistency-min-latency`).
#[derive(Debug, Clone, Args)]
#[group(multiple = false)]
pub struct ConsistencyArgs {
    /// Evaluate at the revision the server prefers (its quantized, cached
    /// revision; the default).
    #[arg(long)]
    pub consistency_min_latency: bool,
    /// Evaluate at the newest revision.
    #[arg(long)]
    pub consistency_full: bool,
    /// Evaluate at a revision at least as new as this ZedToken (the one a
    /// write printed).
    #[arg(long, value_name = "ZEDTOKEN")]
    pub consistency_at_least: Option<String>,
    /// Evaluate exactly at this ZedToken's revision.
    #[arg(long, value_name = "ZEDTOKEN")]
    pub consistency_at_exactly: Option<String>,
}

impl ConsistencyArgs {
    /// The request's `consistency`.
    pub fn consistency(&self) -> v1::Consistency {
        use v1::consistency::Requirement;
        let token = |token: &String| v1::ZedToken {
            token: token.clone(),
        };
        let requirement = if self.consistency_full {
            Requirement::FullyConsistent(true)
        } else if let Some(at_least) = &self.consistency_at_least {
            Requirement::AtLeastAsFresh(token(at_least))
        } else if let Some(exactly) = &self.consistency_at_exactly {
            Requirement::AtExactSnapshot(token(exactly))
        } else {
            Requirement::MinimizeLatency(true)
        };
        v1::Consistency {
            requirement: Some(requirement),
        }
    }
}

/// `trellis schema write|read`.
#[derive(Debug, Subcommand)]
pub enum RemoteSchemaCommand {
    /// Write a schema (a `.zed` file, or `-` for stdin) to the server.
    Write(SchemaWriteArgs),
    /// Print the server's schema.
    Read(SchemaReadArgs),
}

/// `trellis schema write FILE|-`.
#[derive(Debug, Args)]
pub struct SchemaWriteArgs {
    /// The schema file; `-` (or nothing) reads standard input.
    #[arg(default_value = "-")]
    pub file: PathBuf,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print the response as protobuf JSON.
    #[arg(long)]
    pub json: bool,
}

/// `trellis schema read`.
#[derive(Debug, Args)]
pub struct SchemaReadArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print the response as protobuf JSON.
    #[arg(long)]
    pub json: bool,
}

/// `trellis relationship …`.
#[derive(Debug, Subcommand)]
pub enum RelationshipCommand {
    /// Create a relationship (fails if it exists); prints the ZedToken.
    Create(WriteArgs),
    /// Create or update a relationship (idempotent); prints the ZedToken.
    Touch(WriteArgs),
    /// Delete a relationship (no error if absent); prints the ZedToken.
    Delete(DeleteArgs),
    /// List the relationships matching a filter, one per line.
    Read(ReadArgs),
    /// Delete every relationship matching a filter; prints the ZedToken.
    BulkDelete(BulkDeleteArgs),
}

/// The relationship a write names: three arguments, or (all three left
/// out) relationships on standard input, one per line, as `relationship
/// read` prints them (`document:1 viewer user:alice`) or in the
/// relationship syntax (`document:1#viewer@user:alice`).
#[derive(Debug, Args)]
pub struct RelationshipArgs {
    /// The resource, `type:id`.
    #[arg(value_parser = refs::object, requires_all = ["relation", "subject"])]
    pub resource: Option<ObjectArg>,
    /// The relation.
    pub relation: Option<String>,
    /// The subject, `type:id` or `type:id#relation`.
    #[arg(value_parser = refs::subject)]
    pub subject: Option<SubjectArg>,
    /// Updates per WriteRelationships call when reading standard input.
    #[arg(short = 'b', long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
}

/// `relationship create|touch RESOURCE RELATION SUBJECT` (or stdin).
#[derive(Debug, Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub relationship: RelationshipArgs,
    /// A caveat with its stored context, `name` or `name:{"key":value}`
    /// (for every relationship written).
    #[arg(long, value_parser = refs::caveat)]
    pub caveat: Option<CaveatArg>,
    /// When the relationship expires, RFC 3339 (e.g. 2030-01-01T00:00:00Z;
    /// for every relationship written).
    #[arg(long, value_parser = refs::expiration)]
    pub expiration_time: Option<prost_types::Timestamp>,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print the (last) response as protobuf JSON.
    #[arg(long)]
    pub json: bool,
}

/// `relationship delete RESOURCE RELATION SUBJECT` (or stdin).
#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub relationship: RelationshipArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print the (last) response as protobuf JSON.
    #[arg(long)]
    pub json: bool,
}

/// A relationship filter as zed takes it: `type[:id]` (an id ending in `%`
/// is a prefix), an optional relation and an optional subject filter.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// The resource type, or `type:id`, or `type:prefix%`.
    #[arg(value_parser = refs::resource_filter)]
    pub resource: RelationshipFilterArg,
    /// Only this relation.
    pub relation: Option<String>,
    /// Only this subject: `type`, `type:id` or `type:id#relation`.
    #[arg(value_parser = refs::subject_filter)]
    pub subject: Option<SubjectFilterArg>,
    /// The subject filter, as a flag (instead of the third argument).
    #[arg(long, value_parser = refs::subject_filter, conflicts_with = "subject")]
    pub subject_filter: Option<SubjectFilterArg>,
}

impl FilterArgs {
    /// The request's `RelationshipFilter`.
    pub fn filter(&self) -> v1::RelationshipFilter {
        let mut filter = self.resource.0.clone();
        filter.optional_relation = self.relation.clone().unwrap_or_default();
        filter.optional_subject_filter = self
            .subject
            .as_ref()
            .or(self.subject_filter.as_ref())
            .map(|s| s.0.clone());
        filter
    }
}

/// `relationship read FILTER…`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Most relationships to print (all when absent).
    #[arg(long)]
    pub limit: Option<u32>,
    #[command(flatten)]
    pub consistency: ConsistencyArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print each response as protobuf JSON, one per line.
    #[arg(long)]
    pub json: bool,
}

/// `relationship bulk-delete FILTER…`.
#[derive(Debug, Args)]
pub struct BulkDeleteArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Delete in batches of `--optional-limit` until none match, however
    /// many there are (without it, more matches than the limit is an error
    /// and nothing is deleted).
    #[arg(long)]
    pub force: bool,
    /// Most relationships one call deletes.
    #[arg(long, default_value_t = 1000)]
    pub optional_limit: u32,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print the last response as protobuf JSON.
    #[arg(long)]
    pub json: bool,
}

/// `trellis permission …`.
#[derive(Debug, Subcommand)]
pub enum PermissionCommand {
    /// Whether a subject has a permission on a resource: prints `true`,
    /// `false` or `caveated` (with the missing context).
    Check(CheckArgs),
    /// The permission's relationship tree on a resource, one level deep.
    Expand(ExpandArgs),
    /// The resources of a type on which a subject has a permission.
    LookupResources(LookupResourcesArgs),
    /// The subjects of a type that have a permission on a resource.
    LookupSubjects(LookupSubjectsArgs),
}

/// `permission check RESOURCE PERMISSION SUBJECT`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The resource, `type:id`.
    #[arg(value_parser = refs::object)]
    pub resource: ObjectArg,
    /// The permission (or relation).
    pub permission: String,
    /// The subject, `type:id` or `type:id#relation`.
    #[arg(value_parser = refs::subject)]
    pub subject: SubjectArg,
    /// Caveat context for the check, a JSON object.
    #[arg(long, value_parser = refs::context)]
    pub caveat_context: Option<prost_types::Struct>,
    /// Ask the server for its debug trace and print it.
    #[arg(long)]
    pub explain: bool,
    /// Exit with 1 unless the subject has the permission unconditionally.
    #[arg(long)]
    pub error_on_no_permission: bool,
    #[command(flatten)]
    pub consistency: ConsistencyArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print the response as protobuf JSON.
    #[arg(long)]
    pub json: bool,
}

/// `permission expand PERMISSION RESOURCE` (zed's order).
#[derive(Debug, Args)]
pub struct ExpandArgs {
    /// The permission (or relation).
    pub permission: String,
    /// The resource, `type:id`.
    #[arg(value_parser = refs::object)]
    pub resource: ObjectArg,
    #[command(flatten)]
    pub consistency: ConsistencyArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print the response as protobuf JSON.
    #[arg(long)]
    pub json: bool,
}

/// `permission lookup-resources TYPE PERMISSION SUBJECT`.
#[derive(Debug, Args)]
pub struct LookupResourcesArgs {
    /// The resource type.
    pub resource_type: String,
    /// The permission (or relation).
    pub permission: String,
    /// The subject, `type:id` or `type:id#relation`.
    #[arg(value_parser = refs::subject)]
    pub subject: SubjectArg,
    /// Caveat context for the lookup, a JSON object.
    #[arg(long, value_parser = refs::context)]
    pub caveat_context: Option<prost_types::Struct>,
    /// Most resources to print (all when absent).
    #[arg(long)]
    pub limit: Option<u32>,
    #[command(flatten)]
    pub consistency: ConsistencyArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print each response as protobuf JSON, one per line.
    #[arg(long)]
    pub json: bool,
}

/// `permission lookup-subjects RESOURCE PERMISSION SUBJECT_TYPE[#RELATION]`.
#[derive(Debug, Args)]
pub struct LookupSubjectsArgs {
    /// The resource, `type:id`.
    #[arg(value_parser = refs::object)]
    pub resource: ObjectArg,
    /// The permission (or relation).
    pub permission: String,
    /// The subject type, optionally with a relation: `user`, `group#member`.
    #[arg(value_parser = refs::subject_type)]
    pub subject_type: SubjectTypeArg,
    /// Caveat context for the lookup, a JSON object.
    #[arg(long, value_parser = refs::context)]
    pub caveat_context: Option<prost_types::Struct>,
    #[command(flatten)]
    pub consistency: ConsistencyArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print each response as protobuf JSON, one per line.
    #[arg(long)]
    pub json: bool,
}

/// `trellis import FILE`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A validation file (`.yaml`/`.yml`: `schema` and `relationships`, as
    /// `trellis export` writes), or a text file of relationships, one per
    /// line (`document:1#viewer@user:alice`; `//` starts a comment).
    pub file: PathBuf,
    /// Write the file's schema (if it has one) before the relationships.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub schema: bool,
    /// Load the file's relationships.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub relationships: bool,
    /// Relationships per ImportBulkRelationships message.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `trellis export [FILE]`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Where to write the YAML (schema and relationships); `-` (or
    /// nothing) is standard output.
    #[arg(default_value = "-")]
    pub file: PathBuf,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use v1::consistency::Requirement;

    fn flags() -> ConsistencyArgs {
        ConsistencyArgs {
            consistency_min_latency: false,
            consistency_full: false,
            consistency_at_least: None,
            consistency_at_exactly: None,
        }
    }

    fn token(text: &str) -> v1::ZedToken {
        v1::ZedToken {
            token: text.to_string(),
        }
    }

    #[test]
    fn each_flag_sends_its_requirement() {
        let requirement = |args: ConsistencyArgs| args.consistency().requirement;
        assert_eq!(
            requirement(flags()),
            Some(Requirement::MinimizeLatency(true))
        );
        assert_eq!(
            requirement(ConsistencyArgs {
                consistency_min_latency: true,
                ..flags()
            }),
            Some(Requirement::MinimizeLatency(true))
        );
        assert_eq!(
            requirement(ConsistencyArgs {
                consistency_full: true,
                ..flags()
            }),
            Some(Requirement::FullyConsistent(true))
        );
        assert_eq!(
            requirement(ConsistencyArgs {
                consistency_at_least: Some("t1".into()),
                ..flags()
            }),
            Some(Requirement::AtLeastAsFresh(token("t1")))
        );
        assert_eq!(
            requirement(ConsistencyArgs {
                consistency_at_exactly: Some("t2".into()),
                ..flags()
            }),
            Some(Requirement::AtExactSnapshot(token("t2")))
        );
    }

    #[test]
    fn insecure_is_plaintext_and_a_ca_is_kept() {
        let args = |insecure, certificate_path: Option<&str>| ConnectArgs {
            endpoint: "localhost:50051".into(),
            token: Some("k".into()),
            insecure,
            certificate_path: certificate_path.map(PathBuf::from),
        };
        assert_eq!(args(true, None).target().transport, Transport::Plaintext);
        assert_eq!(
            args(false, Some("ca.pem")).target().transport,
            Transport::Tls {
                ca_certificate: Some(PathBuf::from("ca.pem"))
            }
        );
        assert!(!format!("{:?}", args(true, None)).contains("\"k\""));
    }
}
