//! The schema's syntax tree, as written: names keep their source spans so
//! every later error can point at the text that caused it. Built by
//! `parser`, consumed by `compile`; nothing else depends on it.

/// A byte range in the schema source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }
}

/// An identifier or type path together with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub text: String,
    pub span: Span,
}

/// A whole schema file.
#[derive(Debug, Clone, Default)]
pub struct SchemaFile {
    pub use_flags: Vec<Name>,
    pub definitions: Vec<DefinitionAst>,
    pub partials: Vec<DefinitionAst>,
    pub caveats: Vec<CaveatAst>,
    pub imports: Vec<Name>,
}

/// `definition name { ... }` or `partial name { ... }`.
#[derive(Debug, Clone)]
pub struct DefinitionAst {
    pub name: Name,
    pub doc: Vec<String>,
    pub members: Vec<Member>,
}

/// One statement inside a definition body.
#[derive(Debug, Clone)]
pub enum Member {
    Relation(RelationAst),
    /// `relation name:` with an empty type list.
    UntypedRelation(Name),
    Permission(PermissionAst),
    /// `...partial_name`: splices a partial's members here.
    PartialRef(Name),
}

/// `relation name: type | type ...`
#[derive(Debug, Clone)]
pub struct RelationAst {
    pub name: Name,
    pub doc: Vec<String>,
    pub types: Vec<TypeRefAst>,
}

/// One allowed subject type of a relation.
#[derive(Debug, Clone)]
pub struct TypeRefAst {
    pub type_name: Name,
    pub target: TypeTargetAst,
    pub caveat: Option<Name>,
    pub expiration: bool,
    pub span: Span,
}

/// What follows the type name: nothing, `:*`, `#...` or `#relation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeTargetAst {
    Object,
    Wildcard,
    Ellipsis,
    Relation(Name),
}

/// `permission name[: annotations] = expr`
#[derive(Debug, Clone)]
pub struct PermissionAst {
    pub name: Name,
    pub doc: Vec<String>,
    pub annotations: Vec<Name>,
    pub expr: ExprAst,
}

/// A permission expression. Operator chains are kept n-ary (exclusion is
/// left-associative: `a - b - c` is `(a - b) - c`), so a long chain costs no
/// recursion depth.
#[derive(Debug, Clone)]
pub enum ExprAst {
    Union(Vec<ExprAst>),
    Intersection(Vec<ExprAst>),
    Exclusion(Vec<ExprAst>),
    Computed(Name),
    /// `base->x`, `base.any(x)`, `base.all(x)`, possibly chained.
    Arrow {
        base: Name,
        steps: Vec<ArrowStep>,
    },
    Nil(Span),
    SelfRef(Span),
}

/// One link of an arrow chain.
#[derive(Debug, Clone)]
pub struct ArrowStep {
    pub function: ArrowFunction,
    pub target: Name,
    pub span: Span,
}

/// How an arrow combines the objects it walks to. `->` and `.any()` evaluate
/// the same way but are stored (and printed) apart, as SpiceDB does;
/// `.all()` is the intersection arrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArrowFunction {
    Arrow,
    Any,
    All,
}

impl ArrowFunction {
    /// Whether the subject must reach the permission through every object.
    pub fn requires_all(self) -> bool {
        self == ArrowFunction::All
    }
}

/// `caveat name(params) { expression }`
#[derive(Debug, Clone)]
pub struct CaveatAst {
    pub name: Name,
    pub doc: Vec<String>,
    pub parameters: Vec<ParameterAst>,
    pub expression: String,
    pub expression_span: Span,
}

/// `name type` in a caveat's parameter list.
#[derive(Debug, Clone)]
pub struct ParameterAst {
    pub name: Name,
    pub type_ref: CaveatTypeAst,
}

/// A caveat parameter type such as `int` or `list<map<string>>`.
#[derive(Debug, Clone)]
pub struct CaveatTypeAst {
    pub name: Name,
    pub children: Vec<CaveatTypeAst>,
}
