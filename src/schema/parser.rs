//! Schema text → syntax tree. The pest grammar (`grammar.pest`) does the
//! lexing and parsing; this module turns its pairs into `ast` values and
//! applies what the grammar cannot: `use` flags that turn words into keywords.
//! Depends only on `ast` and `diagnostic`.

use pest::Parser as _;
use pest::error::InputLocation;
use pest::iterators::Pair;
use pest_derive::Parser;

use super::ast::*;
use super::diagnostic::{Diagnostic, ErrorKind, SchemaErrors};

#[derive(Parser)]
#[grammar = "schema/grammar.pest"]
struct SchemaGrammar;

/// Words that are never identifiers.
const RESERVED: [&str; 6] = [
    "definition",
    "caveat",
    "relation",
    "permission",
    "nil",
    "with",
];

/// Bounds on expression nesting, so evaluation, printing and dropping a
/// schema's rewrite trees stay far from the stack's limit. SpiceDB has none;
/// no real schema comes near them.
const MAX_EXPRESSION_DEPTH: usize = 100;
const MAX_EXCLUSION_CHAIN: usize = 100;

/// The `use` flags SpiceDB 1.54 knows.
pub const KNOWN_FLAGS: [&str; 5] = ["expiration", "import", "partial", "self", "typechecking"];

/// Which `use` flags are on. Each turns some words into keywords.
#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    expiration: bool,
    typechecking: bool,
    self_: bool,
    partial: bool,
    import: bool,
}

impl Flags {
    fn enable(&mut self, flag: &str) {
        match flag {
            "expiration" => self.expiration = true,
            "typechecking" => self.typechecking = true,
            "self" => self.self_ = true,
            "partial" => self.partial = true,
            "import" => self.import = true,
            _ => {}
        }
    }

    fn is_keyword(&self, word: &str) -> bool {
        RESERVED.contains(&word)
            || (self.expiration && (word == "expiration" || word == "and"))
            || (self.typechecking && word == "typechecking")
            || (self.self_ && word == "self")
            || (self.partial && word == "partial")
            || (self.import && word == "import")
    }
}

/// Parses schema text into a syntax tree, or reports the first syntax error.
pub fn parse(source: &str) -> Result<SchemaFile, SchemaErrors> {
    check_bracket_depth(source).map_err(SchemaErrors::single)?;
    let mut pairs = SchemaGrammar::parse(Rule::file, source)
        .map_err(|e| SchemaErrors::single(syntax_error_from_pest(source, &e)))?;
    let file = pairs.next().expect("the file rule always yields one pair");
    Builder::default()
        .build_file(file)
        .map_err(SchemaErrors::single)
}

#[derive(Default)]
struct Builder {
    flags: Flags,
    seen_definition: bool,
}

type Built<T> = Result<T, Diagnostic>;

fn span_of(pair: &Pair<Rule>) -> Span {
    let s = pair.as_span();
    Span::new(s.start(), s.end())
}

fn syntax(span: Span, message: impl Into<String>) -> Diagnostic {
    Diagnostic::new(ErrorKind::Syntax, span, message)
}

/// The pairs inside `pair` that carry meaning (comments are skipped).
fn children(pair: Pair<Rule>) -> impl Iterator<Item = Pair<Rule>> {
    pair.into_inner()
        .filter(|p| !matches!(p.as_rule(), Rule::line_comment | Rule::block_comment))
}

fn doc_comments(pair: Pair<Rule>) -> Vec<String> {
    pair.into_inner()
        .filter(|p| matches!(p.as_rule(), Rule::line_comment | Rule::block_comment))
        .map(|p| written_comment(p.as_str()))
        .collect()
}

/// A doc comment as SpiceDB stores it: the text as written, delimiters
/// kept, each line trimmed.
fn written_comment(raw: &str) -> String {
    raw.lines().map(str::trim).collect::<Vec<_>>().join("\n")
}

