//! The cost of a caveat: the same in-process CheckPermission answered through
//! an uncaveated relationship and through one guarded by an IP allowlist
//! caveat (`user_ip.in_cidr(allowed)`), evaluated with the request's context.
//! Both go through the whole stack `server::services` builds.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use trellis::datastore::memory::MemoryDatastore;
use trellis::datastore::{RevisionConfig, SystemClock};
use trellis::model::{Consistency, ContextualizedCaveat, ObjectRef, Relationship, SubjectRef};
use trellis::service::{CheckParams, Limits, Permissionship};

const SCHEMA: &str = "caveat ip_allowlist(user_ip ipaddress, allowed string) {
    user_ip.in_cidr(allowed)
}

definition user {}

definition device {
    relation operator: user | user with ip_allowlist
    permission operate = operator
}";

fn relationship(device: &str, user: &str, caveated: bool) -> Relationship {
    let caveat = caveated.then(|| {
        let mut context = serde_json::Map::new();
        context.insert(
            "allowed".into(),
            serde_json::Value::String("10.0.0.0/8".into()),
        );
        ContextualizedCaveat {
            name: "ip_allowlist".into(),
            context,
        }
    });
    Relationship {
        resource: ObjectRef::new("device", device),
        relation: "operator".into(),
        subject: SubjectRef::object("user", user),
        caveat,
        expires_at: None,
    }
}

fn params(device: &str, user: &str, ip: Option<&str>) -> CheckParams {
    let mut context = serde_json::Map::new();
    if let Some(ip) = ip {
        context.insert("user_ip".into(), serde_json::Value::String(ip.into()));
    }
    CheckParams {
        resource: ObjectRef::new("device", device),
        permission: "operate".into(),
        subject: SubjectRef::object("user", user),
        context,
    }
}

fn caveat_overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let datastore = Arc::new(MemoryDatastore::new(
        RevisionConfig::default(),
        Arc::new(SystemClock),
    ));
    let services = trellis::server::services(datastore, Limits::default());
    runtime.block_on(async {
        services.write_schema(SCHEMA).await.expect("schema");
        services
            .import_relationships(vec![
                relationship("d1", "plain", false),
                relationship("d2", "guarded", true),
            ])
            .await
            .expect("relationships");
    });

    let cases = [
        (
            "uncaveated",
            params("d1", "plain", None),
            Permissionship::HasPermission,
        ),
        (
            "caveated ip allowlist",
            params("d2", "guarded", Some("10.1.2.3")),
            Permissionship::HasPermission,
        ),
    ];
    let mut group = c.benchmark_group("caveat");
    for (name, request, expected) in cases {
        // A broken engine must not look fast: check the answer first.
        let answer = runtime
            .block_on(services.check(request.clone(), Consistency::FullyConsistent))
            .expect("check")
            .permissionship;
        assert_eq!(answer, expected, "{name}");
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime
                    .block_on(services.check(request.clone(), Consistency::FullyConsistent))
                    .expect("check")
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = caveat_overhead
}
criterion_main!(benches);
