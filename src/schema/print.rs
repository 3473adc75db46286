//! `CompiledSchema` → canonical text, in the format SpiceDB's ReadSchema
//! returns: `use` lines for the features used, caveats then definitions
//! sorted by name, one blank line between items, tab indentation, doc
//! comments re-emitted, parentheses only where a nested operation is not a
//! pure union. Printing and compiling again yields an equal schema.

use sha2::{Digest, Sha256};

use super::compiled::*;

/// Comments up to this length stay on one line (SpiceDB's rule).
const MAX_SINGLE_LINE_COMMENT: usize = 70;

/// The canonical text of a schema.
pub fn print(schema: &CompiledSchema) -> String {
    let mut items: Vec<String> = Vec::new();
    for caveat in schema.caveats() {
        let mut w = Writer::new();
        w.caveat(caveat);
        items.push(w.out);
    }
    for def in schema.definitions() {
        let mut w = Writer::new();
        w.definition(def);
        items.push(w.out);
    }
    // SpiceDB prepends each flag line in sorted order, so they come out reversed.
    let mut flags = Vec::new();
    if schema.uses_expiration() {
        flags.push("use expiration");
    }
    if schema.uses_self() {
        flags.push("use self");
    }
    for flag in flags {
        items.insert(0, flag.to_string());
    }
    items.join("\n\n")
}

/// SHA-256 of the canonical text.
pub fn hash(schema: &CompiledSchema) -> [u8; 32] {
    Sha256::digest(print(schema).as_bytes()).into()
}

/// A text buffer that tracks line starts, blank lines and new scopes the way
/// SpiceDB's generator does, so blank lines fall in the same places.
struct Writer {
    out: String,
    indent: usize,
    at_line_start: bool,
    after_blank_line: bool,
    at_new_scope: bool,
}

impl Writer {
    fn new() -> Self {
        Self {
            out: String::new(),
            indent: 0,
            at_line_start: true,
            after_blank_line: true,
            at_new_scope: true,
        }
    }

    fn push(&mut self, text: &str) {
        for c in text.chars() {
            if c == '\n' {
                if self.at_line_start {
                    self.after_blank_line = true;
                }
                self.out.push('\n');
                self.at_line_start = true;
                continue;
            }
            self.after_blank_line = false;
            self.at_new_scope = false;
            if self.at_line_start {
                self.out.extend(std::iter::repeat_n('\t', self.indent));
                self.at_line_start = false;
            }
            self.out.push(c);
        }
    }

    fn newline(&mut self) {
        self.push("\n");
    }

    fn open_scope(&mut self) {
        self.push(" {");
        self.newline();
        self.indent += 1;
        self.at_new_scope = true;
    }

    fn close_scope(&mut self) {
        self.indent -= 1;
        self.push("}");
    }

    fn comments(&mut self, comments: &DocComments) {
        if comments.is_empty() {
            return;
        }
        if !self.after_blank_line && !self.at_new_scope {
            self.newline();
        }
        for comment in comments.canonical() {
            self.push(&comment);
            self.newline();
        }
    }

    fn caveat(&mut self, caveat: &CaveatDefinition) {
        self.comments(&caveat.doc);
        self.push("caveat ");
        self.push(&caveat.name);
        self.push("(");
        let params: Vec<String> = caveat
            .parameters
            .iter()
            .map(|(name, t)| format!("{name} {t}"))
            .collect();
        self.push(&params.join(", "));
        self.push(")");
        self.open_scope();
        self.push(&caveat.expression);
        self.newline();
        self.close_scope();
    }

    fn definition(&mut self, def: &Definition) {
        self.comments(&def.doc);
        self.push("definition ");
        self.push(&def.name);
        if def.relations.is_empty() {
            self.push(" {}");
            return;
        }
        self.open_scope();
        for relation in &def.relations {
            self.relation(relation);
        }
        self.close_scope();
    }

