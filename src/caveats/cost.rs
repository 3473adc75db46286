//! What evaluating a caveat may cost, bounded before it runs. The `cel`
//! crate's interpreter has no cost limit, and SpiceDB sets none when it
//! checks; but a comprehension nested in a comprehension over a context list
//! of 10,000 items would run for minutes. So before evaluating, [`estimate`]
//! walks the expression once with upper bounds on the sizes of the actual
//! parameter values and sums an upper bound on the work: a unit per node
//! visited or element copied, and per 16 bytes of text compared or copied.
//! Comprehension bodies count once per element. An estimate above
//! [`MAX_COST`] is refused as an evaluation error, as cel-go's cost limit
//! would be.

use std::rc::Rc;

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::common::types::{CelBytes, CelList, CelMap, CelString};
use cel::common::value::Val;

/// Work allowed for one caveat evaluation. The `cel` interpreter spends
/// some 10–30 ns a unit in a release build, so this is tens of milliseconds
/// at worst (a comprehension nested in one over 1,000 elements is refused).
/// Real caveats cost tens to thousands of units.
pub const MAX_COST: u64 = 2_000_000;

/// Bytes of text per unit of work.
const BYTES_PER_UNIT: u64 = 16;

/// The message SpiceDB's cel-go gives when its cost limit is hit.
pub const COST_EXCEEDED: &str = "operation cancelled: actual cost limit exceeded";

/// An upper bound on a value: its total size, how many elements iterating
/// it yields, and a bound on each element (list items, map keys and values).
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    size: u64,
    count: u64,
    item: Option<Rc<Bound>>,
}

impl Bound {
    fn scalar() -> Bound {
        Bound::text(0)
    }

    /// A string or bytes of `len` bytes: sized, not iterable.
    fn text(len: u64) -> Bound {
        Bound {
            size: text_units(len),
            count: 0,
            item: None,
        }
    }

    /// Anything of at most `size`.
    fn any(size: u64) -> Bound {
        Bound {
            size,
            count: size,
            item: None,
        }
    }

    fn item(&self) -> Bound {
        match &self.item {
            Some(item) => (**item).clone(),
            None => Bound::any(self.size),
        }
    }

    fn join(&self, other: &Bound) -> Bound {
        let item = match (&self.item, &other.item) {
            _ if self.count == 0 => other.item.clone(),
            _ if other.count == 0 => self.item.clone(),
            (Some(a), Some(b)) => Some(Rc::new(a.join(b))),
            _ => None,
        };
        Bound {
            size: self.size.max(other.size),
            count: self.count.max(other.count),
            item,
        }
    }

    /// A container of `items`.
    fn container<'a>(items: impl IntoIterator<Item = &'a Bound>, count: u64) -> Bound {
        let mut size = 1u64;
        let mut item: Option<Bound> = None;
        for b in items {
            size = size.saturating_add(b.size);
            item = Some(match item {
                Some(i) => i.join(b),
                None => b.clone(),
            });
        }
        Bound {
            size,
            count,
            item: Some(Rc::new(item.unwrap_or_else(Bound::scalar))),
        }
    }
}

fn text_units(len: u64) -> u64 {
    1 + len.div_ceil(BYTES_PER_UNIT)
}

/// The exact bound of a value.
pub fn bound_of(value: &dyn Val) -> Bound {
    if let Some(s) = value.downcast_ref::<CelString>() {
        return Bound::text(s.inner().len() as u64);
    }
    if let Some(b) = value.downcast_ref::<CelBytes>() {
        return Bound::text(b.inner().len() as u64);
    }
    if let Some(list) = value.downcast_ref::<CelList>() {
        let items: Vec<Bound> = list.inner().iter().map(|v| bound_of(v.as_ref())).collect();
        return Bound::container(&items, items.len() as u64);
    }
    if let Some(map) = value.downcast_ref::<CelMap>() {
        let items: Vec<Bound> = map
            .inner()
            .iter()
            .flat_map(|(k, v)| [bound_of(k.inner()), bound_of(v.as_ref())])
            .collect();
        return Bound::container(&items, map.inner().len() as u64);
    }
    Bound::scalar()
}

/// The size of a value, in the units of [`Bound`].
pub fn size_of(value: &dyn Val) -> u64 {
    if let Some(s) = value.downcast_ref::<CelString>() {
        return text_units(s.inner().len() as u64);
    }
    if let Some(b) = value.downcast_ref::<CelBytes>() {
        return text_units(b.inner().len() as u64);
    }
    if let Some(list) = value.downcast_ref::<CelList>() {
        return list
            .inner()
            .iter()
            .fold(1u64, |acc, v| acc.saturating_add(size_of(v.as_ref())));
    }
    if let Some(map) = value.downcast_ref::<CelMap>() {
        return map.inner().iter().fold(1u64, |acc, (k, v)| {
            acc.saturating_add(size_of(k.inner()))
                .saturating_add(size_of(v.as_ref()))
        });
    }
    1
}

