//! Evaluation with parameters missing, as cel-go's partial evaluation does
//! for SpiceDB. A missing parameter is *unknown*; an expression that reads
//! one is unknown too, naming it, unless the known part decides:
//!
//! - `a && b` is false if either side is false, `a || b` true if either is
//!   true, whatever the other side is (unknown or even an error); otherwise
//!   unknowns beat errors and merge their names;
//! - `c ? x : y` is as unknown as `c`, or as the branch `c` picks;
//! - any other operator or function is strict: its first operand (left to
//!   right, receiver first) that is unknown or an error is the result;
//! - a comprehension runs element by element, so `l.all(x, x > 0 && x > a)`
//!   is false as soon as an element is not positive.
//!
//! The walk only goes where something unknown is: a subexpression that reads
//! nothing unknown goes to the `cel` interpreter whole. Where a node's
//! operands had to be walked and came out known, the node is re-run by the
//! interpreter on those values, bound to fresh names, so operator semantics
//! stay the interpreter's. That re-running copies values the interpreter
//! alone would not; those copies are metered against [`MAX_COST`].

use std::collections::{BTreeSet, HashMap};

use cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedEntryExpr, IdedExpr, ListExpr, MapEntryExpr,
    MapExpr, SelectExpr, StructExpr, StructFieldExpr,
};
use cel::common::types::CelBool;
use cel::{Context, ExecutionError, Value};

use super::convert::CelValue;
use super::cost::{MAX_COST, size_of};
use super::functions::children;

/// A value as far as it is known.
#[derive(Debug)]
pub enum Partial {
    Known(CelValue),
    /// Depends on these missing parameters.
    Unknown(BTreeSet<String>),
    Error(ExecutionError),
}

/// The metered work went over [`MAX_COST`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostExceeded;

/// Evaluates `expr` in `ctx`, where the parameters in `missing` are unknown.
pub fn evaluate(
    expr: &IdedExpr,
    ctx: &Context<'_, 'static>,
    missing: &[&str],
) -> Result<Partial, CostExceeded> {
    let mut root = Scope::root();
    for name in missing {
        let names = BTreeSet::from([(*name).to_string()]);
        root.bind(name, Binding::Unknown(names));
    }
    let mut walker = Walker {
        free: if missing.is_empty() {
            HashMap::new()
        } else {
            free_variables(expr, missing)
        },
        spent: 0,
    };
    walker.eval(expr, ctx, &root)
}

/// How a name is bound where the walk is.
#[derive(Debug, Clone)]
enum Binding {
    /// Its value is in the `cel` context.
    Known,
    Unknown(BTreeSet<String>),
    Error(ExecutionError),
}

/// Names bound by comprehensions (and, at the root, missing parameters),
/// innermost frame first. Names found nowhere are known context variables.
///
/// A missing parameter stays unknown even where a comprehension variable of
/// the same name would shadow it: cel-go matches unknown attributes by name
/// before it resolves variables (SpiceDB answers `l.all(a, a > 0)` with `a`
/// missing as CONDITIONAL on `a`).
struct Scope<'s> {
    parent: Option<&'s Scope<'s>>,
    bindings: Vec<(String, Binding)>,
}

impl<'s> Scope<'s> {
    fn root() -> Scope<'static> {
        Scope {
            parent: None,
            bindings: Vec::new(),
        }
    }

    fn child(parent: &'s Scope<'s>) -> Scope<'s> {
        Scope {
            parent: Some(parent),
            bindings: Vec::new(),
        }
    }

    fn bind(&mut self, name: &str, binding: Binding) {
        self.bindings.push((name.to_string(), binding));
    }

    fn lookup(&self, name: &str) -> Option<&Binding> {
        let mut innermost = None;
        let mut frame = Some(self);
        while let Some(f) = frame {
            if let Some((_, b)) = f.bindings.iter().rev().find(|(n, _)| n == name) {
                if f.parent.is_none() {
                    // The root's bindings are the missing parameters.
                    return Some(b);
                }
                innermost = innermost.or(Some(b));
            }
            frame = f.parent;
        }
        innermost
    }

    fn is_unresolved(&self, name: &str) -> bool {
        matches!(
            self.lookup(name),
            Some(Binding::Unknown(_) | Binding::Error(_))
        )
    }
}

struct Walker {
    /// Free variables of each node that has any, by node id.
    free: HashMap<u64, Vec<String>>,
    spent: u64,
}

