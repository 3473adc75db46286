//! A three-node dispatch cluster on loopback, in one process over one
//! shared datastore (every node must see the same data, as nodes of one
//! PostgreSQL do): every schema example passes through every node, checks
//! and lookups alike (LookupResources also paged across the three nodes,
//! which holds its result order to be the same on every node); checks
//! keep succeeding while a node's peer server is down and the ring uses it
//! again once it is back; the peer port refuses calls without the key.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::server::{TestServer, authed, fully_consistent};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use trellis::api::convert::json_to_struct;
use trellis::api::proto::v1;
use trellis::config::Config;
use trellis::datastore::memory::MemoryDatastore;
use trellis::datastore::{RevisionConfig, SystemClock};
use trellis::dispatch::remote::RemoteDispatcher;
use trellis::dispatch::remote::proto;
use trellis::dispatch::settings::{ClusterSettings, DispatchSettings};
use trellis::model::{Consistency, ObjectRef, SubjectRef, parse_relationship};
use trellis::server::Node;
use trellis::service::test_support::touch_all;
use trellis::service::{
    CheckParams, LookupResourcesParams, LookupSubjectsParams, Permissionship, Services,
};
use trellis::validationfile;
use v1::check_permission_response::Permissionship as ApiPermissionship;

/// The public API's key (what `common::server::authed` sends) and the
/// cluster's.
const KEY: &str = common::server::KEY;

fn datastore() -> Arc<MemoryDatastore> {
    Arc::new(MemoryDatastore::new(
        RevisionConfig::default(),
        Arc::new(SystemClock),
    ))
}

/// Three free loopback addresses for the peer ports, bound now so the
/// peer list is known before any node starts.
async fn peer_listeners() -> (Vec<TcpListener>, Vec<String>) {
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(
            TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a peer port"),
        );
    }
    let addrs = listeners
        .iter()
        .map(|l| l.local_addr().expect("bound").to_string())
        .collect();
    (listeners, addrs)
}

fn config(peer_addr: SocketAddr, upstreams: &[String], cache: bool) -> Config {
    Config {
        grpc_addr: "127.0.0.1:0".parse().expect("address"),
        preshared_keys: vec![KEY.into()],
        dispatch: DispatchSettings {
            cache_enabled: cache,
            cluster: ClusterSettings {
                enabled: true,
                addr: peer_addr,
                preshared_key: Some(KEY.into()),
                upstreams: upstreams.to_vec(),
                ..ClusterSettings::default()
            },
            ..DispatchSettings::default()
        },
        ..Config::default()
    }
}

/// A running `server::run_node`: public API and peer port; stops on drop.
struct Running {
    /// The public API's address.
    public: SocketAddr,
    services: Arc<Services<MemoryDatastore>>,
    remote: Arc<RemoteDispatcher>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// Three `server::run_node` instances over `datastore`, each with its own
/// public and peer port and all three peers as upstreams.
async fn start_cluster(datastore: Arc<MemoryDatastore>) -> (Vec<Running>, Vec<String>) {
    start_cluster_listing(datastore, |addr| addr.to_string()).await
}

/// As `start_cluster`, with each node's peer port listed in the upstreams
/// as `entry` writes it (an address, or a DNS name resolving to it).
async fn start_cluster_listing(
    datastore: Arc<MemoryDatastore>,
    entry: impl Fn(SocketAddr) -> String,
) -> (Vec<Running>, Vec<String>) {
    let (listeners, addrs) = peer_listeners().await;
    let upstreams: Vec<String> = listeners
        .iter()
        .map(|l| entry(l.local_addr().expect("bound")))
        .collect();
    let mut nodes = Vec::new();
    for peer_listener in listeners {
        let peer_addr = peer_listener.local_addr().expect("bound");
        let mut config = config(peer_addr, &upstreams, true);
        config.dispatch.cluster.refresh_interval = Duration::from_millis(100);
        let node = trellis::server::node(datastore.clone(), &config, Some(peer_addr))
            .expect("a valid cluster");
        let services = node.services.clone();
        let remote = node.dispatch.remote.clone().expect("upstreams configured");
        let public = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the API");
        let public_addr = public.local_addr().expect("bound");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let served = trellis::server::run_node(
            node,
            datastore.clone(),
            config,
            public,
            Some(peer_listener),
            shutdown,
        );
        let task = tokio::spawn(async move {
            served.await.expect("the node serves");
        });
        nodes.push(Running {
            public: public_addr,
            services,
            remote,
            stop: Some(stop),
            task,
        });
    }
    (nodes, addrs)
}

/// Subproblems the nodes sent to one another and got answered.
fn answered_by_peers(cluster: &[Running], addrs: &[String]) -> u64 {
    cluster
        .iter()
        .flat_map(|node| addrs.iter().filter_map(|a| node.remote.answered_by(a)))
        .sum()
}

/// A deployment's answer to one check, reduced to what a client sees and
/// what must not depend on the deployment: the permissionship, the caveat
/// context still missing and the expiry; or the error's code and message.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Decided {
        permissionship: i32,
        missing_context: Vec<String>,
        expires_at: Option<prost_types::Timestamp>,
    },
    Failed {
        code: tonic::Code,
        message: String,
    },
}

