//! Owns what the updates of one write batch do to each relationship, for
//! every engine: updates apply in order to a per-key overlay, then each key
//! yields one net outcome, in the order keys first appear (the change
//! feed's order). Engines supply how they find a key's living version and
//! apply the outcomes their own way. Depends on `model` and the port's
//! error type.

use std::collections::HashMap;
use std::hash::Hash;

use super::{DatastoreError, DatastoreResult};
use crate::model::{Relationship, RelationshipUpdate, UpdateOperation};

/// The living version of a key at head, as an engine found it.
#[derive(Debug, Clone)]
pub struct Living<V> {
    /// The engine's handle on the version (a slot, a key).
    pub version: V,
    /// It has expired: invisible, but still to be retired if replaced.
    pub expired: bool,
}

/// The net effect of a batch on one key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyOutcome<'b, V> {
    /// The living version to retire, if any.
    pub retire: Option<V>,
    /// What the change feed reports for the key, if anything.
    pub change: Option<Change<'b>>,
}

/// A change-feed entry of a key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change<'b> {
    /// A new version is written (CREATE or TOUCH).
    Touch(&'b Relationship),
    /// The visible living version is deleted.
    Delete,
}

struct KeyPlan<'b, V> {
    old: Option<Living<V>>,
    retire_old: bool,
    new: Option<&'b Relationship>,
}

/// Plans `updates`. `living` finds a relationship's key and its living
/// version at head (it may fail, e.g. on a name the engine cannot store).
/// A CREATE of a visible relationship fails with `AlreadyExists`. (The API
/// forbids two updates of one key in a batch; should one come anyway, the
/// last wins.)
pub fn plan<'b, K, V>(
    updates: &'b [RelationshipUpdate],
    mut living: impl FnMut(&'b Relationship) -> DatastoreResult<(K, Option<Living<V>>)>,
) -> DatastoreResult<Vec<KeyOutcome<'b, V>>>
where
    K: Hash + Eq,
{
    let mut keys: Vec<KeyPlan<'b, V>> = Vec::new();
    let mut by_key: HashMap<K, usize> = HashMap::new();
    for update in updates {
        let rel = &update.relationship;
        let (key, old) = living(rel)?;
        let i = *by_key.entry(key).or_insert_with(|| {
            keys.push(KeyPlan {
                old,
                retire_old: false,
                new: None,
            });
            keys.len() - 1
        });
        let k = &mut keys[i];
        let old_visible = k.old.as_ref().is_some_and(|o| !o.expired);
        match update.operation {
            UpdateOperation::Create => {
                if k.new.is_some() || (old_visible && !k.retire_old) {
                    return Err(DatastoreError::AlreadyExists(Box::new(rel.key())));
                }
                k.new = Some(rel);
                k.retire_old = k.old.is_some();
            }
            UpdateOperation::Touch => {
                k.new = Some(rel);
                k.retire_old = k.old.is_some();
            }
            UpdateOperation::Delete => {
                k.new = None;
                k.retire_old |= old_visible;
            }
        }
    }
    Ok(keys.into_iter().map(outcome).collect())
}

fn outcome<V>(k: KeyPlan<'_, V>) -> KeyOutcome<'_, V> {
    let old_visible = k.old.as_ref().is_some_and(|o| !o.expired);
    let change = match k.new {
        Some(new) => Some(Change::Touch(new)),
        None if k.retire_old && old_visible => Some(Change::Delete),
        None => None,
    };
    KeyOutcome {
        retire: k.old.filter(|_| k.retire_old).map(|o| o.version),
        change,
    }
}
