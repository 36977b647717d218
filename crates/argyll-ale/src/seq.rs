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
        other => Value::pair(car, other),
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
                let mut rest: ObjectMap = map.0.clone();
                rest.remove(key);
                Some((Value::pair(key.clone(), item.clone()), Value::object(rest)))
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
        Value::Vector(items) => Ok(items.0.clone()),
        Value::List(_) => Ok(value.list_items().unwrap_or_default()),
        Value::String(text) => Ok(text.chars().map(|c| Value::string(c.to_string())).collect()),
        Value::Object(map) => Ok(map
            .iter()
            .map(|(k, v)| Value::pair(k.clone(), v.clone()))
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
        Value::Vector(items) => Some(items.0.clone()),
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
///
/// Values share structure (`[v v]` doubled n times has 2ⁿ leaves), so shared containers are
/// walked once and their outcome remembered; every node walked costs a step.
pub fn realize_deep(ctx: &mut Ctx, value: &Value) -> AleResult<Value> {
    let mut seen = SharedSeen::default();
    Ok(realize_changed(ctx, &mut seen, value)?.unwrap_or_else(|| value.clone()))
}

/// Outcomes for containers referenced more than once, by address. The map holds no values of
/// its own beyond the outcomes, but the walked value keeps every address alive for the walk.
#[derive(Default)]
struct SharedSeen(Option<std::collections::HashMap<usize, Option<Value>>>);

/// The address of a shared container, or `None` for one referenced once (never revisited).
fn shared_address(value: &Value) -> Option<usize> {
    fn shared<T: ?Sized>(arc: &Arc<T>) -> Option<usize> {
        (Arc::strong_count(arc) > 1).then(|| Arc::as_ptr(arc).cast::<()>() as usize)
    }
    match value {
        Value::Lazy(arc) => shared(arc),
        Value::List(arc) => shared(arc),
        Value::Vector(arc) => shared(arc),
        Value::Object(arc) => shared(arc),
        Value::Cons(arc) => shared(arc),
        _ => None,
    }
}

/// `Some(realised)` when `value` contained a lazy sequence, `None` when it is already plain.
fn realize_changed(
    ctx: &mut Ctx,
    seen: &mut SharedSeen,
    value: &Value,
) -> AleResult<Option<Value>> {
    match value {
        Value::Lazy(_) | Value::List(_) | Value::Vector(_) | Value::Object(_) | Value::Cons(_) => {
            let address = shared_address(value);
            if let Some(address) = address
                && let Some(outcome) = seen.0.as_ref().and_then(|map| map.get(&address))
            {
                return Ok(outcome.clone());
            }
            let outcome = crate::eval::with_stack(|| realize_container(ctx, seen, value))?;
            if let Some(address) = address {
                seen.0
                    .get_or_insert_default()
                    .insert(address, outcome.clone());
            }
            Ok(outcome)
        }
        _ => Ok(None),
    }
}

fn realize_container(
    ctx: &mut Ctx,
    seen: &mut SharedSeen,
    value: &Value,
) -> AleResult<Option<Value>> {
    ctx.tick()?;
    Ok(match value {
        Value::Lazy(_) => {
            let items = to_vec(ctx, value)?;
            let mut realised = Vec::with_capacity(items.len());
            for item in &items {
                realised.push(realize_changed(ctx, seen, item)?.unwrap_or_else(|| item.clone()));
            }
            Some(Value::list(realised))
        }
        Value::List(_) => {
            let items = value.list_items().unwrap_or_default();
            realize_items(ctx, seen, &items)?.map(Value::list)
        }
        Value::Vector(items) => realize_items(ctx, seen, items)?.map(Value::vector),
        Value::Object(map) => {
            let mut changed = false;
            let mut out = ObjectMap::with_capacity(map.len());
            for (key, item) in map.iter() {
                ctx.tick()?;
                let new_key = realize_changed(ctx, seen, key)?;
                let new_item = realize_changed(ctx, seen, item)?;
                changed |= new_key.is_some() || new_item.is_some();
                out.insert(
                    new_key.unwrap_or_else(|| key.clone()),
                    new_item.unwrap_or_else(|| item.clone()),
                );
            }
            changed.then(|| Value::object(out))
        }
        Value::Cons(pair) => {
            let car = realize_changed(ctx, seen, &pair.0)?;
            let cdr = realize_changed(ctx, seen, &pair.1)?;
            (car.is_some() || cdr.is_some()).then(|| {
                cons(
                    car.unwrap_or_else(|| pair.0.clone()),
                    cdr.unwrap_or_else(|| pair.1.clone()),
                )
            })
        }
        _ => None,
    })
}

/// The realised items, or `None` when none of them changed.
fn realize_items(
    ctx: &mut Ctx,
    seen: &mut SharedSeen,
    items: &[Value],
) -> AleResult<Option<Vec<Value>>> {
    let mut realised: Option<Vec<Value>> = None;
    for (index, item) in items.iter().enumerate() {
        ctx.tick()?;
        let changed = realize_changed(ctx, seen, item)?;
        match (&mut realised, changed) {
            (Some(out), changed) => out.push(changed.unwrap_or_else(|| item.clone())),
            (None, Some(new_item)) => {
                let mut out = Vec::with_capacity(items.len());
                out.extend(items.iter().take(index).cloned());
                out.push(new_item);
                realised = Some(out);
            }
            (None, None) => {}
        }
    }
    Ok(realised)
}
