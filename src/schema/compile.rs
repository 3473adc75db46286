//! Syntax tree → `CompiledSchema`. Translates each definition and caveat,
//! splices partials, enforces the rules SpiceDB's translator enforces (name
//! shapes, duplicates, nested arrows, caveat signatures), then hands the
//! result to `validate` for the cross-definition type checks.

use std::collections::{HashMap, HashSet};

use super::ast::*;
use super::caveat;
use super::compiled::*;
use super::diagnostic::{Diagnostic, ErrorKind, SchemaErrors};
use super::{names, print, reachability, validate};

/// Compiles a parsed schema, reporting every error found.
pub fn compile(file: &SchemaFile) -> Result<CompiledSchema, SchemaErrors> {
    compile_with(file, true)
}

/// Translates a parsed schema without the type system's cross-definition
/// checks: what SpiceDB's compiler alone accepts (DiffSchema compiles its
/// comparison schema this way). Names may refer to nothing; nothing that
/// evaluates must be given such a schema.
pub fn translate_only(file: &SchemaFile) -> Result<CompiledSchema, SchemaErrors> {
    compile_with(file, false)
}

/// Translation with the rules SpiceDB's translator enforces, then (if
/// `check_types`) the type system's checks.
fn compile_with(file: &SchemaFile, check_types: bool) -> Result<CompiledSchema, SchemaErrors> {
    let mut cx = Compiler::new(file, check_types);
    if let Some(import) = file.imports.first() {
        cx.error(
            ErrorKind::ImportNotSupported,
            import.span,
            "import statements are not supported by WriteSchema; inline the imported schema",
        );
    }
    let partials = cx.resolve_partials(&file.partials);

    let mut definitions = Vec::new();
    for def in &file.definitions {
        if let Some(compiled) = cx.definition(def, &partials) {
            definitions.push(compiled);
        }
    }
    let mut caveats = Vec::new();
    for cav in &file.caveats {
        if let Some(compiled) = cx.caveat(cav) {
            caveats.push(compiled);
        }
    }
    cx.check_name_reuse(file);
    cx.finish()?;

    definitions.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    caveats.sort_by(|a, b| a.name.cmp(&b.name));
    let (definitions, sources): (Vec<Definition>, Vec<validate::MemberSources>) =
        definitions.into_iter().unzip();
    let schema = assemble(definitions, caveats);
    if !check_types {
        return Ok(schema);
    }

    let typechecking = file.use_flags.iter().any(|f| f.text == "typechecking");
    let diagnostics = validate::validate(&schema, &sources, typechecking);
    if !diagnostics.is_empty() {
        return Err(sorted(diagnostics));
    }
    Ok(schema)
}

/// Builds the indexes, reachability and hash of translated parts.
pub(super) fn assemble(
    definitions: Vec<Definition>,
    caveats: Vec<CaveatDefinition>,
) -> CompiledSchema {
    let definition_index = definitions
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.clone(), i))
        .collect();
    let caveat_index = caveats
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    let mut schema = CompiledSchema {
        definitions,
        caveats,
        definition_index,
        caveat_index,
        reachability: Default::default(),
        hash: [0; 32],
    };
    schema.reachability = reachability::Reachability::compute(&schema);
    schema.hash = print::hash(&schema);
    schema
}

fn sorted(mut diagnostics: Vec<Diagnostic>) -> SchemaErrors {
    diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
    diagnostics.dedup();
    SchemaErrors { diagnostics }
}

/// Members of a partial after its own `...` references were spliced in.
type ResolvedPartials = HashMap<String, Vec<Member>>;

struct Compiler<'a> {
    file: &'a SchemaFile,
    diagnostics: Vec<Diagnostic>,
    /// Also run the checks SpiceDB's type system makes during translation.
    check_types: bool,
}

impl<'a> Compiler<'a> {
    fn new(file: &'a SchemaFile, check_types: bool) -> Self {
        Self {
            file,
            diagnostics: Vec::new(),
            check_types,
        }
    }

