//! Lists, vectors, objects, strings and lazy sequences.

use std::sync::Arc;

use super::Registry;
use crate::error::{AleError, AleResult};
use crate::eval::Ctx;
use crate::lazy::LazySeq;
use crate::number::{Op, arithmetic, compare};
use crate::proc::Arity;
use crate::seq::{self, split, to_vec};
use crate::value::{ObjectMap, Value};

fn lazy(
    thunk: impl FnOnce(&mut Ctx) -> AleResult<Option<(Value, Value)>> + Send + 'static,
) -> Value {
    Value::Lazy(Arc::new(LazySeq::new(Box::new(thunk))))
}

fn arg(args: &[Value], index: usize) -> Value {
    args.get(index).cloned().unwrap_or_default()
}

fn expected(what: &str, value: &Value) -> AleError {
    AleError::runtime(format!("got {}, expected {what}", value.type_name()))
}

fn index_of_value(value: &Value) -> AleResult<i64> {
    match value {
        Value::Int(i) => Ok(*i),
        other => Err(expected("integer", other)),
    }
}

/// `(get target key default?)` on objects; keywords and objects use it when called.
pub(super) fn get_or(
    _ctx: &mut Ctx,
    target: &Value,
    key: &Value,
    default: Option<Value>,
) -> AleResult<Value> {
    match target {
        Value::Object(map) => match map.get(key) {
            Some(found) => Ok(found.clone()),
            None => default.ok_or_else(|| AleError::runtime("key not found")),
        },
        _ => match default {
            Some(default) => Ok(default),
            None => Err(expected("mapped", target)),
        },
    }
}

/// `(nth coll i default?)`.
pub(super) fn nth(
    ctx: &mut Ctx,
    coll: &Value,
    index: &Value,
    default: Option<Value>,
) -> AleResult<Value> {
    let i = index_of_value(index)?;
    let found = match coll {
        Value::Vector(items) => usize::try_from(i).ok().and_then(|i| items.get(i).cloned()),
        Value::String(text) => usize::try_from(i)
            .ok()
            .and_then(|i| text.chars().nth(i))
            .map(|c| Value::string(c.to_string())),
        Value::Null | Value::List(_) => usize::try_from(i)
            .ok()
            .and_then(|i| coll.list_items().and_then(|items| items.get(i).cloned())),
        Value::Bytes(bytes) => usize::try_from(i)
            .ok()
            .and_then(|i| bytes.get(i))
            .map(|b| Value::Int(i64::from(*b))),
        Value::Lazy(_) => {
            let mut cursor = coll.clone();
            let mut remaining = i;
            loop {
                if remaining < 0 {
                    break None;
                }
                match split(ctx, &cursor)? {
                    None => break None,
                    Some((first, rest)) => {
                        if remaining == 0 {
                            break Some(first);
                        }
                        remaining -= 1;
                        cursor = rest;
                    }
                }
            }
        }
        other => return Err(expected("indexed", other)),
    };
    match found {
        Some(value) => Ok(value),
        None => default.ok_or_else(|| AleError::runtime("index out of bounds")),
    }
}

/// Calling a list, vector or string: sub-sequence from `start`, or `[start, end)`.
pub(super) fn slice(ctx: &mut Ctx, target: &Value, args: &[Value]) -> AleResult<Value> {
    let items: Vec<Value> = match target {
        Value::String(text) => text.chars().map(|c| Value::string(c.to_string())).collect(),
        other => to_vec(ctx, other)?,
    };
    let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
    let (start, end) = match args {
        [start] => {
            let s = index_of_value(start)?;
            if s < 0 || s > len {
                return Err(AleError::runtime(format!("{s} is an invalid start index")));
            }
            (s, len)
        }
        [start, end] => {
            let (s, e) = (index_of_value(start)?, index_of_value(end)?);
            if s < 0 || e > len || s > e {
                return Err(AleError::runtime(format!(
                    "{s} and {e} are not valid start/end indices"
                )));
            }
            (s, e)
        }
        _ => return Err(Arity::between(1, 2).mismatch(args.len())),
    };
    let part: Vec<Value> = items
        .into_iter()
        .skip(usize::try_from(start).unwrap_or(0))
        .take(usize::try_from(end - start).unwrap_or(0))
        .collect();
    Ok(match target {
        Value::String(_) => Value::string(
            part.iter()
                .map(crate::print::display_form)
                .collect::<String>(),
        ),
        Value::Vector(_) => Value::vector(part),
        _ => Value::list(part),
    })
}

