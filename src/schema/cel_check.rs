//! A static checker for caveat expressions, standing in for cel-go's type
//! checker where SpiceDB relies on it at WriteSchema: every name must be a
//! parameter (or a macro's loop variable), every function must exist in CEL's
//! standard library or SpiceDB's extensions, operands of an operator must be
//! of compatible kinds, and the result must be a bool. Types it cannot know
//! are `Dyn` and pass, so it never rejects what cel-go would accept for the
//! common cases; the differences it leaves are listed in ARCHITECTURE.md.

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};

use super::compiled::CaveatType;

/// A CEL type as far as this checker tracks it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    Bool,
    /// `int` and `uint`: SpiceDB declares `uint` parameters to the checker as `int`.
    Int,
    Double,
    String,
    Bytes,
    Duration,
    Timestamp,
    IpAddress,
    Null,
    List(Box<Ty>),
    Map(Box<Ty>),
    /// CEL's optional values (`m.?k`, `optional.of(x)`), which SpiceDB enables.
    Optional(Box<Ty>),
    Dyn,
}

impl Ty {
    fn from_param(t: &CaveatType) -> Ty {
        match t {
            CaveatType::Any => Ty::Dyn,
            CaveatType::Bool => Ty::Bool,
            CaveatType::String => Ty::String,
            CaveatType::Int | CaveatType::Uint => Ty::Int,
            CaveatType::Double => Ty::Double,
            CaveatType::Bytes => Ty::Bytes,
            CaveatType::Duration => Ty::Duration,
            CaveatType::Timestamp => Ty::Timestamp,
            CaveatType::IpAddress => Ty::IpAddress,
            CaveatType::List(e) => Ty::List(Box::new(Ty::from_param(e))),
            CaveatType::Map(v) => Ty::Map(Box::new(Ty::from_param(v))),
        }
    }

    fn name(&self) -> String {
        match self {
            Ty::Bool => "bool".into(),
            Ty::Int => "int".into(),
            Ty::Double => "double".into(),
            Ty::String => "string".into(),
            Ty::Bytes => "bytes".into(),
            Ty::Duration => "google.protobuf.Duration".into(),
            Ty::Timestamp => "google.protobuf.Timestamp".into(),
            Ty::IpAddress => "IPAddress".into(),
            Ty::Null => "null_type".into(),
            Ty::List(e) => format!("list({})", e.name()),
            Ty::Map(v) => format!("map(string, {})", v.name()),
            Ty::Optional(v) => format!("optional_type({})", v.name()),
            Ty::Dyn => "dyn".into(),
        }
    }

    /// Two types can meet in an operator: equal, or either unknown.
    fn compatible(&self, other: &Ty) -> bool {
        match (self, other) {
            (Ty::Dyn, _) | (_, Ty::Dyn) => true,
            (Ty::List(a), Ty::List(b))
            | (Ty::Map(a), Ty::Map(b))
            | (Ty::Optional(a), Ty::Optional(b)) => a.compatible(b),
            (a, b) => a == b,
        }
    }

    fn is(&self, expected: &Ty) -> bool {
        matches!(self, Ty::Dyn) || self == expected
    }
}

/// Checks a parsed caveat expression against its parameters; the error text
/// follows cel-go's wording.
pub fn check(expr: &IdedExpr, parameters: &[(String, CaveatType)]) -> Result<(), String> {
    let mut checker = Checker {
        scope: parameters
            .iter()
            .map(|(n, t)| (n.clone(), Ty::from_param(t)))
            .collect(),
    };
    match checker.infer(expr)? {
        Ty::Bool | Ty::Dyn => Ok(()),
        other => Err(format!(
            "caveat expression must result in a boolean value: found `{}`",
            other.name()
        )),
    }
}

struct Checker {
    /// Names in scope, innermost last: parameters, then macro variables.
    scope: Vec<(String, Ty)>,
}

fn no_overload(function: &str, args: &[&Ty]) -> String {
    let names: Vec<String> = args.iter().map(|t| t.name()).collect();
    format!(
        "found no matching overload for '{function}' applied to '({})'",
        names.join(", ")
    )
}

impl Checker {
    fn lookup(&self, name: &str) -> Option<Ty> {
        self.scope
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    }

