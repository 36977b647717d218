//! Sequence operations shared by builtins: splitting any sequence into first and rest,
//! realising, counting.

use std::sync::Arc;

use crate::error::{AleError, AleResult};
use crate::eval::Ctx;
use crate::value::{ObjectMap, Value};

/// `cons`: prepends to lists, vectors and lazy sequences (same kind back), pairs otherwise.
pub fn cons(car: Value, cdr: Value) -> Value {
    match cdr {
        Value::Null => Value::list_cons(car, None),
        Value::List(node) => Value::list_cons(car, Some(node)),
        Value::Vector(items) => {
            let mut out = Vec::with_capacity(items.len() + 1);
            out.push(car);
            out.extend(items.iter().cloned());
            Value::vector(out)
        }
        Value::Lazy(_) => {
            let cell = Some((car, cdr));
            Value::Lazy(Arc::new(crate::lazy::LazySeq::new(Box::new(move |_| {
                Ok(cell)
            }))))
        }
        other => Value::Cons(Arc::new((car, other))),
    }
}

/// Whether a value is a sequence (something `first`/`rest` walk).
pub fn is_seq(value: &Value) -> bool {
    matches!(
        value,
        Value::Null
            | Value::List(_)
            | Value::Vector(_)
            | Value::String(_)
            | Value::Object(_)
            | Value::Lazy(_)
            | Value::Bytes(_)
    )
}

/// First element and rest of a sequence or pair; `None` when empty.
pub fn split(ctx: &mut Ctx, value: &Value) -> AleResult<Option<(Value, Value)>> {
    Ok(match value {
        Value::Null => None,
        Value::List(node) => Some((
            node.first.clone(),
            node.rest.clone().map_or(Value::Null, Value::List),
        )),
        Value::Vector(items) => items
            .split_first()
            .map(|(first, rest)| (first.clone(), Value::vector(rest.to_vec()))),
        Value::String(text) => {
            let mut chars = text.chars();
            chars
                .next()
                .map(|c| (Value::string(c.to_string()), Value::string(chars.as_str())))
        }
        Value::Bytes(bytes) => bytes.split_first().map(|(first, rest)| {
            (
                Value::Int(i64::from(*first)),
                Value::Bytes(Arc::new(rest.to_vec())),
            )
        }),
        Value::Object(map) => match map.iter().next() {
            None => None,
            Some((key, item)) => {
                let mut rest: ObjectMap = (**map).clone();
                rest.remove(key);
                Some((
                    Value::Cons(Arc::new((key.clone(), item.clone()))),
                    Value::Object(Arc::new(rest)),
                ))
            }
        },
        Value::Cons(pair) => Some((pair.0.clone(), pair.1.clone())),
        Value::Lazy(seq) => seq.force(ctx)?,
        other => {
            return Err(AleError::runtime(format!(
                "got {}, expected sequence",
                other.type_name()
            )));
        }
    })
}

/// Every element of a sequence, realising lazy ones (each element counts as a step).
pub fn to_vec(ctx: &mut Ctx, value: &Value) -> AleResult<Vec<Value>> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Vector(items) => Ok((**items).clone()),
        Value::List(_) => Ok(value.list_items().unwrap_or_default()),
        Value::String(text) => Ok(text.chars().map(|c| Value::string(c.to_string())).collect()),
        Value::Object(map) => Ok(map
            .iter()
            .map(|(k, v)| Value::Cons(Arc::new((k.clone(), v.clone()))))
            .collect()),
        _ => {
            if !is_seq(value) {
                return Err(AleError::runtime(format!(
                    "got {}, expected sequence",
                    value.type_name()
                )));
            }
            let mut items = Vec::new();
            let mut cursor = value.clone();
            while let Some((first, rest)) = split(ctx, &cursor)? {
                ctx.tick()?;
                items.push(first);
                cursor = rest;
            }
            Ok(items)
        }
    }
}

/// Elements of an already-realised list or vector (no context needed).
pub fn plain_items(value: &Value) -> Option<Vec<Value>> {
    match value {
        Value::Null | Value::List(_) => value.list_items(),
        Value::Vector(items) => Some((**items).clone()),
        _ => None,
    }
}

/// The element count of a counted sequence.
pub fn count(value: &Value) -> AleResult<usize> {
    Ok(match value {
        Value::Null => 0,
        Value::List(node) => node.count,
        Value::Vector(items) => items.len(),
        Value::String(text) => text.chars().count(),
        Value::Object(map) => map.len(),
        Value::Bytes(bytes) => bytes.len(),
        other => {
            return Err(AleError::runtime(format!(
                "got {}, expected counted",
                other.type_name()
            )));
        }
    })
}

/// Realises every lazy sequence inside `value` (deeply), turning them into lists, so that the
/// value can be printed or converted to JSON.
pub fn realize_deep(ctx: &mut Ctx, value: &Value) -> AleResult<Value> {
    crate::eval::with_stack(|| realize_deep_inner(ctx, value))
}

fn realize_deep_inner(ctx: &mut Ctx, value: &Value) -> AleResult<Value> {
    Ok(match value {
        Value::Lazy(_) => {
            let items = to_vec(ctx, value)?;
            let items = items
                .iter()
                .map(|item| realize_deep(ctx, item))
                .collect::<AleResult<Vec<_>>>()?;
            Value::list(items)
        }
        Value::List(_) => {
            let items = value.list_items().unwrap_or_default();
            if items.iter().any(contains_lazy) {
                Value::list(
                    items
                        .iter()
                        .map(|item| realize_deep(ctx, item))
                        .collect::<AleResult<Vec<_>>>()?,
                )
            } else {
                value.clone()
            }
        }
        Value::Vector(items) if items.iter().any(contains_lazy) => Value::vector(
            items
                .iter()
                .map(|item| realize_deep(ctx, item))
                .collect::<AleResult<Vec<_>>>()?,
        ),
        Value::Object(map)
            if map
                .iter()
                .any(|(k, v)| contains_lazy(k) || contains_lazy(v)) =>
        {
            let mut out = ObjectMap::with_capacity(map.len());
            for (k, v) in map.iter() {
                out.insert(realize_deep(ctx, k)?, realize_deep(ctx, v)?);
            }
            Value::Object(Arc::new(out))
        }
        Value::Cons(pair) if contains_lazy(&pair.0) || contains_lazy(&pair.1) => {
            cons(realize_deep(ctx, &pair.0)?, realize_deep(ctx, &pair.1)?)
        }
        other => other.clone(),
    })
}

fn contains_lazy(value: &Value) -> bool {
    crate::eval::with_stack(|| contains_lazy_inner(value))
}

fn contains_lazy_inner(value: &Value) -> bool {
    match value {
        Value::Lazy(_) => true,
        Value::List(_) => value
            .list_items()
            .unwrap_or_default()
            .iter()
            .any(contains_lazy),
        Value::Vector(items) => items.iter().any(contains_lazy),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| contains_lazy(k) || contains_lazy(v)),
        Value::Cons(pair) => contains_lazy(&pair.0) || contains_lazy(&pair.1),
        _ => false,
    }
}
