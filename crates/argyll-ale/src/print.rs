//! Printing values in Ale's two forms (`ale.md` §3.1.1): the *display* form (`str`) and the
//! *reader* form (`str!`), which differ only in how a top-level string is written.

use std::fmt::Write as _;

use crate::value::Value;

/// The reader form: what `str!` and the REPL print; strings quoted and escaped.
pub fn reader_form(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out, true);
    out
}

/// The display form: what `str` prints; a top-level string is written raw.
pub fn display_form(value: &Value) -> String {
    match value {
        Value::String(text) => text.to_string(),
        other => {
            let mut out = String::new();
            write_value(other, &mut out, false);
            out
        }
    }
}

/// Writes `value`; nested strings are always quoted.
fn write_value(value: &Value, out: &mut String, top_level_quoted: bool) {
    crate::eval::with_stack(|| write_value_inner(value, out, top_level_quoted));
}

fn write_value_inner(value: &Value, out: &mut String, _top_level_quoted: bool) {
    match value {
        Value::Null => out.push_str("()"),
        Value::Bool(true) => out.push_str("#t"),
        Value::Bool(false) => out.push_str("#f"),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::BigInt(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Ratio(r) => {
            let _ = write!(out, "{}/{}", r.numer(), r.denom());
        }
        Value::Float(f) => out.push_str(&format_float(*f)),
        Value::String(text) => write_quoted(text, out),
        Value::Keyword(name) => {
            out.push(':');
            out.push_str(name);
        }
        Value::Symbol(symbol) => {
            let _ = write!(out, "{symbol}");
        }
        Value::List(_) | Value::Cons(_) => write_pairs(value, out),
        Value::Vector(items) => {
            out.push('[');
            write_items(items.iter(), out);
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(String, &Value, &Value)> =
                map.iter().map(|(k, v)| (display_form(k), k, v)).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (index, (_, key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(' ');
                }
                write_value(key, out, true);
                out.push(' ');
                write_value(item, out, true);
            }
            out.push('}');
        }
        Value::Bytes(bytes) => {
            out.push_str("#b[");
            for (index, byte) in bytes.iter().enumerate() {
                if index > 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{byte}");
            }
            out.push(']');
        }
        Value::Lazy(seq) => match seq.realized_prefix() {
            Some(items) => {
                out.push('(');
                write_items(items.iter(), out);
                out.push(')');
            }
            None => out.push_str("#<lazy-sequence>"),
        },
        Value::Procedure(_) => out.push_str("#<procedure>"),
        Value::Macro(_) => out.push_str("#<macro>"),
        Value::Special(name) => {
            let _ = write!(out, "#<special:{name}>");
        }
        Value::Promise(_) => out.push_str("#<promise>"),
        Value::Cell(cell) => match cell.get() {
            Some(inner) => write_value(inner, out, true),
            None => out.push_str("#<unbound>"),
        },
    }
}

fn write_items<'a>(items: impl Iterator<Item = &'a Value>, out: &mut String) {
    for (index, item) in items.enumerate() {
        if index > 0 {
            out.push(' ');
        }
        write_value(item, out, true);
    }
}

/// Lists and cons chains: `(a b c)`, `(a . b)`, `(a b . c)`.
fn write_pairs(value: &Value, out: &mut String) {
    out.push('(');
    let mut cursor = value.clone();
    let mut first = true;
    loop {
        let (car, cdr) = match &cursor {
            Value::List(node) => (
                node.first.clone(),
                node.rest.clone().map_or(Value::Null, Value::List),
            ),
            Value::Cons(pair) => (pair.0.clone(), pair.1.clone()),
            _ => break,
        };
        if !first {
            out.push(' ');
        }
        first = false;
        write_value(&car, out, true);
        match cdr {
            Value::Null => break,
            Value::List(_) | Value::Cons(_) => cursor = cdr,
            Value::Vector(items) if !items.is_empty() => {
                for item in items.iter() {
                    out.push(' ');
                    write_value(item, out, true);
                }
                break;
            }
            Value::Vector(_) => break,
            Value::Object(map) if !map.is_empty() => {
                let mut entries: Vec<(String, &Value, &Value)> =
                    map.iter().map(|(k, v)| (display_form(k), k, v)).collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                for (_, key, item) in entries {
                    out.push_str(" (");
                    write_value(key, out, true);
                    out.push_str(" . ");
                    write_value(item, out, true);
                    out.push(')');
                }
                break;
            }
            Value::Object(_) => break,
            other => {
                out.push_str(" . ");
                write_value(&other, out, true);
                break;
            }
        }
    }
    out.push(')');
}

/// A string in reader form: quoted, with `\" \\ \b \f \n \r \t` escaped.
pub fn write_quoted(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            other => out.push(other),
        }
    }
    out.push('"');
}

/// A float as Ale prints it: integral values in the i64 range as `N.0`, otherwise Go's `%g`
/// with the shortest round-trip digits (`0.1`, `1e-05`, `1.2345675e+06`), and `+inf`, `-inf`,
/// `nan`.
pub fn format_float(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+inf" } else { "-inf" }.to_owned();
    }
    // -2^63 <= x < 2^63: the cast is exact for integral values in that range.
    if value.fract() == 0.0
        && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&value)
    {
        return format!("{}.0", value as i64);
    }
    let scientific = format!("{value:e}"); // shortest round-trip digits, e.g. "-1.2345675e6"
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..6).contains(&exponent) {
        let (head, tail) = digits.split_at(1.min(digits.len()));
        let fraction = if tail.is_empty() {
            String::new()
        } else {
            format!(".{tail}")
        };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        return format!(
            "{sign}{head}{fraction}e{exponent_sign}{:02}",
            exponent.abs()
        );
    }
    if exponent < 0 {
        let zeros = "0".repeat(usize::try_from(-exponent - 1).unwrap_or(0));
        return format!("{sign}0.{zeros}{digits}");
    }
    let point = usize::try_from(exponent + 1).unwrap_or(1);
    if digits.len() <= point {
        let zeros = "0".repeat(point - digits.len());
        format!("{sign}{digits}{zeros}")
    } else {
        let (whole, fraction) = digits.split_at(point);
        format!("{sign}{whole}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::format_float;

    #[test]
    fn floats_print_like_ale() {
        let cases = [
            (1.0, "1.0"),
            (-0.0, "0.0"),
            (1e15, "1000000000000000.0"),
            (-9.223_372_036_854_776e18, "-9223372036854775808.0"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (123456.5, "123456.5"),
            (110.00000000000001, "110.00000000000001"),
            (0.30000000000000004, "0.30000000000000004"),
            (1.0 / 3.0, "0.3333333333333333"),
            (1e-05, "1e-05"),
            (1234567.5, "1.2345675e+06"),
            (1e20, "1e+20"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (-2.5e-7, "-2.5e-07"),
            (f64::INFINITY, "+inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (value, printed) in cases {
            assert_eq!(format_float(value), printed, "{value:e}");
        }
    }
}
