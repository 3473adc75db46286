//! The CEL environment caveats run in: the `cel` crate's standard library
//! plus what SpiceDB adds (`pkg/caveats/types`): the `IPAddress` type with
//! `in_cidr(string)`, `isSubtreeOf` on maps, and timestamp accessors that
//! read in UTC (cel-go's `DefaultUTCTimeZone`). The crate's getters read in
//! the timestamp's own offset, so [`prepare`] rewrites `t.getHours()` into
//! `@utc(t).getHours()` once per caveat.

use std::any::Any;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{CallExpr, Expr, IdedExpr};
use cel::common::types::{self, CelBool, CelMap, CelString, CelTimestamp, Type};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::{Env, ExecutionError};

use super::convert::parse_ip;

/// The name of the internal function that moves a timestamp to UTC. `@` can
/// never start an identifier written in CEL, so no caveat can call it.
pub const UTC_FUNCTION: &str = "@utc";

/// Timestamp accessors that take an optional time zone and default to UTC.
const ZONED_GETTERS: &[&str] = &[
    "getFullYear",
    "getMonth",
    "getDayOfYear",
    "getDayOfMonth",
    "getDate",
    "getDayOfWeek",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
];

static IP_ADDRESS_TYPE: Type = Type::new_unspecified_type("IPAddress");

/// The shared environment; built once, it holds only functions.
pub fn env() -> Arc<Env> {
    static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(build()));
    Arc::clone(&ENV)
}

fn build() -> Env {
    let mut env = Env::stdlib();
    env.add_member_overload(
        "in_cidr",
        "ipaddress_in_cidr_string",
        IP_ADDRESS_TYPE.to_owned(),
        vec![types::STRING_TYPE],
        in_cidr,
    )
    .expect("in_cidr is declared once");
    env.add_member_overload(
        "isSubtreeOf",
        "map_is_subtree_of_map",
        types::MAP_TYPE,
        vec![types::MAP_TYPE],
        is_subtree_of,
    )
    .expect("isSubtreeOf is declared once");
    env.add_overload(UTC_FUNCTION, "utc_dyn", vec![types::DYN_TYPE], to_utc)
        .expect("@utc is declared once");
    env
}

/// An `ipaddress` parameter value, as Go's `netip.Addr`: an IPv4-mapped IPv6
/// address stays IPv6, so it is not in an IPv4 CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAddress {
    addr: IpAddr,
    zone: Option<String>,
}

impl IpAddress {
    pub fn parse(s: &str) -> Result<IpAddress, String> {
        parse_ip(s).map(|(addr, zone)| IpAddress { addr, zone })
    }

    /// Whether the address is in `cidr`, as `netip.Prefix.Contains`: same
    /// family, no zone, masked bits equal.
    fn in_cidr(&self, cidr: &str) -> Option<bool> {
        let (network, bits) = cidr.split_once('/')?;
        // netip.ParsePrefix: plain decimal, no sign, no leading zero.
        let plain = !bits.is_empty() && bits.len() <= 3 && bits.bytes().all(|b| b.is_ascii_digit());
        if !plain || (bits.len() > 1 && bits.starts_with('0')) {
            return None;
        }
        let bits: u32 = bits.parse().ok()?;
        let (network, zone) = parse_ip(network).ok()?;
        if zone.is_some() {
            return None;
        }
        let contained = match (network, self.addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) if bits <= 32 => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) if bits <= 128 => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            (IpAddr::V4(_), _) if bits > 32 => return None,
            (IpAddr::V6(_), _) if bits > 128 => return None,
            _ => false,
        };
        Some(contained && self.zone.is_none())
    }
}

impl Val for IpAddress {
    fn get_type(&self) -> &Type {
        <Self as Val>::cel_type()
    }

    fn cel_type() -> &'static Type {
        &IP_ADDRESS_TYPE
    }

    fn equals(&self, other: &dyn Val) -> bool {
        other.downcast_ref::<IpAddress>().is_some_and(|o| o == self)
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}

impl StaticVal for IpAddress {}

fn in_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (Some(ip), Some(cidr)) = (
        args.first().and_then(|a| a.downcast_ref::<IpAddress>()),
        args.get(1).and_then(|a| a.downcast_ref::<CelString>()),
    ) else {
        return Err(ExecutionError::function_error(
            "in_cidr",
            "expected CIDR string",
        ));
    };
    let cidr = cidr.inner();
    ip.in_cidr(cidr)
        .map(|b| CowVal::owned(CelBool::from(b)))
        .ok_or_else(|| {
            ExecutionError::function_error("in_cidr", format!("invalid CIDR string: `{cidr}`"))
        })
}

