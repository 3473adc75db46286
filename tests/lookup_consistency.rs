//! Lookups agree with Check, in the manner of SpiceDB's consistency suite
//! (inventory §9.2), over every SpiceDB test config and schema example:
//! check every permission of every object seen against every subject seen,
//! then require that
//! - LookupResources returns exactly the resources Check allows (HAS or
//!   CONDITIONAL, matching), also when read page by page (every page but
//!   the last full, no duplicates);
//! - LookupSubjects returns exactly the subjects Check allows, a wildcard
//!   covering the ids it does not exclude, also page by page;
//! - Expand, re-expanded recursively as zed does, contains exactly the
//!   subjects Check allows (files without caveats).
//!
//! Checks that fail (the depth limit on cyclic data) are left out.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt as _;

use trellis::datastore::memory::MemoryDatastore;
use trellis::datastore::{RevisionConfig, SystemClock};
use trellis::graph::expand::{ExpandKind, ExpandNode, SetOperation};
use trellis::model::{Consistency, ELLIPSIS, ObjectRef, SubjectRef};
use trellis::schema::RelationBody;
use trellis::service::{
    CheckParams, LookupResourcesParams, LookupSubjectsParams, Permissionship, Services,
};
use trellis::validationfile;

use common::matrix::seen;

type Svc = Services<MemoryDatastore>;

/// Permissionship as a comparable rank: NO < CONDITIONAL < HAS.
fn rank(p: &Permissionship) -> u8 {
    match p {
        Permissionship::NoPermission => 0,
        Permissionship::Conditional { .. } => 1,
        Permissionship::HasPermission => 2,
    }
}

async fn check(
    svc: &Svc,
    resource: &ObjectRef,
    permission: &str,
    subject: &SubjectRef,
) -> Option<u8> {
    let params = CheckParams {
        resource: resource.clone(),
        permission: permission.to_string(),
        subject: subject.clone(),
        context: Default::default(),
    };
    svc.check(params, Consistency::FullyConsistent)
        .await
        .ok()
        .map(|o| rank(&o.permissionship))
}

/// LookupResources, all pages of `limit` (or one unlimited call); fails on
/// a short page before the last or a duplicate.
async fn lookup_resources(
    svc: &Svc,
    resource_type: &str,
    permission: &str,
    subject: &SubjectRef,
    limit: Option<usize>,
) -> Result<BTreeMap<String, u8>, String> {
    let mut found = BTreeMap::new();
    let mut cursor = None;
    loop {
        let params = LookupResourcesParams {
            resource_type: resource_type.to_string(),
            permission: permission.to_string(),
            subject: subject.clone(),
            context: Default::default(),
            limit,
            cursor: cursor.clone(),
        };
        let (_, stream) = svc
            .lookup_resources(params, Consistency::FullyConsistent)
            .await
            .map_err(|e| e.to_string())?;
        let page: Vec<_> = stream.collect().await;
        let count = page.len();
        for item in page {
            let item = item.map_err(|e| e.to_string())?;
            if found
                .insert(item.id.clone(), rank(&item.permissionship))
                .is_some()
            {
                return Err(format!("duplicate result {}", item.id));
            }
            cursor = Some(item.cursor);
        }
        match limit {
            Some(l) if count == l => continue,
            Some(_) if count == 0 && !found.is_empty() => break,
            _ => break,
        }
    }
    Ok(found)
}

/// What LookupSubjects says of each subject id: the concrete entry, or the
/// wildcard's coverage; plus whether an unseen id is covered.
struct SubjectsFound {
    concrete: BTreeMap<String, u8>,
    /// The wildcard's rank and its exclusions' ranks.
    wildcard: Option<(u8, BTreeMap<String, u8>)>,
}

impl SubjectsFound {
    fn verdict(&self, id: &str) -> u8 {
        let concrete = self.concrete.get(id).copied().unwrap_or(0);
        let wildcard = self
            .wildcard
            .as_ref()
            .map_or(0, |(w, excluded)| match excluded.get(id) {
                None => *w,
                Some(2) => 0,
                Some(_) => 1.min(*w),
            });
        concrete.max(wildcard)
    }
}

async fn lookup_subjects(
    svc: &Svc,
    resource: &ObjectRef,
    permission: &str,
    subject_type: &str,
    subject_relation: &str,
    limit: Option<usize>,
) -> Result<SubjectsFound, String> {
    let mut found = SubjectsFound {
        concrete: BTreeMap::new(),
        wildcard: None,
    };
    let mut cursor = None;
    loop {
        let params = LookupSubjectsParams {
            resource: resource.clone(),
            permission: permission.to_string(),
            subject_type: subject_type.to_string(),
            subject_relation: subject_relation.to_string(),
            context: Default::default(),
            include_wildcard: true,
            limit,
            cursor: cursor.clone(),
        };
        let (_, page) = svc
            .lookup_subjects(params, Consistency::FullyConsistent)
            .await
            .map_err(|e| e.to_string())?;
        let concrete_in_page = page.iter().filter(|s| s.id != "*").count();
        for s in page {
            cursor = Some(s.cursor.clone());
            if s.id == "*" {
                if found.wildcard.is_some() {
                    return Err("wildcard returned twice".into());
                }
                let excluded = s
                    .excluded
                    .iter()
                    .map(|(id, p)| (id.clone(), rank(p)))
                    .collect();
                found.wildcard = Some((rank(&s.permissionship), excluded));
            } else if found
                .concrete
                .insert(s.id.clone(), rank(&s.permissionship))
                .is_some()
            {
                return Err(format!("duplicate subject {}", s.id));
            }
        }
        match limit {
            Some(l) if concrete_in_page == l => continue,
            _ => break,
        }
    }
    Ok(found)
}