    fn relation(&mut self, relation: &Relation) {
        self.comments(&relation.doc);
        match &relation.body {
            RelationBody::Direct(types) => {
                self.push("relation ");
                self.push(&relation.name);
                self.push(": ");
                let types: Vec<String> = types.iter().map(allowed_type_text).collect();
                self.push(&types.join(" | "));
            }
            RelationBody::Permission(rewrite) => {
                self.push("permission ");
                self.push(&relation.name);
                self.push(" = ");
                self.push(&rewrite_text(rewrite));
            }
        }
        self.newline();
    }
}

/// One entry of a relation's type list, as written in a schema.
pub fn allowed_type_text(t: &AllowedSubjectType) -> String {
    let mut s = t.type_name.clone();
    match &t.target {
        SubjectTarget::Object => {}
        SubjectTarget::Wildcard => s.push_str(":*"),
        SubjectTarget::Relation(r) => {
            s.push('#');
            s.push_str(r);
        }
    }
    match (&t.caveat, t.expiration) {
        (Some(c), true) => s.push_str(&format!(" with {c} and expiration")),
        (Some(c), false) => s.push_str(&format!(" with {c}")),
        (None, true) => s.push_str(" with expiration"),
        (None, false) => {}
    }
    s
}

/// A permission's expression; the root operation is never parenthesized.
pub fn rewrite_text(rewrite: &Rewrite) -> String {
    match rewrite {
        Rewrite::Union(children) => join(children, " + "),
        Rewrite::Intersection(children) => join(children, " & "),
        Rewrite::Exclusion(base, subtracted) => {
            format!("{} - {}", child_text(base), child_text(subtracted))
        }
        leaf => child_text(leaf),
    }
}

fn join(children: &[Rewrite], op: &str) -> String {
    children.iter().map(child_text).collect::<Vec<_>>().join(op)
}

fn child_text(rewrite: &Rewrite) -> String {
    match rewrite {
        Rewrite::Computed(name) => name.clone(),
        Rewrite::Arrow {
            tupleset,
            computed,
            function,
        } => match function {
            ArrowFunction::Arrow => format!("{tupleset}->{computed}"),
            ArrowFunction::Any => format!("{tupleset}.any({computed})"),
            ArrowFunction::All => format!("{tupleset}.all({computed})"),
        },
        Rewrite::Nil => "nil".to_string(),
        Rewrite::SelfRef => "self".to_string(),
        op if is_all_union(op) => rewrite_text(op),
        op => format!("({})", rewrite_text(op)),
    }
}

/// A union whose nested operations are unions too needs no parentheses:
/// `+` binds tightest.
fn is_all_union(rewrite: &Rewrite) -> bool {
    match rewrite {
        Rewrite::Union(children) => children.iter().all(|c| match c {
            Rewrite::Union(_) | Rewrite::Intersection(_) | Rewrite::Exclusion(..) => {
                is_all_union(c)
            }
            _ => true,
        }),
        _ => false,
    }
}

/// A comment as SpiceDB's generator prints it: `// text`, `/** text */` for a
/// short block, or a ` * `-prefixed block for a long or multi-line one.
/// Idempotent, so printing a printed schema changes nothing.
pub(super) fn canonical_comment(raw: &str) -> String {
    let raw = raw.trim();
    if let Some(rest) = raw.strip_prefix("//") {
        return format!("// {}", rest.trim());
    }
    let (open, body) = match raw.strip_prefix("/**") {
        Some(rest) => ("/**", rest),
        None => ("/*", raw.strip_prefix("/*").unwrap_or(raw)),
    };
    let body = body.strip_suffix("*/").unwrap_or(body).trim();
    let strip_star = |line: &str| line.trim().trim_start_matches('*').trim().to_string();
    if body.len() > MAX_SINGLE_LINE_COMMENT || body.contains('\n') {
        let mut lines = vec![open.to_string()];
        lines.extend(body.lines().map(|l| format!(" * {}", strip_star(l))));
        lines.push(" */".to_string());
        lines.join("\n")
    } else {
        format!("{open} {} */", strip_star(body))
    }
}