/// `a.isSubtreeOf(b)`: every key of `a` is in `b` with an equal value, maps
/// compared recursively. (SpiceDB compares with Go's `!=`, which panics on
/// lists and fails on map literals; CEL equality is what it means.)
fn is_subtree_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (Some(a), Some(b)) = (
        args.first().and_then(|a| a.downcast_ref::<CelMap>()),
        args.get(1).and_then(|a| a.downcast_ref::<CelMap>()),
    ) else {
        return Err(ExecutionError::function_error(
            "isSubtreeOf",
            "expected maps",
        ));
    };
    Ok(CowVal::owned(CelBool::from(subtree(a, b))))
}

fn subtree<'v>(a: &CelMap<'v>, b: &CelMap<'v>) -> bool {
    a.inner().iter().all(|(key, value)| {
        let Some(other) = b.inner().get(key) else {
            return false;
        };
        match (
            value.downcast_ref::<CelMap>(),
            other.downcast_ref::<CelMap>(),
        ) {
            (Some(x), Some(y)) => subtree(x, y),
            (Some(_), None) => false,
            _ => value.equals(other.as_ref()),
        }
    })
}

/// A timestamp in UTC; any other value unchanged (its accessor then fails or
/// succeeds as it would have).
fn to_utc<'b, 'v>(mut args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let value = args.remove(0);
    if let Some(ts) = value.downcast_ref::<CelTimestamp>() {
        let utc = ts.inner().with_timezone(&chrono::Utc).fixed_offset();
        return Ok(CowVal::owned(CelTimestamp::from(utc)));
    }
    Ok(value)
}

/// The caveat's expression as it runs: zero-argument timestamp accessors read
/// in UTC. Returns `None` when nothing needs rewriting.
pub fn prepare(expr: &IdedExpr) -> Option<IdedExpr> {
    if !has_zoned_getter(expr) {
        return None;
    }
    let mut next_id = max_id(expr) + 1;
    let mut out = expr.clone();
    rewrite(&mut out, &mut next_id);
    Some(out)
}

fn is_zoned_getter(call: &CallExpr) -> bool {
    call.target.is_some()
        && call.args.is_empty()
        && ZONED_GETTERS.contains(&call.func_name.as_str())
}

fn has_zoned_getter(e: &IdedExpr) -> bool {
    let mut found = false;
    visit(e, &mut |node| {
        if let Expr::Call(call) = &node.expr {
            found |= is_zoned_getter(call);
        }
    });
    found
}

fn max_id(e: &IdedExpr) -> u64 {
    let mut max = 0;
    visit(e, &mut |node| max = max.max(node.id));
    max
}

fn rewrite(e: &mut IdedExpr, next_id: &mut u64) {
    for child in children_mut(e) {
        rewrite(child, next_id);
    }
    if let Expr::Call(call) = &mut e.expr
        && is_zoned_getter(call)
        && let Some(target) = call.target.take()
    {
        let id = *next_id;
        *next_id += 1;
        call.target = Some(Box::new(IdedExpr {
            id,
            expr: Expr::Call(CallExpr {
                func_name: UTC_FUNCTION.to_string(),
                target: None,
                args: vec![*target],
            }),
        }));
    }
}

/// Calls `f` on every node, parents first.
pub fn visit(e: &IdedExpr, f: &mut impl FnMut(&IdedExpr)) {
    f(e);
    for child in children(e) {
        visit(child, f);
    }
}

/// The direct subexpressions of a node, in evaluation order.
pub fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        Expr::Call(call) => call
            .target
            .as_deref()
            .into_iter()
            .chain(&call.args)
            .collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Map(map) => map
            .entries
            .iter()
            .flat_map(|entry| match &entry.expr {
                cel::common::ast::EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
                cel::common::ast::EntryExpr::StructField(f) => vec![&f.value],
            })
            .collect(),
        Expr::Select(select) => vec![&select.operand],
        Expr::Struct(s) => s
            .entries
            .iter()
            .flat_map(|entry| match &entry.expr {
                cel::common::ast::EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
                cel::common::ast::EntryExpr::StructField(f) => vec![&f.value],
            })
            .collect(),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

fn children_mut(e: &mut IdedExpr) -> Vec<&mut IdedExpr> {
    use cel::common::ast::EntryExpr;
    match &mut e.expr {
        Expr::Call(call) => call
            .target
            .as_deref_mut()
            .into_iter()
            .chain(call.args.iter_mut())
            .collect(),
        Expr::Comprehension(c) => {
            let c = &mut **c;
            vec![
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ]
        }
        Expr::List(list) => list.elements.iter_mut().collect(),
        Expr::Map(map) => map
            .entries
            .iter_mut()
            .flat_map(|entry| match &mut entry.expr {
                EntryExpr::MapEntry(m) => vec![&mut m.key, &mut m.value],
                EntryExpr::StructField(f) => vec![&mut f.value],
            })
            .collect(),
        Expr::Select(select) => vec![&mut *select.operand],
        Expr::Struct(s) => s
            .entries
            .iter_mut()
            .flat_map(|entry| match &mut entry.expr {
                EntryExpr::MapEntry(m) => vec![&mut m.key, &mut m.value],
                EntryExpr::StructField(f) => vec![&mut f.value],
            })
            .collect(),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}
