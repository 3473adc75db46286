//! What to ask next: the seed test's request mix (60 % content#view, 30 %
//! user#view_profile, 10 % interaction#view, from `workload::sample_check`)
//! plus a share of writes and, if asked for, of lookups (a page of the
//! content a sampled user may view), as ready-to-send `authzed.api.v1`
//! messages.

use std::sync::Arc;

use serde::Serialize;

use crate::api::proto::v1;
use crate::model::{ObjectRef, Relationship, SubjectRef};
use crate::workload::{SocialShape, SplitMix64, sample_check, user_id, user_sample};

/// The kinds of request a run measures, each with its own histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum RequestKind {
    /// CheckPermission content#view.
    ContentView,
    /// CheckPermission user#view_profile.
    ProfileView,
    /// CheckPermission interaction#view.
    InteractionView,
    /// WriteRelationships (one TOUCH of a follow).
    Write,
    /// LookupResources content#view for a sampled user, one page.
    Lookup,
    /// grpc.health.v1 Health/Check: the floor.
    Health,
}

impl RequestKind {
    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            Self::ContentView => "content#view",
            Self::ProfileView => "user#view_profile",
            Self::InteractionView => "interaction#view",
            Self::Write => "write",
            Self::Lookup => "lookup content#view",
            Self::Health => "health",
        }
    }

    /// Whether this is a CheckPermission.
    pub fn is_check(self) -> bool {
        matches!(
            self,
            Self::ContentView | Self::ProfileView | Self::InteractionView
        )
    }

    fn of_check(resource_type: &str) -> Self {
        match resource_type {
            "content" => Self::ContentView,
            "user" => Self::ProfileView,
            _ => Self::InteractionView,
        }
    }
}

/// One request, ready to send.
#[derive(Debug, Clone)]
pub enum Planned {
    /// A CheckPermission of one of the three check kinds.
    Check(RequestKind, v1::CheckPermissionRequest),
    Write(v1::WriteRelationshipsRequest),
    Lookup(v1::LookupResourcesRequest),
    Health,
}

impl Planned {
    /// The histogram this request is recorded in.
    pub fn kind(&self) -> RequestKind {
        match self {
            Self::Check(kind, _) => *kind,
            Self::Write(_) => RequestKind::Write,
            Self::Lookup(_) => RequestKind::Lookup,
            Self::Health => RequestKind::Health,
        }
    }
}

/// Results per lookup: one page, as a feed or a listing asks for.
pub const LOOKUP_PAGE: u32 = 100;

/// The shares of the mix that are not checks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WorkloadMix {
    /// Share of requests that are writes (the test's 1 %).
    pub write_share: f64,
    /// Share of requests that are lookups (none in the seed's test).
    pub lookup_share: f64,
    /// Only health calls: the floor phase.
    pub health_only: bool,
}

/// Draws requests for one worker. Workers share the user sample and differ
/// by `stream`, so together they draw the same mix without a lock.
#[derive(Debug, Clone)]
pub struct Picker {
    shape: SocialShape,
    users: Arc<[usize]>,
    rng: SplitMix64,
    mix: WorkloadMix,
}

impl Picker {
    /// A picker over `shape`'s ids asking as `users`; `stream` picks this
    /// worker's sequence among the seed's.
    pub fn new(
        shape: SocialShape,
        users: Arc<[usize]>,
        seed: u64,
        stream: u64,
        mix: WorkloadMix,
    ) -> Self {
        // Hashed, not `seed + stream`: SplitMix64 states a multiple of its
        // increment apart would replay one sequence shifted.
        let state = SplitMix64::new(seed ^ SplitMix64::new(stream).next_u64()).next_u64();
        Self {
            shape,
            users,
            rng: SplitMix64::new(state),
            mix,
        }
    }

    /// The next request.
    pub fn next_request(&mut self) -> Planned {
        if self.mix.health_only {
            return Planned::Health;
        }
        if self.rng.next_f64() < self.mix.write_share {
            return Planned::Write(self.write());
        }
        // Drawn only when lookups are asked for, so that without them the
        // sequence of checks is the seed's as before.
        if self.mix.lookup_share > 0.0 && self.rng.next_f64() < self.mix.lookup_share {
            return Planned::Lookup(self.lookup());
        }
        let (resource, permission, subject) = sample_check(&self.shape, &mut self.rng, &self.users);
        let kind = RequestKind::of_check(&resource.object_type);
        Planned::Check(
            kind,
            v1::CheckPermissionRequest {
                consistency: Some(minimize_latency()),
                resource: Some((&resource).into()),
                permission: permission.to_string(),
                subject: Some((&subject).into()),
                context: None,
                with_tracing: false,
            },
        )
    }

