//! ExpandPermissionTree against real SpiceDB 1.54, tree for tree: the
//! trees in `tests/expand/spicedb-trees.json` were recorded from the
//! embedded SpiceDB (`tests/expand/compare_with_spicedb.py --record`) for
//! every relation of every object of the schema examples and SpiceDB's test
//! configs. Each is compared with Trellis's tree after putting the children
//! of unions and intersections, and leaf subjects, in one order (SpiceDB's
//! follow its concurrent evaluation). Entries from ../shared skip when it
//! is absent.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};

use trellis::datastore::memory::MemoryDatastore;
use trellis::datastore::{RevisionConfig, SystemClock};
use trellis::graph::expand::{ExpandKind, ExpandNode, SetOperation};
use trellis::model::{Consistency, ELLIPSIS, ObjectRef};
use trellis::validationfile;

/// A tree in protobuf JSON (as SpiceDB's was recorded).
fn tree_json(node: &ExpandNode) -> Value {
    let mut out = serde_json::Map::new();
    out.insert(
        "expandedObject".into(),
        json!({"objectType": node.object.object_type, "objectId": node.object.object_id}),
    );
    out.insert("expandedRelation".into(), json!(node.relation));
    match &node.kind {
        ExpandKind::Set {
            operation,
            children,
        } => {
            let operation = match operation {
                SetOperation::Union => "OPERATION_UNION",
                SetOperation::Intersection => "OPERATION_INTERSECTION",
                SetOperation::Exclusion => "OPERATION_EXCLUSION",
            };
            let children: Vec<Value> = children.iter().map(tree_json).collect();
            let mut inter = serde_json::Map::new();
            inter.insert("operation".into(), json!(operation));
            if !children.is_empty() {
                inter.insert("children".into(), Value::Array(children));
            }
            out.insert("intermediate".into(), Value::Object(inter));
        }
        ExpandKind::Leaf(subjects) => {
            let subjects: Vec<Value> = subjects
                .iter()
                .map(|s| {
                    let mut subject = json!({"object": {
                        "objectType": s.object.object_type,
                        "objectId": s.object.object_id,
                    }});
                    if s.relation != ELLIPSIS {
                        subject["optionalRelation"] = json!(s.relation);
                    }
                    subject
                })
                .collect();
            let leaf = if subjects.is_empty() {
                json!({})
            } else {
                json!({ "subjects": subjects })
            };
            out.insert("leaf".into(), leaf);
        }
    }
    Value::Object(out)
}

/// Children of unions and intersections and leaf subjects in one order.
fn canonical(node: &Value) -> Value {
    let mut node = node.clone();
    if let Some(inter) = node.get_mut("intermediate") {
        let commutative = inter["operation"] != "OPERATION_EXCLUSION";
        if let Some(Value::Array(children)) = inter.get_mut("children") {
            let mut sorted: Vec<Value> = children.iter().map(canonical).collect();
            if commutative {
                sorted.sort_by_key(|c| c.to_string());
            }
            *children = sorted;
        }
        if inter.get("children").is_some_and(|c| c == &json!([])) {
            inter.as_object_mut().map(|o| o.remove("children"));
        }
    }
    if let Some(Value::Array(subjects)) = node.pointer_mut("/leaf/subjects") {
        subjects.sort_by_key(|s| s.to_string());
    }
    node
}

/// SpiceDB's code name (`FAILED_PRECONDITION`) against tonic's (`FailedPrecondition`).
fn same_code(spicedb: &str, ours: tonic::Code) -> bool {
    spicedb
        .replace('_', "")
        .eq_ignore_ascii_case(&format!("{ours:?}"))
}

fn file_path(label: &str) -> Option<PathBuf> {
    match label.strip_prefix("shared:") {
        Some(name) => common::shared_testconfigs().map(|d| d.join(name)),
        None => Some(common::repo().join(label)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_trees_match_spicedbs() {
    let recorded: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(common::repo().join("tests/expand/spicedb-trees.json"))
            .expect("recorded trees"),
    )
    .expect("json");
    let mut by_file: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for entry in &recorded {
        let file = entry["file"].as_str().expect("file").to_string();
        by_file.entry(file).or_default().push(entry);
    }
    let mut compared = 0;
    let mut problems = Vec::new();
    for (label, entries) in &by_file {
        let Some(path) = file_path(label) else {
            continue;
        };
        let loaded = validationfile::load(&path).expect("loads");
        let datastore = Arc::new(MemoryDatastore::new(
            RevisionConfig::default(),
            Arc::new(SystemClock),
        ));
        let services = trellis::server::services(datastore, Default::default());
        services.run_validation_file(&loaded).await;
        for entry in entries {
            let resource = entry["resource"].as_str().expect("resource");
            let (object_type, object_id) = resource.split_once(':').expect("type:id");
            let permission = entry["permission"].as_str().expect("permission");
            let ours = services
                .expand(
                    ObjectRef::new(object_type, object_id),
                    permission.to_string(),
                    Consistency::FullyConsistent,
                )
                .await;
            compared += 1;
            let agrees = match (&ours, entry.get("error").and_then(Value::as_str)) {
                (Err(e), Some(code)) => same_code(code, tonic::Status::from(e.clone()).code()),
                (Ok((_, tree)), None) => canonical(&tree_json(tree)) == canonical(&entry["tree"]),
                _ => false,
            };
            if !agrees {
                let ours = ours.map(|(_, t)| canonical(&tree_json(&t)));
                problems.push(format!(
                    "{label}: {resource}#{permission}\n  SpiceDB {}\n  Trellis {ours:?}",
                    entry
                        .get("tree")
                        .or(entry.get("error"))
                        .unwrap_or(&Value::Null)
                ));
            }
        }
    }
    eprintln!("{compared} expansions compared with SpiceDB's");
    assert!(
        problems.is_empty(),
        "{} differ:\n{}",
        problems.len(),
        problems
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
