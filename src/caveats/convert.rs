//! Context values (JSON, as they arrive in a `google.protobuf.Struct`) to
//! CEL values, per declared parameter type, as SpiceDB converts them
//! (`pkg/caveats/types`). A Struct holds every number as a double, so every
//! JSON number is read as one here too, whatever serde_json parsed.

use std::collections::HashMap;
use std::net::IpAddr;

use base64::Engine as _;
use cel::common::types::{
    CelBool, CelBytes, CelDouble, CelDuration, CelInt, CelList, CelMap, CelMapKey, CelNull,
    CelString, CelTimestamp, CelUInt,
};
use cel::common::value::Val;
use serde_json::Value as Json;

use super::functions::IpAddress;
use crate::schema::CaveatType;

/// A CEL value owning its data.
pub type CelValue = Box<dyn Val + 'static>;

/// Converts one context value to its parameter's declared type. The error
/// reads like SpiceDB's: `for int: a int value is required, but found …`.
pub fn convert(value: &Json, ty: &CaveatType) -> Result<CelValue, String> {
    convert_inner(value, ty).map_err(|e| format!("for {ty}: {e}"))
}

fn convert_inner(value: &Json, ty: &CaveatType) -> Result<CelValue, String> {
    match ty {
        CaveatType::Any => Ok(any(value)),
        CaveatType::Bool => match value {
            Json::Bool(b) => Ok(Box::new(CelBool::from(*b))),
            other => Err(required("bool", other)),
        },
        CaveatType::String => match value {
            Json::String(s) => Ok(Box::new(CelString::from(s.clone()))),
            other => Err(required("string", other)),
        },
        CaveatType::Int => integer(value, "int64", "int").map(|i| Box::new(CelInt::from(i)) as _),
        CaveatType::Uint => {
            let i = integer(value, "uint64", "uint")?;
            if i < 0 {
                return Err(format!(
                    "a uint value is required, but found int64 value `{i}`"
                ));
            }
            Ok(Box::new(CelUInt::from(i.unsigned_abs())))
        }
        CaveatType::Double => double(value, "float64").map(|d| Box::new(CelDouble::from(d)) as _),
        CaveatType::Bytes => {
            let Json::String(s) = value else {
                return Err(format!(
                    "bytes requires a base64 unicode string, found: {} `{}`",
                    go_type(value),
                    go_value(value)
                ));
            };
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(|b| Box::new(CelBytes::from(b)) as _)
                .map_err(|e| format!("bytes requires a base64 encoded string: {e}"))
        }
        CaveatType::Duration => {
            let Json::String(s) = value else {
                return Err(format!(
                    "durations requires a duration string, found: {}",
                    go_type(value)
                ));
            };
            let nanos = parse_go_duration(s)
                .map_err(|e| format!("could not parse duration string `{s}`: {e}"))?;
            Ok(Box::new(CelDuration::from(chrono::Duration::nanoseconds(
                nanos,
            ))))
        }
        CaveatType::Timestamp => {
            let Json::String(s) = value else {
                return Err(format!(
                    "timestamps requires a RFC 3339 formatted timestamp string, found: {} `{}`",
                    go_type(value),
                    go_value(value)
                ));
            };
            let at = parse_rfc3339(s).map_err(|e| {
                format!("could not parse RFC 3339 formatted timestamp string `{s}`: {e}")
            })?;
            Ok(Box::new(CelTimestamp::from(at)))
        }
        CaveatType::IpAddress => {
            let Json::String(s) = value else {
                return Err(format!(
                    "ipaddress requires an ipaddress string, found: {} `{}`",
                    go_type(value),
                    go_value(value)
                ));
            };
            IpAddress::parse(s)
                .map(|ip| Box::new(ip) as _)
                .map_err(|e| format!("could not parse ip address string `{s}`: {e}"))
        }
        CaveatType::List(element) => {
            let Json::Array(items) = value else {
                return Err(format!("list requires a list, found: {}", go_type(value)));
            };
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                out.push(convert(item, element).map_err(|e| {
                    format!("found an invalid value for item at index {index}: {e}")
                })?);
            }
            Ok(Box::new(CelList::from(out)))
        }
        CaveatType::Map(element) => {
            let Json::Object(entries) = value else {
                return Err(format!("map requires a map, found: {}", go_type(value)));
            };
            let mut out = HashMap::with_capacity(entries.len());
            for (key, item) in entries {
                let converted = convert(item, element)
                    .map_err(|e| format!("found an invalid value for key `{key}`: {e}"))?;
                out.insert(CelMapKey::from(key.clone()), converted);
            }
            Ok(Box::new(CelMap::from(out)))
        }
    }
}

