//! The debug trace of one check, as the API returns it for `with_tracing`:
//! the dispatch tree the check recorded (`dispatch::trace`), turned into
//! one node per resource, relation and subject, with each node's outcome,
//! whether the cache answered it, how long it took, and — where caveats
//! decided — how they evaluated. Transport-free: `api` maps it to
//! `CheckDebugTrace`.

use std::time::Duration;

use crate::caveats::{self, Truth};
use crate::dispatch::trace::DispatchTrace;
use crate::graph::{CaveatExpr, Membership};
use crate::model::{ObjectRef, SubjectRef};
use crate::schema::CompiledSchema;

/// At most this many nodes are put in one trace. Subproblems batch several
/// resources, and a node is made per resource with the batch's subproblems
/// below each, so a wide walk could otherwise make a trace far larger than
/// the work it describes; past the budget, nodes keep their outcome and
/// lose their subproblems.
const MAX_NODES: usize = 10_000;

/// A check's trace: the tree, and the schema it was evaluated against.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckTrace {
    /// The schema in force at the check's revision, as canonical text.
    pub schema: String,
    /// The checked resource's node; absent only if nothing was dispatched
    /// (which a check that returned cannot do).
    pub root: Option<TraceNode>,
}

/// Whether `subject` is in `resource#relation`, and what decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceNode {
    pub resource: ObjectRef,
    pub relation: String,
    /// A permission (computed) rather than a relation (stored).
    pub is_permission: bool,
    pub subject: SubjectRef,
    pub result: TraceResult,
    /// Set where the outcome depended on caveats.
    pub caveat: Option<CaveatTrace>,
    pub duration: Duration,
    /// How the node was resolved: from the cache, or by its subproblems.
    pub resolution: Resolution,
}

/// How a node's answer was found.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    Cached,
    SubProblems(Vec<TraceNode>),
}

/// A node's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceResult {
    NoPermission,
    HasPermission,
    Conditional,
}

/// How the caveat expression of a conditional result evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct CaveatTrace {
    /// The expression over caveat names (`a && (b || !c)`).
    pub expression: String,
    /// The caveat's name, when the expression is one caveat.
    pub caveat_name: Option<String>,
    pub evaluation: CaveatEvaluation,
    /// The request's context, for an evaluated expression.
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What evaluating a caveat expression gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaveatEvaluation {
    /// Not evaluated at this node: only the check's answer is evaluated.
    Unevaluated,
    True,
    False,
    MissingContext(Vec<String>),
}

impl CheckTrace {
    /// The trace of a check of `resource`, whose top-level dispatches are
    /// `dispatched`; the root's caveats are evaluated with `context`, as
    /// the check's answer was.
    pub fn build(
        schema: &CompiledSchema,
        resource: &ObjectRef,
        context: &serde_json::Map<String, serde_json::Value>,
        dispatched: &[DispatchTrace],
    ) -> CheckTrace {
        let mut budget = MAX_NODES;
        let root = dispatched.first().map(|top| {
            let mut root = node(schema, top, &resource.object_id, &mut budget);
            if let Ok(result) = &top.outcome
                && let Membership::Conditional(expr) = result.membership(&resource.object_id)
            {
                evaluate_root_caveat(schema, &mut root, &expr, context);
            }
            root
        });
        CheckTrace {
            schema: crate::schema::format(schema),
            root,
        }
    }
}

/// `trace`'s node for one of its resource ids, with its subproblems' nodes
/// (one per id each asked about) while the budget lasts.
fn node(
    schema: &CompiledSchema,
    trace: &DispatchTrace,
    resource_id: &str,
    budget: &mut usize,
) -> TraceNode {
    *budget = budget.saturating_sub(1);
    let request = &trace.request;
    let membership = trace
        .outcome
        .as_ref()
        .map_or(Membership::NotMember, |r| r.membership(resource_id));
    let resolution = if trace.cached {
        Resolution::Cached
    } else {
        Resolution::SubProblems(children(schema, &trace.children, budget))
    };
    TraceNode {
        resource: ObjectRef::new(request.resource_type.clone(), resource_id),
        relation: request.relation.clone(),
        is_permission: schema
            .definition(&request.resource_type)
            .is_some_and(|d| d.is_permission(&request.relation)),
        subject: request.subject.clone(),
        result: result_of(&membership),
        caveat: unevaluated_caveat(&membership),
        duration: trace.duration,
        resolution,
    }
}

/// One node per id of each subproblem, in dispatch order and id order.
fn children(
    schema: &CompiledSchema,
    traces: &[DispatchTrace],
    budget: &mut usize,
) -> Vec<TraceNode> {
    let mut nodes = Vec::new();
    for trace in traces {
        let mut ids: Vec<&String> = trace.request.resource_ids.iter().collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            if *budget == 0 {
                return nodes;
            }
            nodes.push(node(schema, trace, id, budget));
        }
    }
    nodes
}

fn result_of(membership: &Membership) -> TraceResult {
    match membership {
        Membership::NotMember => TraceResult::NoPermission,
        Membership::Member => TraceResult::HasPermission,
        Membership::Conditional(_) => TraceResult::Conditional,
    }
}

fn unevaluated_caveat(membership: &Membership) -> Option<CaveatTrace> {
    let Membership::Conditional(expr) = membership else {
        return None;
    };
    let caveats = expr.caveats();
    Some(CaveatTrace {
        expression: expr.to_string(),
        caveat_name: matches!(expr, CaveatExpr::Caveat(_))
            .then(|| caveats.first().map(|c| c.name.clone()))
            .flatten(),
        evaluation: CaveatEvaluation::Unevaluated,
        context: None,
    })
}

/// The root's conditional result evaluated as the API evaluated it, so the
/// trace's top result is the check's answer.
fn evaluate_root_caveat(
    schema: &CompiledSchema,
    root: &mut TraceNode,
    expr: &CaveatExpr,
    context: &serde_json::Map<String, serde_json::Value>,
) {
    let Some(caveat) = root.caveat.as_mut() else {
        return;
    };
    let (result, evaluation) = match caveats::evaluate(schema, expr, context) {
        Ok(Truth::True) => (TraceResult::HasPermission, CaveatEvaluation::True),
        Ok(Truth::False) => (TraceResult::NoPermission, CaveatEvaluation::False),
        Ok(Truth::Unknown(missing)) => (
            TraceResult::Conditional,
            CaveatEvaluation::MissingContext(missing.into_iter().collect()),
        ),
        // The check itself failed on this error and returned no trace.
        Err(_) => return,
    };
    root.result = result;
    caveat.evaluation = evaluation;
    caveat.context = Some(context.clone());
}
