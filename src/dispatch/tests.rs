//! The decorators' behaviour, without timings: the cache and singleflight
//! over scripted inner dispatchers that count their calls, and the whole
//! chain (`builder`) over the memory datastore on cyclic data.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;

use super::caching::CachingDispatcher;
use super::singleflight::SingleflightDispatcher;
use super::*;
use crate::graph::Membership;
use crate::model::{Revision, SubjectRef};

/// Depth an answer of `Scripted` needs, unless a test says otherwise.
const NEEDED_DEPTH: u32 = 5;

/// An inner dispatcher that counts calls and answers "member" for every
/// id, after the gate (if any) lets it through. Requests with less depth
/// than `needed_depth` fail as the engine would.
struct Scripted {
    calls: AtomicUsize,
    gate: Option<Arc<Semaphore>>,
    needed_depth: u32,
    fail: bool,
    expires_at: Option<SystemTime>,
}

impl Scripted {
    fn new() -> Self {
        Self {
            calls: AtomicUsize::new(0),
            gate: None,
            needed_depth: NEEDED_DEPTH,
            fail: false,
            expires_at: None,
        }
    }

    /// A dispatcher whose calls wait until the returned gate gets permits.
    fn gated() -> (Self, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        let scripted = Self {
            gate: Some(Arc::clone(&gate)),
            ..Self::new()
        };
        (scripted, gate)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Dispatcher for Scripted {
    fn check(&self, request: CheckRequest) -> BoxFuture<'_, Result<CheckResult, CheckError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Some(gate) = &self.gate {
                let _permit = gate.acquire().await.expect("gate never closed");
            }
            if self.fail {
                return Err(CheckError::NoSchema);
            }
            if request.depth_remaining < self.needed_depth {
                return Err(CheckError::MaxDepthExceeded);
            }
            Ok(CheckResult {
                memberships: request
                    .resource_ids
                    .iter()
                    .map(|id| (id.clone(), Membership::Member))
                    .collect(),
                dispatch_count: 3,
                cached_dispatch_count: 0,
                depth_required: self.needed_depth,
                expires_at: self.expires_at,
            })
        })
    }

    /// One relationship per subject id asked for.
    fn read(&self, request: ReadRequest) -> BoxFuture<'_, Result<ReadResult, CheckError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                return Err(CheckError::NoSchema);
            }
            let ReadQuery::BySubject(query) = request.query() else {
                return Ok(ReadResult::default());
            };
            let relationships = query
                .subject_ids
                .iter()
                .map(|id| crate::model::Relationship {
                    resource: crate::model::ObjectRef::new("document", format!("of-{id}")),
                    relation: query.resource_relation.clone(),
                    subject: SubjectRef::object(query.subject_type.clone(), id.clone()),
                    caveat: None,
                    expires_at: self.expires_at,
                })
                .collect();
            Ok(ReadResult::sorted(relationships))
        })
    }
}

fn request(revision: u128, depth: u32) -> CheckRequest {
    CheckRequest {
        resource_type: "document".into(),
        resource_ids: vec!["b".into(), "a".into()],
        relation: "view".into(),
        subject: SubjectRef::object("user", "alice"),
        revision: Revision(revision),
        depth_remaining: depth,
        results_setting: ResultsSetting::AllowSingleResult,
    }
}

fn cache_over(inner: &Arc<Scripted>) -> CachingDispatcher {
    let inner: Arc<dyn Dispatcher> = inner.clone();
    CachingDispatcher::new(inner, 1 << 20, Duration::from_secs(3600))
}

fn singleflight_over(inner: &Arc<Scripted>) -> SingleflightDispatcher {
    let inner: Arc<dyn Dispatcher> = inner.clone();
    SingleflightDispatcher::new(inner)
}

// The cache.

#[tokio::test]
async fn a_repeated_subproblem_is_served_without_the_inner_dispatcher() {
    let inner = Arc::new(Scripted::new());
    let cache = cache_over(&inner);
    let first = cache.check(request(1, 50)).await.expect("answered");
    assert_eq!((first.dispatch_count, first.cached_dispatch_count), (3, 0));

    // The ids in another order ask the same question.
    let mut reordered = request(1, 50);
    reordered.resource_ids.reverse();
    let second = cache.check(reordered).await.expect("answered");
    assert_eq!(inner.calls(), 1);
    assert_eq!(second.memberships, first.memberships);
    // Nothing was computed for it; what it once took is reported as cached.
    assert_eq!(
        (second.dispatch_count, second.cached_dispatch_count),
        (0, 3)
    );
    assert_eq!(second.depth_required, NEEDED_DEPTH);
}