impl Builder {
    fn build_file(mut self, file: Pair<Rule>) -> Built<SchemaFile> {
        let mut out = SchemaFile::default();
        for item in children(file) {
            match item.as_rule() {
                Rule::use_flag => self.use_flag(item, &mut out)?,
                Rule::definition => {
                    self.seen_definition = true;
                    out.definitions.push(self.definition(item)?);
                }
                Rule::caveat => {
                    self.seen_definition = true;
                    out.caveats.push(self.caveat(item)?);
                }
                Rule::partial => {
                    self.require_flag(self.flags.partial, &item, "partial")?;
                    out.partials.push(self.definition(item)?);
                }
                Rule::import => {
                    self.require_flag(self.flags.import, &item, "import")?;
                    let mut parts = children(item).filter(|p| p.as_rule() != Rule::doc);
                    let keyword = parts.next().expect("grammar: import keyword");
                    let string = parts.next().expect("grammar: import has a string");
                    out.imports.push(Name {
                        text: string.as_str().to_string(),
                        span: span_of(&keyword),
                    });
                }
                Rule::EOI => {}
                other => unreachable!("grammar: unexpected top-level rule {other:?}"),
            }
        }
        Ok(out)
    }

    /// `partial` and `import` are ordinary words until their flag is on, and
    /// an ordinary word cannot start a top-level item.
    fn require_flag(&self, enabled: bool, item: &Pair<Rule>, word: &str) -> Built<()> {
        if enabled {
            return Ok(());
        }
        let keyword = item
            .clone()
            .into_inner()
            .find(|p| p.as_rule() != Rule::doc)
            .expect("grammar: item has a keyword");
        Err(syntax(
            span_of(&keyword),
            format!("unexpected identifier `{word}` at the top level (add `use {word}` first)"),
        ))
    }

    fn use_flag(&mut self, item: Pair<Rule>, out: &mut SchemaFile) -> Built<()> {
        let mut inner = children(item).filter(|p| p.as_rule() != Rule::doc);
        let use_kw = inner.next().expect("grammar: use keyword");
        let flag = inner.next().expect("grammar: use flag name");
        let name = flag.as_str();
        if !KNOWN_FLAGS.contains(&name) {
            return Err(Diagnostic::new(
                ErrorKind::UnknownUseFlag,
                span_of(&flag),
                format!(
                    "unknown use flag `{name}`; options are: {}",
                    KNOWN_FLAGS.join(", ")
                ),
            ));
        }
        if self.seen_definition {
            return Err(Diagnostic::new(
                ErrorKind::UseAfterDefinition,
                span_of(&use_kw),
                "`use` must come before any definition or caveat",
            ));
        }
        self.flags.enable(name);
        out.use_flags.push(Name {
            text: name.to_string(),
            span: span_of(&flag),
        });
        Ok(())
    }

    /// An identifier in a name position; keywords are refused there.
    fn ident(&self, pair: Pair<Rule>) -> Built<Name> {
        debug_assert_eq!(pair.as_rule(), Rule::ident);
        let text = pair.as_str();
        if self.flags.is_keyword(text) {
            return Err(syntax(
                span_of(&pair),
                format!("expected an identifier, found keyword `{text}`"),
            ));
        }
        Ok(Name {
            text: text.to_string(),
            span: span_of(&pair),
        })
    }

    fn type_path(&self, pair: Pair<Rule>) -> Built<Name> {
        let span = span_of(&pair);
        let segments = children(pair)
            .map(|p| self.ident(p).map(|n| n.text))
            .collect::<Built<Vec<_>>>()?;
        Ok(Name {
            text: segments.join("/"),
            span,
        })
    }

    fn definition(&self, item: Pair<Rule>) -> Built<DefinitionAst> {
        let mut doc = Vec::new();
        let mut name = None;
        let mut members = Vec::new();
        for part in children(item) {
            match part.as_rule() {
                Rule::doc => doc = doc_comments(part),
                Rule::definition_kw | Rule::partial_kw => {}
                Rule::type_path => name = Some(self.type_path(part)?),
                Rule::body => {
                    for member in children(part) {
                        if member.as_rule() == Rule::member {
                            members.push(self.member(member)?);
                        }
                    }
                }
                other => unreachable!("grammar: unexpected rule {other:?} in definition"),
            }
        }
        Ok(DefinitionAst {
            name: name.expect("grammar: definition has a name"),
            doc,
            members,
        })
    }