/// Whether `subject` is in an expansion, re-expanding subject sets as zed
/// does; caveats are ignored (callers use files without them).
fn expanded_member<'a>(
    svc: &'a Svc,
    node: &'a ExpandNode,
    subject: &'a SubjectRef,
    open: &'a mut Vec<(ObjectRef, String)>,
) -> futures::future::BoxFuture<'a, bool> {
    Box::pin(async move {
        // A set contains itself (Check's identity rule).
        if node.object == subject.object && node.relation == subject.relation {
            return true;
        }
        match &node.kind {
            ExpandKind::Leaf(subjects) => {
                for s in subjects {
                    if s == subject
                        // `type:*` covers subject sets of the type too, as in Check.
                        || (s.is_wildcard() && s.object.object_type == subject.object.object_type)
                    {
                        return true;
                    }
                    if s.relation != ELLIPSIS {
                        let key = (s.object.clone(), s.relation.clone());
                        if open.contains(&key) {
                            continue;
                        }
                        let Ok((_, tree)) = svc
                            .expand(
                                s.object.clone(),
                                s.relation.clone(),
                                Consistency::FullyConsistent,
                            )
                            .await
                        else {
                            continue;
                        };
                        open.push(key);
                        let found = expanded_member(svc, &tree, subject, open).await;
                        open.pop();
                        if found {
                            return true;
                        }
                    }
                }
                false
            }
            ExpandKind::Set {
                operation,
                children,
            } => {
                let mut results = Vec::with_capacity(children.len());
                for child in children {
                    results.push(expanded_member(svc, child, subject, open).await);
                }
                match operation {
                    SetOperation::Union => results.iter().any(|r| *r),
                    SetOperation::Intersection => !results.is_empty() && results.iter().all(|r| *r),
                    SetOperation::Exclusion => {
                        results.first().copied().unwrap_or(false)
                            && !results[1..].iter().any(|r| *r)
                    }
                }
            }
        }
    })
}