    fn infer(&mut self, e: &IdedExpr) -> Result<Ty, String> {
        match &e.expr {
            Expr::Literal(lit) => Ok(match lit {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Int(_) | LiteralValue::UInt(_) => Ty::Int,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Null => Ty::Null,
            }),
            Expr::Ident(name) => self
                .lookup(name)
                .or_else(|| type_identifier(name).then_some(Ty::Dyn))
                .ok_or_else(|| format!("undeclared reference to '{name}' (in container '')")),
            Expr::Select(select) => {
                let operand = self.infer(&select.operand)?;
                if select.test {
                    return Ok(Ty::Bool);
                }
                match operand {
                    Ty::Map(value) => Ok(*value),
                    Ty::Dyn => Ok(Ty::Dyn),
                    // Selecting on an optional keeps it optional.
                    Ty::Optional(inner) => match *inner {
                        Ty::Map(value) => Ok(Ty::Optional(value)),
                        Ty::Dyn => Ok(Ty::Optional(Box::new(Ty::Dyn))),
                        other => Err(format!(
                            "type '{}' does not support field selection",
                            other.name()
                        )),
                    },
                    other => Err(format!(
                        "type '{}' does not support field selection",
                        other.name()
                    )),
                }
            }
            Expr::List(list) => {
                let mut element = None;
                for (index, item) in list.elements.iter().enumerate() {
                    let mut t = self.infer(item)?;
                    // `[?x]` adds x's value, if any.
                    if list.optional_indices.contains(&index)
                        && let Ty::Optional(inner) = t
                    {
                        t = *inner;
                    }
                    element = Some(match element {
                        Some(prev) if prev == t => prev,
                        Some(_) => Ty::Dyn,
                        None => t,
                    });
                }
                Ok(Ty::List(Box::new(element.unwrap_or(Ty::Dyn))))
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(m) = &entry.expr {
                        self.infer(&m.key)?;
                        self.infer(&m.value)?;
                    }
                }
                Ok(Ty::Map(Box::new(Ty::Dyn)))
            }
            Expr::Struct(s) => Err(format!(
                "undeclared reference to '{}' (in container '')",
                s.type_name
            )),
            Expr::Comprehension(c) => {
                let range = self.infer(&c.iter_range)?;
                let element = match range {
                    Ty::List(e) => *e,
                    Ty::Map(_) => Ty::String,
                    _ => Ty::Dyn,
                };
                let accumulator = self.infer(&c.accu_init)?;
                let depth = self.scope.len();
                self.scope.push((c.iter_var.clone(), element));
                if let Some(second) = &c.iter_var2 {
                    self.scope.push((second.clone(), Ty::Dyn));
                }
                self.scope.push((c.accu_var.clone(), accumulator));
                let result = self
                    .infer(&c.loop_cond)
                    .and_then(|_| self.infer(&c.loop_step))
                    .and_then(|_| self.infer(&c.result));
                self.scope.truncate(depth);
                result
            }
            Expr::Call(call) => {
                // `optional.of(x)`: a namespaced function, not a method.
                if let Some(Expr::Ident(namespace)) = call.target.as_deref().map(|t| &t.expr)
                    && namespace == "optional"
                    && self.lookup(namespace).is_none()
                {
                    let args = call
                        .args
                        .iter()
                        .map(|a| self.infer(a))
                        .collect::<Result<Vec<_>, _>>()?;
                    return optional_function(&call.func_name, &args);
                }
                let target = call.target.as_deref().map(|t| self.infer(t)).transpose()?;
                let args = call
                    .args
                    .iter()
                    .map(|a| self.infer(a))
                    .collect::<Result<Vec<_>, _>>()?;
                call_type(&call.func_name, target.as_ref(), &args)
            }
            Expr::Unspecified => Ok(Ty::Dyn),
        }
    }
}

/// Type names usable as values (`type(x) == int`).
fn type_identifier(name: &str) -> bool {
    matches!(
        name,
        "int"
            | "uint"
            | "double"
            | "bool"
            | "string"
            | "bytes"
            | "list"
            | "map"
            | "null_type"
            | "type"
    )
}

fn is_numeric(t: &Ty) -> bool {
    matches!(t, Ty::Int | Ty::Double | Ty::Dyn)
}

