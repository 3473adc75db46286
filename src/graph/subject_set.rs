//! Sets of subjects of one type, as LookupSubjects computes them: concrete
//! ids and at most one wildcard (`*`) that may exclude ids, every entry
//! possibly conditional on caveats. Union, intersection and subtraction
//! follow SpiceDB's subject-set algebra (inventory §4.3): `{a} ∪ *` keeps
//! both, `* ∩ {a}` is `{a}`, `{a} − *` is empty, `* − {a}` is `*` excluding
//! `a`, and a conditional subtraction leaves a conditional exclusion.
//!
//! One deliberate difference: subtracting an unconditional wildcard from a
//! conditional one leaves nothing (SpiceDB keeps the conditional wildcard,
//! because it treats "not unconditionally" as "no condition").

use std::collections::BTreeMap;

use super::Membership;

/// The wildcard of a set: every id of the type, less its exclusions.
#[derive(Debug, Clone, PartialEq)]
pub struct Wildcard {
    /// `Member` or `Conditional`; never `NotMember`.
    pub membership: Membership,
    /// Ids the wildcard does not cover; each `Member` (always excluded) or
    /// `Conditional` (excluded when its caveats hold).
    pub excluded: BTreeMap<String, Membership>,
}

/// A set of subjects. Entries are never `NotMember`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubjectSet {
    concrete: BTreeMap<String, Membership>,
    wildcard: Option<Wildcard>,
}

/// The wildcard id.
pub const WILDCARD: &str = "*";

impl SubjectSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.concrete.is_empty() && self.wildcard.is_none()
    }

    /// The concrete subjects, by id.
    pub fn concrete(&self) -> &BTreeMap<String, Membership> {
        &self.concrete
    }

    pub fn wildcard(&self) -> Option<&Wildcard> {
        self.wildcard.as_ref()
    }

    /// Adds one found subject (`*` for the wildcard, with no exclusions).
    pub fn add(&mut self, id: &str, membership: Membership) {
        if membership.is_not_member() {
            return;
        }
        if id == WILDCARD {
            self.add_wildcard(Wildcard {
                membership,
                excluded: BTreeMap::new(),
            });
        } else {
            self.add_concrete(id, membership);
        }
    }

    /// `self ∪ other`.
    pub fn union_with(&mut self, other: SubjectSet) {
        for (id, membership) in other.concrete {
            self.add_concrete(&id, membership);
        }
        if let Some(wildcard) = other.wildcard {
            self.add_wildcard(wildcard);
        }
    }

    /// `self − other`.
    pub fn subtract(&mut self, other: &SubjectSet) {
        for (id, membership) in &other.concrete {
            self.subtract_concrete(id, membership);
        }
        if let Some(wildcard) = &other.wildcard {
            self.subtract_wildcard(wildcard);
        }
    }

    /// `self ∩ other`.
    pub fn intersect(&mut self, other: &SubjectSet) {
        let own_wildcard = self.wildcard.take();
        self.wildcard = match (&own_wildcard, &other.wildcard) {
            (Some(a), Some(b)) => Some(intersect_wildcards(a, b)),
            _ => None,
        };
        let mut kept: BTreeMap<String, Membership> = BTreeMap::new();
        for (id, membership) in std::mem::take(&mut self.concrete) {
            let both = other.concrete.get(&id).map_or(Membership::NotMember, |o| {
                membership.clone().intersect(o.clone())
            });
            let via_wildcard = concrete_within(&id, membership, other.wildcard.as_ref());
            insert_union(&mut kept, &id, both.union(via_wildcard));
        }
        if let Some(own) = &own_wildcard {
            for (id, membership) in &other.concrete {
                let via_wildcard = concrete_within(id, membership.clone(), Some(own));
                insert_union(&mut kept, id, via_wildcard);
            }
        }
        self.concrete = kept;
    }

    /// Every entry ANDed with `parent` (the caveat of the relationship the
    /// set was reached through). Exclusions are unchanged.
    pub fn within(mut self, parent: &Membership) -> SubjectSet {
        if parent.is_member() {
            return self;
        }
        if parent.is_not_member() {
            return SubjectSet::new();
        }
        for membership in self.concrete.values_mut() {
            *membership = parent
                .clone()
                .intersect(std::mem::replace(membership, Membership::NotMember));
        }
        if let Some(w) = &mut self.wildcard {
            w.membership = parent
                .clone()
                .intersect(std::mem::replace(&mut w.membership, Membership::NotMember));
        }
        self
    }

    fn add_concrete(&mut self, id: &str, membership: Membership) {
        if let Some(w) = &mut self.wildcard {
            readmit(w, id, &membership);
        }
        insert_union(&mut self.concrete, id, membership);
    }

    fn add_wildcard(&mut self, adding: Wildcard) {
        let mut merged = match self.wildcard.take() {
            None => adding,
            Some(existing) => union_wildcards(existing, adding),
        };
        for (id, membership) in &self.concrete {
            readmit(&mut merged, id, membership);
        }
        self.wildcard = Some(merged);
    }

    fn subtract_concrete(&mut self, id: &str, removing: &Membership) {
        if let Some(existing) = self.concrete.remove(id) {
            let rest = existing.exclude(removing.clone());
            if !rest.is_not_member() {
                self.concrete.insert(id.to_string(), rest);
            }
        }
        if let Some(w) = &mut self.wildcard {
            let excluded = match w.excluded.remove(id) {
                Some(existing) => existing.union(removing.clone()),
                None => removing.clone(),
            };
            w.excluded.insert(id.to_string(), excluded);
        }
    }

    fn subtract_wildcard(&mut self, removing: &Wildcard) {
        let concrete = std::mem::take(&mut self.concrete);
        for (id, membership) in concrete {
            let rest = match removing.excluded.get(&id) {
                // Not covered by the removed wildcard's exclusions.
                None => membership.exclude(removing.membership.clone()),
                // Kept where the removed wildcard does not apply or the
                // exclusion holds.
                Some(exclusion) => membership.intersect(
                    Membership::Member
                        .exclude(removing.membership.clone())
                        .union(exclusion.clone()),
                ),
            };
            if !rest.is_not_member() {
                self.concrete.insert(id, rest);
            }
        }
        let Some(existing) = self.wildcard.take() else {
            return;
        };
        // Ids the removed wildcard excluded stay in as concrete subjects,
        // where the existing wildcard covers them.
        for (id, exclusion) in &removing.excluded {
            let still_in = existing
                .membership
                .clone()
                .intersect(removing.membership.clone())
                .intersect(exclusion.clone());
            let still_in = match existing.excluded.get(id) {
                None => still_in,
                Some(e) if e.is_member() => continue,
                Some(e) => still_in.exclude(e.clone()),
            };
            if !still_in.is_not_member() {
                self.concrete.insert(id.clone(), still_in);
            }
        }
        let remaining = existing.membership.exclude(removing.membership.clone());
        if !remaining.is_not_member() {
            self.wildcard = Some(Wildcard {
                membership: remaining,
                excluded: existing.excluded,
            });
        }
    }
}