fn first(ctx: &mut Ctx, value: &Value) -> AleResult<Value> {
    if !seq::is_seq(value) && !matches!(value, Value::Cons(_)) {
        return Err(expected("pair", value));
    }
    Ok(split(ctx, value)?.map(|(f, _)| f).unwrap_or_default())
}

fn rest(ctx: &mut Ctx, value: &Value) -> AleResult<Value> {
    if !seq::is_seq(value) && !matches!(value, Value::Cons(_)) {
        return Err(expected("pair", value));
    }
    Ok(match split(ctx, value)? {
        Some((_, rest)) => rest,
        None => match value {
            Value::Vector(_) => Value::vector(Vec::new()),
            Value::String(_) => Value::string(""),
            Value::Object(_) => Value::object(ObjectMap::new()),
            _ => Value::Null,
        },
    })
}

fn c_xr(ctx: &mut Ctx, path: &str, value: &Value) -> AleResult<Value> {
    let mut current = value.clone();
    for step in path.chars().rev() {
        current = if step == 'a' {
            first(ctx, &current)?
        } else {
            rest(ctx, &current)?
        };
    }
    Ok(current)
}

fn map_lazy(f: Value, colls: Vec<Value>) -> Value {
    lazy(move |ctx| {
        let mut heads = Vec::with_capacity(colls.len());
        let mut tails = Vec::with_capacity(colls.len());
        for coll in &colls {
            match split(ctx, coll)? {
                None => return Ok(None),
                Some((head, tail)) => {
                    heads.push(head);
                    tails.push(tail);
                }
            }
        }
        let value = ctx.apply(&f, heads)?;
        Ok(Some((value, map_lazy(f, tails))))
    })
}

fn filter_lazy(pred: Value, coll: Value) -> Value {
    lazy(move |ctx| {
        let mut cursor = coll;
        while let Some((head, tail)) = split(ctx, &cursor)? {
            ctx.tick()?;
            if ctx.apply(&pred, vec![head.clone()])?.is_truthy() {
                return Ok(Some((head, filter_lazy(pred, tail))));
            }
            cursor = tail;
        }
        Ok(None)
    })
}

fn concat_lazy(mut colls: Vec<Value>) -> Value {
    lazy(move |ctx| {
        while !colls.is_empty() {
            let head = colls.remove(0);
            if !seq::is_seq(&head) && !matches!(head, Value::Cons(_)) {
                return Err(expected("sequence", &head));
            }
            if let Some((first, rest)) = split(ctx, &head)? {
                colls.insert(0, rest);
                return Ok(Some((first, concat_lazy(colls))));
            }
        }
        Ok(None)
    })
}

fn take_lazy(n: i64, coll: Value) -> Value {
    lazy(move |ctx| {
        if n <= 0 {
            return Ok(None);
        }
        Ok(split(ctx, &coll)?.map(|(first, rest)| (first, take_lazy(n - 1, rest))))
    })
}

fn take_while_lazy(pred: Value, coll: Value) -> Value {
    lazy(move |ctx| match split(ctx, &coll)? {
        Some((first, rest)) if ctx.apply(&pred, vec![first.clone()])?.is_truthy() => {
            Ok(Some((first, take_while_lazy(pred, rest))))
        }
        _ => Ok(None),
    })
}

fn range_lazy(start: Value, end: Option<Value>, step: Value) -> Value {
    lazy(move |_ctx| {
        let ascending = compare(&step, &Value::Int(0))? != Some(std::cmp::Ordering::Less);
        if let Some(end) = &end {
            let ordering = compare(&start, end)?;
            let done = match ordering {
                None => true,
                Some(o) => {
                    if ascending {
                        o != std::cmp::Ordering::Less
                    } else {
                        o != std::cmp::Ordering::Greater
                    }
                }
            };
            if done {
                return Ok(None);
            }
        }
        let next = arithmetic(Op::Add, &start, &step)?;
        Ok(Some((start, range_lazy(next, end, step))))
    })
}

/// Ale returns an empty vector, not a lazy sequence, for a range that is empty from the start.
fn empty_or(range: Value, start: &Value, end: &Value, step: &Value) -> AleResult<Value> {
    let ascending = compare(step, &Value::Int(0))? != Some(std::cmp::Ordering::Less);
    let empty = match compare(start, end)? {
        None => true,
        Some(o) => {
            if ascending {
                o != std::cmp::Ordering::Less
            } else {
                o != std::cmp::Ordering::Greater
            }
        }
    };
    Ok(if empty {
        Value::vector(Vec::new())
    } else {
        range
    })
}