    /// The first page of what a sampled user may view.
    fn lookup(&mut self) -> v1::LookupResourcesRequest {
        let user = self.users[self.rng.below(self.users.len())];
        v1::LookupResourcesRequest {
            consistency: Some(minimize_latency()),
            resource_object_type: "content".into(),
            permission: "view".into(),
            subject: Some((&SubjectRef::object("user", user_id(user))).into()),
            optional_limit: LOOKUP_PAGE,
            ..Default::default()
        }
    }

    /// A sampled user starts following an active one. TOUCH, so repeats
    /// are harmless and the network barely grows during a run.
    fn write(&mut self) -> v1::WriteRelationshipsRequest {
        let followed = self.rng.active(self.shape.users);
        let follower = self.users[self.rng.below(self.users.len())];
        let relationship = Relationship {
            resource: ObjectRef::new("user", user_id(followed)),
            relation: "follower".to_string(),
            subject: SubjectRef::object("user", user_id(follower)),
            caveat: None,
            expires_at: None,
        };
        v1::WriteRelationshipsRequest {
            updates: vec![v1::RelationshipUpdate {
                operation: v1::relationship_update::Operation::Touch as i32,
                relationship: Some((&relationship).into()),
            }],
            optional_preconditions: Vec::new(),
            optional_transaction_metadata: None,
        }
    }
}

/// The users who ask a run's checks: a uniform sample of `fraction` of
/// the pool, fixed by the seed.
pub fn sampled_users(shape: &SocialShape, fraction: f64, seed: u64) -> Arc<[usize]> {
    user_sample(shape, fraction, &mut SplitMix64::new(seed ^ 0x05A3_91E5)).into()
}

/// The picker stream of worker `worker` in phase `phase` (0 warm-up, 1 the
/// measured mix, 2 the floor).
pub fn stream(phase: u64, worker: u64) -> u64 {
    phase << 32 | worker
}

/// The first `count` checks the measured phase's first worker asks, as text
/// (`kind<TAB>content:c1#view@user:u5`), so another driver (the SpiceDB
/// comparison script) can ask the same questions.
pub fn check_plan(shape: SocialShape, sample: f64, seed: u64, count: usize) -> Vec<String> {
    let mix = WorkloadMix {
        write_share: 0.0,
        lookup_share: 0.0,
        health_only: false,
    };
    let users = sampled_users(&shape, sample, seed);
    let mut picker = Picker::new(shape, users, seed, stream(1, 0), mix);
    let mut lines = Vec::with_capacity(count);
    while lines.len() < count {
        if let Planned::Check(kind, request) = picker.next_request() {
            lines.push(format!("{}\t{}", kind.name(), check_text(&request)));
        }
    }
    lines
}

fn check_text(request: &v1::CheckPermissionRequest) -> String {
    let object = |o: Option<&v1::ObjectReference>| {
        o.map(|o| format!("{}:{}", o.object_type, o.object_id))
            .unwrap_or_default()
    };
    let subject = request.subject.as_ref();
    format!(
        "{}#{}@{}",
        object(request.resource.as_ref()),
        request.permission,
        object(subject.and_then(|s| s.object.as_ref()))
    )
}

