//! Unit tests for caveat evaluation. Expected answers marked "oracle" were
//! taken from SpiceDB 1.54 (tests/oracle) with the same caveat and context.

use std::collections::BTreeSet;

use serde_json::json;

use super::*;
use crate::graph::CaveatExpr;
use crate::model::ContextualizedCaveat;

/// A schema with one caveat `c(params) { expr }` (and `d(b bool) { b }`).
fn schema(params: &str, expr: &str) -> CompiledSchema {
    let text = format!(
        "definition user {{}}\ncaveat c({params}) {{\n  {expr}\n}}\ncaveat d(b bool) {{\n  b\n}}\ndefinition doc {{\n  relation viewer: user with c\n}}"
    );
    crate::schema::compile(&text).unwrap_or_else(|e| panic!("{expr}: {e}"))
}

fn object(value: serde_json::Value) -> CaveatContext {
    value.as_object().cloned().expect("a JSON object")
}

/// Evaluates `c` with a stored and a request context.
fn run(
    params: &str,
    expr: &str,
    stored: serde_json::Value,
    request: serde_json::Value,
) -> Result<Truth, CaveatError> {
    let schema = schema(params, expr);
    let definition = schema.caveat("c").expect("c is defined");
    evaluate_caveat(definition, &object(stored), &object(request))
}

fn eval(params: &str, expr: &str, request: serde_json::Value) -> Result<Truth, CaveatError> {
    run(params, expr, json!({}), request)
}

fn unknown(names: &[&str]) -> Result<Truth, CaveatError> {
    Ok(Truth::Unknown(
        names.iter().map(|n| n.to_string()).collect(),
    ))
}

fn evaluation_error(message: &str) -> Result<Truth, CaveatError> {
    Err(CaveatError::Evaluation {
        caveat: "c".into(),
        message: message.into(),
    })
}

fn type_error(result: Result<Truth, CaveatError>) -> String {
    match result {
        Err(e @ CaveatError::ParameterType { .. }) => e.to_string(),
        other => panic!("expected a parameter type error, got {other:?}"),
    }
}

const T: Result<Truth, CaveatError> = Ok(Truth::True);
const F: Result<Truth, CaveatError> = Ok(Truth::False);

#[test]
fn each_parameter_type_converts() {
    let cases = [
        ("a any", "a == 1", json!({"a": 1}), T),
        ("a any", "a == 1", json!({"a": 1.5}), F),
        (
            "a any",
            "a.x == 1 && a.y[0] == 'z'",
            json!({"a": {"x": 1, "y": ["z"]}}),
            T,
        ),
        ("a any", "a == null", json!({"a": null}), T),
        ("a bool", "a", json!({"a": true}), T),
        ("a string", "a == 'hé'", json!({"a": "hé"}), T),
        ("a int", "a == 42", json!({"a": 42}), T),
        ("a int", "a == 42", json!({"a": 42.0}), T),
        ("a int", "a == 42", json!({"a": "42"}), T),
        ("a int", "a == 1000", json!({"a": "1e3"}), T),
        ("a int", "a == 9223372036854775807", json!({"a": 1e300}), T),
        ("a uint", "a == 42", json!({"a": 42}), T),
        ("a uint", "a > 41", json!({"a": "42"}), T),
        ("a double", "a == 1.0", json!({"a": 1}), T),
        ("a double", "a == 2.5", json!({"a": "2.5"}), T),
        ("a bytes", "a == b'hi'", json!({"a": "aGk="}), T),
        (
            "a duration",
            "a == duration('90m')",
            json!({"a": "1h30m"}),
            T,
        ),
        (
            "a duration",
            "a < duration('1s')",
            json!({"a": "3\u{b5}s"}),
            T,
        ),
        ("a duration", "a == duration('0s')", json!({"a": "0"}), T),
        (
            "a timestamp",
            "a == timestamp('2000-10-10T09:10:10Z')",
            json!({"a": "2000-10-10T10:10:10+01:00"}),
            T,
        ),
        (
            "a ipaddress",
            "a.in_cidr('10.0.0.0/8')",
            json!({"a": "10.2.3.4"}),
            T,
        ),
        ("a list<int>", "a == [1, 2]", json!({"a": [1, 2.0]}), T),
        ("a list<string>", "'x' in a", json!({"a": ["x"]}), T),
        ("a map<int>", "a.k == 1", json!({"a": {"k": 1.0}}), T),
        (
            "a map<list<ipaddress>>",
            "a.k[0].in_cidr('::/0')",
            json!({"a": {"k": ["::1"]}}),
            T,
        ),
        ("a list<any>", "a == [1, 'x']", json!({"a": [1, "x"]}), T),
    ];
    for (params, expr, request, expected) in cases {
        assert_eq!(
            eval(params, expr, request.clone()),
            expected,
            "{params}: {expr} with {request}"
        );
    }
}