/// Runs the whole comparison for one file; returns the number of
/// comparisons made, or the disagreements.
async fn compare_file(path: &Path) -> Result<usize, Vec<String>> {
    let loaded = validationfile::load(path).map_err(|e| vec![e.to_string()])?;
    let datastore = Arc::new(MemoryDatastore::new(
        RevisionConfig::default(),
        Arc::new(SystemClock),
    ));
    let svc = trellis::server::services(datastore, Default::default());
    let report = svc.run_validation_file(&loaded).await;
    if report
        .failures
        .iter()
        .any(|f| f.message.starts_with("schema") || f.message.starts_with("relationships"))
    {
        return Err(vec![format!("{}: does not load", path.display())]);
    }
    let schema =
        trellis::schema::compile(&loaded.schema).map_err(|_| vec!["schema".to_string()])?;
    let seen = seen(&loaded, &schema);
    let mut problems = Vec::new();
    let mut compared = 0;

    // Check every permission of every object seen against every subject.
    let mut allowed: HashMap<(ObjectRef, String, SubjectRef), Option<u8>> = HashMap::new();
    for object in &seen.objects {
        let Some(def) = schema.definition(&object.object_type) else {
            continue;
        };
        for relation in &def.relations {
            for subject in &seen.subjects {
                let verdict = check(&svc, object, &relation.name, subject).await;
                allowed.insert(
                    (object.clone(), relation.name.clone(), subject.clone()),
                    verdict,
                );
            }
        }
    }
    let verdict = |o: &ObjectRef, r: &str, s: &SubjectRef| -> Option<u8> {
        allowed
            .get(&(o.clone(), r.to_string(), s.clone()))
            .copied()
            .flatten()
    };

    // LookupResources for every type, permission and subject.
    for def in schema.definitions() {
        for relation in &def.relations {
            for subject in &seen.subjects {
                let mut expected = BTreeMap::new();
                let mut unknown = false;
                for object in seen.objects.iter().filter(|o| o.object_type == def.name) {
                    match verdict(object, &relation.name, subject) {
                        Some(0) => {}
                        Some(v) => {
                            expected.insert(object.object_id.clone(), v);
                        }
                        None => unknown = true,
                    }
                }
                if unknown {
                    continue;
                }
                for limit in [None, Some(1), Some(3)] {
                    compared += 1;
                    match lookup_resources(&svc, &def.name, &relation.name, subject, limit).await {
                        Ok(found) if found == expected => {}
                        Ok(found) => problems.push(format!(
                            "{}: LookupResources {}#{} for {subject} (limit {limit:?}): got {found:?}, Check says {expected:?}",
                            path.display(), def.name, relation.name
                        )),
                        Err(e) => problems.push(format!(
                            "{}: LookupResources {}#{} for {subject}: {e}",
                            path.display(), def.name, relation.name
                        )),
                    }
                }
            }
        }
    }

    // LookupSubjects for every object, permission and subject kind.
    let kinds: BTreeSet<(String, String)> = seen
        .subjects
        .iter()
        .map(|s| (s.object.object_type.clone(), s.relation.clone()))
        .collect();
    for object in &seen.objects {
        let Some(def) = schema.definition(&object.object_type) else {
            continue;
        };
        for relation in &def.relations {
            for (subject_type, subject_relation) in &kinds {
                let candidates: Vec<&SubjectRef> = seen
                    .subjects
                    .iter()
                    .filter(|s| {
                        &s.object.object_type == subject_type && &s.relation == subject_relation
                    })
                    .collect();
                if candidates
                    .iter()
                    .any(|s| verdict(object, &relation.name, s).is_none())
                {
                    continue;
                }
                for limit in [None, Some(2)] {
                    compared += 1;
                    let found = match lookup_subjects(
                        &svc,
                        object,
                        &relation.name,
                        subject_type,
                        subject_relation,
                        limit,
                    )
                    .await
                    {
                        Ok(found) => found,
                        Err(e) => {
                            problems.push(format!(
                                "{}: LookupSubjects {object}#{}: {e}",
                                path.display(),
                                relation.name
                            ));
                            continue;
                        }
                    };
                    for s in &candidates {
                        let expected = verdict(object, &relation.name, s).unwrap_or(0);
                        let got = found.verdict(&s.object.object_id);
                        if got != expected {
                            problems.push(format!(
                                "{}: LookupSubjects {object}#{} ({subject_type}#{subject_relation}, limit {limit:?}) says {got} for {s}, Check says {expected}",
                                path.display(), relation.name
                            ));
                        }
                    }
                    // Subjects no relationship names (subject sets reached
                    // by the walk, the identity) are checked one by one.
                    for (id, got) in &found.concrete {
                        if candidates.iter().any(|s| &s.object.object_id == id) {
                            continue;
                        }
                        let subject = SubjectRef::set(
                            subject_type.clone(),
                            id.clone(),
                            subject_relation.clone(),
                        );
                        let expected = check(&svc, object, &relation.name, &subject).await;
                        if expected.is_some_and(|e| e != *got) {
                            problems.push(format!(
                                "{}: LookupSubjects {object}#{} says {got} for {subject}, Check says {expected:?}",
                                path.display(), relation.name
                            ));
                        }
                    }
                }
            }
        }
    }

    // Expand, recursively, agrees with Check where no caveat is involved.
    if !seen.has_caveats {
        for object in &seen.objects {
            let Some(def) = schema.definition(&object.object_type) else {
                continue;
            };
            for relation in &def.relations {
                let Ok((_, tree)) = svc
                    .expand(
                        object.clone(),
                        relation.name.clone(),
                        Consistency::FullyConsistent,
                    )
                    .await
                else {
                    continue;
                };
                for subject in &seen.subjects {
                    let Some(expected) = verdict(object, &relation.name, subject) else {
                        continue;
                    };
                    // Identity and `self` answers are Check's rules, not the tree's.
                    if matches!(relation.body, RelationBody::Permission(_)) && schema.uses_self() {
                        continue;
                    }
                    compared += 1;
                    let mut open = vec![(object.clone(), relation.name.clone())];
                    let member = expanded_member(&svc, &tree, subject, &mut open).await
                        || (subject.object == *object && subject.relation == relation.name);
                    if member != (expected == 2) {
                        problems.push(format!(
                            "{}: Expand {object}#{} {} {subject}, Check says {expected}",
                            path.display(),
                            relation.name,
                            if member { "contains" } else { "lacks" }
                        ));
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(compared)
    } else {
        Err(problems)
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    common::files_with_extension(dir, "yaml")
}

async fn compare_all(files: Vec<PathBuf>) {
    let mut problems = Vec::new();
    let mut compared = 0;
    for file in &files {
        match compare_file(file).await {
            Ok(n) => compared += n,
            Err(p) => problems.extend(p),
        }
    }
    eprintln!(
        "{} files, {compared} lookups compared with Check",
        files.len()
    );
    assert!(
        problems.is_empty(),
        "{} disagreements:\n{}",
        problems.len(),
        problems
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_agree_with_check_on_schema_examples() {
    compare_all(yaml_files(&common::repo().join("schema-examples"))).await;
}

/// Small cases where SpiceDB's lookups disagree with its own Check (found by
/// the differential test), kept so Trellis's stay with Check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_agree_with_check_where_spicedbs_do_not() {
    compare_all(yaml_files(&common::repo().join("tests/lookups"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_agree_with_check_on_spicedb_test_configs() {
    let Some(dir) = common::shared_testconfigs() else {
        return;
    };
    compare_all(yaml_files(&dir)).await;
}