/// What becomes of one operand when a node is re-run on walked operands.
enum Operand {
    /// Re-run as written (a literal or a known name: cheap, cannot fail).
    AsWritten,
    /// Re-run as a fresh name bound to this value.
    Value(CelValue),
}

impl Walker {
    fn charge(&mut self, units: u64) -> Result<(), CostExceeded> {
        self.spent = self.spent.saturating_add(units);
        if self.spent > MAX_COST {
            return Err(CostExceeded);
        }
        Ok(())
    }

    fn reads_unresolved(&self, e: &IdedExpr, scope: &Scope<'_>) -> bool {
        self.free
            .get(&e.id)
            .is_some_and(|names| names.iter().any(|n| scope.is_unresolved(n)))
    }

    /// Runs a subexpression that reads nothing unknown in the interpreter.
    fn interpret(
        &mut self,
        e: &IdedExpr,
        ctx: &Context<'_, 'static>,
    ) -> Result<Partial, CostExceeded> {
        Ok(match Value::resolve_val(e, ctx) {
            Ok(value) => {
                if value.is_borrowed() {
                    self.charge(size_of(value.as_ref()))?;
                }
                Partial::Known(value.into_owned())
            }
            Err(err) => Partial::Error(err),
        })
    }

    fn eval(
        &mut self,
        e: &IdedExpr,
        ctx: &Context<'_, 'static>,
        scope: &Scope<'_>,
    ) -> Result<Partial, CostExceeded> {
        if !self.reads_unresolved(e, scope) {
            return self.interpret(e, ctx);
        }
        self.charge(1)?;
        match &e.expr {
            Expr::Ident(name) => Ok(match scope.lookup(name) {
                Some(Binding::Unknown(names)) => Partial::Unknown(names.clone()),
                Some(Binding::Error(err)) => Partial::Error(err.clone()),
                Some(Binding::Known) | None => return self.interpret(e, ctx),
            }),
            Expr::Call(call) => match (call.func_name.as_str(), call.target.is_none()) {
                ("_&&_", true) if call.args.len() == 2 => self.logical(call, false, ctx, scope),
                ("_||_", true) if call.args.len() == 2 => self.logical(call, true, ctx, scope),
                ("_?_:_", true) if call.args.len() == 3 => self.conditional(call, ctx, scope),
                ("@not_strictly_false", true) if call.args.len() == 1 => {
                    // Not strict: only a known `false` is false.
                    let value = self.eval(&call.args[0], ctx, scope)?;
                    Ok(Partial::Known(Box::new(CelBool::from(
                        known_bool(&value) != Some(false),
                    ))))
                }
                _ => self.strict(e, ctx, scope),
            },
            Expr::Comprehension(c) => self.comprehension(c, ctx, scope),
            Expr::Select(_) | Expr::List(_) | Expr::Map(_) | Expr::Struct(_) => {
                self.strict(e, ctx, scope)
            }
            Expr::Literal(_) | Expr::Unspecified => self.interpret(e, ctx),
        }
    }

    /// `a && b` (`absorbing` false) or `a || b` (`absorbing` true), as
    /// cel-go: the absorbing value wins over anything, then unknowns (merged),
    /// then the first error or non-bool operand.
    fn logical(
        &mut self,
        call: &CallExpr,
        absorbing: bool,
        ctx: &Context<'_, 'static>,
        scope: &Scope<'_>,
    ) -> Result<Partial, CostExceeded> {
        let done = |value: bool| Ok(Partial::Known(Box::new(CelBool::from(value))));
        let left = self.eval(&call.args[0], ctx, scope)?;
        if known_bool(&left) == Some(absorbing) {
            return done(absorbing);
        }
        let right = self.eval(&call.args[1], ctx, scope)?;
        if known_bool(&right) == Some(absorbing) {
            return done(absorbing);
        }
        if known_bool(&left).is_some() && known_bool(&right).is_some() {
            return done(!absorbing);
        }
        let mut missing = BTreeSet::new();
        for side in [&left, &right] {
            if let Partial::Unknown(names) = side {
                missing.extend(names.iter().cloned());
            }
        }
        if !missing.is_empty() {
            return Ok(Partial::Unknown(missing));
        }
        // The first operand that is not a bool: an error, or no overload.
        for side in [left, right] {
            match side {
                Partial::Error(err) => return Ok(Partial::Error(err)),
                Partial::Known(value) if value.downcast_ref::<CelBool>().is_none() => {
                    return Ok(Partial::Error(ExecutionError::no_such_overload(
                        &call.func_name,
                        vec![value.get_type().name().to_owned()],
                    )));
                }
                _ => {}
            }
        }
        unreachable!("two known bools or an unknown were handled above")
    }

