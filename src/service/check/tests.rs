//! Check with caveats and expiration, end to end through the services over
//! the memory datastore.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::*;
use crate::datastore::memory::MemoryDatastore;
use crate::datastore::{ManualClock, RevisionConfig};
use crate::model::parse_relationship;
use crate::service::Limits;

const SCHEMA: &str = r#"
use expiration

definition user {}

caveat on_weekday(day string) {
  day != "saturday" && day != "sunday"
}

caveat in_network(ip ipaddress, cidr string) {
  ip.in_cidr(cidr)
}

caveat ratio(n int, d int) {
  n / d > 1
}

definition doc {
  relation viewer: user | user with on_weekday | user with expiration | user with in_network and expiration
  relation editor: user | user with in_network
  relation banned: user with on_weekday
  relation calc: user with ratio
  permission view = viewer + editor
  permission edit = editor & viewer - banned
  permission compute = calc
}
"#;

fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

async fn services(clock: Arc<ManualClock>) -> Arc<Services<MemoryDatastore>> {
    let datastore = Arc::new(MemoryDatastore::new(RevisionConfig::default(), clock));
    let services = crate::server::services(datastore, Limits::default());
    services
        .write_schema(SCHEMA)
        .await
        .expect("schema is valid");
    services
}

async fn write(services: &Services<MemoryDatastore>, rels: &[&str]) -> Result<(), ServiceError> {
    crate::service::test_support::touch_all(services, rels)
        .await
        .map(|_| ())
}

fn params(check: &str, context: serde_json::Value) -> CheckParams {
    let rel = parse_relationship(check).expect("test check parses");
    CheckParams {
        resource: rel.resource,
        permission: rel.relation,
        subject: rel.subject,
        context: context.as_object().cloned().expect("an object"),
    }
}

async fn check(
    services: &Services<MemoryDatastore>,
    item: &str,
    context: serde_json::Value,
) -> Result<Permissionship, ServiceError> {
    services
        .check(params(item, context), Consistency::FullyConsistent)
        .await
        .map(|o| o.permissionship)
}

async fn answer(
    services: &Services<MemoryDatastore>,
    item: &str,
    context: serde_json::Value,
) -> Permissionship {
    check(services, item, context)
        .await
        .unwrap_or_else(|e| panic!("{item}: {e}"))
}

fn conditional(names: &[&str]) -> Permissionship {
    Permissionship::Conditional {
        missing_context: names.iter().map(|n| n.to_string()).collect(),
    }
}