/// Unions `membership` into the entry for `id`.
fn insert_union(map: &mut BTreeMap<String, Membership>, id: &str, membership: Membership) {
    if membership.is_not_member() {
        return;
    }
    let merged = match map.remove(id) {
        Some(existing) => existing.union(membership),
        None => membership,
    };
    map.insert(id.to_string(), merged);
}

/// A concrete `id` added beside a wildcard lifts the wildcard's exclusion of
/// it, entirely or where the concrete's caveats hold.
fn readmit(wildcard: &mut Wildcard, id: &str, membership: &Membership) {
    let Some(exclusion) = wildcard.excluded.remove(id) else {
        return;
    };
    let rest = exclusion.exclude(membership.clone());
    if !rest.is_not_member() {
        wildcard.excluded.insert(id.to_string(), rest);
    }
}

/// `* ∪ *`: either condition; an id stays excluded only if both exclude it.
fn union_wildcards(a: Wildcard, b: Wildcard) -> Wildcard {
    let mut excluded = BTreeMap::new();
    for (id, ea) in a.excluded {
        if let Some(eb) = b.excluded.get(&id) {
            let both = ea.intersect(eb.clone());
            if !both.is_not_member() {
                excluded.insert(id, both);
            }
        }
    }
    Wildcard {
        membership: a.membership.union(b.membership),
        excluded,
    }
}

/// `* ∩ *`: both conditions; an id excluded by either is excluded.
fn intersect_wildcards(a: &Wildcard, b: &Wildcard) -> Wildcard {
    let mut excluded = a.excluded.clone();
    for (id, e) in &b.excluded {
        insert_union(&mut excluded, id, e.clone());
    }
    Wildcard {
        membership: a.membership.clone().intersect(b.membership.clone()),
        excluded,
    }
}

