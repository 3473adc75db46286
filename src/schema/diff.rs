//! What changed between two schemas, as SpiceDB's DiffSchema reports it:
//! nineteen kinds of change, by name, in SpiceDB's order of groups (added
//! then removed definitions, added then removed caveats, then each changed
//! definition, then each changed caveat). Within a group SpiceDB's order is
//! Go's map order, which varies from call to call; here it is by name, and
//! allowed subject types keep their declared order.
//!
//! The rules are SpiceDB's: a name that turns from relation into permission
//! is a removed relation and an added permission; a permission changed when
//! its rewrite tree differs (so `a + b` → `b + a` is a change, added
//! parentheses are not); a relation's subject types compare as written
//! (`user` and `user with expiration` are different types); doc comments
//! compare as written, delimiters and inner spacing included.

use super::cel_check;
use super::compiled::*;

/// One difference. Names refer to the comparison schema for added and
/// changed items and to the existing schema for removed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChange {
    DefinitionAdded(String),
    DefinitionRemoved(String),
    CaveatAdded(String),
    CaveatRemoved(String),
    DefinitionDocChanged(String),
    RelationRemoved {
        definition: String,
        relation: String,
    },
    RelationAdded {
        definition: String,
        relation: String,
    },
    PermissionRemoved {
        definition: String,
        permission: String,
    },
    PermissionAdded {
        definition: String,
        permission: String,
    },
    PermissionExprChanged {
        definition: String,
        permission: String,
    },
    PermissionDocChanged {
        definition: String,
        permission: String,
    },
    RelationDocChanged {
        definition: String,
        relation: String,
    },
    /// A subject type the existing relation allowed and the comparison's
    /// does not (the type as the existing schema wrote it).
    SubjectTypeRemoved {
        definition: String,
        relation: String,
        subject_type: AllowedSubjectType,
    },
    SubjectTypeAdded {
        definition: String,
        relation: String,
        subject_type: AllowedSubjectType,
    },
    CaveatDocChanged(String),
    CaveatParameterRemoved {
        caveat: String,
        parameter: String,
    },
    CaveatParameterAdded {
        caveat: String,
        parameter: String,
    },
    CaveatParameterTypeChanged {
        caveat: String,
        parameter: String,
        previous: CaveatType,
    },
    CaveatExprChanged(String),
}

/// The changes that turn `existing` into `comparison`.
pub fn diff(existing: &CompiledSchema, comparison: &CompiledSchema) -> Vec<SchemaChange> {
    use SchemaChange as C;
    let mut changes = Vec::new();
    // Definitions and caveats are sorted by name in a compiled schema.
    let added_defs = comparison
        .definitions()
        .iter()
        .filter(|d| existing.definition(&d.name).is_none());
    changes.extend(added_defs.map(|d| C::DefinitionAdded(d.name.clone())));
    let removed_defs = existing
        .definitions()
        .iter()
        .filter(|d| comparison.definition(&d.name).is_none());
    changes.extend(removed_defs.map(|d| C::DefinitionRemoved(d.name.clone())));
    let added_caveats = comparison
        .caveats()
        .iter()
        .filter(|c| existing.caveat(&c.name).is_none());
    changes.extend(added_caveats.map(|c| C::CaveatAdded(c.name.clone())));
    let removed_caveats = existing
        .caveats()
        .iter()
        .filter(|c| comparison.caveat(&c.name).is_none());
    changes.extend(removed_caveats.map(|c| C::CaveatRemoved(c.name.clone())));
    for old in existing.definitions() {
        if let Some(new) = comparison.definition(&old.name) {
            diff_definition(old, new, &mut changes);
        }
    }
    for old in existing.caveats() {
        if let Some(new) = comparison.caveat(&old.name) {
            diff_caveat(old, new, &mut changes);
        }
    }
    changes
}

