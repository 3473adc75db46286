//! Synthetic workloads for benchmarks and load tests: the social network of
//! AuthZed's 1M-QPS test (schema-examples/social-network.zed), generated
//! deterministically from a seed. Plain data; no I/O.

use crate::model::{ObjectRef, Relationship, SubjectRef};

/// A small, fast, seedable generator (SplitMix64): reproducible across
/// platforms and releases, which a general-purpose RNG crate does not promise.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_f64() * n as f64) as usize % n.max(1)
    }

    /// A Pareto-like pick in [0, n): 20 % of the indexes get 80 % of the picks.
    pub fn active(&mut self, n: usize) -> usize {
        // P(index < 0.2 n) = 0.2^(1/k) = 0.8  ⇒  k = ln 0.2 / ln 0.8
        const K: f64 = 7.212_567_439_283_622;
        ((self.next_f64().powf(K) * n as f64) as usize).min(n.saturating_sub(1))
    }
}

/// How many objects of each kind a social network of `relationships`
/// relationships has, in the proportions of AuthZed's test: per million,
/// 364k content#owner, 184k content#visibility@user#follower, 181k
/// content#visibility@user:*, 104k each interaction#parent and
/// interaction#creator, 52k user#follower, 5k user#self and 2.6k each
/// user#visibility to `user:*` and to followers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocialShape {
    pub users: usize,
    pub contents: usize,
    pub interactions: usize,
    pub follows: usize,
}

impl SocialShape {
    pub fn for_relationships(relationships: usize) -> Self {
        let per_million =
            |k: f64| ((relationships as f64) * k / 1_000_000.0).round().max(1.0) as usize;
        Self {
            users: per_million(5_000.0).max(2),
            contents: per_million(364_000.0),
            interactions: per_million(104_000.0),
            follows: per_million(52_000.0),
        }
    }
}

pub fn user_id(i: usize) -> String {
    format!("u{i}")
}

pub fn content_id(i: usize) -> String {
    format!("c{i}")
}

pub fn interaction_id(i: usize) -> String {
    format!("i{i}")
}

fn rel(
    resource_type: &str,
    resource_id: String,
    relation: &str,
    subject: SubjectRef,
) -> Relationship {
    Relationship {
        resource: ObjectRef::new(resource_type, resource_id),
        relation: relation.to_string(),
        subject,
        caveat: None,
        expires_at: None,
    }
}

/// Who may see user `u`'s profile: half the users are public, half
/// followers-only, and one in 25 names both audiences, which is how the
/// test has 2.6k of each per 5k users.
fn profile_audiences(u: usize) -> impl Iterator<Item = SubjectRef> {
    let public = u.is_multiple_of(2) || u % 50 == 25;
    let followers = u % 2 == 1 || u.is_multiple_of(50);
    let everyone = public.then(|| SubjectRef::object("user", "*"));
    let audience = followers.then(|| SubjectRef::set("user", user_id(u), "follower"));
    everyone.into_iter().chain(audience)
}

/// A uniform sample of the user pool, `fraction` of it but at least 10
/// users (or all of them in a tiny network), without repeats: the users
/// who ask the checks of a load test.
pub fn user_sample(shape: &SocialShape, fraction: f64, rng: &mut SplitMix64) -> Vec<usize> {
    let wanted = ((shape.users as f64 * fraction).round() as usize)
        .max(10)
        .min(shape.users);
    let mut seen = std::collections::HashSet::with_capacity(wanted);
    let mut users = Vec::with_capacity(wanted);
    while users.len() < wanted {
        let user = rng.below(shape.users);
        if seen.insert(user) {
            users.push(user);
        }
    }
    users
}

/// The relationships of a social network of about `relationships`
/// relationships, deterministic for a seed, without duplicates.
pub fn social_network(relationships: usize, seed: u64) -> Vec<Relationship> {
    let shape = SocialShape::for_relationships(relationships);
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(relationships + shape.users);
    let user = |i: usize| SubjectRef::object("user", user_id(i));

    for u in 0..shape.users {
        out.push(rel("user", user_id(u), "self", user(u)));
        for audience in profile_audiences(u) {
            out.push(rel("user", user_id(u), "visibility", audience));
        }
    }
    let mut follows = std::collections::HashSet::new();
    while follows.len() < shape.follows.min(shape.users * (shape.users - 1)) {
        let followed = rng.active(shape.users);
        let follower = rng.below(shape.users);
        if followed != follower && follows.insert((followed, follower)) {
            out.push(rel("user", user_id(followed), "follower", user(follower)));
        }
    }
    for c in 0..shape.contents {
        let owner = rng.active(shape.users);
        out.push(rel("content", content_id(c), "owner", user(owner)));
        // Slightly more follower-only than public content, as in the test.
        let audience = if rng.below(365) < 184 {
            SubjectRef::set("user", user_id(owner), "follower")
        } else {
            SubjectRef::object("user", "*")
        };
        out.push(rel("content", content_id(c), "visibility", audience));
    }
    for i in 0..shape.interactions {
        let parent = rng.active(shape.contents);
        let creator = rng.active(shape.users);
        out.push(rel(
            "interaction",
            interaction_id(i),
            "parent",
            SubjectRef::object("content", content_id(parent)),
        ));
        out.push(rel(
            "interaction",
            interaction_id(i),
            "creator",
            user(creator),
        ));
    }
    out
}

