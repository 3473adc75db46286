//! A three-node dispatch cluster on loopback, in one process over one
//! shared datastore (every node must see the same data, as nodes of one
//! PostgreSQL do): every schema example passes through every node; checks
//! keep succeeding while a node's peer server is down and the ring uses it
//! again once it is back; the peer port refuses calls without the key.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use trellis::config::Config;
use trellis::datastore::memory::MemoryDatastore;
use trellis::datastore::{RevisionConfig, SystemClock};
use trellis::dispatch::remote::RemoteDispatcher;
use trellis::dispatch::remote::proto;
use trellis::dispatch::settings::{ClusterSettings, DispatchSettings};
use trellis::model::{
    Consistency, ObjectRef, RelationshipUpdate, SubjectRef, UpdateOperation, parse_relationship,
};
use trellis::server::Node;
use trellis::service::{CheckParams, Permissionship, Services, WriteParams};
use trellis::validationfile;

const KEY: &str = "cluster-test-key";

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
    let (listeners, addrs) = peer_listeners().await;
    let mut nodes = Vec::new();
    for peer_listener in listeners {
        let peer_addr = peer_listener.local_addr().expect("bound");
        let config = config(peer_addr, &addrs, true);
        let node = trellis::server::node(datastore.clone(), &config, Some(peer_addr))
            .expect("a valid cluster");
        let services = node.services.clone();
        let remote = node.dispatch.remote.clone().expect("upstreams configured");
        let public = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the API");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_schema_example_passes_through_every_node() {
    let files = common::files_with_extension(&common::repo().join("schema-examples"), "yaml");
    assert!(files.len() >= 8, "{files:?}");
    let mut failures = Vec::new();
    let mut assertions = 0;
    let mut peer_answers = 0;
    for path in &files {
        let loaded = validationfile::load(path).expect("the example loads");
        let (cluster, addrs) = start_cluster(datastore()).await;
        // Each node loads the file (TOUCH: the same data again) and checks
        // every assertion through its own chain and the ring.
        for (i, node) in cluster.iter().enumerate() {
            let report = node.services.run_validation_file(&loaded).await;
            assertions += report.assertions_passed;
            for failure in &report.failures {
                failures.push(format!("node {i}: {failure}"));
            }
        }
        peer_answers += answered_by_peers(&cluster, &addrs);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!(
        "{} files × 3 nodes: {assertions} assertions passed; {peer_answers} subproblems answered by a peer",
        files.len()
    );
    assert!(
        peer_answers > 0,
        "the ring never sent a subproblem to a peer"
    );
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
    let updates = relationships()
        .iter()
        .map(|r| RelationshipUpdate {
            operation: UpdateOperation::Touch,
            relationship: parse_relationship(r).expect("valid relationship"),
        })
        .collect();
    services
        .write_relationships(WriteParams {
            updates,
            ..Default::default()
        })
        .await
        .expect("written");
}

/// Check number `n`: a document and a user, who may view it unless the
/// user is `nobody` (every seventh check).
async fn check(services: &Services<MemoryDatastore>, n: usize) -> Result<(), String> {
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
async fn checks_survive_a_peer_going_down_and_it_rejoins() {
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
        "{} checks on nodes 0 and 1, {} failed",
        checks.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
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
        let mut request = tonic::Request::new(proto::DispatchCheckRequest {
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
        });
        if let Some(key) = key {
            let value = format!("Bearer {key}").parse().expect("ascii");
            request.metadata_mut().insert("authorization", value);
        }
        request
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
    drop(members);
}