    fn member(&self, member: Pair<Rule>) -> Built<Member> {
        let mut doc = Vec::new();
        for part in children(member) {
            match part.as_rule() {
                Rule::doc => doc = doc_comments(part),
                Rule::relation => return self.relation(part, doc).map(Member::Relation),
                Rule::untyped_relation => {
                    let ident = children(part)
                        .find(|p| p.as_rule() == Rule::ident)
                        .expect("grammar: relation name");
                    return self.ident(ident).map(Member::UntypedRelation);
                }
                Rule::permission => return self.permission(part, doc).map(Member::Permission),
                Rule::partial_ref => {
                    let ident = children(part)
                        .next()
                        .expect("grammar: partial reference name");
                    return self.ident(ident).map(Member::PartialRef);
                }
                other => unreachable!("grammar: unexpected rule {other:?} in member"),
            }
        }
        unreachable!("grammar: member without a statement")
    }

    fn relation(&self, pair: Pair<Rule>, doc: Vec<String>) -> Built<RelationAst> {
        let mut name = None;
        let mut types = Vec::new();
        for part in children(pair) {
            match part.as_rule() {
                Rule::relation_kw => {}
                Rule::ident => name = Some(self.ident(part)?),
                Rule::type_ref => types.push(self.type_ref(part)?),
                other => unreachable!("grammar: unexpected rule {other:?} in relation"),
            }
        }
        Ok(RelationAst {
            name: name.expect("grammar: relation has a name"),
            doc,
            types,
        })
    }

    fn type_ref(&self, pair: Pair<Rule>) -> Built<TypeRefAst> {
        let span = span_of(&pair);
        let mut type_name = None;
        let mut target = TypeTargetAst::Object;
        let mut caveat = None;
        let mut expiration = false;
        for part in children(pair) {
            match part.as_rule() {
                Rule::type_path => type_name = Some(self.type_path(part)?),
                Rule::wildcard => target = TypeTargetAst::Wildcard,
                Rule::subject_relation => {
                    let inner = children(part).next().expect("grammar: subject relation");
                    target = match inner.as_rule() {
                        Rule::ellipsis => TypeTargetAst::Ellipsis,
                        _ => TypeTargetAst::Relation(self.ident(inner)?),
                    };
                }
                Rule::with_clause => (caveat, expiration) = self.with_clause(part)?,
                other => unreachable!("grammar: unexpected rule {other:?} in type reference"),
            }
        }
        Ok(TypeRefAst {
            type_name: type_name.expect("grammar: type reference has a type"),
            target,
            caveat,
            expiration,
            span,
        })
    }

    /// `with cav`, `with expiration` or `with cav and expiration`; the last two
    /// only under `use expiration` (without it, `expiration` names a caveat).
    fn with_clause(&self, pair: Pair<Rule>) -> Built<(Option<Name>, bool)> {
        let mut parts = children(pair).filter(|p| p.as_rule() != Rule::with_kw);
        let target = parts.next().expect("grammar: with clause target");
        let and_kw = parts.next();
        let after_and = parts.next();

        if !self.flags.expiration {
            if let Some(and_kw) = and_kw {
                return Err(syntax(
                    span_of(&and_kw),
                    "expected end of statement, found `and` (`with caveat and expiration` needs `use expiration`)",
                ));
            }
            return Ok((Some(self.type_path(target)?), false));
        }

        if target.as_str() == "expiration" {
            if let Some(and_kw) = and_kw {
                return Err(syntax(
                    span_of(&and_kw),
                    "unexpected `and` after expiration: the caveat must come first, as in `with caveat_name and expiration`",
                ));
            }
            return Ok((None, true));
        }
        let caveat = self.type_path(target)?;
        match after_and {
            None => Ok((Some(caveat), false)),
            Some(word) if word.as_str() == "expiration" => Ok((Some(caveat), true)),
            Some(word) => Err(syntax(
                span_of(&word),
                format!(
                    "expected `expiration` after `and`, found `{}`",
                    word.as_str()
                ),
            )),
        }
    }