/// A concrete subject intersected with a wildcard: in, unless excluded.
fn concrete_within(id: &str, membership: Membership, wildcard: Option<&Wildcard>) -> Membership {
    let Some(w) = wildcard else {
        return Membership::NotMember;
    };
    let covered = match w.excluded.get(id) {
        None => w.membership.clone(),
        Some(e) => w.membership.clone().exclude(e.clone()),
    };
    membership.intersect(covered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::CaveatExpr;
    use crate::model::ContextualizedCaveat;

    fn cav(name: &str) -> Membership {
        Membership::Conditional(CaveatExpr::Caveat(ContextualizedCaveat {
            name: name.into(),
            context: Default::default(),
        }))
    }

    fn set(items: &[&str]) -> SubjectSet {
        let mut s = SubjectSet::new();
        for id in items {
            s.add(id, Membership::Member);
        }
        s
    }

    fn ids(s: &SubjectSet) -> Vec<&str> {
        s.concrete().keys().map(String::as_str).collect()
    }

    fn excluded(s: &SubjectSet) -> Vec<&str> {
        s.wildcard()
            .map(|w| w.excluded.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    #[test]
    fn union_keeps_wildcard_and_concrete_subjects() {
        let mut s = set(&["a"]);
        s.union_with(set(&["*", "b"]));
        assert_eq!(ids(&s), ["a", "b"]);
        assert!(s.wildcard().is_some());
    }

    #[test]
    fn wildcard_intersected_with_concrete_is_the_concrete() {
        let mut s = set(&["*"]);
        s.intersect(&set(&["a"]));
        assert_eq!(ids(&s), ["a"]);
        assert!(s.wildcard().is_none());
    }

    #[test]
    fn concrete_minus_wildcard_is_empty() {
        let mut s = set(&["a"]);
        s.subtract(&set(&["*"]));
        assert!(s.is_empty());
    }

    #[test]
    fn wildcard_minus_concrete_excludes_it() {
        let mut s = set(&["*"]);
        s.subtract(&set(&["a", "b"]));
        assert_eq!(excluded(&s), ["a", "b"]);
        assert!(ids(&s).is_empty());
    }

    #[test]
    fn adding_an_excluded_id_back_lifts_the_exclusion() {
        let mut s = set(&["*"]);
        s.subtract(&set(&["a"]));
        s.union_with(set(&["a"]));
        assert!(excluded(&s).is_empty());
        assert_eq!(ids(&s), ["a"]);
    }

    #[test]
    fn wildcards_union_keeps_only_common_exclusions() {
        let mut a = set(&["*"]);
        a.subtract(&set(&["x", "y"]));
        let mut b = set(&["*"]);
        b.subtract(&set(&["y", "z"]));
        a.union_with(b);
        assert_eq!(excluded(&a), ["y"]);
    }

    #[test]
    fn wildcard_minus_wildcard_with_exclusions_leaves_those_ids() {
        let mut removing = set(&["*"]);
        removing.subtract(&set(&["a"]));
        let mut s = set(&["*", "a", "b"]);
        s.subtract(&removing);
        assert!(s.wildcard().is_none());
        assert_eq!(ids(&s), ["a"]);
    }

    #[test]
    fn conditional_subtraction_leaves_a_conditional_exclusion() {
        let mut s = set(&["*"]);
        let mut removing = SubjectSet::new();
        removing.add("a", cav("c"));
        s.subtract(&removing);
        let w = s.wildcard().expect("wildcard stays");
        assert_eq!(w.excluded.get("a"), Some(&cav("c")));
    }

    #[test]
    fn intersection_with_excluding_wildcard_drops_the_excluded() {
        let mut w = set(&["*"]);
        w.subtract(&set(&["a"]));
        let mut s = set(&["a", "b"]);
        s.intersect(&w);
        assert_eq!(ids(&s), ["b"]);
    }

    #[test]
    fn parent_caveat_applies_to_every_entry() {
        let s = set(&["a", "*"]).within(&cav("p"));
        assert_eq!(s.concrete().get("a"), Some(&cav("p")));
        assert_eq!(s.wildcard().map(|w| &w.membership), Some(&cav("p")));
    }

    #[test]
    fn conditional_wildcard_minus_unconditional_wildcard_is_empty() {
        let mut s = SubjectSet::new();
        s.add("*", cav("c"));
        s.subtract(&set(&["*"]));
        assert!(s.is_empty());
    }
}
