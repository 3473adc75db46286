//! The consistent hashring: which member owns a routing key. Built once from
//! the member list with `replication_factor` virtual nodes per member (the
//! `hashring` crate places points; this adds the virtual nodes), and never
//! rebuilt while membership stays the same: a member that is down keeps its
//! points, and the caller evaluates its keys elsewhere until it is back, so
//! ownership does not churn when a connection goes idle or fails.

use std::hash::{Hash, Hasher};

use hashring::HashRing;

use crate::dispatch::keys::RoutingKey;

/// One point on the ring: a member (by index into the member list) and the
/// number of its virtual node. Hashes the member's address, not its index,
/// so every node that lists the same members in any order builds the same
/// ring.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VirtualNode {
    member: usize,
    address: String,
    replica: u16,
}

impl Hash for VirtualNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.address.hash(state);
        self.replica.hash(state);
    }
}

/// Members and their points.
pub struct Ring {
    ring: HashRing<VirtualNode>,
    members: usize,
}

impl Ring {
    /// A ring of `members` (peer addresses), each at `replication_factor`
    /// points (at least one).
    pub fn new(members: &[String], replication_factor: u16) -> Self {
        let mut ring = HashRing::new();
        let points = members.iter().enumerate().flat_map(|(member, address)| {
            (0..replication_factor.max(1)).map(move |replica| VirtualNode {
                member,
                address: address.clone(),
                replica,
            })
        });
        ring.batch_add(points.collect());
        Self {
            ring,
            members: members.len(),
        }
    }

    /// The index of the member that owns `key`; `None` for an empty ring.
    pub fn owner(&self, key: &RoutingKey<'_>) -> Option<usize> {
        self.ring.get(key).map(|point| point.member)
    }

    pub fn members(&self) -> usize {
        self.members
    }

    /// Every member once, in the order the ring offers them for `key`: the
    /// owner first, then each next distinct member clockwise, which is
    /// where the key goes while those before it are down. Walks the whole
    /// ring, so it is for the failover path, not for every subproblem.
    pub fn successors(&self, key: &RoutingKey<'_>) -> Vec<usize> {
        let Some(points) = self.ring.get_with_replicas(key, self.ring.len()) else {
            return Vec::new();
        };
        let mut order = Vec::with_capacity(self.members);
        for point in points {
            if order.len() == self.members {
                break;
            }
            if !order.contains(&point.member) {
                order.push(point.member);
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{CheckRequest, ResultsSetting};
    use crate::model::{Revision, SubjectRef};

    fn members() -> Vec<String> {
        ["10.0.0.1:50053", "10.0.0.2:50053", "10.0.0.3:50053"]
            .map(String::from)
            .to_vec()
    }

    /// A pseudo-random subproblem; xorshift keeps the test reproducible
    /// without a random-number dependency.
    fn subproblem(state: &mut u64) -> CheckRequest {
        let mut next = || {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *state
        };
        CheckRequest {
            resource_type: format!("type{}", next() % 7),
            resource_ids: vec![format!("doc{}", next())],
            relation: format!("rel{}", next() % 5),
            subject: SubjectRef::object("user", format!("u{}", next())),
            revision: Revision(u128::from(next() % 3)),
            depth_remaining: 50,
            results_setting: ResultsSetting::AllowSingleResult,
        }
    }

    #[test]
    fn routing_is_even_over_three_members() {
        let ring = Ring::new(&members(), 100);
        let mut served = [0usize; 3];
        let mut state = 0x9E37_79B9_7F4A_7C15;
        const SUBPROBLEMS: usize = 100_000;
        for _ in 0..SUBPROBLEMS {
            let request = subproblem(&mut state);
            let owner = ring
                .owner(&RoutingKey::of(&request))
                .expect("three members");
            served[owner] += 1;
        }
        let mean = SUBPROBLEMS as f64 / 3.0;
        let busiest = *served.iter().max().expect("three counts") as f64;
        let quietest = *served.iter().min().expect("three counts") as f64;
        println!(
            "served per member: {served:?}, busiest {:+.1}% of mean",
            (busiest / mean - 1.0) * 100.0
        );
        assert!(busiest <= mean * 1.15, "{served:?}");
        assert!(quietest >= mean * 0.85, "{served:?}");
    }

    #[test]
    fn every_node_computes_the_same_owner_whatever_the_list_order() {
        let mut reversed = members();
        reversed.reverse();
        let (a, b) = (Ring::new(&members(), 100), Ring::new(&reversed, 100));
        let mut state = 42;
        for _ in 0..1000 {
            let request = subproblem(&mut state);
            let key = RoutingKey::of(&request);
            let (x, y) = (a.owner(&key).expect("owner"), b.owner(&key).expect("owner"));
            assert_eq!(members()[x], reversed[y]);
        }
    }

    #[test]
    fn successors_start_at_the_owner_and_name_every_member_once() {
        let ring = Ring::new(&members(), 100);
        let mut state = 11;
        let mut seconds = [0usize; 3];
        for _ in 0..1000 {
            let request = subproblem(&mut state);
            let key = RoutingKey::of(&request);
            let order = ring.successors(&key);
            assert_eq!(order.first().copied(), ring.owner(&key));
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, [0, 1, 2]);
            seconds[order[1]] += 1;
        }
        // A down member's keys spread over the others, not onto one.
        assert!(seconds.iter().all(|&n| n > 200), "{seconds:?}");
        assert!(
            Ring::new(&[], 100)
                .successors(&RoutingKey::of(&subproblem(&mut state)))
                .is_empty()
        );
    }

    #[test]
    fn removing_a_member_moves_only_its_keys() {
        let all = Ring::new(&members(), 100);
        let two = Ring::new(&members()[..2], 100);
        let mut state = 7;
        for _ in 0..1000 {
            let request = subproblem(&mut state);
            let key = RoutingKey::of(&request);
            let before = all.owner(&key).expect("owner");
            if before < 2 {
                assert_eq!(two.owner(&key), Some(before));
            }
        }
        assert!(
            Ring::new(&[], 100)
                .owner(&RoutingKey::of(&subproblem(&mut state)))
                .is_none()
        );
    }
}