impl Answer {
    fn decided(
        permissionship: i32,
        partial: Option<v1::PartialCaveatInfo>,
        expires_at: Option<prost_types::Timestamp>,
    ) -> Self {
        let mut missing_context = partial
            .map(|p| p.missing_required_context)
            .unwrap_or_default();
        missing_context.sort();
        Answer::Decided {
            permissionship,
            missing_context,
            expires_at,
        }
    }

    fn permissionship(&self) -> Option<ApiPermissionship> {
        match self {
            Answer::Decided { permissionship, .. } => {
                ApiPermissionship::try_from(*permissionship).ok()
            }
            Answer::Failed { .. } => None,
        }
    }
}

/// `resource#permission@subject[ with {json}]`, as a check item of the
/// public API.
fn check_item(text: &str) -> Result<v1::CheckBulkPermissionsRequestItem, String> {
    let (relationship, context) = match text.split_once(" with ") {
        Some((rel, json)) => {
            let context: serde_json::Value =
                serde_json::from_str(json.trim()).map_err(|e| format!("`{text}`: {e}"))?;
            let context = context
                .as_object()
                .cloned()
                .ok_or_else(|| format!("`{text}`: the context is not an object"))?;
            (rel, Some(context))
        }
        None => (text, None),
    };
    let rel = parse_relationship(relationship).map_err(|e| format!("`{text}`: {e}"))?;
    Ok(v1::CheckBulkPermissionsRequestItem {
        resource: Some((&rel.resource).into()),
        permission: rel.relation,
        subject: Some((&rel.subject).into()),
        context: context.as_ref().map(json_to_struct),
    })
}

/// CheckPermission of `item`, fully consistent.
async fn check_permission(channel: &Channel, item: &v1::CheckBulkPermissionsRequestItem) -> Answer {
    let request = v1::CheckPermissionRequest {
        consistency: fully_consistent(),
        resource: item.resource.clone(),
        permission: item.permission.clone(),
        subject: item.subject.clone(),
        context: item.context.clone(),
        ..Default::default()
    };
    let mut client = v1::permissions_service_client::PermissionsServiceClient::new(channel.clone());
    match client.check_permission(authed(request)).await {
        Ok(response) => {
            let response = response.into_inner();
            Answer::decided(
                response.permissionship,
                response.partial_caveat_info,
                response.optional_expires_at,
            )
        }
        Err(status) => Answer::Failed {
            code: status.code(),
            message: status.message().to_string(),
        },
    }
}

/// CheckBulkPermissions of `items` (in calls of at most 1,000), fully
/// consistent; one answer per item, in order.
async fn check_bulk(
    channel: &Channel,
    items: &[v1::CheckBulkPermissionsRequestItem],
) -> Vec<Answer> {
    let mut client = v1::permissions_service_client::PermissionsServiceClient::new(channel.clone());
    let mut answers = Vec::with_capacity(items.len());
    for chunk in items.chunks(1000) {
        let request = v1::CheckBulkPermissionsRequest {
            consistency: fully_consistent(),
            items: chunk.to_vec(),
            with_tracing: false,
        };
        let response = client
            .check_bulk_permissions(authed(request))
            .await
            .expect("a bulk check of valid items succeeds")
            .into_inner();
        assert_eq!(response.pairs.len(), chunk.len(), "one pair per item");
        answers.extend(response.pairs.into_iter().map(|pair| match pair.response {
            Some(v1::check_bulk_permissions_pair::Response::Item(item)) => {
                Answer::decided(item.permissionship, item.partial_caveat_info, None)
            }
            Some(v1::check_bulk_permissions_pair::Response::Error(status)) => Answer::Failed {
                code: tonic::Code::from_i32(status.code),
                message: status.message,
            },
            None => Answer::Failed {
                code: tonic::Code::Unknown,
                message: "a pair without a response".into(),
            },
        }));
    }
    answers
}

