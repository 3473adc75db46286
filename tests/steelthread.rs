//! SpiceDB's steel-thread goldens (../shared/conformance/.../steelthread,
//! inventory §9.3) through the public gRPC API: each case loads its data
//! file into a fresh server, runs its operations in order at full
//! consistency and compares with SpiceDB's recorded results. Pages of
//! LookupResources follow the walk's order, which differs from SpiceDB's,
//! so those compare the union, the page sizes and the absence of
//! duplicates; everything else compares exactly. Skips (with a message)
//! when the shared data is absent.

mod common;

use std::path::{Path, PathBuf};

use futures::StreamExt as _;
use serde_yaml_ng::Value;

use trellis::api::proto::v1;
use trellis::api::proto::v1::permissions_service_client::PermissionsServiceClient;
use trellis::api::proto::v1::schema_service_client::SchemaServiceClient;
use trellis::model::parse_relationship;

use common::server::{TestServer as Server, authed};

async fn start() -> Server {
    Server::start_default().await
}

fn full() -> Option<v1::Consistency> {
    Some(v1::Consistency {
        requirement: Some(v1::consistency::Requirement::FullyConsistent(true)),
    })
}

fn text(args: &Value, key: &str) -> String {
    args.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn number(args: &Value, key: &str) -> u32 {
    args.get(key).and_then(Value::as_u64).unwrap_or(0) as u32
}

fn object(object_type: String, object_id: String) -> Option<v1::ObjectReference> {
    Some(v1::ObjectReference {
        object_type,
        object_id,
    })
}

/// The relationship lines of a data file or a `.txt` list.
fn relationship_lines(text: &str) -> Vec<v1::Relationship> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(|l| {
            let rel = parse_relationship(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            v1::Relationship::from(&rel)
        })
        .collect()
}

async fn load(server: &Server, datafile: &Path) {
    let yaml: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(datafile).expect("readable data file"))
            .expect("yaml");
    let schema = text(&yaml, "schema");
    SchemaServiceClient::new(server.channel.clone())
        .write_schema(authed(v1::WriteSchemaRequest { schema }))
        .await
        .unwrap_or_else(|e| panic!("{}: schema: {e}", datafile.display()));
    let rels = relationship_lines(&text(&yaml, "relationships"));
    let mut client = PermissionsServiceClient::new(server.channel.clone());
    for chunk in rels.chunks(1000) {
        let updates = chunk
            .iter()
            .map(|r| v1::RelationshipUpdate {
                operation: v1::relationship_update::Operation::Touch as i32,
                relationship: Some(r.clone()),
            })
            .collect();
        client
            .write_relationships(authed(v1::WriteRelationshipsRequest {
                updates,
                optional_preconditions: vec![],
                optional_transaction_metadata: None,
            }))
            .await
            .unwrap_or_else(|e| panic!("{}: relationships: {e}", datafile.display()));
    }
}

/// A relationship as the goldens print it.
fn relationship_text(r: &v1::Relationship) -> String {
    let converted = trellis::api::convert::relationship(Some(r), "relationship")
        .expect("a served relationship converts back");
    converted.to_string()
}

fn conditional_suffix(permissionship: i32) -> &'static str {
    if permissionship == v1::LookupPermissionship::ConditionalPermission as i32 {
        " (conditional)"
    } else {
        ""
    }
}

async fn lookup_subjects(server: &Server, args: &Value) -> Value {
    let responses: Vec<v1::LookupSubjectsResponse> =
        PermissionsServiceClient::new(server.channel.clone())
            .lookup_subjects(authed(v1::LookupSubjectsRequest {
                consistency: full(),
                resource: object(
                    text(args, "resource_type"),
                    text(args, "resource_object_id"),
                ),
                permission: text(args, "permission"),
                subject_object_type: text(args, "subject_type"),
                optional_subject_relation: String::new(),
                context: None,
                optional_concrete_limit: 0,
                optional_cursor: None,
                wildcard_option: 0,
            }))
            .await
            .expect("lookup subjects")
            .into_inner()
            .map(|r| r.expect("subject"))
            .collect()
            .await;
    let mut lines: Vec<String> = responses
        .iter()
        .map(|r| {
            let subject = r.subject.clone().expect("subject");
            let mut excluded: Vec<&str> = r
                .excluded_subjects
                .iter()
                .map(|e| e.subject_object_id.as_str())
                .collect();
            excluded.sort_unstable();
            let id = if excluded.is_empty() {
                subject.subject_object_id.clone()
            } else {
                format!("{} - [{}]", subject.subject_object_id, excluded.join(", "))
            };
            format!("{id}{}", conditional_suffix(subject.permissionship))
        })
        .collect();
    lines.sort();
    Value::Sequence(lines.into_iter().map(Value::String).collect())
}

