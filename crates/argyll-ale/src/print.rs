//! Printing values in Ale's two forms (`ale.md` §3.1.1): the *display* form (`str`) and the
//! *reader* form (`str!`), which differ only in how a top-level string is written.
//!
//! Values share structure, so a value built in a few steps (`[v v]` doubled n times) can have a
//! printed form of 2ⁿ bytes. Every print is therefore bounded by a byte budget and stops as soon
//! as it is exceeded: the work done is proportional to the bytes written, never to the size of
//! the unshared tree.

use std::fmt::Write as _;

use crate::value::{Object, Value};

/// How much the infallible [`reader_form`] and [`display_form`] print before truncating; the
/// same as the default [`crate::Limits::max_output_bytes`].
pub const DEFAULT_PRINT_BUDGET: usize = 16 * 1024 * 1024;

const TRUNCATION_MARK: &str = "...";

/// The reader form: what `str!` and the REPL print; strings quoted and escaped.
///
/// Meant for messages and diagnostics: beyond [`DEFAULT_PRINT_BUDGET`] bytes the text is cut
/// and ends in `...`. Use [`reader_form_within`] where the text is data.
pub fn reader_form(value: &Value) -> String {
    truncated(Printer::print(value, true, DEFAULT_PRINT_BUDGET))
}

/// The display form: what `str` prints; a top-level string is written raw. Truncated like
/// [`reader_form`]; use [`display_form_within`] where the text is data.
pub fn display_form(value: &Value) -> String {
    truncated(Printer::print(value, false, DEFAULT_PRINT_BUDGET))
}

/// The reader form, or `None` when it is longer than `max_bytes`.
pub fn reader_form_within(value: &Value, max_bytes: usize) -> Option<String> {
    let (text, complete) = Printer::print(value, true, max_bytes);
    complete.then_some(text)
}

/// The display form, or `None` when it is longer than `max_bytes`.
pub fn display_form_within(value: &Value, max_bytes: usize) -> Option<String> {
    let (text, complete) = Printer::print(value, false, max_bytes);
    complete.then_some(text)
}

fn truncated((mut text, complete): (String, bool)) -> String {
    if !complete {
        text.push_str(TRUNCATION_MARK);
    }
    text
}

/// One bounded print. `out` may run past `limit` by one token before the overflow is noticed;
/// the caller cuts it back.
struct Printer {
    out: String,
    limit: usize,
    /// Bytes left for the sort keys of object entries, which are printed before the entries.
    key_budget: usize,
    overflow: bool,
}

impl Printer {
    fn print(value: &Value, top_level_quoted: bool, limit: usize) -> (String, bool) {
        let mut printer = Printer {
            out: String::new(),
            limit,
            key_budget: limit,
            overflow: false,
        };
        match value {
            Value::String(text) if !top_level_quoted => printer.out.push_str(text),
            other => printer.value(other),
        }
        if printer.out.len() > limit {
            printer.overflow = true;
            let mut cut = limit;
            while !printer.out.is_char_boundary(cut) {
                cut -= 1;
            }
            printer.out.truncate(cut);
        }
        (printer.out, !printer.overflow)
    }

    fn full(&mut self) -> bool {
        if self.out.len() > self.limit {
            self.overflow = true;
        }
        self.overflow
    }

    /// Writes `value`; nested strings are always quoted.
    fn value(&mut self, value: &Value) {
        if self.full() {
            return;
        }
        crate::eval::with_stack(|| self.value_inner(value));
    }

    fn value_inner(&mut self, value: &Value) {
        let out = &mut self.out;
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
            Value::List(_) | Value::Cons(_) => self.pairs(value),
            Value::Vector(items) => {
                out.push('[');
                self.items(items.iter());
                self.out.push(']');
            }
            Value::Object(map) => {
                out.push('{');
                if let Some(entries) = self.sorted_entries(map) {
                    for (index, (key, item)) in entries.into_iter().enumerate() {
                        if index > 0 {
                            self.out.push(' ');
                        }
                        self.value(key);
                        self.out.push(' ');
                        self.value(item);
                    }
                }
                self.out.push('}');
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
                    self.items(items.iter());
                    self.out.push(')');
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
                Some(inner) => self.value(inner),
                None => out.push_str("#<unbound>"),
            },
        }
    }

    fn items<'a>(&mut self, items: impl Iterator<Item = &'a Value>) {
        for (index, item) in items.enumerate() {
            if self.full() {
                return;
            }
            if index > 0 {
                self.out.push(' ');
            }
            self.value(item);
        }
    }

    /// Object entries in the order of their keys' display forms, as the original sorts them.
    /// The sort keys count against their own budget, so an object whose keys are huge stops
    /// early instead of printing every key first.
    fn sorted_entries<'a>(&mut self, map: &'a Object) -> Option<Vec<(&'a Value, &'a Value)>> {
        let mut entries = Vec::with_capacity(map.len());
        for (key, item) in map.iter() {
            let (sort_key, complete) = Printer::print(key, false, self.key_budget);
            if !complete {
                self.overflow = true;
                return None;
            }
            self.key_budget = self.key_budget.saturating_sub(sort_key.len().max(1));
            entries.push((sort_key, key, item));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Some(
            entries
                .into_iter()
                .map(|(_, key, item)| (key, item))
                .collect(),
        )
    }

    /// Lists and cons chains: `(a b c)`, `(a . b)`, `(a b . c)`.
    fn pairs(&mut self, value: &Value) {
        self.out.push('(');
        let mut cursor = value.clone();
        let mut first = true;
        loop {
            if self.full() {
                return;
            }
            let (car, cdr) = match &cursor {
                Value::List(node) => (
                    node.first.clone(),
                    node.rest.clone().map_or(Value::Null, Value::List),
                ),
                Value::Cons(pair) => (pair.0.clone(), pair.1.clone()),
                _ => break,
            };
            if !first {
                self.out.push(' ');
            }
            first = false;
            self.value(&car);
            match cdr {
                Value::Null => break,
                Value::List(_) | Value::Cons(_) => cursor = cdr,
                Value::Vector(items) if !items.is_empty() => {
                    for item in items.iter() {
                        if self.full() {
                            return;
                        }
                        self.out.push(' ');
                        self.value(item);
                    }
                    break;
                }
                Value::Vector(_) => break,
                Value::Object(map) if !map.is_empty() => {
                    if let Some(entries) = self.sorted_entries(&map) {
                        for (key, item) in entries {
                            if self.full() {
                                return;
                            }
                            self.out.push_str(" (");
                            self.value(key);
                            self.out.push_str(" . ");
                            self.value(item);
                            self.out.push(')');
                        }
                    }
                    break;
                }
                Value::Object(_) => break,
                other => {
                    self.out.push_str(" . ");
                    self.value(&other);
                    break;
                }
            }
        }
        self.out.push(')');
    }
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
