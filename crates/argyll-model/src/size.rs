//! How much a flow's state weighs: the bytes its JSON would take, counted as values enter it.
//!
//! A flow's state grows with what its steps return. Without a bound, one step answering
//! 30 MB made the engine hold gigabytes (copies in caches, events, the store). The engine caps
//! a flow's state (`FLOW_MAX_STATE_BYTES`) and sizes its cache by bytes; both need the size of
//! a state without serialising it, so the reducers add the size of every value they store.

use serde_json::Value;

use crate::Args;

/// The length of `value` written as compact JSON, estimated without writing it: exact for
/// structure and strings without escapes, numbers count as their shortest common width.
pub fn json_size(value: &Value) -> u64 {
    // Containers put their children on a stack, so scalars (most values) allocate nothing
    // and deep values cannot overflow the call stack.
    let mut size = 0u64;
    let mut pending: Vec<&Value> = Vec::new();
    let mut next = Some(value);
    while let Some(value) = next {
        size = size.saturating_add(match value {
            Value::Null => 4,
            Value::Bool(true) => 4,
            Value::Bool(false) => 5,
            Value::Number(number) => number_width(number),
            Value::String(text) => text_size(text),
            Value::Array(items) => {
                pending.extend(items);
                // Brackets and commas.
                2 + len_u64(items.len()).saturating_sub(1)
            }
            Value::Object(fields) => {
                pending.extend(fields.values());
                let keys: u64 = fields
                    .keys()
                    .map(|key| text_size(key).saturating_add(1))
                    .sum();
                2 + keys + len_u64(fields.len()).saturating_sub(1)
            }
        });
        next = pending.pop();
    }
    size
}

/// [`json_size`] of named values (an object).
pub fn args_size(args: &Args) -> u64 {
    let keys: u64 = args
        .keys()
        .map(|key| text_size(key).saturating_add(1))
        .sum();
    let commas = len_u64(args.len()).saturating_sub(1);
    args.values()
        .map(json_size)
        .fold(2 + keys + commas, u64::saturating_add)
}

/// The bytes of a text (an error message) in a state.
pub fn len_of(text: &str) -> u64 {
    len_u64(text.len())
}

fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

fn text_size(text: &str) -> u64 {
    len_u64(text.len()).saturating_add(2)
}

fn number_width(number: &serde_json::Number) -> u64 {
    if let Some(n) = number.as_u64() {
        decimal_digits(n)
    } else if let Some(n) = number.as_i64() {
        decimal_digits(n.unsigned_abs()) + 1
    } else {
        // Floats: a typical shortest representation.
        12
    }
}

fn decimal_digits(mut n: u64) -> u64 {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// The approximate JSON size of a flow state, kept up to date by the reducers as values enter
/// it. Derived bookkeeping, not part of the state's value: it is not serialised, and two
/// states compare equal whatever their counters say (a state read back from JSON starts at 0
/// until [`crate::FlowState::recount_size`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct StateSize(u64);

impl StateSize {
    /// The bytes counted.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Counts `bytes` more.
    pub fn add(&mut self, bytes: u64) {
        self.0 = self.0.saturating_add(bytes);
    }

    /// Sets the count (a recount).
    pub fn set(&mut self, bytes: u64) {
        self.0 = bytes;
    }
}

impl PartialEq for StateSize {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_match_compact_json() {
        for value in [
            json!(null),
            json!(true),
            json!(false),
            json!(12345),
            json!(-7),
            json!("text"),
            json!([]),
            json!([1, 2, 3]),
            json!({}),
            json!({"a": [1, {"b": "c"}], "long key": null}),
        ] {
            let written = u64::try_from(serde_json::to_string(&value).unwrap().len()).unwrap();
            assert_eq!(json_size(&value), written, "{value}");
        }
        let args = json!({"x": [1, 2], "y": "z"}).as_object().cloned().unwrap();
        assert_eq!(
            args_size(&args),
            u64::try_from(serde_json::to_string(&args).unwrap().len()).unwrap()
        );
    }

    #[test]
    fn deep_values_are_measured_without_recursion() {
        let mut value = json!(0);
        for _ in 0..100_000 {
            value = Value::Array(vec![value]);
        }
        assert_eq!(json_size(&value), 200_001);
        // Dropping it recursively would overflow the stack; leak it (test only).
        std::mem::forget(value);
    }
}