/// A channel to a public API, retried while it is not listening yet.
async fn connect(addr: SocketAddr) -> Channel {
    loop {
        match Channel::from_shared(format!("http://{addr}"))
            .expect("valid uri")
            .connect()
            .await
        {
            Ok(channel) => return channel,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// What running files through the cluster found.
#[derive(Default)]
struct ClusterRun {
    files: usize,
    /// Answers compared between the cluster's nodes and the single node.
    compared: usize,
    assertions: usize,
    peer_answers: u64,
    /// Lookups compared between a cluster node and the single node.
    lookups: usize,
    /// Lookup read steps the nodes sent to one another and got answered.
    peer_reads: u64,
    problems: Vec<String>,
}

/// Loads `path` into a fresh datastore shared by a three-node cluster and a
/// single node, then asks every node's public API every assertion
/// (CheckPermission) and every check of the file's matrix
/// (CheckBulkPermissions, `common::matrix`), and requires each cluster node
/// to answer exactly as the single node does, and the assertions to hold.
async fn run_file(path: &std::path::Path, run: &mut ClusterRun) {
    let name = path.display();
    let loaded = match validationfile::load(path) {
        Ok(loaded) => loaded,
        Err(e) => return run.problems.push(format!("{name}: {e}")),
    };
    let datastore = datastore();
    let (cluster, addrs) = start_cluster(datastore.clone()).await;
    let single = TestServer::start_with(datastore, Config::default()).await;
    let report = cluster[0].services.run_validation_file(&loaded).await;
    if !report.failures.is_empty() {
        for failure in &report.failures {
            run.problems.push(format!("node 0 (in-process): {failure}"));
        }
        return;
    }
    let schema = trellis::schema::compile(&loaded.schema).expect("the file's schema loaded");
    let assertions = loaded.file.assertions.clone().unwrap_or_default();
    let expected = [
        (ApiPermissionship::HasPermission, &assertions.assert_true),
        (
            ApiPermissionship::ConditionalPermission,
            &assertions.assert_caveated,
        ),
        (ApiPermissionship::NoPermission, &assertions.assert_false),
    ];
    let mut asserted = Vec::new();
    for (permissionship, texts) in expected {
        for text in texts {
            match check_item(text) {
                Ok(item) => asserted.push((text.as_str(), permissionship, item)),
                Err(e) => run.problems.push(format!("{name}: {e}")),
            }
        }
    }
    let matrix: Vec<v1::CheckBulkPermissionsRequestItem> = common::matrix::seen(&loaded, &schema)
        .checks(&schema)
        .iter()
        .map(
            |(object, relation, subject)| v1::CheckBulkPermissionsRequestItem {
                resource: Some(object.into()),
                permission: relation.clone(),
                subject: Some(subject.into()),
                context: None,
            },
        )
        .collect();

    let one = &single.channel;
    let mut single_asserted = Vec::new();
    for (_, _, item) in &asserted {
        single_asserted.push(check_permission(one, item).await);
    }
    let single_matrix = check_bulk(one, &matrix).await;
    for (i, node) in cluster.iter().enumerate() {
        let channel = connect(node.public).await;
        for ((text, permissionship, item), alone) in asserted.iter().zip(&single_asserted) {
            let answer = check_permission(&channel, item).await;
            run.compared += 1;
            if answer.permissionship() == Some(*permissionship) {
                run.assertions += 1;
            } else {
                run.problems.push(format!(
                    "{name}: node {i}: `{text}` should be {permissionship:?}, is {answer:?}"
                ));
            }
            if &answer != alone {
                run.problems.push(format!(
                    "{name}: node {i}: `{text}`: the cluster says {answer:?}, one node {alone:?}"
                ));
            }
        }
        let answers = check_bulk(&channel, &matrix).await;
        for ((item, answer), alone) in matrix.iter().zip(&answers).zip(&single_matrix) {
            run.compared += 1;
            if answer != alone {
                run.problems.push(format!(
                    "{name}: node {i}: {item:?}: the cluster says {answer:?}, one node {alone:?}"
                ));
            }
        }
    }
    compare_lookups(&name.to_string(), &loaded, &schema, one, &cluster, run).await;
    run.files += 1;
    run.peer_answers += answered_by_peers(&cluster, &addrs);
    run.peer_reads += reads_answered_by_peers(&cluster, &addrs);
}

/// Asks every LookupResources and LookupSubjects question the file invites
/// (`lookup_questions`) of the single node and of one cluster node (each
/// in turn), and requires the same results in the same order; then reads
/// each LookupResources answer in about three pages, each page from the
/// next node with the previous page's cursor, and requires the same results
/// again.
async fn compare_lookups(
    name: &str,
    loaded: &validationfile::LoadedFile,
    schema: &trellis::schema::CompiledSchema,
    one: &Channel,
    cluster: &[Running],
    run: &mut ClusterRun,
) {
    let mut channels = Vec::new();
    for node in cluster {
        channels.push(connect(node.public).await);
    }
    let (resources, subjects) = lookup_questions(&common::matrix::seen(loaded, schema), schema);
    let (resources, subjects) = (
        spread(resources, MAX_LOOKUPS),
        spread(subjects, MAX_LOOKUPS),
    );
    for (i, question) in resources.iter().enumerate() {
        let alone = lookup_resources(one, question, None).await;
        let node = i % channels.len();
        let answer = lookup_resources(&channels[node], question, None).await;
        // About three pages, so that each node serves one.
        let page = alone.as_ref().map_or(1, |found| found.len() / 3).max(1);
        let paged = lookup_resources_paged(&channels, question, page as u32).await;
        run.lookups += 1;
        for (how, answer) in [("streamed", answer), ("paged across the nodes", paged)] {
            if answer != alone {
                run.problems.push(format!(
                    "{name}: node {node}: LookupResources {question:?} {how}: the cluster says {answer:?}, one node {alone:?}"
                ));
            }
        }
    }
    for (i, question) in subjects.iter().enumerate() {
        let alone = lookup_subjects(one, question).await;
        let node = i % channels.len();
        let answer = lookup_subjects(&channels[node], question).await;
        run.lookups += 1;
        if answer != alone {
            run.problems.push(format!(
                "{name}: node {node}: LookupSubjects {question:?}: the cluster says {answer:?}, one node {alone:?}"
            ));
        }
    }
}

/// Lookups of each kind asked per file, at most: the largest files invite
/// thousands, and a sample spread over all of them keeps the suite short.
const MAX_LOOKUPS: usize = 150;

/// At most `max` of `items`, evenly spread over them (all when fewer).
fn spread<T>(items: Vec<T>, max: usize) -> Vec<T> {
    let step = items.len().div_ceil(max).max(1);
    items.into_iter().step_by(step).collect()
}

/// LookupResources questions: every relation or permission of every type
/// that has objects, for every subject seen; LookupSubjects questions:
/// every relation or permission of every object seen, for every subject
/// type and relation seen.
fn lookup_questions(
    seen: &common::matrix::Seen,
    schema: &trellis::schema::CompiledSchema,
) -> (
    Vec<v1::LookupResourcesRequest>,
    Vec<v1::LookupSubjectsRequest>,
) {
    let relations = |object_type: &str| -> Vec<String> {
        schema
            .definition(object_type)
            .map(|def| def.relations.iter().map(|r| r.name.clone()).collect())
            .unwrap_or_default()
    };
    let types: std::collections::BTreeSet<&str> = seen
        .objects
        .iter()
        .map(|o| o.object_type.as_str())
        .collect();
    let mut resources = Vec::new();
    for object_type in types {
        for permission in relations(object_type) {
            for subject in &seen.subjects {
                resources.push(v1::LookupResourcesRequest {
                    consistency: fully_consistent(),
                    resource_object_type: object_type.to_string(),
                    permission: permission.clone(),
                    subject: Some(subject.into()),
                    ..Default::default()
                });
            }
        }
    }
    let subject_kinds: std::collections::BTreeSet<(&str, &str)> = seen
        .subjects
        .iter()
        .map(|s| (s.object.object_type.as_str(), s.relation.as_str()))
        .collect();
    let mut subjects = Vec::new();
    for object in &seen.objects {
        for permission in relations(&object.object_type) {
            for (subject_type, relation) in &subject_kinds {
                subjects.push(v1::LookupSubjectsRequest {
                    consistency: fully_consistent(),
                    resource: Some(object.into()),
                    permission: permission.clone(),
                    subject_object_type: subject_type.to_string(),
                    optional_subject_relation: if *relation == "..." {
                        String::new()
                    } else {
                        relation.to_string()
                    },
                    ..Default::default()
                });
            }
        }
    }
    (resources, subjects)
}

/// One lookup result as a client sees it, without the cursor and token
/// (they name the revision, which is the same here, but are opaque).
#[derive(Debug, Clone, PartialEq)]
struct Found {
    id: String,
    permissionship: i32,
    missing_context: Vec<String>,
    /// LookupSubjects only: the wildcard's exclusions.
    excluded: Vec<(String, i32)>,
}

type Lookup = Result<Vec<Found>, (tonic::Code, String)>;

fn missing(partial: Option<v1::PartialCaveatInfo>) -> Vec<String> {
    let mut missing = partial
        .map(|p| p.missing_required_context)
        .unwrap_or_default();
    missing.sort();
    missing
}

/// LookupResources of `question` from `cursor` on: its results and the
/// last result's cursor.
async fn lookup_resources_page(
    channel: &Channel,
    question: &v1::LookupResourcesRequest,
    limit: u32,
    cursor: Option<v1::Cursor>,
) -> Result<(Vec<Found>, Option<v1::Cursor>), (tonic::Code, String)> {
    let failed = |status: tonic::Status| (status.code(), status.message().to_string());
    let mut client = v1::permissions_service_client::PermissionsServiceClient::new(channel.clone());
    let request = v1::LookupResourcesRequest {
        optional_limit: limit,
        optional_cursor: cursor,
        ..question.clone()
    };
    let mut stream = client
        .lookup_resources(authed(request))
        .await
        .map_err(failed)?
        .into_inner();
    let (mut found, mut last) = (Vec::new(), None);
    while let Some(item) = stream.message().await.map_err(failed)? {
        found.push(Found {
            id: item.resource_object_id,
            permissionship: item.permissionship,
            missing_context: missing(item.partial_caveat_info),
            excluded: Vec::new(),
        });
        last = item.after_result_cursor;
    }
    Ok((found, last))
}

async fn lookup_resources(
    channel: &Channel,
    question: &v1::LookupResourcesRequest,
    cursor: Option<v1::Cursor>,
) -> Lookup {
    lookup_resources_page(channel, question, 0, cursor)
        .await
        .map(|(found, _)| found)
}

/// Every page of `limit` results, page `k` asked of node `k mod n` with
/// page `k - 1`'s cursor.
async fn lookup_resources_paged(
    channels: &[Channel],
    question: &v1::LookupResourcesRequest,
    limit: u32,
) -> Lookup {
    let mut all = Vec::new();
    let mut cursor = None;
    for page in 0.. {
        let channel = &channels[page % channels.len()];
        let (found, last) = lookup_resources_page(channel, question, limit, cursor).await?;
        let full = found.len() == limit as usize;
        all.extend(found);
        if !full {
            break;
        }
        cursor = last;
    }
    Ok(all)
}

async fn lookup_subjects(channel: &Channel, question: &v1::LookupSubjectsRequest) -> Lookup {
    let failed = |status: tonic::Status| (status.code(), status.message().to_string());
    let mut client = v1::permissions_service_client::PermissionsServiceClient::new(channel.clone());
    let mut stream = client
        .lookup_subjects(authed(question.clone()))
        .await
        .map_err(failed)?
        .into_inner();
    let mut found = Vec::new();
    while let Some(item) = stream.message().await.map_err(failed)? {
        let subject = item.subject.unwrap_or_default();
        found.push(Found {
            id: subject.subject_object_id,
            permissionship: subject.permissionship,
            missing_context: missing(subject.partial_caveat_info),
            excluded: item
                .excluded_subjects
                .into_iter()
                .map(|e| (e.subject_object_id, e.permissionship))
                .collect(),
        });
    }
    Ok(found)
}

/// Lookup read steps the nodes sent to one another and got answered.
fn reads_answered_by_peers(cluster: &[Running], addrs: &[String]) -> u64 {
    cluster
        .iter()
        .flat_map(|node| {
            addrs
                .iter()
                .filter_map(|a| node.remote.reads_answered_by(a))
        })
        .sum()
}

/// Runs every file through `run_file` and asserts nothing disagreed.
async fn run_files(label: &str, files: &[std::path::PathBuf]) -> ClusterRun {
    let started = Instant::now();
    let mut run = ClusterRun::default();
    for path in files {
        run_file(path, &mut run).await;
    }
    println!(
        "{label}: {} files × 3 nodes: {} answers compared with one node's, {} assertions held, {} subproblems answered by a peer; {} lookups compared, {} lookup reads answered by a peer; in {:.1?}",
        run.files,
        run.compared,
        run.assertions,
        run.peer_answers,
        run.lookups,
        run.peer_reads,
        started.elapsed()
    );
    assert!(
        run.problems.is_empty(),
        "{} problems:\n{}",
        run.problems.len(),
        run.problems
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        run.peer_answers > 0,
        "the ring never sent a subproblem to a peer"
    );
    assert!(
        run.peer_reads > 0,
        "the ring never sent a lookup's read to a peer"
    );
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_schema_example_answers_through_every_node_as_one_node_does() {
    let files = common::files_with_extension(&common::repo().join("schema-examples"), "yaml");
    assert!(files.len() >= 8, "{files:?}");
    let run = run_files("schema examples", &files).await;
    assert_eq!(run.files, files.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_spicedb_test_config_answers_through_every_node_as_one_node_does() {
    let Some(dir) = common::shared_testconfigs() else {
        return;
    };
    let files = common::files_with_extension(&dir, "yaml");
    let run = run_files("SpiceDB test configs", &files).await;
    assert_eq!(run.files, files.len());
    assert!(run.files >= 73);
}

const SCHEMA: &str = "
definition user {}
definition group {
    relation member: user | group#member
}
definition document {
    relation viewer: user | group#member
    permission view = viewer
}";

/// Nested groups g0 ⊃ g1 ⊃ … ⊃ g5 with one user each, and documents all
/// viewable by g0: every check walks a chain of subproblems.
fn relationships() -> Vec<String> {
    let mut rels = Vec::new();
    for i in 0..5 {
        rels.push(format!("group:g{i}#member@group:g{}#member", i + 1));
    }
    for i in 0..6 {
        rels.push(format!("group:g{i}#member@user:u{i}"));
    }
    for d in 0..40 {
        rels.push(format!("document:d{d}#viewer@group:g0#member"));
    }
    rels
}

async fn load(services: &Services<MemoryDatastore>) {
    services.write_schema(SCHEMA).await.expect("valid schema");
    touch_all(services, &relationships())
        .await
        .expect("written");
}

/// Check number `n`: a document and a user, who may view it unless the
/// user is `nobody` (every seventh check); every fifth is followed by a
/// LookupResources and a LookupSubjects, whose reads the ring routes too.
async fn check(services: &Services<MemoryDatastore>, n: usize) -> Result<(), String> {
    if n % 5 == 4 {
        lookups(services, n).await?;
    }
    let user = if n % 7 == 6 {
        "nobody".to_string()
    } else {
        format!("u{}", n % 6)
    };
    let params = CheckParams {
        resource: ObjectRef::new("document", format!("d{}", n % 40)),
        permission: "view".into(),
        subject: SubjectRef::object("user", user.as_str()),
        context: Default::default(),
    };
    let expected = if user == "nobody" {
        Permissionship::NoPermission
    } else {
        Permissionship::HasPermission
    };
    match services.check(params, Consistency::FullyConsistent).await {
        Ok(outcome) if outcome.permissionship == expected => Ok(()),
        Ok(outcome) => Err(format!("check {n}: {:?}", outcome.permissionship)),
        Err(e) => Err(format!("check {n}: {e}")),
    }
}

/// The documents user `u{n mod 6}` views (exactly all 40) and the users
/// who view document `d{n mod 40}` (all 6, and any a test added later).
async fn lookups(services: &Services<MemoryDatastore>, n: usize) -> Result<(), String> {
    use futures::StreamExt as _;
    let params = LookupResourcesParams {
        resource_type: "document".into(),
        permission: "view".into(),
        subject: SubjectRef::object("user", format!("u{}", n % 6)),
        context: Default::default(),
        limit: None,
        cursor: None,
    };
    let (_, stream) = services
        .lookup_resources(params, Consistency::FullyConsistent)
        .await
        .map_err(|e| format!("lookup resources {n}: {e}"))?;
    let found: Vec<_> = stream.collect().await;
    let mut documents = Vec::new();
    for item in found {
        documents.push(item.map_err(|e| format!("lookup resources {n}: {e}"))?.id);
    }
    documents.sort();
    let mut expected: Vec<String> = (0..40).map(|d| format!("d{d}")).collect();
    expected.sort();
    if documents != expected {
        return Err(format!("lookup resources {n}: {documents:?}"));
    }
    let params = LookupSubjectsParams {
        resource: ObjectRef::new("document", format!("d{}", n % 40)),
        permission: "view".into(),
        subject_type: "user".into(),
        subject_relation: String::new(),
        context: Default::default(),
        include_wildcard: true,
        limit: None,
        cursor: None,
    };
    let (_, subjects) = services
        .lookup_subjects(params, Consistency::FullyConsistent)
        .await
        .map_err(|e| format!("lookup subjects {n}: {e}"))?;
    let users: Vec<String> = subjects.into_iter().map(|s| s.id).collect();
    if (0..6).any(|u| !users.contains(&format!("u{u}"))) {
        return Err(format!("lookup subjects {n}: {users:?}"));
    }
    Ok(())
}

/// A node whose peer server the test starts and stops by itself.
struct Member {
    node: Node<MemoryDatastore>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Member {
    async fn serve(&mut self, listener: TcpListener) {
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = self.node.dispatch.serving.clone();
        self.stop = Some(stop);
        self.server = Some(tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.await;
            };
            trellis::dispatch::server::serve(listener, serving, KEY, stopped)
                .await
                .expect("the peer server runs");
        }));
    }

    async fn stop_serving(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the peer server stops");
        }
    }

    fn remote(&self) -> &RemoteDispatcher {
        self.node
            .dispatch
            .remote
            .as_deref()
            .expect("upstreams configured")
    }
}

/// Three nodes over one datastore with the cache off, so that every check
/// keeps routing subproblems through the ring instead of hitting a cache.
async fn members() -> (Vec<Member>, Vec<String>) {
    let datastore = datastore();
    let (listeners, addrs) = peer_listeners().await;
    let mut members = Vec::new();
    for listener in listeners {
        let addr = listener.local_addr().expect("bound");
        let config = config(addr, &addrs, false);
        let node =
            trellis::server::node(datastore.clone(), &config, Some(addr)).expect("a valid cluster");
        let mut member = Member {
            node,
            addr,
            stop: None,
            server: None,
        };
        member.serve(listener).await;
        members.push(member);
    }
    load(&members[0].node.services).await;
    (members, addrs)
}

/// Runs `check`s on `services` until `done`, counting them and failures.
fn load_on(
    services: Arc<Services<MemoryDatastore>>,
    done: Arc<std::sync::atomic::AtomicBool>,
    checks: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0;
        while !done.load(Ordering::Relaxed) {
            if let Err(e) = check(&services, n).await {
                failures.lock().expect("not poisoned").push(e);
            }
            checks.fetch_add(1, Ordering::Relaxed);
            n += 1;
        }
    })
}

/// Polls `condition` every 50 ms until it holds or `limit` passes.
async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    condition()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checks_and_lookups_survive_a_peer_going_down_and_it_rejoins() {
    let (mut members, addrs) = members().await;
    let victim = addrs[2].clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checks = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let loads: Vec<_> = members[..2]
        .iter()
        .map(|m| {
            load_on(
                m.node.services.clone(),
                done.clone(),
                checks.clone(),
                failures.clone(),
            )
        })
        .collect();
    let answered = |members: &[Member]| -> u64 {
        members[..2]
            .iter()
            .map(|m| m.remote().answered_by(&victim).unwrap_or(0))
            .sum()
    };
    assert!(
        eventually(Duration::from_secs(10), || answered(&members) > 0).await,
        "node 2 never answered before the outage"
    );
    let reads = |members: &[Member]| -> u64 {
        members[..2]
            .iter()
            .map(|m| m.remote().reads_answered_by(&victim).unwrap_or(0))
            .sum()
    };
    assert!(
        eventually(Duration::from_secs(10), || reads(&members) > 0).await,
        "node 2 never answered a lookup's read before the outage"
    );

    members[2].stop_serving().await;
    let down = eventually(Duration::from_secs(10), || {
        members[..2]
            .iter()
            .all(|m| m.remote().is_up(&victim) == Some(false))
    })
    .await;
    assert!(down, "nodes 0 and 1 never noticed node 2 was down");
    let during = checks.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        checks.load(Ordering::Relaxed) > during,
        "no checks ran during the outage"
    );

    let listener = TcpListener::bind(members[2].addr)
        .await
        .expect("rebind node 2's peer port");
    members[2].serve(listener).await;
    let back = eventually(Duration::from_secs(10), || {
        members[..2]
            .iter()
            .all(|m| m.remote().is_up(&victim) == Some(true))
    })
    .await;
    assert!(back, "node 2 never rejoined");
    let before = answered(&members);
    assert!(
        eventually(Duration::from_secs(10), || answered(&members) > before).await,
        "the ring does not use node 2 again"
    );

    done.store(true, Ordering::Relaxed);
    for load in loads {
        load.await.expect("load task");
    }
    let failures = failures.lock().expect("not poisoned");
    println!(
        "{} checks (a fifth of them with two lookups) on nodes 0 and 1, {} failed",
        checks.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A peer call bearing `key`, or no key.
fn with_key<T>(message: T, key: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        let value = format!("Bearer {key}").parse().expect("ascii");
        request.metadata_mut().insert("authorization", value);
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_port_refuses_calls_without_the_key() {
    let (members, addrs) = members().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", addrs[0]))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the peer port");
    let mut client = proto::dispatch_service_client::DispatchServiceClient::new(channel);
    let call = |key: Option<&str>| {
        with_key(
            proto::DispatchCheckRequest {
                resource_type: "document".into(),
                resource_ids: vec!["d0".into()],
                relation: "view".into(),
                subject: Some(proto::Subject {
                    object_type: "user".into(),
                    object_id: "u0".into(),
                    relation: "...".into(),
                }),
                revision: "0".into(),
                depth_remaining: 50,
                results_setting: proto::ResultsSetting::AllowSingleResult as i32,
            },
            key,
        )
    };
    let missing = client
        .dispatch_check(call(None))
        .await
        .expect_err("refused");
    assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    let wrong = client
        .dispatch_check(call(Some("nope")))
        .await
        .expect_err("refused");
    assert_eq!(wrong.code(), tonic::Code::PermissionDenied);
    let right = client
        .dispatch_check(call(Some(KEY)))
        .await
        .expect("admitted");
    assert!(right.into_inner().outcome.is_some());

    // The read steps' RPC: the same key, and a malformed request is
    // refused with INVALID_ARGUMENT naming what is wrong.
    let read = |query: Option<proto::dispatch_read_request::Query>, key: Option<&str>| {
        let revision = "0".into();
        with_key(proto::DispatchReadRequest { query, revision }, key)
    };
    let by_resource = || {
        Some(proto::dispatch_read_request::Query::ByResource(
            proto::ByResource {
                resource_type: "document".into(),
                resource_ids: vec!["d0".into()],
                relation: "viewer".into(),
            },
        ))
    };
    let missing = client
        .dispatch_read(read(by_resource(), None))
        .await
        .expect_err("refused");
    assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    let malformed = client
        .dispatch_read(read(None, Some(KEY)))
        .await
        .expect_err("refused");
    assert_eq!(malformed.code(), tonic::Code::InvalidArgument);
    assert!(
        malformed.message().contains("read query"),
        "{}",
        malformed.message()
    );
    let mut answer = client
        .dispatch_read(read(by_resource(), Some(KEY)))
        .await
        .expect("admitted")
        .into_inner();
    let first = answer.message().await.expect("streams").expect("a message");
    assert!(first.outcome.is_some());
    drop(members);
}

/// Groups g0 ⊃ g1 ⊃ g2 ⊃ g0: a cycle in the data, spread by the ring over
/// the three nodes.
const CYCLE: &[&str] = &[
    "group:g0#member@group:g1#member",
    "group:g1#member@group:g2#member",
    "group:g2#member@group:g0#member",
    "group:g0#member@user:u0",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_depth_budget_travels_across_hops_so_a_cycle_ends_in_the_depth_error() {
    let datastore = datastore();
    let (cluster, addrs) = start_cluster(datastore).await;
    let services = &cluster[0].services;
    services.write_schema(SCHEMA).await.expect("valid schema");
    touch_all(services, CYCLE).await.expect("written");
    let item = |text: &str| check_item(text).expect("a valid check");
    for (i, node) in cluster.iter().enumerate() {
        let channel = connect(node.public).await;
        // Found through the cycle (g1 → g2 → g0), whichever node owns each step.
        let found = check_permission(&channel, &item("group:g1#member@user:u0")).await;
        assert_eq!(
            found.permissionship(),
            Some(ApiPermissionship::HasPermission),
            "node {i}: {found:?}"
        );
        // Not found: the walk goes round the cycle until the budget that
        // crossed every hop with it runs out. A budget reset at a hop would
        // never end; the guard turns that into a failure.
        let absent = item("group:g0#member@user:nobody");
        let answer = tokio::time::timeout(
            Duration::from_secs(120),
            check_permission(&channel, &absent),
        )
        .await
        .unwrap_or_else(|_| panic!("node {i}: the cyclic check did not end"));
        match answer {
            Answer::Failed { code, message } => {
                assert_eq!(code, tonic::Code::FailedPrecondition, "node {i}: {message}");
                assert!(
                    message.contains("max depth exceeded"),
                    "node {i}: {message}"
                );
            }
            other => panic!("node {i}: expected the depth error, got {other:?}"),
        }
    }
    assert!(
        answered_by_peers(&cluster, &addrs) > 0,
        "the cycle never crossed a node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dns_upstreams_resolve_to_the_members_and_rebuild_the_ring_only_on_change() {
    // `localhost` may resolve to ::1 as well; the nodes listen on
    // 127.0.0.1, and a name's IPv4 addresses are preferred.
    let (cluster, addrs) = start_cluster_listing(datastore(), |addr| {
        format!("dns:///localhost:{}", addr.port())
    })
    .await;
    load(&cluster[0].services).await;
    let mut expected = addrs.clone();
    expected.sort();
    // The first check starts each node's resolution; until it lands, the
    // nodes evaluate locally, and the checks pass either way.
    let mut n = 0;
    let resolved = eventually(Duration::from_secs(30), || {
        cluster.iter().all(|node| node.remote.members() == expected)
    });
    tokio::pin!(resolved);
    loop {
        tokio::select! {
            done = &mut resolved => {
                assert!(done, "members: {:?}", cluster.iter().map(|c| c.remote.members()).collect::<Vec<_>>());
                break;
            }
            _ = async {
                for node in &cluster {
                    check(&node.services, n).await.expect("a correct answer");
                }
            } => n += 1,
        }
    }
    let builds: Vec<u64> = cluster
        .iter()
        .map(|node| node.remote.ring_builds())
        .collect();
    // Resolving the same addresses again, and peers' connections going
    // idle between checks, never rebuild the ring.
    for node in &cluster {
        for _ in 0..3 {
            assert!(!node.remote.refresh().await.expect("localhost resolves"));
        }
    }
    // A write moves head, so the checks below miss the caches and route.
    touch_all(&cluster[0].services, &["group:g5#member@user:late"])
        .await
        .expect("written");
    let before = answered_by_peers(&cluster, &addrs);
    for i in 0..120 {
        for node in &cluster {
            check(&node.services, i).await.expect("a correct answer");
        }
    }
    assert_eq!(
        cluster
            .iter()
            .map(|node| node.remote.ring_builds())
            .collect::<Vec<_>>(),
        builds
    );
    assert!(
        answered_by_peers(&cluster, &addrs) > before,
        "the ring never sent a subproblem to a peer"
    );
}
