//! Compile-time checks of caveat definitions: parameter types as SpiceDB
//! declares them, and the CEL expression: it must parse, use every
//! parameter, and (as far as can be seen without a full type checker)
//! produce a bool. Evaluation lives in `caveats/`, not here.

use cel::IdedExpr;
use cel::parser::Parser;

use super::ast::{CaveatAst, CaveatTypeAst};
use super::cel_check;
use super::compiled::CaveatType;
use super::diagnostic::{Diagnostic, ErrorKind};

/// SpiceDB's limit on a caveat expression's source.
const MAX_EXPRESSION_CHARS: usize = 100_000;

/// The declared type of a parameter: a known name with the right number of
/// type arguments.
pub fn parameter_type(ast: &CaveatTypeAst) -> Result<CaveatType, Diagnostic> {
    let name = ast.name.text.as_str();
    let generic = matches!(name, "list" | "map");
    let expected_args = usize::from(generic);
    let simple = match name {
        "any" => Some(CaveatType::Any),
        "bool" => Some(CaveatType::Bool),
        "string" => Some(CaveatType::String),
        "int" => Some(CaveatType::Int),
        "uint" => Some(CaveatType::Uint),
        "double" => Some(CaveatType::Double),
        "bytes" => Some(CaveatType::Bytes),
        "duration" => Some(CaveatType::Duration),
        "timestamp" => Some(CaveatType::Timestamp),
        "ipaddress" => Some(CaveatType::IpAddress),
        _ => None,
    };
    if simple.is_none() && !generic {
        return Err(Diagnostic::new(
            ErrorKind::UnknownCaveatType,
            ast.name.span,
            format!(
                "unknown caveat parameter type `{name}`; known types are any, bool, string, int, uint, double, bytes, duration, timestamp, ipaddress, list<T> and map<T>"
            ),
        ));
    }
    if ast.children.len() != expected_args {
        return Err(Diagnostic::new(
            ErrorKind::UnknownCaveatType,
            ast.name.span,
            format!(
                "caveat parameter type `{name}` takes {expected_args} type argument(s), found {}",
                ast.children.len()
            ),
        ));
    }
    match (simple, ast.children.first()) {
        (Some(t), _) => Ok(t),
        (None, Some(child)) if name == "list" => {
            Ok(CaveatType::List(Box::new(parameter_type(child)?)))
        }
        (None, Some(child)) => Ok(CaveatType::Map(Box::new(parameter_type(child)?))),
        (None, None) => unreachable!("generic types were checked to have one argument"),
    }
}

/// Parses the caveat's CEL (`text`, the expression as stored) and checks
/// what can be checked statically; returns the parsed expression. Unused
/// parameters are the type system's finding in SpiceDB, so they are checked
/// only with `check_types`.
pub fn check_expression(
    cav: &CaveatAst,
    text: &str,
    parameters: &[(String, CaveatType)],
    check_types: bool,
) -> Result<IdedExpr, Diagnostic> {
    let error = |kind, message: String| Diagnostic::new(kind, cav.expression_span, message);
    let name = &cav.name.text;
    if cav.expression.chars().count() > MAX_EXPRESSION_CHARS {
        return Err(error(
            ErrorKind::CaveatExpression,
            format!("the expression of caveat `{name}` exceeds {MAX_EXPRESSION_CHARS} characters"),
        ));
    }
    // SpiceDB enables CEL's optional syntax (`m.?k`, `l[?0]`).
    let parsed = Parser::new()
        .enable_optional_syntax(true)
        .parse(text)
        .map_err(|e| {
            error(
                ErrorKind::CaveatExpression,
                format!(
                    "invalid expression for caveat `{name}`: {}",
                    first_line(&e.to_string())
                ),
            )
        })?;
    cel_check::check(&parsed, parameters).map_err(|message| {
        error(
            ErrorKind::CaveatExpression,
            format!("invalid expression for caveat `{name}`: {message}"),
        )
    })?;
    let references = parsed.references();
    for (param, _) in parameters.iter().filter(|_| check_types) {
        if !references.has_variable(param) {
            let span = cav
                .parameters
                .iter()
                .find(|p| p.name.text == *param)
                .map_or(cav.expression_span, |p| p.name.span);
            return Err(Diagnostic::new(
                ErrorKind::UnusedCaveatParameter,
                span,
                format!("parameter `{param}` for caveat `{name}` is unused"),
            ));
        }
    }
    Ok(parsed)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
