//! Functional hashes for memoization (`engine.md` §1.5, §5.16).
//!
//! Both hashes are SHA-256 over a canonical JSON text: object keys sorted at every depth and
//! integral numbers written as integers, so `{"a":1,"b":2}` and `{"b":2.0,"a":1}` hash alike.
//! The step hash leaves out `id`, `name` and `labels`: two steps that do the same thing share
//! memoized results.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::Args;
use crate::step::Step;

impl Step {
    /// The functional hash of the definition (hex SHA-256), ignoring id, name and labels.
    pub fn hash_key(&self) -> String {
        let attributes: Vec<Value> = self
            .attributes
            .iter()
            .map(|(name, spec)| json!({"k": name, "v": spec}))
            .collect();
        let flow = self.flow.as_ref().map(|flow| {
            let pairs = |map: &std::collections::BTreeMap<String, String>| -> Vec<Value> {
                map.iter().map(|(k, v)| json!({"k": k, "v": v})).collect()
            };
            json!({
                "goals": flow.goals,
                "input_map": pairs(&flow.input_map),
                "output_map": pairs(&flow.output_map),
            })
        });
        let mut document = Map::new();
        document.insert("type".into(), json!(self.step_type));
        if self.memoizable {
            document.insert("memoizable".into(), Value::Bool(true));
        }
        document.insert("attributes".into(), Value::Array(attributes));
        document.insert("http".into(), json!(self.http));
        document.insert("script".into(), json!(self.script));
        document.insert("flow".into(), flow.unwrap_or(Value::Null));
        document.insert("predicate".into(), json!(self.predicate));
        document.insert("work_config".into(), json!(self.work_config));
        sha256_hex(canonical_json(&Value::Object(document)).as_bytes())
    }
}

/// The hash of a work item's inputs (hex SHA-256); empty inputs hash the empty string.
pub fn args_hash(args: &Args) -> String {
    if args.is_empty() {
        return sha256_hex(b"");
    }
    let pairs: Vec<Value> = args
        .iter()
        .map(|(name, value)| json!({"k": name, "v": value}))
        .collect();
    sha256_hex(canonical_json(&Value::Array(pairs)).as_bytes())
}

/// The memoization key of a step run with `args`: `<step hash>:<args hash>`.
pub fn memo_key(step: &Step, args: &Args) -> String {
    format!("{}:{}", step.hash_key(), args_hash(args))
}

/// JSON text with object keys sorted at every depth and integral numbers written as integers.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => out.push_str(&value.to_string()),
        Value::Number(number) => match number.as_f64() {
            // 2^53: beyond it not every integer is a float, so keep the original text.
            Some(float)
                if number.is_f64()
                    && float.fract() == 0.0
                    && float.abs() < 9_007_199_254_740_992.0 =>
            {
                // Exact: the guard keeps `float` integral and inside i64's range.
                let _ = write!(out, "{}", float as i64);
            }
            _ => out.push_str(&number.to_string()),
        },
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(item) = map.get(key) {
                    write_canonical(item, out);
                }
            }
            out.push('}');
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest.iter() {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}