    fn error(&mut self, kind: ErrorKind, span: Span, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::new(kind, span, message));
    }

    fn finish(&mut self) -> Result<(), SchemaErrors> {
        if self.diagnostics.is_empty() {
            Ok(())
        } else {
            Err(sorted(std::mem::take(&mut self.diagnostics)))
        }
    }

    /// A name shared by two definitions, two caveats, or one of each.
    fn check_name_reuse(&mut self, file: &SchemaFile) {
        let mut seen = HashSet::new();
        let mut names: Vec<&Name> = file
            .definitions
            .iter()
            .map(|d| &d.name)
            .chain(file.caveats.iter().map(|c| &c.name))
            .collect();
        names.sort_by_key(|n| n.span.start);
        for name in names {
            if !seen.insert(name.text.as_str()) {
                self.error(
                    ErrorKind::DuplicateName,
                    name.span,
                    format!(
                        "found name reused between multiple definitions and/or caveats: `{}`",
                        name.text
                    ),
                );
            }
        }
        for partial in &file.partials {
            if seen.contains(partial.name.text.as_str()) {
                self.error(
                    ErrorKind::DuplicateName,
                    partial.name.span,
                    format!(
                        "partial `{}` has the name of a definition or caveat",
                        partial.name.text
                    ),
                );
            }
        }
    }

    /// Splices `...name` references inside partials; reports unknown and
    /// circular references.
    fn resolve_partials(&mut self, partials: &[DefinitionAst]) -> ResolvedPartials {
        let by_name: HashMap<&str, &DefinitionAst> =
            partials.iter().map(|p| (p.name.text.as_str(), p)).collect();
        let mut resolved = ResolvedPartials::new();
        for partial in partials {
            let mut stack = Vec::new();
            if let Some(members) = self.expand_partial(partial, &by_name, &mut stack) {
                resolved.insert(partial.name.text.clone(), members);
            }
        }
        resolved
    }

    fn expand_partial(
        &mut self,
        partial: &DefinitionAst,
        by_name: &HashMap<&str, &DefinitionAst>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<Member>> {
        if stack.contains(&partial.name.text) {
            self.error(
                ErrorKind::PartialCycle,
                partial.name.span,
                format!("partial `{}` includes itself", partial.name.text),
            );
            return None;
        }
        stack.push(partial.name.text.clone());
        let mut members = Vec::new();
        for member in &partial.members {
            match member {
                Member::PartialRef(name) => match by_name.get(name.text.as_str()) {
                    Some(inner) => members.extend(self.expand_partial(inner, by_name, stack)?),
                    None => {
                        self.unknown_partial(name);
                        return None;
                    }
                },
                other => members.push(other.clone()),
            }
        }
        stack.pop();
        Some(members)
    }

    fn unknown_partial(&mut self, name: &Name) {
        self.error(
            ErrorKind::UnknownPartial,
            name.span,
            format!("partial `{}` not found", name.text),
        );
    }

    fn definition<'p>(
        &mut self,
        def: &'p DefinitionAst,
        partials: &'p ResolvedPartials,
    ) -> Option<(Definition, validate::MemberSources<'p>)> {
        let before = self.diagnostics.len();
        if !names::is_definition_name(&def.name.text) {
            self.error(
                ErrorKind::InvalidName,
                def.name.span,
                format!(
                    "invalid definition name `{}`: {}",
                    def.name.text,
                    names::DEFINITION_NAME_RULE
                ),
            );
        }
        let mut members: Vec<&'p Member> = Vec::new();
        for member in &def.members {
            match member {
                Member::PartialRef(name) => match partials.get(&name.text) {
                    Some(spliced) => members.extend(spliced.iter()),
                    None if self.file.partials.iter().any(|p| p.name.text == name.text) => {}
                    None => self.unknown_partial(name),
                },
                other => members.push(other),
            }
        }

        let mut relations = Vec::new();
        let mut sources = Vec::new();
        let mut relation_index = HashMap::new();
        for member in members {
            let (name, relation) = match member {
                Member::Relation(rel) => (&rel.name, self.relation(rel)),
                Member::Permission(perm) => (&perm.name, self.permission(perm)),
                Member::UntypedRelation(name) => {
                    self.error(
                        ErrorKind::RelationWithoutTypes,
                        name.span,
                        format!(
                            "relation `{}` must allow at least one subject type",
                            name.text
                        ),
                    );
                    continue;
                }
                Member::PartialRef(_) => continue,
            };
            if relation_index.contains_key(&name.text) {
                self.error(
                    ErrorKind::DuplicateRelation,
                    name.span,
                    format!(
                        "found duplicate relation/permission name `{}` under definition `{}`",
                        name.text, def.name.text
                    ),
                );
                continue;
            }
            relation_index.insert(name.text.clone(), relations.len());
            relations.push(relation);
            sources.push(member);
        }
        let definition = Definition {
            name: def.name.text.clone(),
            doc: DocComments::new(def.doc.clone()),
            relations,
            relation_index,
        };
        (self.diagnostics.len() == before).then_some((definition, sources))
    }

    fn check_relation_name(&mut self, name: &Name, what: &str) {
        if !names::is_relation_name(&name.text) {
            self.error(
                ErrorKind::InvalidName,
                name.span,
                format!(
                    "invalid {what} name `{}`: {}",
                    name.text,
                    names::RELATION_NAME_RULE
                ),
            );
        }
    }

    fn relation(&mut self, rel: &RelationAst) -> Relation {
        self.check_relation_name(&rel.name, "relation");
        let types = rel.types.iter().map(|t| self.allowed_type(t)).collect();
        Relation {
            name: rel.name.text.clone(),
            doc: DocComments::new(rel.doc.clone()),
            body: RelationBody::Direct(types),
        }
    }

    fn allowed_type(&mut self, t: &TypeRefAst) -> AllowedSubjectType {
        if !names::is_subject_type_name(&t.type_name.text) {
            self.error(
                ErrorKind::InvalidName,
                t.type_name.span,
                format!(
                    "invalid type name `{}`: {}",
                    t.type_name.text,
                    names::DEFINITION_NAME_RULE
                ),
            );
        }
        let target = match &t.target {
            TypeTargetAst::Object | TypeTargetAst::Ellipsis => SubjectTarget::Object,
            TypeTargetAst::Wildcard => SubjectTarget::Wildcard,
            TypeTargetAst::Relation(name) => {
                self.check_relation_name(name, "subject relation");
                SubjectTarget::Relation(name.text.clone())
            }
        };
        if let Some(caveat) = &t.caveat
            && !names::is_caveat_name(&caveat.text)
        {
            self.error(
                ErrorKind::InvalidName,
                caveat.span,
                format!("invalid caveat name `{}`", caveat.text),
            );
        }
        AllowedSubjectType {
            type_name: t.type_name.text.clone(),
            target,
            caveat: t.caveat.as_ref().map(|c| c.text.clone()),
            expiration: t.expiration,
        }
    }

    fn permission(&mut self, perm: &PermissionAst) -> Relation {
        self.check_relation_name(&perm.name, "permission");
        let rewrite = match self.rewrite(&perm.expr) {
            leaf @ (Rewrite::Computed(_)
            | Rewrite::Arrow { .. }
            | Rewrite::Nil
            | Rewrite::SelfRef) => Rewrite::Union(vec![leaf]),
            op => op,
        };
        Relation {
            name: perm.name.text.clone(),
            doc: DocComments::new(perm.doc.clone()),
            body: RelationBody::Permission(rewrite),
        }
    }

    /// Translates an expression; unions and intersections absorb children of
    /// the same operation, as SpiceDB's translator does.
    fn rewrite(&mut self, expr: &ExprAst) -> Rewrite {
        match expr {
            ExprAst::Union(operands) => Rewrite::Union(self.flattened(operands, |r| match r {
                Rewrite::Union(inner) => Ok(inner),
                other => Err(other),
            })),
            ExprAst::Intersection(operands) => {
                Rewrite::Intersection(self.flattened(operands, |r| match r {
                    Rewrite::Intersection(inner) => Ok(inner),
                    other => Err(other),
                }))
            }
            ExprAst::Exclusion(operands) => {
                let mut operands = operands.iter();
                let first = self.rewrite(operands.next().expect("an exclusion has operands"));
                operands.fold(first, |base, next| {
                    Rewrite::Exclusion(Box::new(base), Box::new(self.rewrite(next)))
                })
            }
            ExprAst::Computed(name) => {
                self.check_relation_name(name, "relation or permission");
                Rewrite::Computed(name.text.clone())
            }
            ExprAst::Arrow { base, steps } => {
                if steps.len() > 1 {
                    self.error(
                        ErrorKind::NestedArrow,
                        base.span,
                        "nested arrows are not supported: an arrow's left side must be a relation",
                    );
                }
                let step = &steps[0];
                self.check_relation_name(base, "relation");
                self.check_relation_name(&step.target, "relation or permission");
                Rewrite::Arrow {
                    tupleset: base.text.clone(),
                    computed: step.target.text.clone(),
                    function: step.function,
                }
            }
            ExprAst::Nil(_) => Rewrite::Nil,
            ExprAst::SelfRef(_) => Rewrite::SelfRef,
        }
    }

    /// Translates operands, splicing in the children of operands that are
    /// the same operation (`split` returns them as `Ok`).
    fn flattened(
        &mut self,
        operands: &[ExprAst],
        split: fn(Rewrite) -> Result<Vec<Rewrite>, Rewrite>,
    ) -> Vec<Rewrite> {
        let mut children = Vec::new();
        for operand in operands {
            match split(self.rewrite(operand)) {
                Ok(inner) => children.extend(inner),
                Err(other) => children.push(other),
            }
        }
        children
    }

    fn caveat(&mut self, cav: &CaveatAst) -> Option<CaveatDefinition> {
        let before = self.diagnostics.len();
        if !names::is_caveat_name(&cav.name.text) {
            self.error(
                ErrorKind::InvalidName,
                cav.name.span,
                format!("invalid caveat name `{}`", cav.name.text),
            );
        }
        let mut parameters: Vec<(String, CaveatType)> = Vec::new();
        for param in &cav.parameters {
            if parameters.iter().any(|(n, _)| *n == param.name.text) {
                self.error(
                    ErrorKind::DuplicateCaveatParameter,
                    param.name.span,
                    format!(
                        "duplicate parameter `{}` defined on caveat `{}`",
                        param.name.text, cav.name.text
                    ),
                );
                continue;
            }
            match caveat::parameter_type(&param.type_ref) {
                Ok(t) => parameters.push((param.name.text.clone(), t)),
                Err(d) => self.diagnostics.push(d),
            }
        }
        if self.diagnostics.len() != before {
            return None;
        }
        let expression = normalize_expression(&cav.expression);
        let ast = match caveat::check_expression(cav, &expression, &parameters, self.check_types) {
            Ok(ast) => ast,
            Err(d) => {
                self.diagnostics.push(d);
                return None;
            }
        };
        parameters.sort_by(|a, b| a.0.cmp(&b.0));
        Some(CaveatDefinition {
            name: cav.name.text.clone(),
            doc: DocComments::new(cav.doc.clone()),
            parameters,
            expression,
            ast: std::sync::Arc::new(ast),
        })
    }
}

/// The expression with each line trimmed: the printer indents continuation
/// lines, so this keeps print → compile → print stable.
fn normalize_expression(expression: &str) -> String {
    expression
        .trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
}