/// All pages of LookupResources at `page_size` (0: one unlimited call).
async fn lookup_resource_pages(server: &Server, args: &Value, page_size: u32) -> Vec<Vec<String>> {
    let mut client = PermissionsServiceClient::new(server.channel.clone());
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let responses: Vec<v1::LookupResourcesResponse> = client
            .lookup_resources(authed(v1::LookupResourcesRequest {
                consistency: full(),
                resource_object_type: text(args, "resource_type"),
                permission: text(args, "permission"),
                subject: Some(v1::SubjectReference {
                    object: object(text(args, "subject_type"), text(args, "subject_object_id")),
                    optional_relation: String::new(),
                }),
                context: None,
                optional_limit: page_size,
                optional_cursor: cursor.clone(),
                with_debug: false,
            }))
            .await
            .expect("lookup resources")
            .into_inner()
            .map(|r| r.expect("resource"))
            .collect()
            .await;
        if let Some(last) = responses.last() {
            cursor = last.after_result_cursor.clone();
        }
        let page: Vec<String> = responses
            .iter()
            .map(|r| {
                format!(
                    "{}{}",
                    r.resource_object_id,
                    conditional_suffix(r.permissionship)
                )
            })
            .collect();
        let full_page = page_size > 0 && page.len() == page_size as usize;
        if !page.is_empty() {
            pages.push(page);
        }
        if !full_page {
            return pages;
        }
    }
}

fn sorted_strings(value: &Value) -> Vec<String> {
    let mut out: Vec<String> = value
        .as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Union, page sizes and no duplicates against SpiceDB's pages.
fn compare_pages(
    label: &str,
    got: &[Vec<String>],
    expected: &Value,
    page_size: usize,
) -> Result<(), String> {
    let expected_all: Vec<String> = {
        let mut all: Vec<String> = expected
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(sorted_strings)
            .collect();
        all.sort();
        // SpiceDB repeats results reached along several paths when paging.
        all.dedup();
        all
    };
    let mut got_all: Vec<String> = got.iter().flatten().cloned().collect();
    got_all.sort();
    let count = got_all.len();
    got_all.dedup();
    if count != got_all.len() {
        return Err(format!("{label}: duplicate results across pages"));
    }
    if got_all != expected_all {
        return Err(format!(
            "{label}: got {got_all:?}, SpiceDB {expected_all:?}"
        ));
    }
    if let Some((_, before_last)) = got.split_last()
        && before_last.iter().any(|p| p.len() != page_size)
    {
        return Err(format!("{label}: a page before the last is not full"));
    }
    Ok(())
}

async fn read_relationship_pages(server: &Server, args: &Value) -> Value {
    let mut client = PermissionsServiceClient::new(server.channel.clone());
    let page_size = number(args, "page_size");
    let subject_type = text(args, "subject_type");
    let filter = v1::RelationshipFilter {
        resource_type: text(args, "resource_type"),
        optional_resource_id: text(args, "resource_id"),
        optional_resource_id_prefix: String::new(),
        optional_relation: String::new(),
        optional_subject_filter: (!subject_type.is_empty()).then(|| v1::SubjectFilter {
            subject_type,
            optional_subject_id: text(args, "subject_id"),
            optional_relation: None,
        }),
    };
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let responses: Vec<v1::ReadRelationshipsResponse> = client
            .read_relationships(authed(v1::ReadRelationshipsRequest {
                consistency: full(),
                relationship_filter: Some(filter.clone()),
                optional_limit: page_size,
                optional_cursor: cursor.clone(),
            }))
            .await
            .expect("read")
            .into_inner()
            .map(|r| r.expect("relationship"))
            .collect()
            .await;
        if let Some(last) = responses.last() {
            cursor = last.after_result_cursor.clone();
        }
        let mut page: Vec<String> = responses
            .iter()
            .map(|r| relationship_text(r.relationship.as_ref().expect("relationship")))
            .collect();
        page.sort();
        let full_page = page.len() == page_size as usize;
        if !page.is_empty() {
            pages.push(Value::Sequence(
                page.into_iter().map(Value::String).collect(),
            ));
        }
        if !full_page {
            return Value::Sequence(pages);
        }
    }
}

