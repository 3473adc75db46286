//! The compiled schema: definitions, their relations with allowed subject
//! types, permissions as rewrite trees, caveats, and what is precomputed for
//! evaluation (reachability, a stable hash). This is the only schema type the
//! engine sees; it is immutable and cheap to share behind an `Arc`.

use std::collections::{BTreeSet, HashMap};

pub use super::ast::ArrowFunction;
use super::reachability::Reachability;

/// A schema that parsed, compiled and type-checked.
#[derive(Debug, Clone)]
pub struct CompiledSchema {
    pub(super) definitions: Vec<Definition>,
    pub(super) caveats: Vec<CaveatDefinition>,
    pub(super) definition_index: HashMap<String, usize>,
    pub(super) caveat_index: HashMap<String, usize>,
    pub(super) reachability: Reachability,
    pub(super) hash: [u8; 32],
}

impl CompiledSchema {
    /// Object definitions, sorted by name.
    pub fn definitions(&self) -> &[Definition] {
        &self.definitions
    }

    /// Caveat definitions, sorted by name.
    pub fn caveats(&self) -> &[CaveatDefinition] {
        &self.caveats
    }

    pub fn definition(&self, name: &str) -> Option<&Definition> {
        self.definition_index
            .get(name)
            .map(|&i| &self.definitions[i])
    }

    pub fn caveat(&self, name: &str) -> Option<&CaveatDefinition> {
        self.caveat_index.get(name).map(|&i| &self.caveats[i])
    }

    /// A relation or permission by type and name.
    pub fn relation(&self, type_name: &str, relation: &str) -> Option<&Relation> {
        self.definition(type_name)?.relation(relation)
    }

    /// The reverse graph that lookups walk, and the subject types that can
    /// reach each relation.
    pub fn reachability(&self) -> &Reachability {
        &self.reachability
    }

    /// SHA-256 of the canonical printed text: equal schemas hash equally,
    /// whatever their formatting or declaration order.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// The hash as lowercase hex.
    pub fn hash_hex(&self) -> String {
        self.hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether any relation allows `with expiration` (printed as `use expiration`).
    pub fn uses_expiration(&self) -> bool {
        self.definitions.iter().any(|d| {
            d.relations.iter().any(|r| match &r.body {
                RelationBody::Direct(types) => types.iter().any(|t| t.expiration),
                RelationBody::Permission(_) => false,
            })
        })
    }

    /// Whether any permission uses `self` (printed as `use self`).
    pub fn uses_self(&self) -> bool {
        self.definitions.iter().any(|d| {
            d.relations.iter().any(|r| match &r.body {
                RelationBody::Permission(rewrite) => {
                    rewrite.any(&|n| matches!(n, Rewrite::SelfRef))
                }
                RelationBody::Direct(_) => false,
            })
        })
    }
}

/// Structural equality: same definitions, relations, rewrites, caveats and
/// doc comments. Precomputed data follows from these, so it is not compared.
impl PartialEq for CompiledSchema {
    fn eq(&self, other: &Self) -> bool {
        self.definitions == other.definitions && self.caveats == other.caveats
    }
}

/// Doc comments on a declaration, kept as SpiceDB stores them: each
/// comment as written, delimiters included, every line trimmed
/// (ReflectSchema returns them so, DiffSchema compares them so). The printer
/// writes them in canonical form instead, and equality is equality of that
/// form, so printing a schema and compiling the text again gives an equal
/// schema even where a comment was written `//like this`.
#[derive(Debug, Clone, Default)]
pub struct DocComments(Vec<String>);

impl DocComments {
    /// Comments already in written form (see `written_comment`).
    pub fn new(comments: Vec<String>) -> Self {
        Self(comments)
    }

    /// Each comment as written, lines trimmed.
    pub fn as_written(&self) -> &[String] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The comments joined by newlines: ReflectSchema's `comment` field.
    pub fn joined(&self) -> String {
        self.0.join("\n")
    }

    /// Each comment as the printer writes it.
    pub fn canonical(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|c| super::print::canonical_comment(c))
    }
}

impl PartialEq for DocComments {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && self.canonical().eq(other.canonical())
    }
}

/// `definition name { ... }`
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub name: String,
    pub doc: DocComments,
    /// Relations and permissions in declared order.
    pub relations: Vec<Relation>,
    pub(super) relation_index: HashMap<String, usize>,
}