#[tokio::test]
async fn an_answer_is_never_served_for_another_revision() {
    let inner = Arc::new(Scripted::new());
    let cache = cache_over(&inner);
    cache.check(request(1, 50)).await.expect("answered");
    let other = cache.check(request(2, 50)).await.expect("answered");
    assert_eq!(inner.calls(), 2);
    assert_eq!(other.dispatch_count, 3);
}

#[tokio::test]
async fn a_shallower_request_does_not_take_an_answer_that_needed_more_depth() {
    let inner = Arc::new(Scripted::new());
    let cache = cache_over(&inner);
    cache.check(request(1, 50)).await.expect("answered");

    // Computed instead, and this engine cannot answer with so little depth.
    let shallow = cache.check(request(1, NEEDED_DEPTH - 1)).await;
    assert_eq!(shallow, Err(CheckError::MaxDepthExceeded));
    assert_eq!(inner.calls(), 2);

    // Exactly the depth it needed is enough; the failure replaced nothing.
    let enough = cache.check(request(1, NEEDED_DEPTH)).await.expect("hit");
    assert_eq!(enough.dispatch_count, 0);
    assert_eq!(inner.calls(), 2);
}

#[tokio::test]
async fn failures_and_expiring_answers_are_not_cached() {
    let failing = Arc::new(Scripted {
        fail: true,
        ..Scripted::new()
    });
    let cache = cache_over(&failing);
    for _ in 0..2 {
        assert_eq!(cache.check(request(1, 50)).await, Err(CheckError::NoSchema));
    }
    assert_eq!(failing.calls(), 2);
    assert_eq!(cache.entry_count(), 0);

    let expiring = Arc::new(Scripted {
        expires_at: Some(SystemTime::UNIX_EPOCH),
        ..Scripted::new()
    });
    let cache = cache_over(&expiring);
    for _ in 0..2 {
        cache.check(request(1, 50)).await.expect("answered");
    }
    assert_eq!(expiring.calls(), 2);
}

#[tokio::test]
async fn the_cache_stays_within_its_byte_budget() {
    let inner = Arc::new(Scripted::new());
    let inner_dyn: Arc<dyn Dispatcher> = inner.clone();
    let budget = 16 * 1024;
    let cache = CachingDispatcher::new(inner_dyn, budget, Duration::from_secs(3600));
    for revision in 0..1000 {
        cache.check(request(revision, 50)).await.expect("answered");
    }
    let held = cache.entry_count();
    // Each entry costs a few hundred bytes: far fewer than 1000 fit.
    assert!(held > 0 && held < 100, "{held} entries held");
}

fn read_step(revision: u128, ids: &[&str]) -> ReadRequest {
    ReadRequest::new(
        ReadQuery::BySubject(crate::datastore::ReverseQuery {
            subject_type: "user".into(),
            subject_ids: ids.iter().map(|id| id.to_string()).collect(),
            subject_relation: Some("...".into()),
            resource_type: "document".into(),
            resource_relation: "viewer".into(),
        }),
        Revision(revision),
    )
}

#[tokio::test]
async fn a_repeated_read_step_is_served_from_the_cache_at_its_revision_only() {
    let inner = Arc::new(Scripted::new());
    let cache = cache_over(&inner);
    let first = cache.read(read_step(1, &["b", "a"])).await.expect("read");
    assert_eq!(first.relationships.len(), 2);
    // The ids in another order ask the same question.
    let again = cache.read(read_step(1, &["a", "b", "a"])).await;
    assert_eq!(again.expect("read"), first);
    assert_eq!(inner.calls(), 1);
    // A check with the same revision is another entry, not this one.
    cache.check(request(1, 50)).await.expect("answered");
    assert_eq!(inner.calls(), 2);
    cache.read(read_step(2, &["a", "b"])).await.expect("read");
    assert_eq!(inner.calls(), 3);
    assert_eq!(cache.entry_count(), 3);
}

#[tokio::test]
async fn failed_and_expiring_read_steps_are_not_cached() {
    for scripted in [
        Scripted {
            fail: true,
            ..Scripted::new()
        },
        Scripted {
            expires_at: Some(SystemTime::UNIX_EPOCH),
            ..Scripted::new()
        },
    ] {
        let inner = Arc::new(scripted);
        let cache = cache_over(&inner);
        for _ in 0..2 {
            let _ = cache.read(read_step(1, &["a"])).await;
        }
        assert_eq!(inner.calls(), 2);
        assert_eq!(cache.entry_count(), 0);
    }
}

// Singleflight.

#[tokio::test]
async fn concurrent_identical_subproblems_are_computed_once() {
    let (inner, gate) = Scripted::gated();
    let inner = Arc::new(inner);
    let singleflight = singleflight_over(&inner);
    let mut waiting: Vec<_> = (0..8).map(|_| singleflight.check(request(1, 50))).collect();
    for future in &mut waiting {
        assert!(futures::poll!(future).is_pending());
    }
    assert_eq!(singleflight.in_flight(), 1);
    gate.add_permits(100);
    let results = futures::future::join_all(waiting).await;
    assert_eq!(inner.calls(), 1);
    for result in results {
        assert_eq!(result.expect("shared answer").memberships.len(), 2);
    }
    assert_eq!(singleflight.in_flight(), 0);
}

