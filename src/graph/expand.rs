//! ExpandPermissionTree: the tree of a relation or permission, one level of
//! data deep, as SpiceDB's SHALLOW expansion builds it (inventory §4.4).
//! A permission's rewrite becomes union, intersection and exclusion nodes;
//! computed usersets and arrows are expanded in place (an arrow is a union
//! over the objects its tupleset names, `.all()` an intersection); a
//! relation becomes a leaf listing its stored subjects, subject sets
//! included, without following them. Caveats are not part of the tree.

use crate::datastore::Reader;
use crate::dispatch::{BoxFuture, CheckError};
use crate::model::{ELLIPSIS, ObjectRef, SubjectRef};
use crate::schema::{ArrowFunction, CompiledSchema, RelationBody, Rewrite};

/// A set operation of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOperation {
    Union,
    Intersection,
    Exclusion,
}

/// One node, labelled with the `object#relation` it expands.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpandNode {
    pub object: ObjectRef,
    pub relation: String,
    pub kind: ExpandKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExpandKind {
    Set {
        operation: SetOperation,
        children: Vec<ExpandNode>,
    },
    /// Stored subjects: objects first, then subject sets.
    Leaf(Vec<SubjectRef>),
}

/// Expands `object#relation`; fails when data recursion goes deeper than
/// `max_depth` nested relations.
pub async fn expand<R: Reader>(
    reader: &R,
    schema: &CompiledSchema,
    object: &ObjectRef,
    relation: &str,
    max_depth: u32,
) -> Result<ExpandNode, CheckError> {
    super::resolve_relation(schema, &object.object_type, relation)?;
    let expander = Expander { reader, schema };
    expander.relation(object, relation, max_depth).await
}

struct Expander<'a, R> {
    reader: &'a R,
    schema: &'a CompiledSchema,
}

impl<R: Reader> Expander<'_, R> {
    fn relation<'s>(
        &'s self,
        object: &'s ObjectRef,
        relation: &'s str,
        depth: u32,
    ) -> BoxFuture<'s, Result<ExpandNode, CheckError>> {
        Box::pin(async move {
            if depth == 0 {
                return Err(CheckError::MaxDepthExceeded);
            }
            let Some(definition) = self.schema.relation(&object.object_type, relation) else {
                return Ok(empty(object, relation));
            };
            match &definition.body {
                RelationBody::Direct(_) => self.leaf(object, relation).await,
                RelationBody::Permission(rewrite) => {
                    self.rewrite(object, relation, rewrite, depth).await
                }
            }
        })
    }

    async fn leaf(&self, object: &ObjectRef, relation: &str) -> Result<ExpandNode, CheckError> {
        let rels = self
            .reader
            .query_resources(&object.object_type, &[&object.object_id], relation, &[])
            .await?;
        let (mut subjects, sets): (Vec<SubjectRef>, Vec<SubjectRef>) = rels
            .into_iter()
            .map(|r| r.subject)
            .partition(|s| s.relation == ELLIPSIS);
        subjects.extend(sets);
        Ok(ExpandNode {
            object: object.clone(),
            relation: relation.to_string(),
            kind: ExpandKind::Leaf(subjects),
        })
    }

    fn rewrite<'s>(
        &'s self,
        object: &'s ObjectRef,
        relation: &'s str,
        rewrite: &'s Rewrite,
        depth: u32,
    ) -> BoxFuture<'s, Result<ExpandNode, CheckError>> {
        Box::pin(async move {
            let (operation, operands): (SetOperation, Vec<&Rewrite>) = match rewrite {
                Rewrite::Union(children) => (SetOperation::Union, children.iter().collect()),
                Rewrite::Intersection(children) => {
                    (SetOperation::Intersection, children.iter().collect())
                }
                Rewrite::Exclusion(base, subtracted) => (
                    SetOperation::Exclusion,
                    vec![base.as_ref(), subtracted.as_ref()],
                ),
                // A bare operand only occurs inside a set operation.
                other => return self.operand(object, relation, other, depth).await,
            };
            let mut children = Vec::with_capacity(operands.len());
            for operand in operands {
                children.push(self.operand(object, relation, operand, depth).await?);
            }
            Ok(set(object, relation, operation, children))
        })
    }

    /// One operand of a set operation.
    async fn operand(
        &self,
        object: &ObjectRef,
        relation: &str,
        operand: &Rewrite,
        depth: u32,
    ) -> Result<ExpandNode, CheckError> {
        match operand {
            Rewrite::Union(_) | Rewrite::Intersection(_) | Rewrite::Exclusion(..) => {
                self.rewrite(object, relation, operand, depth).await
            }
            Rewrite::Computed(target) => self.relation(object, target, depth - 1).await,
            Rewrite::Arrow {
                tupleset,
                computed,
                function,
            } => {
                self.arrow(object, relation, tupleset, computed, *function, depth)
                    .await
            }
            Rewrite::Nil => Ok(empty(object, relation)),
            Rewrite::SelfRef => Ok(ExpandNode {
                object: object.clone(),
                relation: relation.to_string(),
                kind: ExpandKind::Leaf(vec![SubjectRef::object(
                    object.object_type.clone(),
                    object.object_id.clone(),
                )]),
            }),
        }
    }

    async fn arrow(
        &self,
        object: &ObjectRef,
        relation: &str,
        tupleset: &str,
        computed: &str,
        function: ArrowFunction,
        depth: u32,
    ) -> Result<ExpandNode, CheckError> {
        let rels = self
            .reader
            .query_resources(&object.object_type, &[&object.object_id], tupleset, &[])
            .await?;
        let mut children = Vec::with_capacity(rels.len());
        for rel in rels {
            let target = rel.subject.object;
            children.push(
                if self
                    .schema
                    .relation(&target.object_type, computed)
                    .is_some()
                {
                    self.relation(&target, computed, depth - 1).await?
                } else {
                    empty(object, relation)
                },
            );
        }
        let operation = if function.requires_all() {
            SetOperation::Intersection
        } else {
            SetOperation::Union
        };
        Ok(set(object, relation, operation, children))
    }
}

fn set(
    object: &ObjectRef,
    relation: &str,
    operation: SetOperation,
    children: Vec<ExpandNode>,
) -> ExpandNode {
    ExpandNode {
        object: object.clone(),
        relation: relation.to_string(),
        kind: ExpandKind::Set {
            operation,
            children,
        },
    }
}

fn empty(object: &ObjectRef, relation: &str) -> ExpandNode {
    ExpandNode {
        object: object.clone(),
        relation: relation.to_string(),
        kind: ExpandKind::Leaf(Vec::new()),
    }
}