/// An upper bound on the cost of evaluating `expr` with parameters bounded
/// by `params` (missing parameters are never read, so they need no bound).
pub fn estimate(expr: &IdedExpr, params: &[(&str, Bound)]) -> u64 {
    let mut estimator = Estimator {
        vars: params
            .iter()
            .map(|(n, b)| ((*n).to_string(), b.clone()))
            .collect(),
        accumulators: Vec::new(),
        cost: 0,
    };
    estimator.node(expr);
    estimator.cost
}

struct Estimator {
    /// Variables in scope, innermost last.
    vars: Vec<(String, Bound)>,
    /// Comprehension accumulators in scope: `@result + [x]` appends in place.
    accumulators: Vec<String>,
    cost: u64,
}

impl Estimator {
    fn add(&mut self, units: u64) {
        self.cost = self.cost.saturating_add(units);
    }

    fn lookup(&self, name: &str) -> Bound {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map_or_else(Bound::scalar, |(_, b)| b.clone())
    }

    fn node(&mut self, e: &IdedExpr) -> Bound {
        self.add(1);
        match &e.expr {
            Expr::Literal(LiteralValue::String(s)) => Bound::text(s.len() as u64),
            Expr::Literal(LiteralValue::Bytes(b)) => Bound::text(b.len() as u64),
            Expr::Literal(_) | Expr::Unspecified => Bound::scalar(),
            Expr::Ident(name) => self.lookup(name),
            Expr::Select(select) => {
                let operand = self.node(&select.operand);
                if select.test {
                    Bound::scalar()
                } else {
                    operand.item()
                }
            }
            Expr::List(list) => {
                let items: Vec<Bound> = list.elements.iter().map(|i| self.node(i)).collect();
                let bound = Bound::container(&items, items.len() as u64);
                self.add(bound.size);
                bound
            }
            Expr::Map(map) => {
                let mut items = Vec::new();
                for entry in &map.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(m) => {
                            items.push(self.node(&m.key));
                            items.push(self.node(&m.value));
                        }
                        EntryExpr::StructField(f) => items.push(self.node(&f.value)),
                    }
                }
                let bound = Bound::container(&items, map.entries.len() as u64);
                self.add(bound.size);
                bound
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(m) => {
                            self.node(&m.key);
                            self.node(&m.value);
                        }
                        EntryExpr::StructField(f) => {
                            self.node(&f.value);
                        }
                    }
                }
                Bound::scalar()
            }
            Expr::Comprehension(c) => {
                let range = self.node(&c.iter_range);
                let init = self.node(&c.accu_init);
                let element = range.item();
                let scope = self.vars.len();
                self.vars.push((c.iter_var.clone(), element.clone()));
                if let Some(second) = &c.iter_var2 {
                    self.vars.push((second.clone(), element.clone()));
                }
                self.vars.push((c.accu_var.clone(), init.clone()));
                self.accumulators.push(c.accu_var.clone());
                let outer = std::mem::take(&mut self.cost);
                self.node(&c.loop_cond);
                let step = self.node(&c.loop_step);
                let body = std::mem::replace(&mut self.cost, outer);
                self.accumulators.pop();
                // Each iteration copies the element and runs the body; the
                // accumulator grows by what one step adds.
                let n = range.count;
                self.add(n.saturating_mul(body.saturating_add(element.size)));
                let grow = |to: u64, from: u64| n.saturating_mul(to.saturating_sub(from));
                let accumulated = Bound {
                    size: init.size.saturating_add(grow(step.size, init.size)),
                    count: init.count.saturating_add(grow(step.count, init.count)),
                    item: init.join(&step).item,
                };
                self.vars.truncate(scope);
                self.vars.push((c.accu_var.clone(), accumulated));
                let result = self.node(&c.result);
                self.vars.truncate(scope);
                result
            }
            Expr::Call(call) => {
                let args: Vec<Bound> = call
                    .target
                    .as_deref()
                    .into_iter()
                    .chain(&call.args)
                    .map(|a| self.node(a))
                    .collect();
                let sizes = args.iter().fold(0u64, |acc, b| acc.saturating_add(b.size));
                let first = |i: usize| args.get(i).cloned().unwrap_or_else(Bound::scalar);
                match call.func_name.as_str() {
                    "_+_" => {
                        let appends = call.target.is_none()
                            && matches!(call.args.first().map(|a| &a.expr),
                                Some(Expr::Ident(n)) if self.accumulators.contains(n));
                        let result = Bound {
                            size: sizes,
                            count: args.iter().fold(0u64, |acc, b| acc.saturating_add(b.count)),
                            item: first(0).join(&first(1)).item,
                        };
                        self.add(if appends { first(1).size } else { result.size });
                        result
                    }
                    "_[_]" | "_[?_]" | "_?._" => first(0).item(),
                    "_?_:_" => first(1).join(&first(2)),
                    "matches" => {
                        let (text, pattern) = (first(0).size, first(1).size);
                        self.add(
                            text.saturating_mul(1 + pattern / 16)
                                .saturating_add(pattern.saturating_mul(16)),
                        );
                        Bound::scalar()
                    }
                    "@utc"
                    | "dyn"
                    | "optional.of"
                    | "optional.ofNonZeroValue"
                    | "value"
                    | "orValue"
                    | "or" => args.iter().fold(Bound::scalar(), |acc, b| acc.join(b)),
                    "string" | "bytes" | "int" | "uint" | "double" | "bool" | "duration"
                    | "timestamp" | "type" => {
                        let size = sizes.saturating_add(2);
                        self.add(size);
                        Bound {
                            size,
                            count: 0,
                            item: None,
                        }
                    }
                    // Operators and functions with a scalar result: their
                    // work is at most a pass over their operands.
                    "_&&_"
                    | "_||_"
                    | "!_"
                    | "@not_strictly_false"
                    | "_==_"
                    | "_!=_"
                    | "_<_"
                    | "_<=_"
                    | "_>_"
                    | "_>=_"
                    | "@in"
                    | "_-_"
                    | "_*_"
                    | "_/_"
                    | "_%_"
                    | "-_"
                    | "size"
                    | "contains"
                    | "startsWith"
                    | "endsWith"
                    | "in_cidr"
                    | "isSubtreeOf"
                    | "hasValue"
                    | "getFullYear"
                    | "getMonth"
                    | "getDayOfYear"
                    | "getDayOfMonth"
                    | "getDate"
                    | "getDayOfWeek"
                    | "getHours"
                    | "getMinutes"
                    | "getSeconds"
                    | "getMilliseconds" => {
                        self.add(sizes);
                        Bound::scalar()
                    }
                    _ => {
                        let size = sizes.saturating_add(2);
                        self.add(size);
                        Bound::any(size)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cel::common::types::CelInt;

    fn parse(text: &str) -> IdedExpr {
        cel::parser::Parser::new()
            .parse(text)
            .expect("test expression parses")
    }

    fn list_of(n: usize) -> Bound {
        let items: Vec<Box<dyn Val>> = (0..n as i64)
            .map(|i| Box::new(CelInt::from(i)) as Box<dyn Val>)
            .collect();
        bound_of(&CelList::from(items))
    }

    #[test]
    fn bounds_of_values() {
        assert_eq!(bound_of(&CelString::from("abc")).size, 2);
        assert_eq!(bound_of(&CelString::from("x".repeat(32))).size, 3);
        let list = list_of(3);
        assert_eq!((list.size, list.count), (4, 3));
        assert_eq!(list.item().size, 1);
        assert_eq!(size_of(&CelString::from("abc")), 2);
    }

    #[test]
    fn one_comprehension_is_linear_in_its_input() {
        let expr = parse("l.all(x, x >= 42)");
        let small = estimate(&expr, &[("l", list_of(10))]);
        let large = estimate(&expr, &[("l", list_of(10_000))]);
        assert!(large < small * 2_000, "{small} {large}");
        assert!(large < MAX_COST / 10, "{large}");
    }

    #[test]
    fn map_appends_in_place() {
        let expr = parse("l.map(x, x * 2).size() > 0");
        let cost = estimate(&expr, &[("l", list_of(10_000))]);
        assert!(cost < MAX_COST / 10, "{cost}");
    }

    #[test]
    fn nested_comprehensions_over_a_large_list_are_refused() {
        let expr = parse("l.all(x, l.all(y, l.exists(z, x + y == z)))");
        assert!(estimate(&expr, &[("l", list_of(200))]) > MAX_COST);
        assert!(estimate(&expr, &[("l", list_of(10))]) < MAX_COST);
        let quadratic = parse("l.map(x, l).size() > 0");
        assert!(estimate(&quadratic, &[("l", list_of(2_000))]) > MAX_COST);
        assert!(estimate(&quadratic, &[("l", list_of(100))]) < MAX_COST);
    }

    #[test]
    fn concatenation_chains_count_their_copies() {
        let chain = vec!["s"; 200].join(" + ");
        let expr = parse(&format!("size({chain}) > 0"));
        let s = bound_of(&CelString::from("x".repeat(4_000)));
        assert!(estimate(&expr, &[("s", s)]) > MAX_COST);
    }
}
