//! Caveat evaluation: the CEL expressions of a schema's caveats run over
//! context values, with three-valued results when parameters are missing,
//! and the engine's caveat expression trees combined from them. Depends on
//! `schema/` (caveat definitions), `graph/` (the expression tree) and
//! `model/`; knows nothing of transport or storage.
//!
//! A check result carries a [`CaveatExpr`]; [`evaluate`] decides it at the
//! API edge. Each caveat leaf takes its parameters from the relationship's
//! stored context, then from the request's (stored values win), converted
//! to the declared types (`convert`). A leaf whose parameters are all
//! present is true or false; one that needs a missing parameter is
//! [`Truth::Unknown`] with the names it lacks (`partial`). Before running,
//! the cost of an evaluation is bounded (`cost`).

mod convert;
mod cost;
mod functions;
mod partial;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use cel::{Context, ExecutionError};
use serde_json::{Map, Value as Json};

use crate::graph::CaveatExpr;
use crate::schema::{CaveatDefinition, CompiledSchema};

use convert::CelValue;
use cost::{COST_EXCEEDED, MAX_COST};
use partial::Partial;

/// JSON object of parameter values.
pub type CaveatContext = Map<String, Json>;

/// Whether a caveat expression holds, as far as the context tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    /// Undecided: these parameters are missing.
    Unknown(BTreeSet<String>),
}

/// Why a caveat could not be evaluated or its context not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CaveatError {
    /// A context value does not convert to its parameter's type.
    #[error(
        "type error for parameters for caveat `{caveat}`: could not convert context parameter `{parameter}`: {message}"
    )]
    ParameterType {
        caveat: String,
        parameter: String,
        message: String,
    },
    /// A stored context names a parameter the caveat does not declare.
    #[error("type error for parameters for caveat `{caveat}`: unknown parameter `{parameter}`")]
    UnknownParameter { caveat: String, parameter: String },
    /// The expression failed at run time (or would cost too much).
    #[error("evaluation error for caveat {caveat}: {message}")]
    Evaluation { caveat: String, message: String },
    /// A relationship names a caveat the schema does not define.
    #[error("caveat `{caveat}` not found")]
    UnknownCaveat { caveat: String },
}

/// Decides a caveat expression tree with the request's context, as SpiceDB's
/// caveat runner does: children in order, AND stops at the first false, OR
/// at the first true, unknowns merge their missing names, and the first
/// error ends the evaluation.
pub fn evaluate(
    schema: &CompiledSchema,
    expr: &CaveatExpr,
    request_context: &CaveatContext,
) -> Result<Truth, CaveatError> {
    match expr {
        CaveatExpr::Caveat(leaf) => {
            let definition =
                schema
                    .caveat(&leaf.name)
                    .ok_or_else(|| CaveatError::UnknownCaveat {
                        caveat: leaf.name.clone(),
                    })?;
            evaluate_caveat(definition, &leaf.context, request_context)
        }
        CaveatExpr::And(items) | CaveatExpr::Or(items) => {
            // The value that decides the operator: false for AND, true for OR.
            let deciding = matches!(expr, CaveatExpr::Or(_));
            let mut missing = BTreeSet::new();
            for item in items {
                match evaluate(schema, item, request_context)? {
                    Truth::Unknown(names) => missing.extend(names),
                    Truth::True if deciding => return Ok(Truth::True),
                    Truth::False if !deciding => return Ok(Truth::False),
                    Truth::True | Truth::False => {}
                }
            }
            Ok(match (missing.is_empty(), deciding) {
                (false, _) => Truth::Unknown(missing),
                (true, true) => Truth::False,
                (true, false) => Truth::True,
            })
        }
        CaveatExpr::Not(inner) => Ok(match evaluate(schema, inner, request_context)? {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            unknown => unknown,
        }),
    }
}