#[tokio::test]
async fn requests_at_different_depths_do_not_share() {
    let (inner, gate) = Scripted::gated();
    let inner = Arc::new(inner);
    let singleflight = singleflight_over(&inner);
    let mut deep = singleflight.check(request(1, 50));
    let mut shallower = singleflight.check(request(1, 49));
    assert!(futures::poll!(&mut deep).is_pending());
    assert!(futures::poll!(&mut shallower).is_pending());
    assert_eq!(singleflight.in_flight(), 2);
    gate.add_permits(100);
    let (a, b) = futures::join!(deep, shallower);
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(inner.calls(), 2);
}

/// A guard against a hang turning into a stuck test run; no assertion
/// depends on how long anything takes.
async fn finishes<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("finished instead of hanging")
}

#[tokio::test]
async fn a_cancelled_leader_does_not_strand_its_followers() {
    let (inner, gate) = Scripted::gated();
    let inner = Arc::new(inner);
    let singleflight = singleflight_over(&inner);
    let mut leader = singleflight.check(request(1, 50));
    assert!(futures::poll!(&mut leader).is_pending());
    let mut follower = singleflight.check(request(1, 50));
    assert!(futures::poll!(&mut follower).is_pending());
    assert_eq!(inner.calls(), 1);

    drop(leader);
    gate.add_permits(100);
    let result = finishes(follower).await.expect("the follower's answer");
    assert_eq!(result.memberships.len(), 2);
    // The follower finished the leader's computation rather than starting one.
    assert_eq!(inner.calls(), 1);
    assert_eq!(singleflight.in_flight(), 0);
}

#[tokio::test]
async fn an_abandoned_computation_is_forgotten_and_restarted() {
    let (inner, gate) = Scripted::gated();
    let inner = Arc::new(inner);
    let singleflight = singleflight_over(&inner);
    let mut abandoned = singleflight.check(request(1, 50));
    assert!(futures::poll!(&mut abandoned).is_pending());
    drop(abandoned);
    assert_eq!(singleflight.in_flight(), 0);

    gate.add_permits(100);
    let result = finishes(singleflight.check(request(1, 50))).await;
    assert!(result.is_ok());
    assert_eq!(inner.calls(), 2);
}

#[tokio::test]
async fn a_failure_reaches_every_waiter() {
    let (inner, gate) = Scripted::gated();
    let inner = Arc::new(Scripted {
        fail: true,
        ..inner
    });
    let singleflight = singleflight_over(&inner);
    let mut first = singleflight.check(request(1, 50));
    let mut second = singleflight.check(request(1, 50));
    assert!(futures::poll!(&mut first).is_pending());
    assert!(futures::poll!(&mut second).is_pending());
    gate.add_permits(100);
    let (a, b) = futures::join!(first, second);
    assert_eq!(a, Err(CheckError::NoSchema));
    assert_eq!(b, Err(CheckError::NoSchema));
    assert_eq!(inner.calls(), 1);
}

// The whole chain over the memory datastore.

mod chain {
    use super::*;
    use crate::datastore::RevisionConfig;
    use crate::datastore::memory::MemoryDatastore;
    use crate::model::Consistency;
    use crate::service::{CheckParams, Limits, Permissionship, Services};

    /// Groups nest in a cycle: a contains b, b contains a.
    const SCHEMA: &str = "definition user {}
definition group {
    relation member: group#member | user
}";

    async fn cyclic_groups() -> Arc<Services<MemoryDatastore>> {
        let services =
            crate::server::services(Arc::new(MemoryDatastore::default()), Limits::default());
        services.write_schema(SCHEMA).await.expect("valid schema");
        crate::service::test_support::touch_all(
            &services,
            &[
                "group:a#member@group:b#member",
                "group:b#member@group:c#member",
                "group:c#member@group:a#member",
                "group:c#member@user:tom",
            ],
        )
        .await
        .expect("written");
        services
    }

