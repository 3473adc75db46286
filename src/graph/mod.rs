//! Evaluation of permissions over relationships: check, expand and the
//! lookups. Sees only a datastore `Reader`, a `Dispatcher` for
//! subproblems and the `CompiledSchema`; never transports, caches or peers.

pub mod check;
pub mod expand;
pub mod lookup_resources;
pub mod lookup_subjects;
pub mod membership;
pub mod subject_set;

pub use membership::{CaveatExpr, Membership};

use crate::dispatch::CheckError;
use crate::schema::{CompiledSchema, Definition, Relation};

/// The definition and relation (or permission) a request names, or the
/// error that says which is missing.
pub(crate) fn resolve_relation<'s>(
    schema: &'s CompiledSchema,
    type_name: &str,
    relation: &str,
) -> Result<(&'s Definition, &'s Relation), CheckError> {
    let definition = schema
        .definition(type_name)
        .ok_or_else(|| CheckError::UnknownDefinition(type_name.to_string()))?;
    let found = definition
        .relation(relation)
        .ok_or_else(|| CheckError::UnknownRelation {
            definition: type_name.to_string(),
            relation: relation.to_string(),
        })?;
    Ok((definition, found))
}
