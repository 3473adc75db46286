//! The checks a validation file invites: every relation and permission of
//! every object its relationships mention, against every subject they
//! mention (and one subject of each type that appears nowhere, which only
//! wildcards reach). Shared by the suites that hold one API to another or
//! one deployment to another (`lookup_consistency`, `dispatch_cluster`).

use std::collections::BTreeSet;

use trellis::model::{ObjectRef, SubjectRef, parse_relationship};
use trellis::schema::CompiledSchema;
use trellis::validationfile::LoadedFile;

/// A file's objects and subjects, as its relationships mention them.
pub struct Seen {
    pub objects: BTreeSet<ObjectRef>,
    pub subjects: BTreeSet<SubjectRef>,
    pub has_caveats: bool,
}

/// The objects and subjects of `loaded`'s relationships under `schema`.
pub fn seen(loaded: &LoadedFile, schema: &CompiledSchema) -> Seen {
    let mut objects = BTreeSet::new();
    let mut subjects = BTreeSet::new();
    let mut has_caveats = !schema.caveats().is_empty();
    let text = loaded.file.relationships.clone().unwrap_or_default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let Ok(rel) = parse_relationship(line) else {
            continue;
        };
        has_caveats |= rel.caveat.is_some();
        objects.insert(rel.resource.clone());
        if !rel.subject.is_wildcard() {
            objects.insert(rel.subject.object.clone());
            subjects.insert(rel.subject.clone());
            subjects.insert(SubjectRef::object(
                rel.subject.object.object_type.clone(),
                rel.subject.object.object_id.clone(),
            ));
        }
    }
    // One subject of each type that appears nowhere: only wildcards reach it.
    for def in schema.definitions() {
        subjects.insert(SubjectRef::object(def.name.clone(), "nobody-anywhere"));
    }
    Seen {
        objects,
        subjects,
        has_caveats,
    }
}

impl Seen {
    /// Every (object, relation or permission of its type, subject), in a
    /// fixed order.
    pub fn checks(&self, schema: &CompiledSchema) -> Vec<(ObjectRef, String, SubjectRef)> {
        let mut checks = Vec::new();
        for object in &self.objects {
            let Some(def) = schema.definition(&object.object_type) else {
                continue;
            };
            for relation in &def.relations {
                for subject in &self.subjects {
                    checks.push((object.clone(), relation.name.clone(), subject.clone()));
                }
            }
        }
        checks
    }
}
