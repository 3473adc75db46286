//! Membership changes of the remote dispatcher over a scripted resolver:
//! the ring is rebuilt exactly when the set of resolved addresses changes,
//! and a peer's state survives a rebuild that keeps it; a down owner's
//! share moves to the next member; reads a dead peer owns are answered here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::membership::Resolver;
use super::*;
use crate::dispatch::settings::ClusterSettings;

/// Answers lookups from a table the test edits; a name it lacks fails as
/// an unknown host does.
#[derive(Default)]
struct FakeResolver {
    records: Mutex<HashMap<String, std::io::Result<Vec<SocketAddr>>>>,
}

impl FakeResolver {
    fn set(&self, name: &str, addresses: &[&str]) {
        let addresses = addresses
            .iter()
            .map(|a| a.parse().expect("a socket address"))
            .collect();
        self.records
            .lock()
            .expect("not poisoned")
            .insert(name.to_string(), Ok(addresses));
    }

    fn fail(&self, name: &str) {
        self.records.lock().expect("not poisoned").insert(
            name.to_string(),
            Err(std::io::Error::other("resolver unavailable")),
        );
    }
}

impl Resolver for FakeResolver {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        let answer = match self.records.lock().expect("not poisoned").get(name) {
            Some(Ok(addresses)) => Ok(addresses
                .iter()
                .map(|a| SocketAddr::new(a.ip(), port))
                .collect()),
            Some(Err(e)) => Err(std::io::Error::new(e.kind(), e.to_string())),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "unknown host",
            )),
        };
        Box::pin(async move { answer })
    }
}

/// A local evaluator these tests never reach.
struct Unreachable;

impl Dispatcher for Unreachable {
    fn check(&self, _: CheckRequest) -> BoxFuture<'_, Result<CheckResult, CheckError>> {
        Box::pin(async { Err(CheckError::NoSchema) })
    }

    fn read(&self, _: ReadRequest) -> BoxFuture<'_, Result<ReadResult, CheckError>> {
        Box::pin(async { Err(CheckError::NoSchema) })
    }
}

fn dispatcher(upstreams: &[&str], resolver: Arc<FakeResolver>) -> Arc<RemoteDispatcher> {
    let settings = ClusterSettings {
        enabled: true,
        addr: "0.0.0.0:50053".parse().expect("address"),
        preshared_key: Some("key".into()),
        upstreams: upstreams.iter().map(|u| u.to_string()).collect(),
        ..ClusterSettings::default()
    };
    RemoteDispatcher::with_resolver(&settings, Arc::new(Unreachable), resolver)
        .expect("a valid cluster")
}

const PEERS: &str = "dns:///peers.test:50053";

#[tokio::test]
async fn the_ring_is_rebuilt_only_when_the_resolved_set_changes() {
    let resolver = Arc::new(FakeResolver::default());
    let remote = dispatcher(&[PEERS], resolver.clone());
    // Before the first resolution the ring is empty: everything is local.
    assert!(remote.members().is_empty());
    assert_eq!(remote.ring_builds(), 1);

    resolver.set("peers.test", &["10.0.0.2:0", "10.0.0.1:0"]);
    assert!(remote.refresh().await.expect("resolves"));
    assert_eq!(remote.members(), ["10.0.0.1:50053", "10.0.0.2:50053"]);
    assert_eq!(remote.ring_builds(), 2);

    // The same set in another order, again and again: no rebuild.
    resolver.set("peers.test", &["10.0.0.1:0", "10.0.0.2:0"]);
    for _ in 0..3 {
        assert!(!remote.refresh().await.expect("resolves"));
    }
    assert_eq!(remote.ring_builds(), 2);

    // A failed lookup keeps the ring as it is.
    resolver.fail("peers.test");
    assert!(remote.refresh().await.is_err());
    assert_eq!(remote.members(), ["10.0.0.1:50053", "10.0.0.2:50053"]);
    assert_eq!(remote.ring_builds(), 2);

    // A third pod joins; later the first leaves.
    resolver.set("peers.test", &["10.0.0.1:0", "10.0.0.2:0", "10.0.0.3:0"]);
    assert!(remote.refresh().await.expect("resolves"));
    assert_eq!(remote.members().len(), 3);
    resolver.set("peers.test", &["10.0.0.2:0", "10.0.0.3:0"]);
    assert!(remote.refresh().await.expect("resolves"));
    assert_eq!(remote.members(), ["10.0.0.2:50053", "10.0.0.3:50053"]);
    assert_eq!(remote.ring_builds(), 4);
}