impl Definition {
    pub fn relation(&self, name: &str) -> Option<&Relation> {
        self.relation_index.get(name).map(|&i| &self.relations[i])
    }

    /// Whether `name` is a permission (as opposed to a relation) here.
    pub fn is_permission(&self, name: &str) -> bool {
        self.relation(name).is_some_and(Relation::is_permission)
    }
}

/// A relation (stored subjects) or a permission (computed).
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub name: String,
    pub doc: DocComments,
    pub body: RelationBody,
}

impl Relation {
    pub fn is_permission(&self) -> bool {
        matches!(self.body, RelationBody::Permission(_))
    }

    /// The allowed subject types, for a relation; empty for a permission.
    pub fn allowed_types(&self) -> &[AllowedSubjectType] {
        match &self.body {
            RelationBody::Direct(types) => types,
            RelationBody::Permission(_) => &[],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RelationBody {
    /// A relation and the subject types it allows, in declared order.
    Direct(Vec<AllowedSubjectType>),
    /// A permission and its rewrite; the root is always a set operation.
    Permission(Rewrite),
}

/// One entry of a relation's type list: `user`, `user:*`, `group#member`,
/// optionally `with caveat`, `with expiration` or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AllowedSubjectType {
    pub type_name: String,
    pub target: SubjectTarget,
    pub caveat: Option<String>,
    pub expiration: bool,
}

/// What a subject of a given type must be.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectTarget {
    /// The object itself (`user`, or `user#...`).
    Object,
    /// Every object of the type (`user:*`).
    Wildcard,
    /// A subject set (`group#member`).
    Relation(String),
}

/// A permission's rewrite tree. Unions and intersections are flattened;
/// exclusion is binary and left-associative.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rewrite {
    Union(Vec<Rewrite>),
    Intersection(Vec<Rewrite>),
    Exclusion(Box<Rewrite>, Box<Rewrite>),
    /// Another relation or permission on the same object.
    Computed(String),
    /// `tupleset->computed`, `tupleset.any(computed)` or `tupleset.all(computed)`.
    Arrow {
        tupleset: String,
        computed: String,
        function: ArrowFunction,
    },
    Nil,
    SelfRef,
}

impl Rewrite {
    /// Whether `pred` holds for this node or any node below it.
    pub fn any(&self, pred: &dyn Fn(&Rewrite) -> bool) -> bool {
        if pred(self) {
            return true;
        }
        match self {
            Rewrite::Union(children) | Rewrite::Intersection(children) => {
                children.iter().any(|c| c.any(pred))
            }
            Rewrite::Exclusion(base, subtracted) => base.any(pred) || subtracted.any(pred),
            _ => false,
        }
    }
}

/// `caveat name(params) { expression }`
#[derive(Debug, Clone, PartialEq)]
pub struct CaveatDefinition {
    pub name: String,
    pub doc: DocComments,
    /// Parameters sorted by name.
    pub parameters: Vec<(String, CaveatType)>,
    /// The CEL source as written, each line trimmed.
    pub expression: String,
    /// `expression` parsed (macros expanded), for evaluation.
    pub ast: std::sync::Arc<cel::IdedExpr>,
}

/// A caveat parameter type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CaveatType {
    Any,
    Bool,
    String,
    Int,
    Uint,
    Double,
    Bytes,
    Duration,
    Timestamp,
    IpAddress,
    List(Box<CaveatType>),
    Map(Box<CaveatType>),
}

impl std::fmt::Display for CaveatType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaveatType::Any => f.write_str("any"),
            CaveatType::Bool => f.write_str("bool"),
            CaveatType::String => f.write_str("string"),
            CaveatType::Int => f.write_str("int"),
            CaveatType::Uint => f.write_str("uint"),
            CaveatType::Double => f.write_str("double"),
            CaveatType::Bytes => f.write_str("bytes"),
            CaveatType::Duration => f.write_str("duration"),
            CaveatType::Timestamp => f.write_str("timestamp"),
            CaveatType::IpAddress => f.write_str("ipaddress"),
            CaveatType::List(t) => write!(f, "list<{t}>"),
            CaveatType::Map(t) => write!(f, "map<{t}>"),
        }
    }
}

/// A subject type that can end up in a relation's or permission's subject set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectTypeRef {
    pub type_name: String,
    pub target: SubjectTarget,
}

/// Convenience for callers that want the reachable subject types as a set.
pub type SubjectTypeSet = BTreeSet<SubjectTypeRef>;