/// An `any` value: JSON as CEL sees a `google.protobuf.Value`.
fn any(value: &Json) -> CelValue {
    match value {
        Json::Null => Box::new(CelNull),
        Json::Bool(b) => Box::new(CelBool::from(*b)),
        Json::Number(n) => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        Json::String(s) => Box::new(CelString::from(s.clone())),
        Json::Array(items) => Box::new(CelList::from(items.iter().map(any).collect::<Vec<_>>())),
        Json::Object(entries) => Box::new(CelMap::from(
            entries
                .iter()
                .map(|(k, v)| (CelMapKey::from(k.clone()), any(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

fn required(go_name: &str, value: &Json) -> String {
    format!(
        "a {go_name} value is required, but found {} `{}`",
        go_type(value),
        go_value(value)
    )
}

/// A number, or a string holding one, as a whole number. Like SpiceDB
/// (`big.Float.Int64`), values beyond the int64 range saturate.
fn integer(value: &Json, go_name: &str, cel_name: &str) -> Result<i64, String> {
    let number = match value {
        Json::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Json::String(s) => {
            // Decimal integers parse exactly (big.ParseFloat keeps 64 bits).
            if let Some(i) = parse_decimal_integer(s) {
                return Ok(i);
            }
            parse_float(s).ok_or_else(|| {
                format!("a {go_name} value is required, but found invalid string value `{s}`")
            })?
        }
        other => return Err(required(go_name, other)),
    };
    if !number.is_finite() || number.fract() != 0.0 {
        return Err(format!(
            "a {cel_name} value is required, but found numeric value `{}`",
            go_float(number)
        ));
    }
    // `as` saturates at the bounds, as big.Float.Int64 does.
    Ok(number as i64)
}

fn double(value: &Json, go_name: &str) -> Result<f64, String> {
    match value {
        Json::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => parse_float(s).ok_or_else(|| {
            format!("a {go_name} value is required, but found invalid string value `{s}`")
        }),
        other => Err(required(go_name, other)),
    }
}

/// `[+-]digits`, clamped to the int64 range.
fn parse_decimal_integer(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let negative = s.starts_with('-');
    Some(match digits.parse::<u128>() {
        Ok(n) if negative => i64::try_from(-(n.min(1 << 64) as i128)).unwrap_or(i64::MIN),
        Ok(n) => i64::try_from(n).unwrap_or(i64::MAX),
        Err(_) if negative => i64::MIN,
        Err(_) => i64::MAX,
    })
}

/// A decimal floating-point number; no infinities or NaN.
fn parse_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let plain = body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if body.is_empty() || !plain || !body.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Go's `%T` of a value decoded from a Struct.
fn go_type(value: &Json) -> &'static str {
    match value {
        Json::Null => "<nil>",
        Json::Bool(_) => "bool",
        Json::Number(_) => "float64",
        Json::String(_) => "string",
        Json::Array(_) => "[]interface {}",
        Json::Object(_) => "map[string]interface {}",
    }
}

/// Go's `%v` of a value decoded from a Struct.
fn go_value(value: &Json) -> String {
    match value {
        Json::Null => "<nil>".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => go_float(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => s.clone(),
        Json::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_value).collect();
            format!("[{}]", parts.join(" "))
        }
        Json::Object(entries) => {
            let mut parts: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_value(v)))
                .collect();
            parts.sort();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// A float as Go's `%v` prints it: shortest form, exponent from 1e21.
fn go_float(f: f64) -> String {
    if f.is_finite() && f.abs() >= 1e21 {
        let s = format!("{f:e}");
        // Rust prints `1e21`, Go `1e+21`.
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        }
    } else if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{f}")
    }
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units
/// (`ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`), optionally signed; `0` alone
/// needs no unit. Returns nanoseconds.
pub fn parse_go_duration(original: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration \"{original}\"");
    let mut s = original;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u64 = 1 << 63;
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        // The integer part.
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let mut whole: u64 = 0;
        for b in s[..int_len].bytes() {
            whole = whole
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                .filter(|v| *v <= LIMIT)
                .ok_or_else(invalid)?;
        }
        let pre = int_len > 0;
        s = &s[int_len..];
        // The fraction: digits past what fits are ignored, as Go does.
        let (mut fraction, mut scale, mut post) = (0u64, 1f64, false);
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let mut overflow = false;
            for b in rest[..frac_len].bytes() {
                if overflow {
                    continue;
                }
                if fraction > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let next = fraction * 10 + u64::from(b - b'0');
                if next > LIMIT {
                    overflow = true;
                    continue;
                }
                fraction = next;
                scale *= 10.0;
            }
            post = frac_len > 0;
            s = &rest[frac_len..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration \"{original}\""));
        }
        let unit_name = &s[..unit_len];
        s = &s[unit_len..];
        let unit: u64 = match unit_name {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit \"{unit_name}\" in duration \"{original}\""
                ));
            }
        };
        if whole > LIMIT / unit {
            return Err(invalid());
        }
        let mut value = whole * unit;
        if fraction > 0 {
            // Go truncates the float product the same way.
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total = total
            .checked_add(value)
            .filter(|t| *t <= LIMIT)
            .ok_or_else(invalid)?;
    }
    if negative {
        // -(1 << 63) is i64::MIN.
        return Ok((total as i128).wrapping_neg() as i64);
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// Go's `time.Parse(time.RFC3339, s)`, normalized to UTC: caveats evaluate
/// timestamps in UTC (cel-go's `DefaultUTCTimeZone`). Go is stricter than
/// chrono about the separator and the zone letter, so those are checked first.
pub fn parse_rfc3339(s: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
    let bytes = s.as_bytes();
    if bytes.len() > 10 && bytes[10] != b'T' {
        return Err(format!(
            "cannot parse \"{}\" as \"T\"",
            s.get(10..).unwrap_or_default()
        ));
    }
    if s.ends_with('z') {
        return Err(format!("cannot parse \"{s}\" as RFC 3339 (lowercase zone)"));
    }
    let at = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| e.to_string())?;
    Ok(at.with_timezone(&chrono::Utc).fixed_offset())
}