#[tokio::test]
async fn a_peer_that_stays_keeps_its_state_across_a_rebuild() {
    let resolver = Arc::new(FakeResolver::default());
    let remote = dispatcher(&[PEERS], resolver.clone());
    resolver.set("peers.test", &["10.0.0.1:0", "10.0.0.2:0"]);
    remote.refresh().await.expect("resolves");
    let kept = remote.snapshot().peers[0].clone();
    kept.down.store(true, Ordering::Release);
    kept.answered.store(7, Ordering::Relaxed);

    resolver.set("peers.test", &["10.0.0.1:0", "10.0.0.2:0", "10.0.0.3:0"]);
    assert!(remote.refresh().await.expect("resolves"));
    assert_eq!(remote.is_up("10.0.0.1:50053"), Some(false));
    assert_eq!(remote.answered_by("10.0.0.1:50053"), Some(7));
    assert!(Arc::ptr_eq(&kept, &remote.snapshot().peers[0]));
    assert_eq!(remote.is_up("10.0.0.3:50053"), Some(true));
}

#[tokio::test]
async fn a_dual_stack_name_puts_each_host_on_the_ring_once() {
    let resolver = Arc::new(FakeResolver::default());
    let remote = dispatcher(
        &["dns:///localhost:4000", "10.9.9.9:4000"],
        resolver.clone(),
    );
    // Static members make the first ring.
    assert_eq!(remote.members(), ["10.9.9.9:4000"]);
    resolver.set("localhost", &["[::1]:0", "127.0.0.1:0"]);
    assert!(remote.refresh().await.expect("resolves"));
    assert_eq!(remote.members(), ["10.9.9.9:4000", "127.0.0.1:4000"]);
    resolver.set("localhost", &["[::1]:0"]);
    assert!(remote.refresh().await.expect("resolves"));
    assert_eq!(remote.members(), ["10.9.9.9:4000", "[::1]:4000"]);
}

#[tokio::test]
async fn a_node_finds_itself_among_the_resolved_members() {
    let resolver = Arc::new(FakeResolver::default());
    let name = membership::hostname().expect("this machine has a hostname");
    resolver.set(&name, &["10.0.0.2:0"]);
    resolver.set("peers.test", &["10.0.0.1:0", "10.0.0.2:0", "10.0.0.3:0"]);
    let remote = dispatcher(&[PEERS], resolver);
    remote.refresh().await.expect("resolves");
    let selves: Vec<String> = remote
        .snapshot()
        .peers
        .iter()
        .filter(|p| p.is_self)
        .map(|p| p.address.clone())
        .collect();
    assert_eq!(selves, ["10.0.0.2:50053"]);
}

/// A pseudo-random subproblem (xorshift, reproducible).
fn subproblem(state: &mut u64) -> CheckRequest {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    CheckRequest {
        resource_type: "document".into(),
        resource_ids: vec![format!("doc{}", *state)],
        relation: "view".into(),
        subject: crate::model::SubjectRef::object("user", "u"),
        revision: crate::model::Revision(1),
        depth_remaining: 50,
        results_setting: crate::dispatch::ResultsSetting::AllowSingleResult,
    }
}