    fn permission(&self, pair: Pair<Rule>, doc: Vec<String>) -> Built<PermissionAst> {
        let mut name = None;
        let mut annotations = Vec::new();
        let mut expr = None;
        for part in children(pair) {
            match part.as_rule() {
                Rule::permission_kw => {}
                Rule::ident => name = Some(self.ident(part)?),
                Rule::type_annotation => {
                    annotations = children(part)
                        .map(|p| self.ident(p))
                        .collect::<Built<Vec<_>>>()?;
                }
                Rule::expr => expr = Some(self.expr(part, 0)?),
                other => unreachable!("grammar: unexpected rule {other:?} in permission"),
            }
        }
        Ok(PermissionAst {
            name: name.expect("grammar: permission has a name"),
            doc,
            annotations,
            expr: expr.expect("grammar: permission has an expression"),
        })
    }

    /// An operator chain `a op b op c` as one n-ary node; a lone operand is
    /// returned as it is.
    fn chain(
        &self,
        pair: Pair<Rule>,
        depth: usize,
        operand: impl Fn(&Self, Pair<Rule>, usize) -> Built<ExprAst>,
        node: fn(Vec<ExprAst>) -> ExprAst,
    ) -> Built<ExprAst> {
        let mut operands = children(pair)
            .map(|p| operand(self, p, depth))
            .collect::<Built<Vec<_>>>()?;
        if operands.len() == 1 {
            return Ok(operands.pop().expect("one operand"));
        }
        Ok(node(operands))
    }

    fn expr(&self, pair: Pair<Rule>, depth: usize) -> Built<ExprAst> {
        if depth > MAX_EXPRESSION_DEPTH {
            return Err(syntax(
                span_of(&pair),
                format!(
                    "expression nests too deeply: at most {MAX_EXPRESSION_DEPTH} levels of parentheses"
                ),
            ));
        }
        let exclusion_operands = children(pair.clone()).count();
        if exclusion_operands > MAX_EXCLUSION_CHAIN {
            return Err(syntax(
                span_of(&pair),
                format!("too many `-` in one expression: at most {MAX_EXCLUSION_CHAIN} in a row"),
            ));
        }
        self.chain(pair, depth, Self::intersection, ExprAst::Exclusion)
    }

    fn intersection(&self, pair: Pair<Rule>, depth: usize) -> Built<ExprAst> {
        self.chain(pair, depth, Self::union, ExprAst::Intersection)
    }

    fn union(&self, pair: Pair<Rule>, depth: usize) -> Built<ExprAst> {
        self.chain(pair, depth, Self::operand, ExprAst::Union)
    }

    fn operand(&self, pair: Pair<Rule>, depth: usize) -> Built<ExprAst> {
        match pair.as_rule() {
            Rule::paren => self.expr(
                children(pair)
                    .next()
                    .expect("grammar: parenthesized expression"),
                depth + 1,
            ),
            Rule::nil => Ok(ExprAst::Nil(span_of(&pair))),
            Rule::arrow_chain => self.arrow_chain(pair),
            other => unreachable!("grammar: unexpected operand {other:?}"),
        }
    }