fn to_list_value(items: Vec<Value>) -> Value {
    Value::list(items)
}

pub(super) fn register(r: &mut Registry<'_>) {
    r.native("first", Arity::exactly(1), |ctx, args| {
        first(ctx, &arg(args, 0))
    });
    r.native("rest", Arity::exactly(1), |ctx, args| {
        rest(ctx, &arg(args, 0))
    });
    r.alias("car", "first");
    r.alias("cdr", "rest");
    macro_rules! cxr {
        ($($name:literal),+) => {$(
            r.native($name, Arity::exactly(1), |ctx, args| c_xr(ctx, &$name[1..$name.len() - 1], &arg(args, 0)));
        )+};
    }
    cxr!(
        "caar", "cadr", "cdar", "cddr", "caaar", "caadr", "cadar", "caddr", "cdaar", "cdadr",
        "cddar", "cdddr", "caaaar", "caaadr", "caadar", "caaddr", "cadaar", "cadadr", "caddar",
        "cadddr", "cdaaar", "cdaadr", "cdadar", "cdaddr", "cddaar", "cddadr", "cdddar", "cddddr"
    );
    r.native("cons", Arity::exactly(2), |_, args| {
        Ok(seq::cons(arg(args, 0), arg(args, 1)))
    });
    r.native("list", Arity::at_least(0), |_, args| {
        Ok(Value::list(args.to_vec()))
    });
    r.native("vector", Arity::at_least(0), |_, args| {
        Ok(Value::vector(args.to_vec()))
    });
    r.native("length", Arity::exactly(1), |_, args| {
        let n = seq::count(&arg(args, 0))?;
        Ok(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)))
    });
    r.native("length!", Arity::exactly(1), |ctx, args| {
        let value = arg(args, 0);
        if let Ok(n) = seq::count(&value) {
            return Ok(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)));
        }
        let mut n: i64 = 0;
        let mut cursor = value;
        while let Some((_, rest)) = split(ctx, &cursor)? {
            ctx.tick()?;
            n += 1;
            cursor = rest;
        }
        Ok(Value::Int(n))
    });
    r.native("nth", Arity::between(2, 3), |ctx, args| {
        let coll = arg(args, 0);
        if matches!(coll, Value::Lazy(_)) {
            return Err(expected("indexed", &coll));
        }
        nth(ctx, &coll, &arg(args, 1), args.get(2).cloned())
    });
    r.native("nth!", Arity::between(2, 3), |ctx, args| {
        nth(ctx, &arg(args, 0), &arg(args, 1), args.get(2).cloned())
    });
    r.native("last", Arity::exactly(1), |_, args| {
        let value = arg(args, 0);
        match &value {
            Value::Lazy(_) => Err(expected("counted", &value)),
            Value::String(text) => Ok(text
                .chars()
                .last()
                .map(|c| Value::string(c.to_string()))
                .unwrap_or_default()),
            other => Ok(seq::plain_items(other)
                .ok_or_else(|| expected("counted", other))?
                .pop()
                .unwrap_or_default()),
        }
    });
    r.native("last!", Arity::exactly(1), |ctx, args| {
        let value = arg(args, 0);
        if !seq::is_seq(&value) {
            return Err(expected("sequence", &value));
        }
        Ok(to_vec(ctx, &value)?.pop().unwrap_or_default())
    });
    r.native("get", Arity::between(2, 3), |ctx, args| {
        get_or(ctx, &arg(args, 0), &arg(args, 1), args.get(2).cloned())
    });
    r.native("contains?", Arity::exactly(2), |_, args| {
        Ok(Value::Bool(
            matches!(&arg(args, 0), Value::Object(map) if map.contains_key(&arg(args, 1))),
        ))
    });
    r.native("conj", Arity::at_least(2), |ctx, args| {
        let mut target = arg(args, 0);
        for item in args.iter().skip(1) {
            target = match target {
                Value::Vector(items) => {
                    let mut items = items.0.clone();
                    items.push(item.clone());
                    Value::vector(items)
                }
                Value::String(text) => Value::string(joined_text(ctx, &text, item)?),
                other => seq::cons(item.clone(), other),
            };
        }
        Ok(target)
    });
    r.native("append", Arity::exactly(2), |ctx, args| {
        match (arg(args, 0), arg(args, 1)) {
            (Value::Vector(items), item) => {
                let mut items = items.0.clone();
                items.push(item);
                Ok(Value::vector(items))
            }
            (Value::String(text), item) => Ok(Value::string(joined_text(ctx, &text, &item)?)),
            (other, _) => Err(expected("appendable", &other)),
        }
    });
    r.native("reverse", Arity::exactly(1), |_, args| match arg(args, 0) {
        Value::Null => Ok(Value::Null),
        Value::String(text) => Ok(Value::string(text.chars().rev().collect::<String>())),
        Value::Vector(items) => Ok(Value::vector(items.iter().rev().cloned().collect())),
        list @ Value::List(_) => Ok(Value::list(
            list.list_items()
                .unwrap_or_default()
                .into_iter()
                .rev()
                .collect::<Vec<_>>(),
        )),
        other => Err(AleError::runtime(format!(
            "got {}, expected reverser",
            other.type_name()
        ))),
    });
    r.native("reverse!", Arity::exactly(1), |ctx, args| {
        let items = to_vec(ctx, &arg(args, 0))?;
        Ok(to_list_value(items.into_iter().rev().collect()))
    });
    r.native("concat", Arity::at_least(0), |_, args| {
        Ok(concat_lazy(args.to_vec()))
    });
    r.native("concat!", Arity::at_least(0), |ctx, args| {
        let mut items = Vec::new();
        for coll in args {
            items.extend(to_vec(ctx, coll)?);
        }
        Ok(to_list_value(items))
    });
    r.native("seq", Arity::exactly(1), |ctx, args| {
        let value = arg(args, 0);
        if !seq::is_seq(&value) {
            return Ok(Value::Bool(false));
        }
        Ok(if split(ctx, &value)?.is_some() {
            value
        } else {
            Value::Bool(false)
        })
    });
    r.native("seq!", Arity::exactly(1), |ctx, args| {
        let value = arg(args, 0);
        if !seq::is_seq(&value) {
            return Err(expected("sequence", &value));
        }
        Ok(if split(ctx, &value)?.is_some() {
            value
        } else {
            Value::Bool(false)
        })
    });
    r.native("seq->vector", Arity::at_least(0), |ctx, args| {
        let mut items = Vec::new();
        for coll in args {
            items.extend(to_vec(ctx, coll)?);
        }
        Ok(Value::vector(items))
    });
    r.native("seq->list", Arity::at_least(0), |ctx, args| {
        let mut items = Vec::new();
        for coll in args {
            items.extend(to_vec(ctx, coll)?);
        }
        Ok(to_list_value(items))
    });
    r.native("seq->object", Arity::at_least(0), |ctx, args| {
        let mut items = Vec::new();
        for coll in args {
            items.extend(to_vec(ctx, coll)?);
        }
        make_object(items)
    });
    r.native("object", Arity::at_least(0), |_, args| {
        make_object(args.to_vec())
    });
    r.native("assoc", Arity::exactly(2), |_, args| {
        assoc(arg(args, 0), args.get(1..).unwrap_or_default())
    });
    r.native("assoc*", Arity::at_least(1), |_, args| {
        assoc(arg(args, 0), args.get(1..).unwrap_or_default())
    });
    r.native("dissoc", Arity::exactly(2), |_, args| {
        dissoc(arg(args, 0), args.get(1..).unwrap_or_default())
    });
    r.native("dissoc*", Arity::at_least(1), |_, args| {
        dissoc(arg(args, 0), args.get(1..).unwrap_or_default())
    });
    r.native("index-of", Arity::exactly(2), |ctx, args| {
        let items = to_vec(ctx, &arg(args, 0))?;
        let target = arg(args, 1);
        Ok(items
            .iter()
            .position(|v| *v == target)
            .map_or(Value::Bool(false), |i| {
                Value::Int(i64::try_from(i).unwrap_or(i64::MAX))
            }))
    });
    r.native("range", Arity::between(0, 3), |_, args| {
        let numbers_only = args.iter().all(Value::is_number);
        if !numbers_only {
            return Err(args
                .iter()
                .find(|v| !v.is_number())
                .map_or_else(|| AleError::runtime("range"), |v| expected("number", v)));
        }
        Ok(match args {
            [] => range_lazy(Value::Int(0), None, Value::Int(1)),
            [end] => {
                let descending = compare(end, &Value::Int(0))? == Some(std::cmp::Ordering::Less);
                range_lazy(
                    Value::Int(0),
                    Some(end.clone()),
                    Value::Int(if descending { -1 } else { 1 }),
                )
            }
            [start, end] => empty_or(
                range_lazy(start.clone(), Some(end.clone()), Value::Int(1)),
                start,
                end,
                &Value::Int(1),
            )?,
            [start, end, step] => empty_or(
                range_lazy(start.clone(), Some(end.clone()), step.clone()),
                start,
                end,
                step,
            )?,
            _ => Value::Null,
        })
    });
    r.native("take", Arity::exactly(2), |_, args| {
        let n = index_of_value(&arg(args, 0))?;
        let coll = arg(args, 1);
        if !seq::is_seq(&coll) {
            return Err(expected("sequence", &coll));
        }
        Ok(take_lazy(n, coll))
    });
    r.native("drop", Arity::exactly(2), |_, args| {
        let n = index_of_value(&arg(args, 0))?;
        let coll = arg(args, 1);
        Ok(lazy(move |ctx| {
            let mut cursor = coll;
            for _ in 0..n.max(0) {
                ctx.tick()?;
                match split(ctx, &cursor)? {
                    Some((_, rest)) => cursor = rest,
                    None => return Ok(None),
                }
            }
            if !seq::is_seq(&cursor) && !matches!(cursor, Value::Cons(_)) {
                return Err(expected("pair", &cursor));
            }
            split(ctx, &cursor)
        }))
    });
    r.native("take-while", Arity::exactly(2), |_, args| {
        Ok(take_while_lazy(arg(args, 0), arg(args, 1)))
    });
    r.native("map", Arity::at_least(2), |_, args| {
        Ok(map_lazy(
            arg(args, 0),
            args.get(1..).unwrap_or_default().to_vec(),
        ))
    });
    r.native("map!", Arity::at_least(2), |ctx, args| {
        let mapped = map_lazy(arg(args, 0), args.get(1..).unwrap_or_default().to_vec());
        Ok(to_list_value(to_vec(ctx, &mapped)?))
    });
    r.native("filter", Arity::exactly(2), |_, args| {
        Ok(filter_lazy(arg(args, 0), arg(args, 1)))
    });
    r.native("mapcat", Arity::at_least(2), |ctx, args| {
        let mapped = map_lazy(arg(args, 0), args.get(1..).unwrap_or_default().to_vec());
        Ok(concat_lazy(to_vec(ctx, &mapped)?))
    });
    r.native("zip", Arity::at_least(1), |_, args| {
        let list_fn = crate::builtins::root()
            .resolve("list")
            .and_then(|e| e.get().cloned())
            .unwrap_or_default();
        Ok(map_lazy(list_fn, args.to_vec()))
    });
    r.native("partition", Arity::between(2, 3), |ctx, args| {
        let (size, step, coll) = match args {
            [n, coll] => (index_of_value(n)?, index_of_value(n)?, coll.clone()),
            [n, step, coll] => (index_of_value(n)?, index_of_value(step)?, coll.clone()),
            _ => return Ok(Value::Null),
        };
        if size <= 0 || step <= 0 {
            return Err(AleError::runtime(
                "partition size and step must be positive",
            ));
        }
        let items = to_vec(ctx, &coll)?;
        let (size, step) = (
            usize::try_from(size).unwrap_or(1),
            usize::try_from(step).unwrap_or(1),
        );
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < items.len() {
            let end = (start + size).min(items.len());
            chunks.push(Value::list(
                items.get(start..end).unwrap_or_default().to_vec(),
            ));
            start += step;
        }
        Ok(to_list_value(chunks))
    });
    r.native("cartesian-product", Arity::at_least(1), |ctx, args| {
        let mut combos: Vec<Vec<Value>> = vec![Vec::new()];
        for coll in args {
            let items = to_vec(ctx, coll)?;
            // The product of a few long sequences can be more than the machine can reserve:
            // an allocation failure would abort the process, so it is a limit error instead.
            let mut next = Vec::new();
            next.try_reserve(combos.len().saturating_mul(items.len()))
                .map_err(|_| AleError::memory_limit(ctx.limits().max_memory_bytes))?;
            for combo in &combos {
                for item in &items {
                    ctx.tick()?;
                    let mut extended = combo.clone();
                    extended.push(item.clone());
                    next.push(extended);
                }
            }
            combos = next;
        }
        Ok(to_list_value(combos.into_iter().map(Value::list).collect()))
    });
    r.native("fold-left", Arity::between(2, 3), fold_left);
    r.alias("reduce", "fold-left");
    r.alias("foldl", "fold-left");
    r.native("fold-right", Arity::between(2, 3), fold_right);
    r.alias("foldr", "fold-right");
    r.alias("fold-right!", "fold-right");
    r.native("bytes", Arity::at_least(0), |_, args| {
        let bytes =
            args.iter()
                .map(|v| match v {
                    Value::Int(i) => u8::try_from(*i)
                        .map_err(|_| AleError::runtime(format!("{i} is not a byte"))),
                    other => Err(expected("integer", other)),
                })
                .collect::<AleResult<Vec<u8>>>()?;
        Ok(Value::Bytes(Arc::new(bytes)))
    });
    r.native("%lazy-seq", Arity::exactly(1), |_, args| {
        let thunk = arg(args, 0);
        Ok(lazy(move |ctx| {
            let produced = ctx.apply(&thunk, Vec::new())?;
            if !seq::is_seq(&produced) && !matches!(produced, Value::Cons(_)) {
                return Err(expected("sequence", &produced));
            }
            split(ctx, &produced)
        }))
    });
}