/// The result type of a function or operator, or the checker's complaint.
fn call_type(name: &str, target: Option<&Ty>, args: &[Ty]) -> Result<Ty, String> {
    let all: Vec<&Ty> = target.into_iter().chain(args.iter()).collect();
    let fail = || Err(no_overload(name, &all));
    match (name, all.as_slice()) {
        ("_==_" | "_!=_", [a, b]) => {
            if a.compatible(b) || matches!(a, Ty::Null) || matches!(b, Ty::Null) {
                Ok(Ty::Bool)
            } else {
                fail()
            }
        }
        ("_<_" | "_<=_" | "_>_" | "_>=_", [a, b]) => {
            let numbers = is_numeric(a) && is_numeric(b);
            let ordered = matches!(
                a,
                Ty::String | Ty::Bytes | Ty::Duration | Ty::Timestamp | Ty::Bool
            );
            if numbers
                || (ordered && a.compatible(b))
                || matches!((a, b), (Ty::Dyn, _) | (_, Ty::Dyn))
            {
                Ok(Ty::Bool)
            } else {
                fail()
            }
        }
        ("_&&_" | "_||_", [a, b]) if a.is(&Ty::Bool) && b.is(&Ty::Bool) => Ok(Ty::Bool),
        ("!_" | "@not_strictly_false", [a]) if a.is(&Ty::Bool) => Ok(Ty::Bool),
        ("-_", [a]) if is_numeric(a) || a.is(&Ty::Duration) => Ok((*a).clone()),
        ("_+_", [a, b]) => match (a, b) {
            (Ty::Timestamp, Ty::Duration) | (Ty::Duration, Ty::Timestamp) => Ok(Ty::Timestamp),
            (Ty::Dyn, other) | (other, Ty::Dyn) => Ok((*other).clone()),
            // `map`/`filter` build `list(dyn) + [x]`: element types unify.
            (Ty::List(x), Ty::List(y)) if x.compatible(y) => Ok(Ty::List(Box::new(if x == y {
                (**x).clone()
            } else {
                Ty::Dyn
            }))),
            (a, b) if a == b && !matches!(a, Ty::Bool | Ty::Null | Ty::IpAddress | Ty::Map(_)) => {
                Ok((*a).clone())
            }
            _ => fail(),
        },
        ("_-_", [a, b]) => match (a, b) {
            (Ty::Timestamp, Ty::Timestamp) => Ok(Ty::Duration),
            (Ty::Timestamp, Ty::Duration) => Ok(Ty::Timestamp),
            (Ty::Dyn, other) | (other, Ty::Dyn) => Ok((*other).clone()),
            (a, b) if a == b && matches!(a, Ty::Int | Ty::Double | Ty::Duration) => {
                Ok((*a).clone())
            }
            _ => fail(),
        },
        ("_*_" | "_/_" | "_%_", [a, b]) => match (a, b) {
            (Ty::Dyn, other) | (other, Ty::Dyn) => Ok((*other).clone()),
            (a, b) if a == b && matches!(a, Ty::Int | Ty::Double) => Ok((*a).clone()),
            _ => fail(),
        },
        ("_?_:_", [c, a, b]) if c.is(&Ty::Bool) => Ok(if a == b { (*a).clone() } else { Ty::Dyn }),
        ("_[_]", [container, index]) => match container {
            Ty::List(e) if index.is(&Ty::Int) => Ok((**e).clone()),
            Ty::Map(v) if index.is(&Ty::String) => Ok((**v).clone()),
            Ty::Dyn => Ok(Ty::Dyn),
            // Indexing an optional keeps it optional.
            Ty::Optional(inner) => call_type("_[_]", None, &[(**inner).clone(), (*index).clone()])
                .map(|t| Ty::Optional(Box::new(t))),
            _ => fail(),
        },
        ("_?._", [operand, Ty::String]) => match operand {
            Ty::Map(v) => Ok(Ty::Optional(v.clone())),
            Ty::Optional(inner) if matches!(**inner, Ty::Map(_) | Ty::Dyn) => match &**inner {
                Ty::Map(v) => Ok(Ty::Optional(v.clone())),
                _ => Ok(Ty::Optional(Box::new(Ty::Dyn))),
            },
            Ty::Dyn => Ok(Ty::Optional(Box::new(Ty::Dyn))),
            other => Err(format!(
                "type '{}' does not support field selection",
                other.name()
            )),
        },
        ("_[?_]", [container, index]) => {
            call_type("_[_]", None, &[(*container).clone(), (*index).clone()])
                .map(|t| match (container, t) {
                    // Already optional when the container was.
                    (Ty::Optional(_), t) => t,
                    (_, t) => Ty::Optional(Box::new(t)),
                })
                .map_err(|_| no_overload(name, &all))
        }
        ("hasValue", [Ty::Optional(_)]) => Ok(Ty::Bool),
        ("value", [Ty::Optional(inner)]) => Ok((**inner).clone()),
        ("orValue", [Ty::Optional(inner), other]) if inner.compatible(other) => {
            Ok(if matches!(**inner, Ty::Dyn) {
                (*other).clone()
            } else {
                (**inner).clone()
            })
        }
        ("or", [Ty::Optional(a), Ty::Optional(b)]) if a.compatible(b) => {
            Ok(Ty::Optional(if matches!(**a, Ty::Dyn) {
                b.clone()
            } else {
                a.clone()
            }))
        }
        ("hasValue" | "value" | "orValue" | "or", [Ty::Dyn, ..]) => Ok(Ty::Dyn),
        ("@in", [_, Ty::List(_) | Ty::Map(_) | Ty::Dyn]) => Ok(Ty::Bool),
        ("size", [Ty::String | Ty::Bytes | Ty::List(_) | Ty::Map(_) | Ty::Dyn]) => Ok(Ty::Int),
        ("contains" | "startsWith" | "endsWith" | "matches", [a, b])
            if a.is(&Ty::String) && b.is(&Ty::String) =>
        {
            Ok(Ty::Bool)
        }
        ("in_cidr", [ip, cidr]) if ip.is(&Ty::IpAddress) && cidr.is(&Ty::String) => Ok(Ty::Bool),
        ("isSubtreeOf", [a, b])
            if matches!(a, Ty::Map(_) | Ty::Dyn) && matches!(b, Ty::Map(_) | Ty::Dyn) =>
        {
            Ok(Ty::Bool)
        }
        ("int" | "uint", [_]) => Ok(Ty::Int),
        ("double", [_]) => Ok(Ty::Double),
        // cel-go has no `string` of lists, maps or IP addresses.
        (
            "string",
            [
                Ty::Int
                | Ty::Double
                | Ty::String
                | Ty::Bytes
                | Ty::Bool
                | Ty::Timestamp
                | Ty::Duration
                | Ty::Dyn,
            ],
        ) => Ok(Ty::String),
        ("bytes", [_]) => Ok(Ty::Bytes),
        ("bool", [_]) => Ok(Ty::Bool),
        ("duration", [a]) if a.is(&Ty::String) || a.is(&Ty::Duration) => Ok(Ty::Duration),
        ("timestamp", [a]) if a.is(&Ty::String) || a.is(&Ty::Timestamp) || a.is(&Ty::Int) => {
            Ok(Ty::Timestamp)
        }
        ("dyn" | "type", [_]) => Ok(Ty::Dyn),
        (
            "getFullYear" | "getMonth" | "getDayOfYear" | "getDayOfMonth" | "getDate"
            | "getDayOfWeek" | "getHours" | "getMinutes" | "getSeconds" | "getMilliseconds",
            [t, ..],
        ) if t.is(&Ty::Timestamp) || t.is(&Ty::Duration) => Ok(Ty::Int),
        (
            "_==_"
            | "_!=_"
            | "_<_"
            | "_<=_"
            | "_>_"
            | "_>=_"
            | "_&&_"
            | "_||_"
            | "!_"
            | "@not_strictly_false"
            | "-_"
            | "_+_"
            | "_-_"
            | "_*_"
            | "_/_"
            | "_%_"
            | "_?_:_"
            | "_[_]"
            | "@in"
            | "size"
            | "contains"
            | "startsWith"
            | "endsWith"
            | "matches"
            | "in_cidr"
            | "isSubtreeOf"
            | "_?._"
            | "_[?_]"
            | "hasValue"
            | "value"
            | "orValue"
            | "or"
            | "int"
            | "uint"
            | "double"
            | "string"
            | "bytes"
            | "bool"
            | "duration"
            | "timestamp"
            | "dyn"
            | "type"
            | "getFullYear"
            | "getMonth"
            | "getDayOfYear"
            | "getDayOfMonth"
            | "getDate"
            | "getDayOfWeek"
            | "getHours"
            | "getMinutes"
            | "getSeconds"
            | "getMilliseconds",
            _,
        ) => fail(),
        _ => Err(format!(
            "undeclared reference to '{name}' (in container '')"
        )),
    }
}

/// `optional.of(x)`, `optional.ofNonZeroValue(x)` and `optional.none()`.
fn optional_function(name: &str, args: &[Ty]) -> Result<Ty, String> {
    match (name, args) {
        ("of" | "ofNonZeroValue", [t]) => Ok(Ty::Optional(Box::new(t.clone()))),
        ("none", []) => Ok(Ty::Optional(Box::new(Ty::Dyn))),
        ("of" | "ofNonZeroValue" | "none", _) => Err(no_overload(
            &format!("optional.{name}"),
            &args.iter().collect::<Vec<_>>(),
        )),
        _ => Err(format!(
            "undeclared reference to 'optional.{name}' (in container '')"
        )),
    }
}

/// Whether an expression reading a parameter of type `a` type-checks the
/// same with type `b`: SpiceDB declares `uint` to CEL's checker as `int`.
pub(super) fn same_to_checker(a: &CaveatType, b: &CaveatType) -> bool {
    Ty::from_param(a) == Ty::from_param(b)
}