    fn arrow_chain(&self, pair: Pair<Rule>) -> Built<ExprAst> {
        let mut parts = children(pair);
        let base = parts.next().expect("grammar: arrow chain base");
        let steps: Vec<Pair<Rule>> = parts.collect();

        if self.flags.self_ && base.as_str() == "self" {
            return match steps.first() {
                None => Ok(ExprAst::SelfRef(span_of(&base))),
                Some(step) => Err(syntax(
                    span_of(step),
                    "expected end of statement after `self`: `self` cannot start an arrow",
                )),
            };
        }
        let base = self.ident(base)?;
        if steps.is_empty() {
            return Ok(ExprAst::Computed(base));
        }
        let steps = steps
            .into_iter()
            .map(|step| self.arrow_step(step))
            .collect::<Built<Vec<_>>>()?;
        Ok(ExprAst::Arrow { base, steps })
    }

    fn arrow_step(&self, step: Pair<Rule>) -> Built<ArrowStep> {
        let span = span_of(&step);
        let rule = step.as_rule();
        let mut idents = children(step);
        let first = idents.next().expect("grammar: arrow target");
        if rule == Rule::arrow {
            return Ok(ArrowStep {
                function: ArrowFunction::Arrow,
                target: self.ident(first)?,
                span,
            });
        }
        let function = match first.as_str() {
            "any" => ArrowFunction::Any,
            "all" => ArrowFunction::All,
            other => {
                return Err(Diagnostic::new(
                    ErrorKind::UnknownArrowFunction,
                    span_of(&first),
                    format!("expected `any` or `all` for an arrow function, found `{other}`"),
                ));
            }
        };
        let target = idents.next().expect("grammar: arrow function argument");
        Ok(ArrowStep {
            function,
            target: self.ident(target)?,
            span,
        })
    }

    fn caveat(&self, item: Pair<Rule>) -> Built<CaveatAst> {
        let mut doc = Vec::new();
        let mut name = None;
        let mut parameters = Vec::new();
        let mut expression = None;
        for part in children(item) {
            match part.as_rule() {
                Rule::doc => doc = doc_comments(part),
                Rule::caveat_kw | Rule::close_brace => {}
                Rule::type_path => name = Some(self.type_path(part)?),
                Rule::parameter => parameters.push(self.parameter(part)?),
                Rule::caveat_expression => expression = Some(part),
                other => unreachable!("grammar: unexpected rule {other:?} in caveat"),
            }
        }
        let expression = expression.expect("grammar: caveat has an expression");
        Ok(CaveatAst {
            name: name.expect("grammar: caveat has a name"),
            doc,
            parameters,
            expression_span: span_of(&expression),
            expression: expression.as_str().to_string(),
        })
    }

    fn parameter(&self, pair: Pair<Rule>) -> Built<ParameterAst> {
        let mut parts = children(pair);
        let name = self.ident(parts.next().expect("grammar: parameter name"))?;
        let type_ref = self.caveat_type(parts.next().expect("grammar: parameter type"))?;
        Ok(ParameterAst { name, type_ref })
    }

    fn caveat_type(&self, pair: Pair<Rule>) -> Built<CaveatTypeAst> {
        let mut parts = children(pair);
        let name = self.ident(parts.next().expect("grammar: caveat type name"))?;
        let children = parts
            .map(|p| self.caveat_type(p))
            .collect::<Built<Vec<_>>>()?;
        Ok(CaveatTypeAst { name, children })
    }
}

/// The deepest bracket nesting pest may see. pest's parser recurses once per
/// level; bounding the depth before parsing keeps it far from the stack's end
/// (pest is built without its own stack guard, which cost a third of parse
/// time), whatever a client sends.
const MAX_BRACKET_DEPTH: usize = 200;