/// The test reads at minimize_latency: whatever revision the server finds
/// cheapest (its quantized, cacheable one).
pub fn minimize_latency() -> v1::Consistency {
    v1::Consistency {
        requirement: Some(v1::consistency::Requirement::MinimizeLatency(true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picker(write_share: f64, stream: u64) -> Picker {
        picker_with(write_share, 0.0, stream)
    }

    fn picker_with(write_share: f64, lookup_share: f64, stream: u64) -> Picker {
        let shape = SocialShape::for_relationships(100_000);
        let users: Arc<[usize]> = user_sample(&shape, 0.01, &mut SplitMix64::new(1)).into();
        let mix = WorkloadMix {
            write_share,
            lookup_share,
            health_only: false,
        };
        Picker::new(shape, users, 42, stream, mix)
    }

    fn shares(picker: &mut Picker, n: usize) -> std::collections::HashMap<RequestKind, f64> {
        let mut counts = std::collections::HashMap::new();
        for _ in 0..n {
            *counts.entry(picker.next_request().kind()).or_insert(0usize) += 1;
        }
        counts
            .into_iter()
            .map(|(k, c)| (k, c as f64 / n as f64))
            .collect()
    }

    #[test]
    fn the_mix_is_60_30_10_plus_one_percent_writes() {
        let got = shares(&mut picker(0.01, 0), 200_000);
        let near = |kind, want: f64| {
            let share = got.get(&kind).copied().unwrap_or(0.0);
            assert!(
                (share - want).abs() < 0.005,
                "{kind:?}: {share}, want {want}"
            );
        };
        near(RequestKind::ContentView, 0.99 * 0.6);
        near(RequestKind::ProfileView, 0.99 * 0.3);
        near(RequestKind::InteractionView, 0.99 * 0.1);
        near(RequestKind::Write, 0.01);
        assert!(!got.contains_key(&RequestKind::Health));
    }

    #[test]
    fn lookups_take_their_share_as_pages_for_sampled_users() {
        let mut p = picker_with(0.01, 0.1, 5);
        let users: std::collections::HashSet<String> =
            p.users.iter().map(|&u| user_id(u)).collect();
        let mut lookups = 0;
        for _ in 0..20_000 {
            if let Planned::Lookup(request) = p.next_request() {
                lookups += 1;
                assert_eq!(request.consistency, Some(minimize_latency()));
                assert_eq!(request.optional_limit, LOOKUP_PAGE);
                let subject = request.subject.and_then(|s| s.object).expect("subject");
                assert!(users.contains(&subject.object_id));
            }
        }
        let share = f64::from(lookups) / 20_000.0;
        assert!((share - 0.99 * 0.1).abs() < 0.01, "{share}");
        // Without lookups the checks are the seed's sequence, as before.
        let kinds = |mut p: Picker| {
            (0..200)
                .map(|_| p.next_request().kind())
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(picker_with(0.01, 0.0, 5)), kinds(picker(0.01, 5)));
    }

    #[test]
    fn checks_read_at_minimize_latency_as_sampled_users() {
        let mut p = picker(0.0, 3);
        let users: std::collections::HashSet<String> =
            p.users.iter().map(|&u| user_id(u)).collect();
        for _ in 0..1_000 {
            let Planned::Check(kind, request) = p.next_request() else {
                panic!("only checks without writes");
            };
            assert_eq!(request.consistency, Some(minimize_latency()));
            let subject = request.subject.and_then(|s| s.object).expect("subject");
            assert!(users.contains(&subject.object_id));
            let resource = request.resource.expect("resource");
            let (ty, perm) = match kind {
                RequestKind::ContentView => ("content", "view"),
                RequestKind::ProfileView => ("user", "view_profile"),
                _ => ("interaction", "view"),
            };
            assert_eq!(
                (resource.object_type.as_str(), request.permission.as_str()),
                (ty, perm)
            );
        }
    }

    #[test]
    fn streams_differ_and_each_is_deterministic() {
        let draw = |stream| {
            let mut p = picker(0.01, stream);
            (0..50)
                .map(|_| format!("{:?}", p.next_request()))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(0), draw(0));
        assert_ne!(draw(0), draw(1));
        let mut floor = picker(0.01, 0);
        floor.mix.health_only = true;
        assert!(matches!(floor.next_request(), Planned::Health));
    }

    #[test]
    fn the_plan_is_text_of_the_same_checks() {
        let shape = SocialShape::for_relationships(100_000);
        let plan = check_plan(shape, 0.01, 42, 3);
        assert_eq!(plan.len(), 3);
        let mix = WorkloadMix {
            write_share: 0.0,
            lookup_share: 0.0,
            health_only: false,
        };
        let users = sampled_users(&shape, 0.01, 42);
        let mut again = Picker::new(shape, users, 42, stream(1, 0), mix);
        for line in plan {
            let Planned::Check(kind, request) = again.next_request() else {
                panic!("checks only");
            };
            assert_eq!(line, format!("{}\t{}", kind.name(), check_text(&request)));
            let (_, text) = line.split_once('\t').expect("tab");
            crate::model::parse_relationship(text).expect("relationship syntax");
        }
    }
}