async fn import_export(server: &Server, args: &Value, testdata: &Path) -> Value {
    let file = testdata.join(text(args, "rels_file"));
    let rels = relationship_lines(&std::fs::read_to_string(&file).expect("rels file"));
    let mut client = PermissionsServiceClient::new(server.channel.clone());
    let batches: Vec<v1::ImportBulkRelationshipsRequest> = rels
        .chunks(100)
        .map(|c| v1::ImportBulkRelationshipsRequest {
            relationships: c.to_vec(),
        })
        .collect();
    if let Err(e) = client
        .import_bulk_relationships(authed(tokio_stream::iter(batches)))
        .await
    {
        return Value::String(format!("import failed: {e}"));
    }
    let resource_type = text(args, "resource_type");
    let prefix = text(args, "filter_resource_id_prefix");
    let filter =
        (!resource_type.is_empty() || !prefix.is_empty()).then(|| v1::RelationshipFilter {
            resource_type,
            optional_resource_id: String::new(),
            optional_resource_id_prefix: prefix,
            optional_relation: String::new(),
            optional_subject_filter: None,
        });
    let export = |cursor: Option<v1::Cursor>| v1::ExportBulkRelationshipsRequest {
        consistency: full(),
        optional_limit: number(args, "optional_limit"),
        optional_cursor: cursor,
        optional_relationship_filter: filter.clone(),
    };
    // One call streams every page; the last page's cursor resumes after it.
    let pages: Vec<v1::ExportBulkRelationshipsResponse> =
        match client.export_bulk_relationships(authed(export(None))).await {
            Ok(stream) => {
                stream
                    .into_inner()
                    .map(|r| r.expect("page"))
                    .collect()
                    .await
            }
            Err(e) => return Value::String(format!("export failed: {e}")),
        };
    let exported: Vec<String> = pages
        .iter()
        .flat_map(|p| p.relationships.iter().map(relationship_text))
        .collect();
    if let Some(cursor) = pages.last().and_then(|p| p.after_result_cursor.clone()) {
        let resumed: Vec<v1::ExportBulkRelationshipsResponse> = client
            .export_bulk_relationships(authed(export(Some(cursor))))
            .await
            .expect("export resumed")
            .into_inner()
            .map(|r| r.expect("page"))
            .collect()
            .await;
        assert!(
            resumed.iter().all(|p| p.relationships.is_empty()),
            "resuming after the last page exports nothing more"
        );
    }
    Value::Sequence(exported.into_iter().map(Value::String).collect())
}

async fn bulk_check(server: &Server, args: &Value) -> Value {
    let requests: Vec<String> = args
        .get("check_requests")
        .and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let items = requests
        .iter()
        .map(|line| {
            // `resource#perm@subject[name:{json}]`: the JSON is the context.
            let (check, context) = match line.split_once('[') {
                Some((check, rest)) => {
                    let json = rest
                        .trim_end_matches(']')
                        .split_once(':')
                        .map_or("{}", |(_, j)| j);
                    let map: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(json).expect("context json");
                    (check.to_string(), Some(json_struct(map)))
                }
                None => (line.clone(), None),
            };
            let rel = parse_relationship(&check).expect("check request");
            let rel = v1::Relationship::from(&rel);
            v1::CheckBulkPermissionsRequestItem {
                resource: rel.resource,
                permission: rel.relation,
                subject: rel.subject,
                context,
            }
        })
        .collect();
    let response = PermissionsServiceClient::new(server.channel.clone())
        .check_bulk_permissions(authed(v1::CheckBulkPermissionsRequest {
            consistency: full(),
            items,
            with_tracing: false,
        }))
        .await
        .expect("bulk check")
        .into_inner();
    let lines = requests.iter().zip(&response.pairs).map(|(line, pair)| {
        let outcome = match &pair.response {
            Some(v1::check_bulk_permissions_pair::Response::Item(item)) => {
                v1::check_permission_response::Permissionship::try_from(item.permissionship)
                    .map(|p| p.as_str_name().to_string())
                    .unwrap_or_default()
            }
            other => format!("error {other:?}"),
        };
        Value::String(format!("{line} -> {outcome}"))
    });
    Value::Sequence(lines.collect())
}