    /// `c ? x : y`: the condition decides which branch is evaluated.
    fn conditional(
        &mut self,
        call: &CallExpr,
        ctx: &Context<'_, 'static>,
        scope: &Scope<'_>,
    ) -> Result<Partial, CostExceeded> {
        match self.eval(&call.args[0], ctx, scope)? {
            Partial::Known(value) => match value.downcast_ref::<CelBool>() {
                Some(b) if *b.inner() => self.eval(&call.args[1], ctx, scope),
                Some(_) => self.eval(&call.args[2], ctx, scope),
                None => Ok(Partial::Error(ExecutionError::no_such_overload(
                    "_?_:_",
                    vec![value.get_type().name().to_owned()],
                ))),
            },
            other => Ok(other),
        }
    }

    /// A node whose operands are all needed: the first unknown or failing
    /// operand is the result; otherwise the node is re-run on the values.
    fn strict(
        &mut self,
        e: &IdedExpr,
        ctx: &Context<'_, 'static>,
        scope: &Scope<'_>,
    ) -> Result<Partial, CostExceeded> {
        let mut operands = Vec::new();
        for child in children(e) {
            let cheap = match &child.expr {
                Expr::Literal(_) => true,
                // A function namespace (`optional.of`) or a known variable.
                Expr::Ident(name) => !scope.is_unresolved(name),
                _ => false,
            };
            if cheap {
                operands.push(Operand::AsWritten);
                continue;
            }
            match self.eval(child, ctx, scope)? {
                Partial::Known(value) => operands.push(Operand::Value(value)),
                other => return Ok(other),
            }
        }
        let mut inner = ctx.new_inner_scope();
        let mut bound = 0usize;
        let mut operands = operands.into_iter();
        let rebuilt = rebuild(e, &mut |child| match operands.next() {
            Some(Operand::Value(value)) => {
                let name = format!("@operand{bound}");
                bound += 1;
                inner.add_variable_as_val(name.clone(), value);
                IdedExpr {
                    id: child.id,
                    expr: Expr::Ident(name),
                }
            }
            Some(Operand::AsWritten) | None => child.clone(),
        });
        let result = match Value::resolve_val(&rebuilt, &inner) {
            Ok(value) => value.into_owned(),
            Err(err) => return Ok(Partial::Error(err)),
        };
        self.charge(size_of(result.as_ref()))?;
        Ok(Partial::Known(result))
    }

    /// A comprehension whose body reads something unknown, run element by
    /// element as cel-go's fold: the loop stops when the condition is a
    /// known `false`; the accumulator may become unknown or an error.
    fn comprehension(
        &mut self,
        c: &ComprehensionExpr,
        ctx: &Context<'_, 'static>,
        scope: &Scope<'_>,
    ) -> Result<Partial, CostExceeded> {
        let range = match self.eval(&c.iter_range, ctx, scope)? {
            Partial::Known(range) => range,
            other => return Ok(other),
        };
        let Some(iterable) = range.as_iterable() else {
            return Ok(Partial::Error(ExecutionError::UnexpectedType {
                got: range.get_type().name().to_owned(),
                want: "iterable".to_owned(),
            }));
        };
        let mut items = Vec::new();
        let mut iter = iterable.iter();
        while let Some(item) = iter.next() {
            self.charge(size_of(item))?;
            items.push(item.clone_as_boxed());
        }
        drop(iter);
        let mut accu = self.eval(&c.accu_init, ctx, scope)?;
        for item in items {
            self.charge(1)?;
            let mut inner = ctx.new_inner_scope();
            let mut frame = Scope::child(scope);
            inner.add_variable_as_val(c.iter_var.clone(), item);
            frame.bind(&c.iter_var, Binding::Known);
            bind(&mut inner, &mut frame, &c.accu_var, accu);
            let condition = self.eval(&c.loop_cond, &inner, &frame)?;
            if known_bool(&condition) == Some(false) {
                accu = self.take(&inner, &frame, &c.accu_var)?;
                break;
            }
            accu = self.eval(&c.loop_step, &inner, &frame)?;
        }
        let mut inner = ctx.new_inner_scope();
        let mut frame = Scope::child(scope);
        bind(&mut inner, &mut frame, &c.accu_var, accu);
        self.eval(&c.result, &inner, &frame)
    }

