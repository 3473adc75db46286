//! Membership results and the caveat expressions they carry. A subject is a
//! member, not a member, or a member only if a caveat expression holds; set
//! operators combine these the way SpiceDB does (union → OR, intersection →
//! AND, exclusion → AND NOT). Caveat evaluation happens at the API edge.

use std::fmt;

use crate::model::ContextualizedCaveat;

/// A boolean formula over the caveats of the relationships a result used.
#[derive(Debug, Clone, PartialEq)]
pub enum CaveatExpr {
    Caveat(ContextualizedCaveat),
    And(Vec<CaveatExpr>),
    Or(Vec<CaveatExpr>),
    Not(Box<CaveatExpr>),
}

impl CaveatExpr {
    fn and(a: CaveatExpr, b: CaveatExpr) -> CaveatExpr {
        match a {
            CaveatExpr::And(mut items) => {
                items.push(b);
                CaveatExpr::And(items)
            }
            a => CaveatExpr::And(vec![a, b]),
        }
    }

    fn or(a: CaveatExpr, b: CaveatExpr) -> CaveatExpr {
        match a {
            CaveatExpr::Or(mut items) => {
                items.push(b);
                CaveatExpr::Or(items)
            }
            a => CaveatExpr::Or(vec![a, b]),
        }
    }

    /// Every caveat the formula mentions, in order, possibly repeated.
    pub fn caveats(&self) -> Vec<&ContextualizedCaveat> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a ContextualizedCaveat>) {
        match self {
            CaveatExpr::Caveat(c) => out.push(c),
            CaveatExpr::And(items) | CaveatExpr::Or(items) => {
                items.iter().for_each(|i| i.collect(out))
            }
            CaveatExpr::Not(inner) => inner.collect(out),
        }
    }
}

impl fmt::Display for CaveatExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaveatExpr::Caveat(c) => f.write_str(&c.name),
            CaveatExpr::And(items) | CaveatExpr::Or(items) => {
                let op = if matches!(self, CaveatExpr::And(_)) {
                    " && "
                } else {
                    " || "
                };
                let parts: Vec<String> = items.iter().map(|i| format!("({i})")).collect();
                f.write_str(&parts.join(op))
            }
            CaveatExpr::Not(inner) => write!(f, "!({inner})"),
        }
    }
}

/// Whether a subject is in a set.
#[derive(Debug, Clone, PartialEq)]
pub enum Membership {
    NotMember,
    Member,
    /// A member only if the expression holds.
    Conditional(CaveatExpr),
}

impl Membership {
    pub fn is_member(&self) -> bool {
        matches!(self, Membership::Member)
    }

    pub fn is_not_member(&self) -> bool {
        matches!(self, Membership::NotMember)
    }

    /// Membership through a relationship that may carry a caveat.
    pub fn through(caveat: Option<&ContextualizedCaveat>) -> Membership {
        match caveat {
            None => Membership::Member,
            Some(c) => Membership::Conditional(CaveatExpr::Caveat(c.clone())),
        }
    }

    /// Membership in A ∪ B. An unconditional path wins outright.
    pub fn union(self, other: Membership) -> Membership {
        match (self, other) {
            (Membership::Member, _) | (_, Membership::Member) => Membership::Member,
            (Membership::NotMember, m) | (m, Membership::NotMember) => m,
            (Membership::Conditional(a), Membership::Conditional(b)) => {
                Membership::Conditional(CaveatExpr::or(a, b))
            }
        }
    }

    /// Membership in A ∩ B.
    pub fn intersect(self, other: Membership) -> Membership {
        match (self, other) {
            (Membership::NotMember, _) | (_, Membership::NotMember) => Membership::NotMember,
            (Membership::Member, m) | (m, Membership::Member) => m,
            (Membership::Conditional(a), Membership::Conditional(b)) => {
                Membership::Conditional(CaveatExpr::and(a, b))
            }
        }
    }

    /// Membership in A − B.
    pub fn exclude(self, subtracted: Membership) -> Membership {
        match (self, subtracted) {
            (Membership::NotMember, _) | (_, Membership::Member) => Membership::NotMember,
            (m, Membership::NotMember) => m,
            (Membership::Member, Membership::Conditional(b)) => {
                Membership::Conditional(CaveatExpr::Not(Box::new(b)))
            }
            (Membership::Conditional(a), Membership::Conditional(b)) => {
                Membership::Conditional(CaveatExpr::and(a, CaveatExpr::Not(Box::new(b))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cav(name: &str) -> Membership {
        Membership::Conditional(CaveatExpr::Caveat(ContextualizedCaveat {
            name: name.into(),
            context: Default::default(),
        }))
    }

    #[test]
    fn set_algebra_follows_spicedb() {
        use Membership::*;
        assert_eq!(Member.union(cav("a")), Member);
        assert_eq!(NotMember.union(cav("a")), cav("a"));
        assert_eq!(Member.intersect(cav("a")), cav("a"));
        assert_eq!(NotMember.intersect(Member), NotMember);
        assert_eq!(Member.exclude(Member), NotMember);
        assert_eq!(Member.exclude(NotMember), Member);
        assert_eq!(NotMember.exclude(cav("b")), NotMember);
        match Member.exclude(cav("b")) {
            Conditional(CaveatExpr::Not(_)) => {}
            other => panic!("expected NOT b, got {other:?}"),
        }
        match cav("a").union(cav("b")).union(cav("c")) {
            Conditional(CaveatExpr::Or(items)) => assert_eq!(items.len(), 3),
            other => panic!("expected a flat OR, got {other:?}"),
        }
    }
}