fn make_object(items: Vec<Value>) -> AleResult<Value> {
    if !items.len().is_multiple_of(2) {
        return Err(AleError::runtime(
            "map must contain an even number of elements",
        ));
    }
    let mut map = ObjectMap::with_capacity(items.len() / 2);
    let mut iter = items.into_iter();
    while let (Some(key), Some(value)) = (iter.next(), iter.next()) {
        map.insert(key, value);
    }
    Ok(Value::object(map))
}

fn assoc(target: Value, pairs: &[Value]) -> AleResult<Value> {
    let mut map = match target {
        Value::Object(map) => map.0.clone(),
        Value::Null => ObjectMap::new(),
        other => return Err(expected("mapped", &other)),
    };
    for pair in pairs {
        match pair {
            Value::Cons(kv) => {
                map.insert(kv.0.clone(), kv.1.clone());
            }
            Value::List(node) => {
                map.insert(
                    node.first.clone(),
                    node.rest.clone().map_or(Value::Null, Value::List),
                );
            }
            other => return Err(expected("pair", other)),
        }
    }
    Ok(Value::object(map))
}

fn dissoc(target: Value, keys: &[Value]) -> AleResult<Value> {
    let mut map = match target {
        Value::Object(map) => map.0.clone(),
        other => return Err(expected("mapped", &other)),
    };
    for key in keys {
        map.remove(key);
    }
    Ok(Value::object(map))
}