fn json_struct(map: serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    fn value(v: serde_json::Value) -> prost_types::Value {
        use prost_types::value::Kind;
        let kind = match v {
            serde_json::Value::Null => Kind::NullValue(0),
            serde_json::Value::Bool(b) => Kind::BoolValue(b),
            serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
            serde_json::Value::String(s) => Kind::StringValue(s),
            serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
                values: a.into_iter().map(value).collect(),
            }),
            serde_json::Value::Object(o) => Kind::StructValue(json_struct(o)),
        };
        prost_types::Value { kind: Some(kind) }
    }
    prost_types::Struct {
        fields: map.into_iter().map(|(k, v)| (k, value(v))).collect(),
    }
}

/// `{}` or the gRPC code SpiceDB's error message names.
async fn write_schema(server: &Server, args: &Value) -> Result<(), String> {
    let outcome = SchemaServiceClient::new(server.channel.clone())
        .write_schema(authed(v1::WriteSchemaRequest {
            schema: text(args, "schema"),
        }))
        .await;
    match outcome {
        Ok(_) => Ok(()),
        Err(status) => Err(format!("{:?}", status.code())),
    }
}

fn expected_write_schema(expected: &Value) -> Result<(), String> {
    match expected.get("error").and_then(Value::as_str) {
        None => Ok(()),
        Some(message) => {
            let code = message
                .split("code = ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or("Unknown");
            Err(code.to_string())
        }
    }
}

async fn run_case(case: &Value, root: &Path) -> Vec<String> {
    let name = text(case, "name");
    let server = start().await;
    load(&server, &root.join("testdata").join(text(case, "datafile"))).await;
    let mut problems = Vec::new();
    for op in case
        .get("operations")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let label = format!("{name} / {}", text(op, "name"));
        let args = op.get("arguments").cloned().unwrap_or(Value::Null);
        let results_path: PathBuf = root.join("results").join(text(op, "results_file"));
        let expected: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&results_path).expect("results file"))
                .expect("results yaml");
        let outcome = match text(op, "operation").as_str() {
            "lookupSubjects" => {
                let got = lookup_subjects(&server, &args).await;
                (sorted_strings(&got) == sorted_strings(&expected))
                    .then_some(())
                    .ok_or_else(|| format!("{label}: got {got:?}, SpiceDB {expected:?}"))
            }
            "lookupResources" => {
                let got: Vec<String> = lookup_resource_pages(&server, &args, 0).await.concat();
                let mut sorted = got.clone();
                sorted.sort();
                (sorted == sorted_strings(&expected))
                    .then_some(())
                    .ok_or_else(|| format!("{label}: got {sorted:?}, SpiceDB {expected:?}"))
            }
            "cursoredLookupResources" => {
                let size = number(&args, "page_size");
                let got = lookup_resource_pages(&server, &args, size).await;
                compare_pages(&label, &got, &expected, size as usize)
            }
            "cursoredReadRelationships" => {
                let got = read_relationship_pages(&server, &args).await;
                (got == expected)
                    .then_some(())
                    .ok_or_else(|| format!("{label}: got {got:?}, SpiceDB {expected:?}"))
            }
            "bulkImportExportRelationships" => {
                let got = import_export(&server, &args, &root.join("testdata")).await;
                (got == expected)
                    .then_some(())
                    .ok_or_else(|| format!("{label}: got {got:?}, SpiceDB {expected:?}"))
            }
            "bulkCheckPermissions" => {
                let got = bulk_check(&server, &args).await;
                (got == expected)
                    .then_some(())
                    .ok_or_else(|| format!("{label}: got {got:?}, SpiceDB {expected:?}"))
            }
            "writeSchema" => {
                let got = write_schema(&server, &args).await;
                let want = expected_write_schema(&expected);
                (got == want)
                    .then_some(())
                    .ok_or_else(|| format!("{label}: got {got:?}, SpiceDB {want:?}"))
            }
            other => Err(format!("{label}: unknown operation {other}")),
        };
        if let Err(problem) = outcome {
            problems.push(problem);
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steel_thread_goldens_pass() {
    let Some(dir) = common::shared_testconfigs() else {
        return;
    };
    let root = dir.join("steelthread");
    let manifest: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root.join("manifest.yaml")).expect("manifest"),
    )
    .expect("manifest yaml");
    let cases = manifest
        .get("cases")
        .and_then(Value::as_sequence)
        .expect("cases");
    let mut problems = Vec::new();
    let mut operations = 0;
    for case in cases {
        operations += case
            .get("operations")
            .and_then(Value::as_sequence)
            .map_or(0, Vec::len);
        problems.extend(run_case(case, &root).await);
    }
    eprintln!("{} cases, {operations} operations", cases.len());
    assert!(
        problems.is_empty(),
        "{} failed:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