/// The members of a definition of one kind, sorted by name.
fn members(def: &Definition, permissions: bool) -> Vec<&Relation> {
    let mut found: Vec<&Relation> = def
        .relations
        .iter()
        .filter(|r| r.is_permission() == permissions)
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// `name` is in `of` (a sorted member list).
fn has(of: &[&Relation], name: &str) -> bool {
    of.binary_search_by(|r| r.name.as_str().cmp(name)).is_ok()
}

fn diff_definition(old: &Definition, new: &Definition, out: &mut Vec<SchemaChange>) {
    use SchemaChange as C;
    let definition = || old.name.clone();
    if old.doc.as_written() != new.doc.as_written() {
        out.push(C::DefinitionDocChanged(definition()));
    }
    let (old_rels, new_rels) = (members(old, false), members(new, false));
    let (old_perms, new_perms) = (members(old, true), members(new, true));
    for r in old_rels.iter().filter(|r| !has(&new_rels, &r.name)) {
        out.push(C::RelationRemoved {
            definition: definition(),
            relation: r.name.clone(),
        });
    }
    for r in new_rels.iter().filter(|r| !has(&old_rels, &r.name)) {
        out.push(C::RelationAdded {
            definition: definition(),
            relation: r.name.clone(),
        });
    }
    for p in old_perms.iter().filter(|p| !has(&new_perms, &p.name)) {
        out.push(C::PermissionRemoved {
            definition: definition(),
            permission: p.name.clone(),
        });
    }
    for p in new_perms.iter().filter(|p| !has(&old_perms, &p.name)) {
        out.push(C::PermissionAdded {
            definition: definition(),
            permission: p.name.clone(),
        });
    }
    for old_perm in &old_perms {
        let Some(new_perm) = new.relation(&old_perm.name).filter(|r| r.is_permission()) else {
            continue;
        };
        if old_perm.body != new_perm.body {
            out.push(C::PermissionExprChanged {
                definition: definition(),
                permission: old_perm.name.clone(),
            });
        }
        if old_perm.doc.as_written() != new_perm.doc.as_written() {
            out.push(C::PermissionDocChanged {
                definition: definition(),
                permission: old_perm.name.clone(),
            });
        }
    }
    for old_rel in &old_rels {
        let Some(new_rel) = new.relation(&old_rel.name).filter(|r| !r.is_permission()) else {
            continue;
        };
        if old_rel.doc.as_written() != new_rel.doc.as_written() {
            out.push(C::RelationDocChanged {
                definition: definition(),
                relation: old_rel.name.clone(),
            });
        }
        let (old_types, new_types) = (old_rel.allowed_types(), new_rel.allowed_types());
        for t in distinct(old_types).filter(|t| !new_types.contains(t)) {
            out.push(C::SubjectTypeRemoved {
                definition: definition(),
                relation: old_rel.name.clone(),
                subject_type: t.clone(),
            });
        }
        for t in distinct(new_types).filter(|t| !old_types.contains(t)) {
            out.push(C::SubjectTypeAdded {
                definition: definition(),
                relation: old_rel.name.clone(),
                subject_type: t.clone(),
            });
        }
    }
}

/// Each allowed type once, in declared order. Types are equal exactly when
/// SpiceDB writes them the same (`group#member with cav and expiration`).
fn distinct(types: &[AllowedSubjectType]) -> impl Iterator<Item = &AllowedSubjectType> {
    types
        .iter()
        .enumerate()
        .filter(move |(i, t)| !types[..*i].contains(t))
        .map(|(_, t)| t)
}

fn diff_caveat(old: &CaveatDefinition, new: &CaveatDefinition, out: &mut Vec<SchemaChange>) {
    use SchemaChange as C;
    let caveat = || old.name.clone();
    if old.doc.as_written() != new.doc.as_written() {
        out.push(C::CaveatDocChanged(caveat()));
    }
    // Parameters are sorted by name in a compiled caveat.
    let find = |params: &[(String, CaveatType)], name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    };
    for (name, _) in old
        .parameters
        .iter()
        .filter(|(n, _)| find(&new.parameters, n).is_none())
    {
        out.push(C::CaveatParameterRemoved {
            caveat: caveat(),
            parameter: name.clone(),
        });
    }
    for (name, _) in new
        .parameters
        .iter()
        .filter(|(n, _)| find(&old.parameters, n).is_none())
    {
        out.push(C::CaveatParameterAdded {
            caveat: caveat(),
            parameter: name.clone(),
        });
    }
    for (name, previous) in &old.parameters {
        if let Some(current) = find(&new.parameters, name)
            && current != *previous
        {
            out.push(C::CaveatParameterTypeChanged {
                caveat: caveat(),
                parameter: name.clone(),
                previous: previous.clone(),
            });
        }
    }
    if expression_changed(old, new) {
        out.push(C::CaveatExprChanged(caveat()));
    }
}

/// SpiceDB compares the serialized, type-checked CEL: the expression's text
/// (its source positions are in there) and the types the checker gave each
/// node. So a changed text is a change, and so is a new checker type for a
/// parameter the expression reads, even with the text unchanged.
fn expression_changed(old: &CaveatDefinition, new: &CaveatDefinition) -> bool {
    if old.expression != new.expression {
        return true;
    }
    let references = old.ast.references();
    old.parameters
        .iter()
        .filter(|(name, _)| references.has_variable(name))
        .any(|(name, previous)| {
            new.parameters
                .iter()
                .find(|(n, _)| n == name)
                .is_some_and(|(_, current)| !cel_check::same_to_checker(previous, current))
        })
}

#[cfg(test)]
mod tests;
