//! A check's debug trace (`service::CheckTrace`) as `DebugInformation`, the
//! `debug_trace` of CheckPermission.

use crate::api::proto::v1;
use crate::service::{
    CaveatEvaluation, CaveatTrace, CheckTrace, Resolution, TraceNode, TraceResult,
};

use super::json_to_struct;

impl From<&CheckTrace> for v1::DebugInformation {
    fn from(trace: &CheckTrace) -> Self {
        Self {
            check: trace.root.as_ref().map(Into::into),
            schema_used: trace.schema.clone(),
        }
    }
}

impl From<&TraceNode> for v1::CheckDebugTrace {
    fn from(node: &TraceNode) -> Self {
        use v1::check_debug_trace::{
            PermissionType, Permissionship, Resolution as Wire, SubProblems,
        };
        let permission_type = if node.is_permission {
            PermissionType::Permission
        } else {
            PermissionType::Relation
        };
        let result = match node.result {
            TraceResult::NoPermission => Permissionship::NoPermission,
            TraceResult::HasPermission => Permissionship::HasPermission,
            TraceResult::Conditional => Permissionship::ConditionalPermission,
        };
        let resolution = match &node.resolution {
            Resolution::Cached => Wire::WasCachedResult(true),
            Resolution::SubProblems(children) => Wire::SubProblems(SubProblems {
                traces: children.iter().map(Into::into).collect(),
            }),
        };
        Self {
            resource: Some((&node.resource).into()),
            permission: node.relation.clone(),
            permission_type: permission_type as i32,
            subject: Some((&node.subject).into()),
            result: result as i32,
            caveat_evaluation_info: node.caveat.as_ref().map(Into::into),
            duration: prost_types::Duration::try_from(node.duration).ok(),
            resolution: Some(resolution),
            optional_expires_at: None,
            trace_operation_id: String::new(),
            source: String::new(),
        }
    }
}

impl From<&CaveatTrace> for v1::CaveatEvalInfo {
    fn from(caveat: &CaveatTrace) -> Self {
        use v1::caveat_eval_info::Result as Wire;
        let (result, partial_caveat_info) = match &caveat.evaluation {
            CaveatEvaluation::Unevaluated => (Wire::Unevaluated, None),
            CaveatEvaluation::True => (Wire::True, None),
            CaveatEvaluation::False => (Wire::False, None),
            CaveatEvaluation::MissingContext(missing) => (
                Wire::MissingSomeContext,
                Some(v1::PartialCaveatInfo {
                    missing_required_context: missing.clone(),
                }),
            ),
        };
        Self {
            expression: caveat.expression.clone(),
            result: result as i32,
            context: caveat.context.as_ref().map(json_to_struct),
            partial_caveat_info,
            caveat_name: caveat.caveat_name.clone().unwrap_or_default(),
        }
    }
}
