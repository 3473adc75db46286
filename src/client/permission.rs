//! `trellis permission check|expand|lookup-resources|lookup-subjects`, with
//! zed's output: `true`/`false`/`caveated` for a check (its debug trace as
//! a tree with `--explain`), the expanded tree, and one result per line for
//! the lookups.

use std::process::ExitCode;

use super::command::{
    CheckArgs, ExpandArgs, LookupResourcesArgs, LookupSubjectsArgs, PermissionCommand,
};
use super::connect::Connection;
use super::tree::Node;
use super::{ClientError, output};
use crate::api::proto::v1;
use crate::api::proto::v1::check_permission_response::Permissionship;

/// Runs one `permission` subcommand.
pub async fn run(command: PermissionCommand) -> Result<ExitCode, ClientError> {
    match command {
        PermissionCommand::Check(args) => check(args).await,
        PermissionCommand::Expand(args) => expand(args).await,
        PermissionCommand::LookupResources(args) => lookup_resources(args).await,
        PermissionCommand::LookupSubjects(args) => lookup_subjects(args).await,
    }
}

async fn check(args: CheckArgs) -> Result<ExitCode, ClientError> {
    let connection = Connection::open(&args.connect.target(), 1).await?;
    let request = v1::CheckPermissionRequest {
        consistency: Some(args.consistency.consistency()),
        resource: Some(args.resource.0),
        permission: args.permission,
        subject: Some(args.subject.0),
        context: args.caveat_context,
        with_tracing: args.explain,
    };
    let response = connection
        .permissions(0)
        .check_permission(request)
        .await
        .map_err(|s| ClientError::call("CheckPermission", s))?
        .into_inner();
    if args.json {
        output::print_json(&response, "authzed.api.v1.CheckPermissionResponse")?;
    } else {
        output::line(&check_answer(&response))?;
        if args.explain {
            match response.debug_trace.as_ref().and_then(|d| d.check.as_ref()) {
                Some(trace) => output::line(trace_node(trace).render().trim_end())?,
                None => eprintln!("the server returned no debug trace for this check"),
            }
        }
    }
    let has = response.permissionship == Permissionship::HasPermission as i32;
    if args.error_on_no_permission && !has {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `true`, `false`, or `caveated` with the context the caveats still need.
fn check_answer(response: &v1::CheckPermissionResponse) -> String {
    match Permissionship::try_from(response.permissionship) {
        Ok(Permissionship::HasPermission) => "true".to_string(),
        Ok(Permissionship::ConditionalPermission) => {
            caveated(response.partial_caveat_info.as_ref())
        }
        _ => "false".to_string(),
    }
}

fn caveated(info: Option<&v1::PartialCaveatInfo>) -> String {
    match info {
        Some(info) if !info.missing_required_context.is_empty() => format!(
            "caveated (missing context: {})",
            info.missing_required_context.join(", ")
        ),
        _ => "caveated".to_string(),
    }
}

/// One step of a check's debug trace and the subproblems it asked.
fn trace_node(trace: &v1::CheckDebugTrace) -> Node {
    use v1::check_debug_trace::{Permissionship as Traced, Resolution};
    let result = match Traced::try_from(trace.result) {
        Ok(Traced::HasPermission) => "true",
        Ok(Traced::ConditionalPermission) => "caveated",
        Ok(Traced::NoPermission) => "false",
        _ => "unspecified",
    };
    let mut label = format!(
        "{}#{}@{} => {result}",
        object(trace.resource.as_ref()),
        trace.permission,
        subject(trace.subject.as_ref()),
    );
    if let Some(caveat) = &trace.caveat_evaluation_info {
        // A combination of caveats has no single name: show its expression.
        let caveat = if caveat.caveat_name.is_empty() {
            &caveat.expression
        } else {
            &caveat.caveat_name
        };
        label.push_str(&format!(" (caveat {caveat})"));
    }
    let mut node = match &trace.resolution {
        Some(Resolution::WasCachedResult(true)) => Node::new(format!("{label} (cached)")),
        _ => Node::new(label),
    };
    if let Some(Resolution::SubProblems(problems)) = &trace.resolution {
        node.children = problems.traces.iter().map(trace_node).collect();
    }
    node
}

async fn expand(args: ExpandArgs) -> Result<ExitCode, ClientError> {
    let connection = Connection::open(&args.connect.target(), 1).await?;
    let request = v1::ExpandPermissionTreeRequest {
        consistency: Some(args.consistency.consistency()),
        resource: Some(args.resource.0),
        permission: args.permission,
    };
    let response = connection
        .permissions(0)
        .expand_permission_tree(request)
        .await
        .map_err(|s| ClientError::call("ExpandPermissionTree", s))?
        .into_inner();
    if args.json {
        output::print_json(&response, "authzed.api.v1.ExpandPermissionTreeResponse")?;
        return Ok(ExitCode::SUCCESS);
    }
    let root = response
        .tree_root
        .as_ref()
        .ok_or_else(|| ClientError::Malformed {
            what: "expand response",
            reason: "no tree_root".to_string(),
        })?;
    output::line(expand_node(root).render().trim_end())?;
    Ok(ExitCode::SUCCESS)
}

/// An expanded tree as zed draws it: `type:id->relation` for each expanded
/// object, then its operation or its subjects.
fn expand_node(tree: &v1::PermissionRelationshipTree) -> Node {
    use v1::algebraic_subject_set::Operation;
    use v1::permission_relationship_tree::TreeType;
    let body: Vec<Node> = match &tree.tree_type {
        Some(TreeType::Intermediate(set)) => {
            let operation = match Operation::try_from(set.operation) {
                Ok(Operation::Union) => "union",
                Ok(Operation::Intersection) => "intersection",
                Ok(Operation::Exclusion) => "exclusion",
                _ => "unspecified",
            };
            let mut node = Node::new(operation);
            node.children = set.children.iter().map(expand_node).collect();
            vec![node]
        }
        Some(TreeType::Leaf(leaf)) => leaf
            .subjects
            .iter()
            .map(|s| Node::new(arrow_subject(s)))
            .collect(),
        None => Vec::new(),
    };
    match &tree.expanded_object {
        Some(object_ref) => Node {
            label: format!("{}->{}", object(Some(object_ref)), tree.expanded_relation),
            children: body,
        },
        // Only the root may lack an expanded object; draw its body alone.
        None => body
            .into_iter()
            .next()
            .unwrap_or_else(|| Node::new("(empty)")),
    }
}

async fn lookup_resources(args: LookupResourcesArgs) -> Result<ExitCode, ClientError> {
    let connection = Connection::open(&args.connect.target(), 1).await?;
    let request = v1::LookupResourcesRequest {
        consistency: Some(args.consistency.consistency()),
        resource_object_type: args.resource_type,
        permission: args.permission,
        subject: Some(args.subject.0),
        context: args.caveat_context,
        optional_limit: args.limit.unwrap_or(0),
        ..Default::default()
    };
    let stream = connection
        .permissions(0)
        .lookup_resources(request)
        .await
        .map_err(|s| ClientError::call("LookupResources", s))?
        .into_inner();
    output::print_stream(
        stream,
        "LookupResources",
        args.json,
        "authzed.api.v1.LookupResourcesResponse",
        |response| {
            Ok(Some(lookup_line(
                &response.resource_object_id,
                response.permissionship,
                response.partial_caveat_info.as_ref(),
            )))
        },
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn lookup_subjects(args: LookupSubjectsArgs) -> Result<ExitCode, ClientError> {
    let connection = Connection::open(&args.connect.target(), 1).await?;
    let subject_type = args.subject_type.object_type.clone();
    let request = v1::LookupSubjectsRequest {
        consistency: Some(args.consistency.consistency()),
        resource: Some(args.resource.0),
        permission: args.permission,
        subject_object_type: args.subject_type.object_type,
        optional_subject_relation: args.subject_type.relation,
        context: args.caveat_context,
        ..Default::default()
    };
    let stream = connection
        .permissions(0)
        .lookup_subjects(request)
        .await
        .map_err(|s| ClientError::call("LookupSubjects", s))?
        .into_inner();
    output::print_stream(
        stream,
        "LookupSubjects",
        args.json,
        "authzed.api.v1.LookupSubjectsResponse",
        |response| Ok(subject_line(&subject_type, response)),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// A looked-up subject with the subjects a wildcard excludes.
fn subject_line(subject_type: &str, response: &v1::LookupSubjectsResponse) -> Option<String> {
    let found = response.subject.as_ref()?;
    let mut text = format!(
        "{subject_type}:{}",
        lookup_line(
            &found.subject_object_id,
            found.permissionship,
            found.partial_caveat_info.as_ref()
        )
    );
    if !response.excluded_subjects.is_empty() {
        let excluded: Vec<String> = response
            .excluded_subjects
            .iter()
            .map(|e| {
                format!(
                    "{subject_type}:{}",
                    lookup_line(
                        &e.subject_object_id,
                        e.permissionship,
                        e.partial_caveat_info.as_ref()
                    )
                )
            })
            .collect();
        text.push_str(&format!(" (excluding {})", excluded.join(", ")));
    }
    Some(text)
}

/// A looked-up id, marked when it holds only under caveats.
fn lookup_line(id: &str, permissionship: i32, info: Option<&v1::PartialCaveatInfo>) -> String {
    if permissionship == v1::LookupPermissionship::ConditionalPermission as i32 {
        format!("{id} {}", caveated(info))
    } else {
        id.to_string()
    }
}

fn object(object: Option<&v1::ObjectReference>) -> String {
    object
        .map(|o| format!("{}:{}", o.object_type, o.object_id))
        .unwrap_or_default()
}

fn subject(subject: Option<&v1::SubjectReference>) -> String {
    match subject {
        Some(s) if !s.optional_relation.is_empty() => {
            format!("{}#{}", object(s.object.as_ref()), s.optional_relation)
        }
        Some(s) => object(s.object.as_ref()),
        None => String::new(),
    }
}

/// A subject as zed's expand prints it: `type:id` or `type:id->relation`.
fn arrow_subject(subject: &v1::SubjectReference) -> String {
    if subject.optional_relation.is_empty() {
        object(subject.object.as_ref())
    } else {
        format!(
            "{}->{}",
            object(subject.object.as_ref()),
            subject.optional_relation
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use v1::check_debug_trace::{Permissionship as Traced, Resolution, SubProblems};

    fn trace(resource: &str, permission: &str, result: Traced) -> v1::CheckDebugTrace {
        let (object_type, object_id) = resource.split_once(':').expect("type:id");
        v1::CheckDebugTrace {
            resource: Some(v1::ObjectReference {
                object_type: object_type.into(),
                object_id: object_id.into(),
            }),
            permission: permission.into(),
            subject: Some(v1::SubjectReference {
                object: Some(v1::ObjectReference {
                    object_type: "user".into(),
                    object_id: "alice".into(),
                }),
                optional_relation: String::new(),
            }),
            result: result as i32,
            ..Default::default()
        }
    }

    #[test]
    fn a_debug_trace_is_drawn_as_a_tree_of_subproblems() {
        let mut cached = trace("document:1", "owner", Traced::NoPermission);
        cached.resolution = Some(Resolution::WasCachedResult(true));
        let viewer = trace("document:1", "viewer", Traced::HasPermission);
        let mut root = trace("document:1", "view", Traced::HasPermission);
        root.resolution = Some(Resolution::SubProblems(SubProblems {
            traces: vec![viewer, cached],
        }));
        assert_eq!(
            trace_node(&root).render(),
            "document:1#view@user:alice => true\n\
             ├── document:1#viewer@user:alice => true\n\
             └── document:1#owner@user:alice => false (cached)\n"
        );
    }

    #[test]
    fn conditional_answers_name_the_missing_context() {
        let response = v1::CheckPermissionResponse {
            permissionship: Permissionship::ConditionalPermission as i32,
            partial_caveat_info: Some(v1::PartialCaveatInfo {
                missing_required_context: vec!["day".into(), "ip".into()],
            }),
            ..Default::default()
        };
        assert_eq!(
            check_answer(&response),
            "caveated (missing context: day, ip)"
        );
    }
}