/// Rejects input whose `(`, `[`, `{` or `<` nesting exceeds the bound,
/// skipping comments and strings as the lexer does.
fn check_bracket_depth(source: &str) -> Result<(), Diagnostic> {
    let bytes = source.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let skip_to = |end: &[u8], from: usize| {
            rest[from..]
                .windows(end.len())
                .position(|w| w == end)
                .map_or(bytes.len(), |p| i + from + p + end.len())
        };
        i = match bytes[i] {
            b'/' if rest.starts_with(b"//") => skip_to(b"\n", 2),
            b'/' if rest.starts_with(b"/*") => skip_to(b"*/", 2),
            b'"' if rest.starts_with(b"\"\"\"") => skip_to(b"\"\"\"", 3),
            b'\'' if rest.starts_with(b"\'\'\'") => skip_to(b"\"\"\"", 3),
            quote @ (b'"' | b'\'') => skip_to(&[quote], 1),
            b'(' | b'[' | b'{' | b'<' => {
                depth += 1;
                if depth > MAX_BRACKET_DEPTH {
                    return Err(syntax(
                        Span::new(i, i + 1),
                        format!("brackets nest too deeply: at most {MAX_BRACKET_DEPTH} levels"),
                    ));
                }
                i + 1
            }
            b')' | b']' | b'}' | b'>' => {
                depth = depth.saturating_sub(1);
                i + 1
            }
            _ => i + 1,
        };
    }
    Ok(())
}

/// Turns pest's "expected one of these rules" into a message about tokens.
fn syntax_error_from_pest(source: &str, error: &pest::error::Error<Rule>) -> Diagnostic {
    let offset = match error.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let expected = match &error.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } => {
            let mut names: Vec<&str> = positives.iter().filter_map(|r| describe_rule(*r)).collect();
            names.sort_unstable();
            names.dedup();
            names
        }
        pest::error::ErrorVariant::CustomError { .. } => Vec::new(),
    };
    let found = describe_input_at(source, offset);
    let message = match expected.as_slice() {
        [] => format!("unexpected {found}"),
        [one] => format!("expected {one}, found {found}"),
        many => format!("expected one of {}, found {found}", many.join(", ")),
    };
    let end = (offset + found_len(source, offset)).min(source.len());
    syntax(Span::new(offset, end), message)
}

fn describe_rule(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::ident | Rule::type_path | Rule::arrow_chain => "an identifier",
        Rule::definition | Rule::definition_kw => "`definition`",
        Rule::caveat | Rule::caveat_kw => "`caveat`",
        Rule::use_flag | Rule::use_kw => "`use`",
        Rule::partial | Rule::partial_kw => "`partial`",
        Rule::import | Rule::import_kw => "`import`",
        Rule::relation | Rule::relation_kw => "`relation`",
        Rule::permission | Rule::permission_kw => "`permission`",
        Rule::partial_ref | Rule::ellipsis => "`...`",
        Rule::member => "`relation` or `permission`",
        Rule::body => "`{`",
        Rule::close_brace => "`}`",
        Rule::terminator => "end of statement",
        Rule::with_clause | Rule::with_kw => "`with`",
        Rule::and_kw => "`and`",
        Rule::wildcard => "`:*`",
        Rule::subject_relation => "`#`",
        Rule::type_ref => "a subject type",
        Rule::type_annotation => "`:`",
        Rule::expr | Rule::intersection | Rule::union | Rule::paren => "an expression",
        Rule::nil => "`nil`",
        Rule::arrow => "`->`",
        Rule::function_arrow => "`.any(...)` or `.all(...)`",
        Rule::parameter => "a caveat parameter",
        Rule::caveat_type => "a caveat parameter type",
        Rule::caveat_expression => "a caveat expression",
        Rule::string => "a string",
        Rule::EOI => "end of input",
        _ => return None,
    })
}

/// A short description of the text at `offset` for "found ..." messages.
fn describe_input_at(source: &str, offset: usize) -> String {
    let rest = &source[offset.min(source.len())..];
    match rest.chars().next() {
        None => "end of input".to_string(),
        Some('\n' | '\r') => "end of line".to_string(),
        Some(_) => {
            let len = found_len(source, offset);
            format!("`{}`", &rest[..len])
        }
    }
}

/// Length in bytes of the token-like run at `offset`: a word, or one character.
fn found_len(source: &str, offset: usize) -> usize {
    let rest = &source[offset.min(source.len())..];
    let word: usize = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .map(char::len_utf8)
        .sum();
    if word > 0 {
        word
    } else {
        rest.chars().next().map_or(0, char::len_utf8)
    }
}