/// One check of the test's mix: 60 % can a user see content, 30 % can a user
/// see another's profile, 10 % can a user see an interaction.
pub fn sample_check(
    shape: &SocialShape,
    rng: &mut SplitMix64,
    users: &[usize],
) -> (ObjectRef, &'static str, SubjectRef) {
    let subject = SubjectRef::object("user", user_id(users[rng.below(users.len())]));
    let roll = rng.below(10);
    if roll < 6 {
        (
            ObjectRef::new("content", content_id(rng.active(shape.contents))),
            "view",
            subject,
        )
    } else if roll < 9 {
        (
            ObjectRef::new("user", user_id(rng.active(shape.users))),
            "view_profile",
            subject,
        )
    } else {
        (
            ObjectRef::new("interaction", interaction_id(rng.below(shape.interactions))),
            "view",
            subject,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(
        rels: &[Relationship],
        resource_type: &str,
        relation: &str,
        wildcard: Option<bool>,
    ) -> usize {
        rels.iter()
            .filter(|r| r.resource.object_type == resource_type && r.relation == relation)
            .filter(|r| wildcard.is_none_or(|w| r.subject.is_wildcard() == w))
            .count()
    }

    #[test]
    fn proportions_follow_the_seed_test() {
        let rels = social_network(100_000, 7);
        let near = |got: usize, per_million: f64| {
            let want = per_million / 10.0;
            (got as f64 - want).abs() <= want * 0.05 + 2.0
        };
        assert!(near(count(&rels, "content", "owner", None), 364_000.0));
        assert!(near(
            count(&rels, "content", "visibility", Some(false)),
            184_000.0
        ));
        assert!(near(
            count(&rels, "content", "visibility", Some(true)),
            181_000.0
        ));
        assert!(near(count(&rels, "interaction", "parent", None), 104_000.0));
        assert!(near(
            count(&rels, "interaction", "creator", None),
            104_000.0
        ));
        assert!(near(count(&rels, "user", "follower", None), 52_000.0));
        assert!(near(count(&rels, "user", "self", None), 5_000.0));
        assert!(near(
            count(&rels, "user", "visibility", Some(true)),
            2_600.0
        ));
        assert!(near(
            count(&rels, "user", "visibility", Some(false)),
            2_600.0
        ));
        let total = rels.len() as f64;
        assert!((total - 100_000.0).abs() < 1_000.0, "{total} relationships");
    }

    #[test]
    fn relationships_are_unique() {
        let rels = social_network(20_000, 11);
        let keys: std::collections::HashSet<_> = rels.iter().map(Relationship::key).collect();
        assert_eq!(keys.len(), rels.len());
    }

    #[test]
    fn user_sample_is_uniform_distinct_and_sized() {
        let shape = SocialShape::for_relationships(1_000_000);
        let sample = user_sample(&shape, 0.01, &mut SplitMix64::new(5));
        assert_eq!(sample.len(), 50);
        let distinct: std::collections::HashSet<_> = sample.iter().collect();
        assert_eq!(distinct.len(), sample.len());
        assert!(sample.iter().all(|&u| u < shape.users));
        // Uniform, not Pareto: about half the sample comes from the upper half.
        let big = SocialShape::for_relationships(100_000_000);
        let wide = user_sample(&big, 0.01, &mut SplitMix64::new(5));
        let upper = wide.iter().filter(|&&u| u >= big.users / 2).count() as f64;
        assert!((0.45..0.55).contains(&(upper / wide.len() as f64)));
        let tiny = SocialShape::for_relationships(100);
        assert_eq!(
            user_sample(&tiny, 0.01, &mut SplitMix64::new(5)).len(),
            tiny.users
        );
    }

    #[test]
    fn generation_is_deterministic_and_skewed() {
        assert_eq!(social_network(10_000, 1), social_network(10_000, 1));
        assert_ne!(social_network(10_000, 1), social_network(10_000, 2));
        let mut rng = SplitMix64::new(3);
        let picks: Vec<usize> = (0..100_000).map(|_| rng.active(1000)).collect();
        let top = picks.iter().filter(|&&i| i < 200).count() as f64 / picks.len() as f64;
        assert!((0.77..0.83).contains(&top), "top 20% got {top}");
    }
}