/// Parses an IP address as Go's `netip.ParseAddr`: dotted-quad IPv4 without
/// leading zeros, IPv6 (IPv4-mapped forms stay IPv6), an optional IPv6 zone.
pub fn parse_ip(s: &str) -> Result<(IpAddr, Option<String>), String> {
    let (address, zone) = match s.split_once('%') {
        Some((a, z)) => {
            if z.is_empty() {
                return Err(format!(
                    "ParseAddr(\"{s}\"): zone must be a non-empty string"
                ));
            }
            (a, Some(z.to_string()))
        }
        None => (s, None),
    };
    let parsed: IpAddr = address
        .parse()
        .map_err(|_| format!("ParseAddr(\"{s}\"): unable to parse IP"))?;
    if zone.is_some() && parsed.is_ipv4() {
        return Err(format!(
            "ParseAddr(\"{s}\"): IPv4 addresses cannot have a zone"
        ));
    }
    Ok((parsed, zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ok = [
            ("0", 0),
            ("1h30m", 5_400_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("-3us", -3_000),
            ("3\u{b5}s", 3_000),
            ("3\u{3bc}s", 3_000),
            ("+5s", 5_000_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("2h45m10.5s", 9_910_500_000_000),
            ("-9223372036854775808ns", i64::MIN),
            ("9223372036854775807ns", i64::MAX),
        ];
        for (text, nanos) in ok {
            assert_eq!(parse_go_duration(text), Ok(nanos), "{text}");
        }
        for bad in [
            "",
            "1",
            "1d",
            "h",
            ".s",
            "-",
            "1h-1m",
            "9223372036854775808ns",
            "3 s",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_go_duration("1d").unwrap_err(),
            "time: unknown unit \"d\" in duration \"1d\""
        );
    }

    #[test]
    fn timestamps_are_rfc3339_in_utc() {
        let at = parse_rfc3339("2000-10-10T10:10:10+01:00").unwrap();
        assert_eq!(at.to_rfc3339(), "2000-10-10T09:10:10+00:00");
        assert!(parse_rfc3339("2000-10-10T10:10:10.123456789Z").is_ok());
        for bad in [
            "2000-10-10t10:10:10z",
            "2000-10-10 10:10:10Z",
            "2000-10-10T10:10:10z",
            "2000-10-10",
            "yesterday",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ip_addresses_as_netip() {
        assert!(parse_ip("10.1.2.3").is_ok());
        assert!(parse_ip("::ffff:1.2.3.4").unwrap().0.is_ipv6());
        assert_eq!(parse_ip("fe80::1%eth0").unwrap().1.as_deref(), Some("eth0"));
        for bad in ["01.2.3.4", "1.2.3", "1.2.3.4%eth0", "fe80::1%", "::g", ""] {
            assert!(parse_ip(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_convert_as_spicedb_does() {
        let int = |v: Json| integer(&v, "int64", "int");
        assert_eq!(int(serde_json::json!(42)), Ok(42));
        assert_eq!(int(serde_json::json!(42.0)), Ok(42));
        assert_eq!(int(serde_json::json!("42")), Ok(42));
        assert_eq!(int(serde_json::json!("1e3")), Ok(1000));
        assert_eq!(int(serde_json::json!(1e300)), Ok(i64::MAX));
        assert_eq!(
            int(serde_json::json!("-99999999999999999999")),
            Ok(i64::MIN)
        );
        assert_eq!(
            int(serde_json::json!("9007199254740993")),
            Ok(9_007_199_254_740_993)
        );
        assert_eq!(
            int(serde_json::json!(42.5)).unwrap_err(),
            "a int value is required, but found numeric value `42.5`"
        );
        assert_eq!(
            int(serde_json::json!("x")).unwrap_err(),
            "a int64 value is required, but found invalid string value `x`"
        );
        assert_eq!(
            int(serde_json::json!(null)).unwrap_err(),
            "a int64 value is required, but found <nil> `<nil>`"
        );
        assert!(int(serde_json::json!("inf")).is_err());
        assert!(int(serde_json::json!("0x10")).is_err());
        assert_eq!(double(&serde_json::json!("2.5"), "float64"), Ok(2.5));
    }

    #[test]
    fn go_formatting() {
        assert_eq!(go_value(&serde_json::json!(1)), "1");
        assert_eq!(go_value(&serde_json::json!(1.5)), "1.5");
        assert_eq!(go_value(&serde_json::json!(1e21)), "1e+21");
        assert_eq!(go_value(&serde_json::json!([1, "a"])), "[1 a]");
        assert_eq!(go_type(&serde_json::json!({})), "map[string]interface {}");
    }
}
