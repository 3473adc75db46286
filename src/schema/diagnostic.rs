//! Schema errors: what went wrong, where, and how to show it to a person.
//! Each error has a kind (stable, kebab-case, used by tests and by the API to
//! pick SCHEMA_PARSE_ERROR or SCHEMA_TYPE_ERROR), a lowercase message and a span.

use std::fmt;

use super::ast::Span;

/// What kind of rule a schema broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Syntax,
    UnknownUseFlag,
    UseAfterDefinition,
    InvalidName,
    DuplicateName,
    DuplicateRelation,
    RelationWithoutTypes,
    DuplicateSubjectType,
    UnknownDefinition,
    UnknownSubjectRelation,
    WildcardThroughSubjectRelation,
    UnknownCaveat,
    ExpirationNotEnabled,
    UnknownRelation,
    SelfNotEnabled,
    ArrowOnPermission,
    ArrowOnWildcard,
    NestedArrow,
    UnknownArrowFunction,
    PermissionCycle,
    DuplicateCaveatParameter,
    UnknownCaveatType,
    CaveatExpression,
    UnusedCaveatParameter,
    IncompleteTypeAnnotation,
    UnknownPartial,
    PartialCycle,
    ImportNotSupported,
}

impl ErrorKind {
    /// The kebab-case name used in test expectations and diagnostics.
    pub fn name(self) -> &'static str {
        use ErrorKind::*;
        match self {
            Syntax => "syntax",
            UnknownUseFlag => "unknown-use-flag",
            UseAfterDefinition => "use-after-definition",
            InvalidName => "invalid-name",
            DuplicateName => "duplicate-name",
            DuplicateRelation => "duplicate-relation",
            RelationWithoutTypes => "relation-without-types",
            DuplicateSubjectType => "duplicate-subject-type",
            UnknownDefinition => "unknown-definition",
            UnknownSubjectRelation => "unknown-subject-relation",
            WildcardThroughSubjectRelation => "wildcard-through-subject-relation",
            UnknownCaveat => "unknown-caveat",
            ExpirationNotEnabled => "expiration-not-enabled",
            UnknownRelation => "unknown-relation",
            SelfNotEnabled => "self-not-enabled",
            ArrowOnPermission => "arrow-on-permission",
            ArrowOnWildcard => "arrow-on-wildcard",
            NestedArrow => "nested-arrow",
            UnknownArrowFunction => "unknown-arrow-function",
            PermissionCycle => "permission-cycle",
            DuplicateCaveatParameter => "duplicate-caveat-parameter",
            UnknownCaveatType => "unknown-caveat-type",
            CaveatExpression => "caveat-expression",
            UnusedCaveatParameter => "unused-caveat-parameter",
            IncompleteTypeAnnotation => "incomplete-type-annotation",
            UnknownPartial => "unknown-partial",
            PartialCycle => "partial-cycle",
            ImportNotSupported => "import-not-supported",
        }
    }

    /// Whether SpiceDB reports this kind as a parse error (INVALID_ARGUMENT /
    /// SCHEMA_PARSE_ERROR) rather than a type error (FAILED_PRECONDITION /
    /// SCHEMA_TYPE_ERROR): everything its parser and translator reject, as
    /// opposed to its type system's cross-definition checks.
    pub fn is_parse_error(self) -> bool {
        use ErrorKind::*;
        matches!(
            self,
            Syntax
                | RelationWithoutTypes
                | UnknownUseFlag
                | UseAfterDefinition
                | InvalidName
                | DuplicateName
                | NestedArrow
                | UnknownArrowFunction
                | DuplicateCaveatParameter
                | UnknownCaveatType
                | CaveatExpression
                | UnknownPartial
                | PartialCycle
                | ImportNotSupported
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One error in a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub kind: ErrorKind,
    pub message: String,
    pub span: Span,
}

impl Diagnostic {
    pub fn new(kind: ErrorKind, span: Span, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            span,
        }
    }

    /// 1-based line and column (in characters) of the error's start.
    pub fn line_col(&self, source: &str) -> (usize, usize) {
        line_col(source, self.span.start)
    }

    /// Compiler-style text: `file:line:col: error[kind]: message`, the source
    /// line and a caret under the offending text.
    pub fn render(&self, file: &str, source: &str) -> String {
        let (line, col) = self.line_col(source);
        let text = source
            .lines()
            .nth(line - 1)
            .unwrap_or("")
            .trim_end_matches('\r');
        let chars: Vec<char> = text.chars().collect();
        // Show at most a window of a very long line around the error.
        let start = (col - 1).saturating_sub(RENDER_CONTEXT);
        let end = (col - 1 + RENDER_CONTEXT).min(chars.len());
        let shown: String = chars[start.min(chars.len())..end].iter().collect();
        let caret_offset: String = chars[start.min(chars.len())..(col - 1).min(chars.len())]
            .iter()
            .map(|c| if *c == '\t' { '\t' } else { ' ' })
            .collect();
        let width = source[self.span.start.min(source.len())..self.span.end.min(source.len())]
            .lines()
            .next()
            .map_or(1, |s| s.chars().count().clamp(1, RENDER_CONTEXT));
        let gutter = line.to_string();
        let pad = " ".repeat(gutter.len());
        format!(
            "{file}:{line}:{col}: error[{kind}]: {msg}\n{pad} |\n{gutter} | {ellipsis}{shown}\n{pad} | {caret_pad}{caret_offset}{carets}\n",
            kind = self.kind,
            msg = self.message,
            ellipsis = if start > 0 { "…" } else { "" },
            caret_pad = if start > 0 { " " } else { "" },
            carets = "^".repeat(width),
        )
    }
}

/// Characters of source shown on either side of an error.
const RENDER_CONTEXT: usize = 80;

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)
    }
}

/// Every error found in one schema, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaErrors {
    pub diagnostics: Vec<Diagnostic>,
}

impl SchemaErrors {
    pub fn single(diagnostic: Diagnostic) -> Self {
        Self {
            diagnostics: vec![diagnostic],
        }
    }

    /// The first error, the one a single-error API reports.
    pub fn first(&self) -> &Diagnostic {
        &self.diagnostics[0]
    }

    /// All errors rendered for a terminal.
    pub fn render(&self, file: &str, source: &str) -> String {
        self.diagnostics
            .iter()
            .map(|d| d.render(file, source))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl fmt::Display for SchemaErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let messages: Vec<String> = self.diagnostics.iter().map(ToString::to_string).collect();
        f.write_str(&messages.join("; "))
    }
}

impl std::error::Error for SchemaErrors {}

/// 1-based line and character column of a byte offset. `\r\n`, `\r` and `\n`
/// each end a line, as in SpiceDB's lexer.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let mut line = 1;
    let mut col = 1;
    let mut chars = source[..offset].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\r' | '\n' => {
                line += 1;
                col = 1;
            }
            _ => col += 1,
        }
    }
    (line, col)
}