    fn member(group: &str, user: &str) -> CheckParams {
        CheckParams {
            resource: crate::model::ObjectRef::new("group", group),
            permission: "member".into(),
            subject: SubjectRef::object("user", user),
            context: Default::default(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cyclic_data_answers_through_the_cached_chain() {
        let services = cyclic_groups().await;
        let check = |group: &'static str, user: &'static str| {
            let services = Arc::clone(&services);
            tokio::spawn(async move {
                services
                    .check(member(group, user), Consistency::FullyConsistent)
                    .await
            })
        };
        // Many at once, so identical subproblems meet in singleflight and
        // in the cache while the cycle is being walked.
        let mut running = Vec::new();
        for _ in 0..4 {
            for group in ["a", "b", "c"] {
                running.push(("tom", check(group, "tom")));
                running.push(("jerry", check(group, "jerry")));
            }
        }
        for (user, task) in running {
            let outcome = finishes(task).await.expect("task ran");
            match user {
                "tom" => assert_eq!(
                    outcome.expect("tom is found").permissionship,
                    Permissionship::HasPermission
                ),
                // Nobody finds jerry: the walk around the cycle ends at the
                // depth limit, as in SpiceDB, rather than hanging.
                _ => assert!(
                    matches!(
                        outcome,
                        Err(crate::service::ServiceError::MaxDepthExceeded)
                            | Ok(crate::service::CheckOutcome {
                                permissionship: Permissionship::NoPermission,
                                ..
                            })
                    ),
                    "{outcome:?}"
                ),
            }
        }
    }

    #[tokio::test]
    async fn a_repeated_check_is_answered_from_the_cache() {
        let services = cyclic_groups().await;
        let revision = services
            .revision_for(Consistency::FullyConsistent)
            .await
            .expect("head");
        let at = Consistency::AtExactSnapshot(revision);
        let first = services.check(member("a", "tom"), at).await;
        let first = first.expect("answered");
        assert!(first.dispatch_count > 1, "{first:?}");
        let again = services.check(member("a", "tom"), at).await;
        let again = again.expect("answered");
        assert_eq!(again.permissionship, Permissionship::HasPermission);
        assert_eq!(again.dispatch_count, 0);
    }

    #[tokio::test]
    async fn the_chain_without_a_cache_still_answers() {
        let datastore = Arc::new(MemoryDatastore::default());
        let services = crate::server::services_with(
            datastore,
            Limits::default(),
            &settings::DispatchSettings {
                cache_enabled: false,
                ..Default::default()
            },
            &RevisionConfig::default(),
        );
        services.write_schema(SCHEMA).await.expect("valid schema");
        let outcome = services
            .check(member("a", "tom"), Consistency::FullyConsistent)
            .await
            .expect("answered");
        assert_eq!(outcome.permissionship, Permissionship::NoPermission);
    }
}

mod deep {
    use super::*;
    use crate::datastore::memory::MemoryDatastore;
    use crate::model::{Consistency, parse_relationship};
    use crate::service::{CheckParams, Limits, Permissionship};

    /// A permission that recurses through an arrow inside an intersection,
    /// over cyclic data (a differential-test case): checks walk to the
    /// depth limit with several frames per level.
    const SCHEMA: &str = "definition user {}
definition group {
    relation owner: user | group#admin
    relation admin: group
    permission share = ((admin & admin->share) + admin - nil) + (admin + owner) + admin
}";

    const RELATIONSHIPS: &[&str] = &[
        "group:g2#owner@group:g2#admin",
        "group:g1#admin@group:g1",
        "group:g3#admin@group:g2",
        "group:g1#admin@group:g2",
        "group:g2#admin@group:g3",
        "group:g2#admin@group:g1",
        "group:g1#admin@group:g3",
        "group:g2#owner@group:g1#admin",
        "group:g2#owner@group:g3#admin",
        "group:g3#owner@group:g3#admin",
        "group:g2#admin@group:g2",
    ];

    fn share(resource: &str, subject: &str) -> CheckParams {
        let rel =
            parse_relationship(&format!("group:{resource}#share@{subject}")).expect("test check");
        CheckParams {
            resource: rel.resource,
            permission: rel.relation,
            subject: rel.subject,
            context: Default::default(),
        }
    }

    /// Runs on a thread with a deliberately small stack: the depth limit,
    /// not the thread's stack size, must bound the recursion.
    #[test]
    fn recursion_to_the_depth_limit_fits_any_thread_stack() {
        let thread = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let services = crate::server::services(
                        Arc::new(MemoryDatastore::default()),
                        Limits::default(),
                    );
                    services.write_schema(SCHEMA).await.expect("valid schema");
                    crate::service::test_support::touch_all(&services, RELATIONSHIPS)
                        .await
                        .expect("written");
                    let yes = services
                        .check(share("g3", "group:g2"), Consistency::FullyConsistent)
                        .await
                        .expect("answered");
                    assert_eq!(yes.permissionship, Permissionship::HasPermission);
                    let no = services
                        .check(share("g1", "group:g3#admin"), Consistency::FullyConsistent)
                        .await;
                    assert!(
                        !matches!(no, Ok(ref o) if o.permissionship == Permissionship::HasPermission),
                        "{no:?}"
                    );
                })
            })
            .expect("thread");
        thread.join().expect("no overflow");
    }
}