#[test]
fn conversion_failures_name_the_caveat_and_parameter() {
    // oracle: the same messages, after SpiceDB's "for <type>: " prefixes.
    let cases = [
        (
            "a int",
            json!({"a": 42.5}),
            "for int: a int value is required, but found numeric value `42.5`",
        ),
        (
            "a int",
            json!({"a": null}),
            "for int: a int64 value is required, but found <nil> `<nil>`",
        ),
        (
            "a int",
            json!({"a": true}),
            "for int: a int64 value is required, but found bool `true`",
        ),
        (
            "a int",
            json!({"a": "x"}),
            "for int: a int64 value is required, but found invalid string value `x`",
        ),
        (
            "a uint",
            json!({"a": -1}),
            "for uint: a uint value is required, but found int64 value `-1`",
        ),
        (
            "a string",
            json!({"a": 1}),
            "for string: a string value is required, but found float64 `1`",
        ),
        (
            "a bool",
            json!({"a": "true"}),
            "for bool: a bool value is required, but found string `true`",
        ),
        (
            "a list<int>",
            json!({"a": [1.5]}),
            "for list<int>: found an invalid value for item at index 0: for int: a int value is required, but found numeric value `1.5`",
        ),
        (
            "a list<int>",
            json!({"a": 1}),
            "for list<int>: list requires a list, found: float64",
        ),
        (
            "a map<int>",
            json!({"a": {"k": "x"}}),
            "for map<int>: found an invalid value for key `k`: for int: a int64 value is required, but found invalid string value `x`",
        ),
        (
            "a duration",
            json!({"a": "1d"}),
            "for duration: could not parse duration string `1d`: time: unknown unit \"d\" in duration \"1d\"",
        ),
    ];
    for (params, request, detail) in cases {
        let name = &params[..1];
        let expr = format!("{name} == {name}");
        assert_eq!(
            type_error(eval(params, &expr, request)),
            format!(
                "type error for parameters for caveat `c`: could not convert context parameter `a`: {detail}"
            ),
            "{params}"
        );
    }
    for (params, request) in [
        ("a bytes", json!({"a": "aGk"})),
        ("a timestamp", json!({"a": "2000-10-10t10:10:10z"})),
        ("a timestamp", json!({"a": "2000-10-10 10:10:10Z"})),
        ("a ipaddress", json!({"a": "01.2.3.4"})),
        ("a ipaddress", json!({"a": "1.2.3"})),
        ("a map<any>", json!({"a": [1]})),
    ] {
        let message = type_error(eval(params, "a == a", request));
        assert!(message.contains("parameter `a`"), "{message}");
    }
    match eval("a int", "a == a", json!({"a": null})) {
        Err(CaveatError::ParameterType {
            caveat, parameter, ..
        }) => {
            assert_eq!((caveat.as_str(), parameter.as_str()), ("c", "a"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn uint_compares_with_int_literals_but_does_not_add_to_them() {
    // oracle: `u == 42` and `u > 41` hold; `u + 1` has no overload.
    assert_eq!(eval("u uint", "u == 42", json!({"u": 42})), T);
    assert_eq!(eval("u uint", "u > 41", json!({"u": 42})), T);
    assert_eq!(
        eval("u uint", "u + 1 == 43", json!({"u": 42})),
        evaluation_error("no such overload")
    );
}

#[test]
fn ip_addresses_follow_netip() {
    let ip = |ip: &str, cidr: &str| {
        eval(
            "ip ipaddress",
            &format!("ip.in_cidr('{cidr}')"),
            json!({ "ip": ip }),
        )
    };
    // oracle: an IPv4-mapped IPv6 address is not in an IPv4 CIDR.
    assert_eq!(ip("::ffff:1.2.3.4", "1.2.3.0/24"), F);
    assert_eq!(ip("::ffff:1.2.3.4", "::ffff:1.2.3.0/120"), T);
    assert_eq!(ip("1.2.3.4", "1.2.3.0/24"), T);
    assert_eq!(ip("1.2.3.4", "1.2.3.7/24"), T);
    assert_eq!(ip("1.2.4.4", "1.2.3.0/24"), F);
    assert_eq!(ip("1.2.3.4", "0.0.0.0/0"), T);
    assert_eq!(ip("2001:db8::1", "2001:db8::/32"), T);
    assert_eq!(ip("2001:db9::1", "2001:db8::/32"), F);
    assert_eq!(ip("fe80::1%eth0", "fe80::/10"), F);
    assert_eq!(
        ip("1.2.3.4", "1.2.3.4"),
        evaluation_error("invalid CIDR string: `1.2.3.4`")
    );
    assert_eq!(
        ip("1.2.3.4", "1.2.3.0/33"),
        evaluation_error("invalid CIDR string: `1.2.3.0/33`")
    );
    assert_eq!(
        ip("1.2.3.4", "1.2.3.0/024"),
        evaluation_error("invalid CIDR string: `1.2.3.0/024`")
    );
    assert_eq!(eval("ip ipaddress", "ip == ip", json!({"ip": "::1"})), T);
}

#[test]
fn timestamps_read_in_utc() {
    // oracle: both hold in SpiceDB (cel-go's DefaultUTCTimeZone).
    assert_eq!(
        eval(
            "t timestamp",
            "t.getHours() == 9",
            json!({"t": "2000-10-10T10:10:10+01:00"})
        ),
        T
    );
    assert_eq!(
        eval(
            "t timestamp",
            "timestamp('2000-10-10T10:10:10+01:00').getHours() == 9 && t == t",
            json!({"t": "2000-10-10T10:10:10Z"})
        ),
        T
    );
    assert_eq!(
        eval(
            "t timestamp",
            "t.getHours('+01:00') == 10",
            json!({"t": "2000-10-10T09:10:10Z"})
        ),
        T
    );
    assert_eq!(
        eval("d duration", "d.getHours() == 2", json!({"d": "2h30m"})),
        T
    );
}

#[test]
fn maps_and_subtrees() {
    // SpiceDB fails `isSubtreeOf` on a map literal with an internal error
    // (it type-asserts a Go map); here it means what it says.
    assert_eq!(
        eval(
            "m map<any>",
            "m.isSubtreeOf({'a': 1.0, 'b': 2.0})",
            json!({"m": {"a": 1}})
        ),
        T
    );
    assert_eq!(
        eval(
            "m map<any>",
            "m.isSubtreeOf({'b': 2.0})",
            json!({"m": {"a": 1}})
        ),
        F
    );
    assert_eq!(
        eval(
            "m map<any>",
            "m.isSubtreeOf({'a': {'x': 1.0, 'y': 2.0}})",
            json!({"m": {"a": {"x": 1}}})
        ),
        T
    );
    // oracle: selecting a missing key is an evaluation error.
    assert_eq!(
        eval("m map<int>", "m.b == 1", json!({"m": {"a": 1}})),
        evaluation_error("no such key: b")
    );
}

#[test]
fn evaluation_errors_read_like_cel_go() {
    // oracle: these messages, prefixed "evaluation error for caveat c: ".
    assert_eq!(
        eval("a int", "1 / a == 0", json!({"a": 0})),
        evaluation_error("division by zero")
    );
    assert_eq!(
        eval("a int", "a % 0 == 1", json!({"a": 1})),
        evaluation_error("modulus by zero")
    );
    assert_eq!(
        eval("a int", "a + 9223372036854775807 > 0", json!({"a": 1})),
        evaluation_error("integer overflow")
    );
    assert_eq!(
        eval("l list<int>", "l[5] == 1", json!({"l": [1]})),
        evaluation_error("index out of bounds: 5")
    );
    assert_eq!(
        eval("a any", "a + 1 == 2", json!({"a": 1})),
        evaluation_error("no such overload")
    );
    let err = eval("s string", "s.matches('(')", json!({"s": "x"})).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("evaluation error for caveat c: "),
        "{err}"
    );
    let err = eval(
        "t timestamp",
        "t + duration('1h') > t",
        json!({"t": "9999-12-31T23:59:59Z"}),
    )
    .unwrap_err();
    assert!(matches!(err, CaveatError::Evaluation { .. }), "{err}");
}

#[test]
fn stored_context_wins_over_the_request() {
    // oracle (basiccaveat.yaml): written context overrides the request's.
    assert_eq!(
        run("a int", "a == 42", json!({"a": 42}), json!({"a": 41})),
        T
    );
    assert_eq!(
        run("a int", "a == 42", json!({"a": 41}), json!({"a": 42})),
        F
    );
    // oracle: a request value that is shadowed is never converted.
    assert_eq!(
        run("a int", "a == 1", json!({"a": 2}), json!({"a": "notanint"})),
        F
    );
    // Unknown request keys are ignored.
    assert_eq!(
        run("a int", "a == 1", json!({}), json!({"a": 1, "zzz": true})),
        T
    );
    // The two merge per parameter.
    assert_eq!(
        run(
            "a int, b int",
            "a == 1 && b == 2",
            json!({"a": 1}),
            json!({"b": 2})
        ),
        T
    );
    assert_eq!(
        run(
            "a int, b int",
            "a == 1 && b == 2",
            json!({"a": 1}),
            json!({})
        ),
        unknown(&["b"])
    );
}

#[test]
fn missing_parameters_make_a_caveat_unknown() {
    // All from the oracle.
    let cases = [
        ("a int, b int", "a + b > 47", json!({}), unknown(&["a"])),
        (
            "a int, b int",
            "a + b > 47",
            json!({"a": 1}),
            unknown(&["b"]),
        ),
        (
            "a int, b int",
            "a == 1 || b == 2",
            json!({}),
            unknown(&["a", "b"]),
        ),
        (
            "a int, b int",
            "a == 1 && b == 2",
            json!({}),
            unknown(&["a", "b"]),
        ),
        (
            "a int, b int",
            "b == 2 && a == 1",
            json!({}),
            unknown(&["a", "b"]),
        ),
        (
            "a int, b int",
            "[a, b].size() == 2",
            json!({}),
            unknown(&["a"]),
        ),
        ("a int", "!(a == 1)", json!({}), unknown(&["a"])),
        (
            "a int, b int",
            "a == 1 ? b == 1 : false",
            json!({}),
            unknown(&["a"]),
        ),
        (
            "m map<int>, a int",
            "has(m.x) && a == 1",
            json!({}),
            unknown(&["a", "m"]),
        ),
        (
            "m map<int>, a int",
            "m.x == 1 && a == 1",
            json!({}),
            unknown(&["a", "m"]),
        ),
        (
            "l list<int>, a int",
            "l.all(x, x > a)",
            json!({"l": [1, -1]}),
            unknown(&["a"]),
        ),
        (
            "l list<int>, a int",
            "l.map(x, x + a).size() == 2",
            json!({"l": [1, 2]}),
            unknown(&["a"]),
        ),
        (
            "l list<int>, a int",
            "l.exists_one(x, x > a)",
            json!({"l": [1, 2]}),
            unknown(&["a"]),
        ),
        (
            "l list<int>, a int",
            "l.all(x, x > a || 1/0 == 1)",
            json!({"l": [1, 2]}),
            unknown(&["a"]),
        ),
        (
            "l list<int>, a int",
            "l.all(x, x > a)",
            json!({}),
            unknown(&["l"]),
        ),
    ];
    for (params, expr, request, expected) in cases {
        assert_eq!(
            eval(params, expr, request.clone()),
            expected,
            "{expr} with {request}"
        );
    }
}

#[test]
fn the_known_part_decides_when_it_can() {
    // All from the oracle.
    let cases = [
        ("a int, b int", "(a == 2) || (b == 6)", json!({"a": 2}), T),
        ("a int, b int", "(a == 2) || (b == 6)", json!({"b": 6}), T),
        ("a int, b int", "(a == 2) && (b == 6)", json!({"b": 5}), F),
        (
            "a int, b int",
            "a == 1 ? b == 1 : false",
            json!({"a": 2}),
            F,
        ),
        (
            "l list<int>, a int",
            "l.all(x, x > 0 && x > a)",
            json!({"l": [1, -1]}),
            F,
        ),
        (
            "l list<int>, a int",
            "l.exists(x, x > 0 || x > a)",
            json!({"l": [1, -1]}),
            T,
        ),
        (
            "l list<int>, a int",
            "l.filter(x, x > 0 || x > a).size() == 2",
            json!({"l": [1, 2]}),
            T,
        ),
        (
            "m map<int>, a int",
            "has(m.x) || a == 1",
            json!({"m": {"x": 1}}),
            T,
        ),
    ];
    for (params, expr, request, expected) in cases {
        assert_eq!(
            eval(params, expr, request.clone()),
            expected,
            "{expr} with {request}"
        );
    }
}

#[test]
fn unknowns_beat_errors_in_logic_but_not_in_order() {
    // All from the oracle: `||`/`&&` prefer an unknown to an error; a strict
    // operator takes its first unknown-or-error operand.
    assert_eq!(
        eval("a int", "(1/0 == 1) || a == 1", json!({})),
        unknown(&["a"])
    );
    assert_eq!(
        eval("a int", "a == 1 || (1/0 == 1)", json!({})),
        unknown(&["a"])
    );
    assert_eq!(
        eval("a int", "(1/0 == 1) && a == 1", json!({})),
        unknown(&["a"])
    );
    assert_eq!(eval("a int", "(a + 1/0 == 1)", json!({})), unknown(&["a"]));
    assert_eq!(
        eval("a int", "(1/0 + a == 1)", json!({})),
        evaluation_error("division by zero")
    );
    assert_eq!(
        eval("a int", "a == 1 || (1/0 == 1)", json!({"a": 2})),
        evaluation_error("division by zero")
    );
    // An error beside a deciding value vanishes.
    assert_eq!(eval("a int", "(1/0 == 1) || a == 1", json!({"a": 1})), T);
    assert_eq!(eval("a int", "(1/0 == 1) && a == 1", json!({"a": 2})), F);
}

#[test]
fn partial_evaluation_reaches_into_calls_and_literals() {
    // A short-circuited operand known after all: the call still runs.
    assert_eq!(eval("a int", "[true || a == 1][0]", json!({})), T);
    assert_eq!(
        eval("a int", "{'k': false && a == 1}.k == false", json!({})),
        T
    );
    assert_eq!(
        eval("a int", "size([a == 1 || true, 2]) == 2", json!({})),
        T
    );
    assert_eq!(eval("a int", "dyn(a) == 1", json!({})), unknown(&["a"]));
    assert_eq!(eval("a int", "type(a) == int", json!({})), unknown(&["a"]));
    assert_eq!(eval("a int", "type(a == 1 || true) == bool", json!({})), T);
    assert_eq!(
        eval(
            "l list<int>, a int",
            "l.map(x, x > 0 || a == 1).all(y, y)",
            json!({"l": [1, 2]})
        ),
        T
    );
    // oracle: a missing parameter stays unknown under a comprehension
    // variable of the same name (cel-go matches unknowns by name first)...
    assert_eq!(
        eval("l list<int>, a int", "l.all(a, a > 0)", json!({"l": [1]})),
        unknown(&["a"])
    );
    // ...while a present one is shadowed as usual.
    assert_eq!(
        eval(
            "l list<int>, a int",
            "l.all(a, a > 0)",
            json!({"l": [1], "a": -5})
        ),
        T
    );
    // Nested comprehensions reuse the accumulator's name.
    assert_eq!(
        eval(
            "l list<int>, a int",
            "l.all(x, l.exists(y, y == x || y == a))",
            json!({"l": [1, 2]})
        ),
        T
    );
    // oracle: x = 2 finds no y > 2, which decides `all` whatever `a` is.
    assert_eq!(
        eval(
            "l list<int>, a int",
            "l.all(x, l.exists(y, y > x && y == a))",
            json!({"l": [1, 2]})
        ),
        F
    );
    assert_eq!(
        eval(
            "l list<int>, a int",
            "l.all(x, l.exists(y, y >= x && y == a))",
            json!({"l": [1, 2]})
        ),
        unknown(&["a"])
    );
}

fn leaf(name: &str, context: serde_json::Value) -> CaveatExpr {
    CaveatExpr::Caveat(ContextualizedCaveat {
        name: name.into(),
        context: object(context),
    })
}

/// `c(a int) { a == 1 }` and `d(b bool) { b }`.
fn tree(expr: &CaveatExpr, request: serde_json::Value) -> Result<Truth, CaveatError> {
    evaluate(&schema("a int", "a == 1"), expr, &object(request))
}

#[test]
fn each_operator_combines_three_valued_results() {
    let t = || leaf("d", json!({"b": true}));
    let f = || leaf("d", json!({"b": false}));
    let u = || leaf("c", json!({}));
    let and = |items: Vec<CaveatExpr>| CaveatExpr::And(items);
    let or = |items: Vec<CaveatExpr>| CaveatExpr::Or(items);
    let not = |item: CaveatExpr| CaveatExpr::Not(Box::new(item));
    let a = || unknown(&["a"]);
    let cases = [
        (and(vec![t(), t()]), T),
        (and(vec![t(), f()]), F),
        (and(vec![f(), u()]), F),
        (and(vec![u(), f()]), F),
        (and(vec![t(), u()]), a()),
        (and(vec![u(), u()]), a()),
        (or(vec![f(), f()]), F),
        (or(vec![f(), t()]), T),
        (or(vec![t(), u()]), T),
        (or(vec![u(), t()]), T),
        (or(vec![f(), u()]), a()),
        (not(t()), F),
        (not(f()), T),
        (not(u()), a()),
        (and(vec![t(), not(u())]), a()),
        (or(vec![and(vec![t(), f()]), not(f())]), T),
    ];
    for (expr, expected) in cases {
        assert_eq!(tree(&expr, json!({})), expected, "{expr}");
    }
    // With the request supplying `a`, the unknown leaf decides.
    assert_eq!(tree(&and(vec![t(), u()]), json!({"a": 1})), T);
    assert_eq!(tree(&or(vec![f(), u()]), json!({"a": 2})), F);
    assert_eq!(tree(&not(u()), json!({"a": 2})), T);
}

#[test]
fn unknowns_merge_their_names_across_the_tree() {
    let schema = schema("a int, b int", "a == b");
    let u = leaf("c", json!({}));
    let half = leaf("c", json!({"a": 1}));
    let expr = CaveatExpr::Or(vec![u.clone(), CaveatExpr::And(vec![half, u])]);
    assert_eq!(
        evaluate(&schema, &expr, &CaveatContext::new()),
        Ok(Truth::Unknown(BTreeSet::from([
            "a".to_string(),
            "b".to_string()
        ])))
    );
}

#[test]
fn errors_stop_the_tree_where_they_are_reached() {
    let schema = schema("a int", "1 / a == 1");
    let boom = leaf("c", json!({"a": 0}));
    let yes = leaf("d", json!({"b": true}));
    let no = leaf("d", json!({"b": false}));
    let none = CaveatContext::new();
    // SpiceDB evaluates children in order and stops at a deciding one.
    assert_eq!(
        evaluate(
            &schema,
            &CaveatExpr::Or(vec![yes.clone(), boom.clone()]),
            &none
        ),
        T
    );
    assert_eq!(
        evaluate(&schema, &CaveatExpr::And(vec![no, boom.clone()]), &none),
        F
    );
    assert!(matches!(
        evaluate(&schema, &CaveatExpr::Or(vec![boom, yes]), &none),
        Err(CaveatError::Evaluation { .. })
    ));
    assert_eq!(
        evaluate(&schema, &leaf("gone", json!({})), &none),
        Err(CaveatError::UnknownCaveat {
            caveat: "gone".into()
        })
    );
}

#[test]
fn runaway_expressions_are_refused() {
    let list: Vec<i64> = (0..2_000).collect();
    let nested = eval(
        "l list<int>",
        "l.all(x, l.all(y, l.exists(z, x + y == z)))",
        json!({ "l": list }),
    );
    assert_eq!(
        nested,
        evaluation_error("operation cancelled: actual cost limit exceeded")
    );
    // The same over a small list runs.
    assert_eq!(
        eval(
            "l list<int>",
            "l.all(x, l.all(y, l.exists(z, x + y >= z)))",
            json!({"l": [1, 2]})
        ),
        T
    );
    // One level over the large list is cheap.
    assert_eq!(
        eval(
            "l list<int>",
            "l.exists(x, x == 1999)",
            json!({ "l": list })
        ),
        T
    );
}

#[test]
fn write_validation_checks_keys_and_types() {
    let schema = schema("a int, b string", "a == 1 && b == ''");
    let definition = schema.caveat("c").expect("defined");
    assert_eq!(
        validate_context(definition, &object(json!({"a": 1}))),
        Ok(())
    );
    assert_eq!(validate_context(definition, &object(json!({}))), Ok(()));
    assert_eq!(
        validate_context(definition, &object(json!({"zzz": 1}))),
        Err(CaveatError::UnknownParameter {
            caveat: "c".into(),
            parameter: "zzz".into()
        })
    );
    let err = validate_context(definition, &object(json!({"b": 1}))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "type error for parameters for caveat `c`: could not convert context parameter `b`: for string: a string value is required, but found float64 `1`"
    );
}

#[test]
fn optional_values() {
    // All from the oracle.
    let cases = [
        (
            "m map<bool>, k string",
            "m[?k].orValue(true)",
            json!({"m": {"a": false}, "k": "b"}),
            T,
        ),
        (
            "m map<bool>, k string",
            "m[?k].orValue(true)",
            json!({"m": {"a": false}, "k": "a"}),
            F,
        ),
        (
            "m map<bool>",
            "m.?a.orValue(true)",
            json!({"m": {"a": false}}),
            F,
        ),
        ("m map<bool>", "m.?a.hasValue()", json!({"m": {}}), F),
        ("a int", "optional.of(a).hasValue()", json!({"a": 1}), T),
        (
            "a int",
            "optional.none().orValue(a) == 1",
            json!({"a": 1}),
            T,
        ),
        (
            "a int",
            "optional.ofNonZeroValue(a).hasValue()",
            json!({"a": 0}),
            F,
        ),
        (
            "a int",
            "optional.of(a).or(optional.of(2)).value() == 1",
            json!({"a": 1}),
            T,
        ),
        (
            "a int",
            "[?optional.none(), a].size() == 1",
            json!({"a": 1}),
            T,
        ),
        ("a int", "{?'x': optional.of(a)}.x == 1", json!({"a": 1}), T),
        ("l list<int>", "l[?0].orValue(5) == 5", json!({"l": []}), T),
        (
            "m map<map<int>>",
            "m.?a.?b.orValue(7) == 7",
            json!({"m": {"a": {}}}),
            T,
        ),
        ("m map<int>", "m.?a == optional.none()", json!({"m": {}}), T),
        (
            "a int",
            "optional.of(a).hasValue()",
            json!({}),
            unknown(&["a"]),
        ),
        (
            "m map<bool>",
            "m.?a.orValue(true)",
            json!({}),
            unknown(&["m"]),
        ),
    ];
    for (params, expr, request, expected) in cases {
        assert_eq!(
            eval(params, expr, request.clone()),
            expected,
            "{expr} with {request}"
        );
    }
}