#[tokio::test]
async fn caveats_decide_check() {
    let clock = Arc::new(ManualClock::new(start()));
    let s = services(clock).await;
    write(
        &s,
        &[
            "doc:1#viewer@user:tom[on_weekday]",
            r#"doc:1#viewer@user:fred[on_weekday:{"day":"monday"}]"#,
            r#"doc:1#editor@user:ann[in_network:{"cidr":"10.0.0.0/8"}]"#,
            "doc:1#editor@user:bob[in_network]",
            "doc:1#viewer@user:bob",
            r#"doc:1#banned@user:bob[on_weekday:{"day":"sunday"}]"#,
            "doc:1#editor@user:cat[in_network]",
            "doc:1#viewer@user:cat",
            r#"doc:1#banned@user:cat[on_weekday:{"day":"monday"}]"#,
            r#"doc:1#calc@user:zed[ratio:{"d":0}]"#,
        ],
    )
    .await
    .expect("relationships are valid");
    use Permissionship::*;
    assert_eq!(
        answer(&s, "doc:1#view@user:tom", json!({})).await,
        conditional(&["day"])
    );
    assert_eq!(
        answer(&s, "doc:1#view@user:tom", json!({"day": "friday"})).await,
        HasPermission
    );
    assert_eq!(
        answer(&s, "doc:1#view@user:tom", json!({"day": "sunday"})).await,
        NoPermission
    );
    // Stored context wins over the request's.
    assert_eq!(
        answer(&s, "doc:1#view@user:fred", json!({"day": "sunday"})).await,
        HasPermission
    );
    assert_eq!(
        answer(&s, "doc:1#view@user:ann", json!({})).await,
        conditional(&["ip"])
    );
    assert_eq!(
        answer(&s, "doc:1#view@user:ann", json!({"ip": "10.1.2.3"})).await,
        HasPermission
    );
    // An unconditional path wins outright.
    assert_eq!(
        answer(&s, "doc:1#view@user:bob", json!({})).await,
        HasPermission
    );
    // (editor & viewer) - banned: editor(bob) needs cidr and ip, but
    // `ip.in_cidr(cidr)` stops at its first unknown operand, as cel-go does;
    // banned(bob) is false by its stored day.
    assert_eq!(
        answer(&s, "doc:1#edit@user:bob", json!({})).await,
        conditional(&["ip"])
    );
    assert_eq!(
        answer(&s, "doc:1#edit@user:bob", json!({"ip": "10.0.0.1"})).await,
        conditional(&["cidr"])
    );
    assert_eq!(
        answer(
            &s,
            "doc:1#edit@user:bob",
            json!({"ip": "10.0.0.1", "cidr": "10.0.0.0/8"})
        )
        .await,
        HasPermission
    );
    // banned(cat) holds, which decides the exclusion with editor unknown.
    assert_eq!(
        answer(&s, "doc:1#edit@user:cat", json!({})).await,
        NoPermission
    );
    assert_eq!(
        answer(&s, "doc:1#view@user:nobody", json!({})).await,
        NoPermission
    );
    // Evaluation and conversion errors name the caveat.
    match check(&s, "doc:1#compute@user:zed", json!({"n": 4})).await {
        Err(ServiceError::CaveatEvaluation { caveat, message }) => {
            assert_eq!(
                (caveat.as_str(), message.as_str()),
                ("ratio", "division by zero")
            );
        }
        other => panic!("{other:?}"),
    }
    match check(&s, "doc:1#view@user:ann", json!({"ip": "not an ip"})).await {
        Err(ServiceError::CaveatParameterType {
            caveat, parameter, ..
        }) => {
            assert_eq!((caveat.as_str(), parameter.as_str()), ("in_network", "ip"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bulk_items_have_their_own_context() {
    let s = services(Arc::new(ManualClock::new(start()))).await;
    write(&s, &["doc:1#viewer@user:tom[on_weekday]"])
        .await
        .expect("valid");
    let items = vec![
        params("doc:1#view@user:tom", json!({"day": "monday"})),
        params("doc:1#view@user:tom", json!({"day": "sunday"})),
        params("doc:1#view@user:tom", json!({})),
        params("doc:1#view@user:tom", json!({"day": 3})),
    ];
    let (_, results) = s
        .check_bulk(items, Consistency::FullyConsistent)
        .await
        .expect("bulk");
    assert_eq!(
        results[0].as_ref().ok(),
        Some(&Permissionship::HasPermission)
    );
    assert_eq!(
        results[1].as_ref().ok(),
        Some(&Permissionship::NoPermission)
    );
    assert_eq!(results[2].as_ref().ok(), Some(&conditional(&["day"])));
    assert!(matches!(
        results[3],
        Err(ServiceError::CaveatParameterType { .. })
    ));
}

#[tokio::test]
async fn a_relationship_expiring_now_is_gone() {
    let clock = Arc::new(ManualClock::new(start()));
    let s = services(clock.clone()).await;
    let at = start() + Duration::from_secs(10);
    let stamp = |t: SystemTime| {
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after epoch")
            .as_secs();
        chrono::DateTime::from_timestamp(secs as i64, 0)
            .expect("in range")
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    write(
        &s,
        &[
            &format!("doc:1#viewer@user:tom[expiration:{}]", stamp(at)),
            &format!(
                r#"doc:1#viewer@user:ann[in_network:{{"cidr":"10.0.0.0/8"}}][expiration:{}]"#,
                stamp(at)
            ),
        ],
    )
    .await
    .expect("valid");
    let ip = json!({"ip": "10.0.0.1"});
    assert_eq!(
        answer(&s, "doc:1#view@user:tom", json!({})).await,
        Permissionship::HasPermission
    );
    assert_eq!(
        answer(&s, "doc:1#view@user:ann", ip.clone()).await,
        Permissionship::HasPermission
    );
    clock.advance(Duration::from_secs(10) - Duration::from_nanos(1));
    assert_eq!(
        answer(&s, "doc:1#view@user:tom", json!({})).await,
        Permissionship::HasPermission
    );
    clock.advance(Duration::from_nanos(1));
    // At exactly the expiration instant the relationship is invisible.
    assert_eq!(
        answer(&s, "doc:1#view@user:tom", json!({})).await,
        Permissionship::NoPermission
    );
    assert_eq!(
        answer(&s, "doc:1#view@user:ann", ip).await,
        Permissionship::NoPermission
    );
}

#[tokio::test]
async fn writes_check_the_caveat_context() {
    let s = services(Arc::new(ManualClock::new(start()))).await;
    let refused = |r: Result<(), ServiceError>| match r {
        Err(ServiceError::CaveatParameterType {
            caveat,
            parameter,
            message,
        }) => (caveat, parameter, message),
        other => panic!("{other:?}"),
    };
    let (caveat, parameter, message) =
        refused(write(&s, &[r#"doc:1#viewer@user:tom[on_weekday:{"zzz":1}]"#]).await);
    assert_eq!((caveat.as_str(), parameter.as_str()), ("on_weekday", "zzz"));
    assert!(message.contains("unknown parameter `zzz`"), "{message}");
    let (_, parameter, message) =
        refused(write(&s, &[r#"doc:1#viewer@user:tom[on_weekday:{"day":1}]"#]).await);
    assert_eq!(parameter, "day");
    assert!(message.contains("a string value is required"), "{message}");
    let (_, parameter, _) = refused(
        write(
            &s,
            &[r#"doc:1#editor@user:tom[in_network:{"ip":"10.0.0.300"}]"#],
        )
        .await,
    );
    assert_eq!(parameter, "ip");
    let big = "x".repeat(25_000);
    let too_big = format!(r#"doc:1#viewer@user:tom[on_weekday:{{"day":"{big}"}}]"#);
    assert!(matches!(
        write(&s, &[&too_big]).await,
        Err(ServiceError::ContextTooLarge { max: 25_000, .. })
    ));
    write(
        &s,
        &[r#"doc:1#viewer@user:tom[on_weekday:{"day":"monday"}]"#],
    )
    .await
    .expect("a declared parameter of its type");
}

/// The root of a traced check of `item` with `context`.
async fn traced_root(
    services: &Services<MemoryDatastore>,
    item: &str,
    context: serde_json::Value,
) -> TraceNode {
    let (_, trace) = services
        .check_traced(params(item, context), Consistency::FullyConsistent)
        .await
        .expect("traced check");
    trace.root.expect("a root node")
}

#[tokio::test]
async fn traces_show_how_caveats_decided() {
    let s = services(Arc::new(ManualClock::new(start()))).await;
    write(&s, &["doc:1#viewer@user:tom[on_weekday]"])
        .await
        .expect("relationships are valid");

    let missing = traced_root(&s, "doc:1#view@user:tom", json!({})).await;
    assert_eq!(missing.result, TraceResult::Conditional);
    let caveat = missing.caveat.clone().expect("the caveat that decided");
    assert_eq!(
        (caveat.caveat_name.as_deref(), caveat.expression.as_str()),
        (Some("on_weekday"), "on_weekday")
    );
    assert_eq!(
        caveat.evaluation,
        CaveatEvaluation::MissingContext(vec!["day".into()])
    );

    // Below the root, caveats are reported, not evaluated.
    let Resolution::SubProblems(children) = &missing.resolution else {
        panic!("the first check computes its subproblems");
    };
    let viewer = children
        .iter()
        .find(|c| c.relation == "viewer")
        .expect("viewer was dispatched");
    assert!(!viewer.is_permission);
    assert_eq!(viewer.result, TraceResult::Conditional);
    assert_eq!(
        viewer.caveat.as_ref().map(|c| &c.evaluation),
        Some(&CaveatEvaluation::Unevaluated)
    );

    // Answers do not depend on the context, so this one is cached; its
    // caveat is evaluated with this request's context all the same.
    let weekday = traced_root(&s, "doc:1#view@user:tom", json!({"day": "friday"})).await;
    assert_eq!(weekday.result, TraceResult::HasPermission);
    let caveat = weekday.caveat.expect("the caveat that decided");
    assert_eq!(caveat.evaluation, CaveatEvaluation::True);
    assert_eq!(
        caveat.context.and_then(|c| c.get("day").cloned()),
        Some(json!("friday"))
    );
    assert_eq!(weekday.resolution, Resolution::Cached);
    let weekend = traced_root(&s, "doc:1#view@user:tom", json!({"day": "sunday"})).await;
    assert_eq!(weekend.result, TraceResult::NoPermission);
}