#[test]
fn a_down_owners_share_goes_to_the_next_member_up() {
    let members = ["10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"];
    let settings = ClusterSettings {
        preshared_key: Some("key".into()),
        upstreams: members.iter().map(|m| m.to_string()).collect(),
        self_addr: Some(members[0].into()),
        ..ClusterSettings::default()
    };
    let remote = RemoteDispatcher::new(&settings, Arc::new(Unreachable)).expect("a valid cluster");
    let snapshot = remote.snapshot();
    snapshot.peers[1].down.store(true, Ordering::Release);
    let routed_to = |route: Route| match route {
        Route::Here => members[0].to_string(),
        Route::Peer(peer) => peer.address.clone(),
    };
    let (mut moved_here, mut moved_on) = (0, 0);
    let mut state = 3;
    for _ in 0..1000 {
        let request = subproblem(&mut state);
        let order = snapshot.ring.successors(&RoutingKey::of(&request));
        let to = routed_to(remote.route(&RoutingKey::of(&request)));
        if order[0] != 1 {
            assert_eq!(to, members[order[0]], "an owner that is up keeps its keys");
            continue;
        }
        assert_eq!(
            to, members[order[1]],
            "the next member takes a down owner's keys"
        );
        if order[1] == 0 {
            moved_here += 1;
        } else {
            moved_on += 1;
        }
    }
    assert!(moved_here > 0 && moved_on > 0, "{moved_here} {moved_on}");
    // With every peer down, everything is evaluated here.
    snapshot.peers[2].down.store(true, Ordering::Release);
    for _ in 0..100 {
        let request = subproblem(&mut state);
        assert!(matches!(
            remote.route(&RoutingKey::of(&request)),
            Route::Here
        ));
    }
}

/// A local evaluator that answers every read with one relationship per id.
struct Echo;

impl Dispatcher for Echo {
    fn check(&self, _: CheckRequest) -> BoxFuture<'_, Result<CheckResult, CheckError>> {
        Box::pin(async { Ok(CheckResult::default()) })
    }

    fn read(&self, request: ReadRequest) -> BoxFuture<'_, Result<ReadResult, CheckError>> {
        Box::pin(async move {
            let crate::dispatch::ReadQuery::ByResource {
                resource_type,
                resource_ids,
                relation,
            } = request.query()
            else {
                return Ok(ReadResult::default());
            };
            let relationships = resource_ids
                .iter()
                .map(|id| crate::model::Relationship {
                    resource: crate::model::ObjectRef::new(resource_type.clone(), id.clone()),
                    relation: relation.clone(),
                    subject: crate::model::SubjectRef::object("user", "u"),
                    caveat: None,
                    expires_at: None,
                })
                .collect();
            Ok(ReadResult::sorted(relationships))
        })
    }
}

#[tokio::test]
async fn reads_owned_by_a_dead_peer_are_answered_here_and_the_peer_marked_down() {
    // Nothing listens on port 1 of loopback: every call to it fails fast.
    let members = ["127.0.0.1:50053", "127.0.0.1:1"];
    let settings = ClusterSettings {
        preshared_key: Some("key".into()),
        upstreams: members.iter().map(|m| m.to_string()).collect(),
        self_addr: Some(members[0].into()),
        ..ClusterSettings::default()
    };
    let remote = RemoteDispatcher::new(&settings, Arc::new(Echo)).expect("a valid cluster");
    let mut routed_to_dead = 0;
    for i in 0..40 {
        let request = ReadRequest::new(
            crate::dispatch::ReadQuery::ByResource {
                resource_type: "document".into(),
                resource_ids: vec![format!("doc{i}")],
                relation: "viewer".into(),
            },
            crate::model::Revision(1),
        );
        if let Route::Peer(_) = remote.route(&RoutingKey::of_read(&request)) {
            routed_to_dead += 1;
        }
        let result = remote.read(request).await.expect("answered here");
        assert_eq!(result.relationships.len(), 1);
        assert_eq!(
            result.relationships[0].resource.object_id,
            format!("doc{i}")
        );
    }
    assert!(routed_to_dead > 0, "the dead peer owned none of the reads");
    assert_eq!(remote.is_up(members[1]), Some(false));
    assert_eq!(remote.reads_answered_by(members[1]), Some(0));
}