    /// The accumulator back out of a loop scope.
    fn take(
        &mut self,
        inner: &Context<'_, 'static>,
        frame: &Scope<'_>,
        name: &str,
    ) -> Result<Partial, CostExceeded> {
        Ok(match frame.lookup(name) {
            Some(Binding::Unknown(names)) => Partial::Unknown(names.clone()),
            Some(Binding::Error(err)) => Partial::Error(err.clone()),
            Some(Binding::Known) | None => match inner.get_variable(name) {
                Some(value) => {
                    self.charge(size_of(value.as_ref()))?;
                    Partial::Known(value.into_owned())
                }
                None => Partial::Error(ExecutionError::undeclared_reference(name)),
            },
        })
    }
}

fn bind(inner: &mut Context<'_, 'static>, frame: &mut Scope<'_>, name: &str, value: Partial) {
    match value {
        Partial::Known(v) => {
            inner.add_variable_as_val(name.to_string(), v);
            frame.bind(name, Binding::Known);
        }
        Partial::Unknown(names) => frame.bind(name, Binding::Unknown(names)),
        Partial::Error(err) => frame.bind(name, Binding::Error(err)),
    }
}

fn known_bool(value: &Partial) -> Option<bool> {
    match value {
        Partial::Known(v) => v.downcast_ref::<CelBool>().map(|b| *b.inner()),
        _ => None,
    }
}

/// A copy of `e` with each direct subexpression replaced by `child(it)`,
/// called in evaluation order.
fn rebuild(e: &IdedExpr, child: &mut dyn FnMut(&IdedExpr) -> IdedExpr) -> IdedExpr {
    let mut entry = |entry: &IdedEntryExpr| IdedEntryExpr {
        id: entry.id,
        expr: match &entry.expr {
            EntryExpr::MapEntry(m) => EntryExpr::MapEntry(MapEntryExpr {
                key: child(&m.key),
                value: child(&m.value),
                optional: m.optional,
            }),
            EntryExpr::StructField(f) => EntryExpr::StructField(StructFieldExpr {
                field: f.field.clone(),
                value: child(&f.value),
                optional: f.optional,
            }),
        },
    };
    let expr = match &e.expr {
        Expr::Call(call) => {
            let target = call.target.as_deref().map(|t| Box::new(child(t)));
            Expr::Call(CallExpr {
                func_name: call.func_name.clone(),
                target,
                args: call.args.iter().map(&mut *child).collect(),
            })
        }
        Expr::Select(select) => Expr::Select(SelectExpr {
            operand: Box::new(child(&select.operand)),
            field: select.field.clone(),
            test: select.test,
        }),
        Expr::List(list) => Expr::List(ListExpr {
            elements: list.elements.iter().map(&mut *child).collect(),
            optional_indices: list.optional_indices.clone(),
        }),
        Expr::Map(map) => Expr::Map(MapExpr {
            entries: map.entries.iter().map(&mut entry).collect(),
        }),
        Expr::Struct(s) => Expr::Struct(StructExpr {
            type_name: s.type_name.clone(),
            entries: s.entries.iter().map(&mut entry).collect(),
        }),
        other => other.clone(),
    };
    IdedExpr { id: e.id, expr }
}

/// The names each node reads from outside itself (comprehension variables
/// are bound inside the comprehension, except names of missing parameters,
/// which stay unknown there), for the nodes that read any.
fn free_variables(expr: &IdedExpr, missing: &[&str]) -> HashMap<u64, Vec<String>> {
    fn walk(
        e: &IdedExpr,
        missing: &[&str],
        out: &mut HashMap<u64, Vec<String>>,
    ) -> BTreeSet<String> {
        let mut free = BTreeSet::new();
        match &e.expr {
            Expr::Ident(name) => {
                free.insert(name.clone());
            }
            Expr::Comprehension(c) => {
                free.extend(walk(&c.iter_range, missing, out));
                free.extend(walk(&c.accu_init, missing, out));
                let bound = |n: &String| {
                    let binds =
                        *n == c.iter_var || *n == c.accu_var || c.iter_var2.as_ref() == Some(n);
                    binds && !missing.contains(&n.as_str())
                };
                let mut body = walk(&c.loop_cond, missing, out);
                body.extend(walk(&c.loop_step, missing, out));
                body.extend(walk(&c.result, missing, out));
                free.extend(body.into_iter().filter(|n| !bound(n)));
            }
            _ => {
                for child in children(e) {
                    free.extend(walk(child, missing, out));
                }
            }
        }
        if !free.is_empty() {
            out.insert(e.id, free.iter().cloned().collect());
        }
        free
    }
    let mut out = HashMap::new();
    walk(expr, missing, &mut out);
    out
}
