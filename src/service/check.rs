//! CheckPermission and CheckBulkPermissions: resolve the revision, validate
//! the request against the schema there, dispatch, and turn memberships into
//! permissionships.

use crate::caveats::{self, Truth};
use crate::datastore::Datastore;
use crate::dispatch::{self, CheckError, CheckRequest, ResultsSetting};
use crate::graph::Membership;
use crate::model::{Consistency, ObjectRef, Revision, SubjectRef};
use crate::schema::CompiledSchema;

use super::lookup::validate_names;
use super::{ServiceError, Services, metrics};
pub use trace::{CaveatEvaluation, CaveatTrace, CheckTrace, Resolution, TraceNode, TraceResult};

/// One permission question.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckParams {
    pub resource: ObjectRef,
    pub permission: String,
    pub subject: SubjectRef,
    pub context: serde_json::Map<String, serde_json::Value>,
}

/// The answer to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permissionship {
    NoPermission,
    HasPermission,
    /// Depends on caveat parameters the request did not supply.
    Conditional {
        missing_context: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    pub revision: Revision,
    pub permissionship: Permissionship,
    /// Subproblems computed for this check.
    pub dispatch_count: u32,
    /// Subproblems answered from the dispatch cache instead (what they had
    /// cost when computed).
    pub cached_dispatch_count: u32,
}

/// What answering one item cost: subproblems computed and served cached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Dispatches {
    computed: u32,
    cached: u32,
}

impl Dispatches {
    fn add(self, other: Dispatches) -> Dispatches {
        Dispatches {
            computed: self.computed.saturating_add(other.computed),
            cached: self.cached.saturating_add(other.cached),
        }
    }
}

/// One item of a bulk check: its answer or its own error.
pub type BulkCheckItem = Result<Permissionship, ServiceError>;

impl<D: Datastore> Services<D> {
    pub async fn check(
        &self,
        params: CheckParams,
        consistency: Consistency,
    ) -> Result<CheckOutcome, ServiceError> {
        let revision = self.revision_for(consistency).await?;
        let (_, schema) = self
            .snapshot_with_schema(revision, &params.resource.object_type)
            .await?;
        let answer = self.check_at(&schema, revision, &params).await?;
        Ok(finish_check(revision, answer))
    }

    /// A check with its debug trace (`with_tracing`): every subproblem
    /// this check evaluated, none shared with concurrent checks.
    pub async fn check_traced(
        &self,
        params: CheckParams,
        consistency: Consistency,
    ) -> Result<(CheckOutcome, CheckTrace), ServiceError> {
        let revision = self.revision_for(consistency).await?;
        let (_, schema) = self
            .snapshot_with_schema(revision, &params.resource.object_type)
            .await?;
        let (answer, dispatched) =
            dispatch::trace::traced(self.check_at(&schema, revision, &params)).await;
        let outcome = finish_check(revision, answer?);
        let trace = CheckTrace::build(&schema, &params.resource, &params.context, &dispatched);
        Ok((outcome, trace))
    }

    /// Checks many items at one revision; each item fails on its own.
    pub async fn check_bulk(
        &self,
        items: Vec<CheckParams>,
        consistency: Consistency,
    ) -> Result<(Revision, Vec<BulkCheckItem>), ServiceError> {
        if items.len() > self.limits.max_bulk_checks {
            return Err(ServiceError::TooManyChecks {
                count: items.len(),
                max: self.limits.max_bulk_checks,
            });
        }
        let revision = self.revision_for(consistency).await?;
        let type_name = items
            .first()
            .map_or("", |i| i.resource.object_type.as_str());
        let schema = match self.snapshot_with_schema(revision, type_name).await {
            Ok((_, schema)) => schema,
            Err(e) => return Ok((revision, items.iter().map(|_| Err(e.clone())).collect())),
        };
        let mut results = Vec::with_capacity(items.len());
        let mut total = Dispatches::default();
        for item in &items {
            let result = self.check_at(&schema, revision, item).await;
            if let Ok((_, dispatches)) = &result {
                total = total.add(*dispatches);
            }
            results.push(result.map(|(p, _)| p));
        }
        metrics::record_dispatches("check_bulk", total.computed, total.cached);
        Ok((revision, results))
    }

    async fn check_at(
        &self,
        schema: &CompiledSchema,
        revision: Revision,
        params: &CheckParams,
    ) -> Result<(Permissionship, Dispatches), ServiceError> {
        validate_check(schema, params)?;
        let request = CheckRequest {
            resource_type: params.resource.object_type.clone(),
            resource_ids: vec![params.resource.object_id.clone()],
            relation: params.permission.clone(),
            subject: params.subject.clone(),
            revision,
            depth_remaining: self.limits.max_depth,
            results_setting: ResultsSetting::AllowSingleResult,
        };
        let result = self.dispatcher.check(request).await.map_err(check_error)?;
        let membership = result.membership(&params.resource.object_id);
        let permissionship = permissionship(schema, membership, &params.context)?;
        metrics::record_permissionship(&permissionship);
        let dispatches = Dispatches {
            computed: result.dispatch_count,
            cached: result.cached_dispatch_count,
        };
        Ok((permissionship, dispatches))
    }
}

/// A single check's outcome, its dispatches counted in the metrics.
fn finish_check(
    revision: Revision,
    (permissionship, dispatches): (Permissionship, Dispatches),
) -> CheckOutcome {
    metrics::record_dispatches("check", dispatches.computed, dispatches.cached);
    CheckOutcome {
        revision,
        permissionship,
        dispatch_count: dispatches.computed,
        cached_dispatch_count: dispatches.cached,
    }
}

/// The resource, permission and subject must exist in the schema.
fn validate_check(schema: &CompiledSchema, params: &CheckParams) -> Result<(), ServiceError> {
    validate_names(
        schema,
        &params.resource.object_type,
        &params.permission,
        &params.subject,
    )
}

pub(super) fn check_error(e: CheckError) -> ServiceError {
    match e {
        CheckError::MaxDepthExceeded => ServiceError::MaxDepthExceeded,
        CheckError::UnknownDefinition(definition) => ServiceError::UnknownDefinition { definition },
        CheckError::UnknownRelation {
            definition,
            relation,
        } => ServiceError::UnknownRelation {
            definition,
            relation,
        },
        CheckError::NoSchema => ServiceError::SchemaNotFound,
        CheckError::Datastore(d) => d.into(),
    }
}

/// A membership as the API reports it: a conditional membership is decided
/// by evaluating its caveats with the request's context; CONDITIONAL lists
/// the parameters it still lacks, sorted.
pub(super) fn permissionship(
    schema: &CompiledSchema,
    membership: Membership,
    request_context: &serde_json::Map<String, serde_json::Value>,
) -> Result<Permissionship, ServiceError> {
    Ok(match membership {
        Membership::Member => Permissionship::HasPermission,
        Membership::NotMember => Permissionship::NoPermission,
        Membership::Conditional(expr) => match caveats::evaluate(schema, &expr, request_context)? {
            Truth::True => Permissionship::HasPermission,
            Truth::False => Permissionship::NoPermission,
            Truth::Unknown(missing) => Permissionship::Conditional {
                missing_context: missing.into_iter().collect(),
            },
        },
    })
}

#[cfg(test)]
mod tests;
mod trace;