/// Evaluates one caveat with its stored context over the request's.
pub fn evaluate_caveat(
    definition: &CaveatDefinition,
    stored: &CaveatContext,
    request: &CaveatContext,
) -> Result<Truth, CaveatError> {
    let name = &definition.name;
    let mut values: Vec<(&str, CelValue)> = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    // Unknown keys are ignored here; writes refuse them.
    for (parameter, ty) in &definition.parameters {
        match stored.get(parameter).or_else(|| request.get(parameter)) {
            Some(value) => {
                let converted =
                    convert::convert(value, ty).map_err(|message| CaveatError::ParameterType {
                        caveat: name.clone(),
                        parameter: parameter.clone(),
                        message,
                    })?;
                values.push((parameter, converted));
            }
            None => missing.push(parameter),
        }
    }
    let prepared = functions::prepare(&definition.ast);
    let ast = prepared.as_ref().unwrap_or(&definition.ast);
    let evaluation_error = |message: String| CaveatError::Evaluation {
        caveat: name.clone(),
        message,
    };
    let bounds: Vec<(&str, cost::Bound)> = values
        .iter()
        .map(|(n, v)| (*n, cost::bound_of(v.as_ref())))
        .collect();
    if cost::estimate(ast, &bounds) > MAX_COST {
        return Err(evaluation_error(COST_EXCEEDED.to_string()));
    }
    let mut ctx = Context::with_env(functions::env());
    for (parameter, value) in values {
        ctx.add_variable_as_val(parameter, value);
    }
    match partial::evaluate(ast, &ctx, &missing) {
        Err(partial::CostExceeded) => Err(evaluation_error(COST_EXCEEDED.to_string())),
        Ok(Partial::Unknown(names)) => Ok(Truth::Unknown(names)),
        Ok(Partial::Error(err)) => Err(evaluation_error(describe(&err))),
        Ok(Partial::Known(value)) => match value.downcast_ref::<cel::common::types::CelBool>() {
            Some(b) if *b.inner() => Ok(Truth::True),
            Some(_) => Ok(Truth::False),
            None => Err(evaluation_error(format!(
                "caveat expression must result in a boolean value: found `{}`",
                value.get_type().name()
            ))),
        },
    }
}

/// Checks a relationship's stored context, as SpiceDB does on write: every
/// key a declared parameter, every value convertible to its type.
pub fn validate_context(
    definition: &CaveatDefinition,
    context: &CaveatContext,
) -> Result<(), CaveatError> {
    for (key, value) in context {
        let Some((_, ty)) = definition.parameters.iter().find(|(p, _)| p == key) else {
            return Err(CaveatError::UnknownParameter {
                caveat: definition.name.clone(),
                parameter: key.clone(),
            });
        };
        convert::convert(value, ty).map_err(|message| CaveatError::ParameterType {
            caveat: definition.name.clone(),
            parameter: key.clone(),
            message,
        })?;
    }
    Ok(())
}

/// A run-time error in cel-go's words, where SpiceDB's clients see them.
fn describe(err: &ExecutionError) -> String {
    use ExecutionError as E;
    use cel::objects::Value as V;
    let kind = |v: &V| match v {
        V::UInt(_) => "unsigned integer",
        V::Timestamp(_) => "timestamp",
        V::Duration(_) => "duration",
        _ => "integer",
    };
    match err {
        E::DivisionByZero(_) => "division by zero".into(),
        E::RemainderByZero(_) => "modulus by zero".into(),
        E::Overflow(_, a, b) => {
            let k = if matches!(a, V::Timestamp(_)) || matches!(b, V::Timestamp(_)) {
                "timestamp"
            } else {
                kind(a)
            };
            format!("{k} overflow")
        }
        E::NoSuchKey(key) => format!("no such key: {key}"),
        E::IndexOutOfBounds(index) => match index {
            V::Int(i) => format!("index out of bounds: {i}"),
            V::UInt(u) => format!("index out of bounds: {u}"),
            other => format!("index out of bounds: {other:?}"),
        },
        E::NoSuchOverload(_)
        | E::UnsupportedBinaryOperator(..)
        | E::ValuesNotComparable(..)
        | E::UnexpectedType { .. }
        | E::UnsupportedTargetType { .. }
        | E::NotSupportedAsMethod { .. } => "no such overload".into(),
        E::FunctionError { message, .. } => message.clone(),
        E::UndeclaredReference(name) => format!("no such attribute: {name}"),
        other => other.to_string(),
    }
}