fn fold_left(ctx: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let (f, init, coll) = match args {
        [f, coll] => {
            let items = to_vec(ctx, coll)?;
            let mut items = items.into_iter();
            match items.next() {
                None => return ctx.apply(f, Vec::new()),
                Some(first) => {
                    let mut acc = first;
                    for item in items {
                        acc = ctx.apply(f, vec![acc, item])?;
                    }
                    return Ok(acc);
                }
            }
        }
        [f, init, coll] => (f, init.clone(), coll),
        _ => return Ok(Value::Null),
    };
    let mut acc = init;
    let mut cursor = coll.clone();
    while let Some((item, rest)) = split(ctx, &cursor)? {
        acc = ctx.apply(f, vec![acc, item])?;
        cursor = rest;
    }
    Ok(acc)
}

fn fold_right(ctx: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let (f, init, items) = match args {
        [f, coll] => {
            let mut items = to_vec(ctx, coll)?;
            match items.pop() {
                None => return ctx.apply(f, Vec::new()),
                Some(last) => (f, last, items),
            }
        }
        [f, init, coll] => (f, init.clone(), to_vec(ctx, coll)?),
        _ => return Ok(Value::Null),
    };
    let mut acc = init;
    for item in items.into_iter().rev() {
        acc = ctx.apply(f, vec![item, acc])?;
    }
    Ok(acc)
}

/// `text` followed by the display form of `item`, within the output budget.
fn joined_text(ctx: &Ctx, text: &str, item: &Value) -> AleResult<String> {
    let joined = format!("{text}{}", ctx.display_text(item)?);
    if joined.len() > ctx.limits().max_output_bytes {
        return Err(ctx.output_too_large());
    }
    Ok(joined)
}
