//! Equality, type predicates, errors, strings, symbols and higher-order helpers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Registry;
use crate::error::{AleError, AleResult};
use crate::eval::Ctx;
use crate::print::display_form;
use crate::proc::{Arity, Procedure, Promise};
use crate::seq;
use crate::value::{Symbol, Value};

pub(super) fn register(r: &mut Registry<'_>) {
    r.native("eq", Arity::at_least(1), |_, args| {
        Ok(Value::Bool(all_eq(args)))
    });
    r.native("!eq", Arity::at_least(1), |_, args| {
        Ok(Value::Bool(!all_eq(args)))
    });
    r.native("not", Arity::exactly(1), |_, args| {
        Ok(Value::Bool(matches!(args, [Value::Bool(false)])))
    });
    r.native("identity", Arity::exactly(1), |_, args| {
        Ok(args.first().cloned().unwrap_or_default())
    });
    r.native("no-op", Arity::at_least(0), |_, _| Ok(Value::Null));
    r.native("constantly", Arity::exactly(1), |_, args| {
        let value = args.first().cloned().unwrap_or_default();
        Ok(Procedure::closure(Arity::at_least(0), move |_, _| {
            Ok(value.clone())
        }))
    });
    r.native("raise", Arity::at_least(1), |ctx, args| {
        Err(AleError::runtime(str_of(ctx, args)?))
    });
    r.native("recover", Arity::exactly(2), |ctx, args| {
        let [thunk, handler] = args else {
            return Ok(Value::Null);
        };
        match ctx.apply(thunk, Vec::new()) {
            Ok(value) => Ok(value),
            Err(error) if error.phase == crate::error::Phase::Limit => Err(error),
            Err(error) => ctx.apply(handler, vec![Value::string(error.message)]),
        }
    });
    r.native("%defer", Arity::exactly(2), |ctx, args| {
        let [thunk, cleanup] = args else {
            return Ok(Value::Null);
        };
        let outcome = ctx.apply(thunk, Vec::new());
        ctx.apply(cleanup, Vec::new())?;
        outcome
    });
    r.native("str", Arity::at_least(0), |ctx, args| {
        Ok(Value::string(str_of(ctx, args)?))
    });
    r.native("str!", Arity::at_least(0), |ctx, args| {
        let parts = args
            .iter()
            .map(|a| seq::realize_deep(ctx, a).and_then(|v| ctx.reader_text(&v)))
            .collect::<AleResult<Vec<_>>>()?;
        let text = parts.join(" ");
        if text.len() > ctx.limits().max_output_bytes {
            return Err(ctx.output_too_large());
        }
        Ok(Value::string(text))
    });
    r.native("sym", Arity::exactly(1), |_, args| {
        let text = args.first().map(display_form).unwrap_or_default();
        crate::read::parse_symbol(&text)
            .map(Value::Symbol)
            .ok_or_else(|| AleError::runtime(format!("invalid symbol: {text}")))
    });
    r.native("gensym", Arity::between(0, 1), |_, args| {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let prefix = args
            .first()
            .map(display_form)
            .unwrap_or_else(|| "gensym".into());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Ok(Value::Symbol(Symbol::local(&format!(
            "x-{prefix}-gensym-{n}"
        ))))
    });
    r.native("read", Arity::exactly(1), |_, args| {
        let Some(Value::String(text)) = args.first() else {
            return Err(AleError::runtime("got non-string, expected string"));
        };
        Ok(crate::read::read_all(text)?.pop().unwrap_or_default())
    });
    r.native("macro", Arity::exactly(1), |_, args| match args.first() {
        Some(Value::Procedure(p)) => Ok(Value::Macro(p.clone())),
        Some(other) => Err(AleError::runtime(format!(
            "got {}, expected procedure",
            other.type_name()
        ))),
        None => Ok(Value::Null),
    });
    r.native("apply", Arity::at_least(2), |ctx, args| {
        let Some((last, init)) = args.split_last() else {
            return Ok(Value::Null);
        };
        let Some((callee, fixed)) = init.split_first() else {
            return Ok(Value::Null);
        };
        if !seq::is_seq(last) {
            return Err(AleError::runtime(format!(
                "got {}, expected sequence",
                last.type_name()
            )));
        }
        let mut all = fixed.to_vec();
        all.extend(seq::to_vec(ctx, last)?);
        ctx.apply(callee, all)
    });
    r.native("partial", Arity::at_least(1), |_, args| {
        let Some((callee, bound)) = args.split_first() else {
            return Ok(Value::Null);
        };
        let (callee, bound) = (callee.clone(), bound.to_vec());
        Ok(Procedure::closure(Arity::at_least(0), move |ctx, rest| {
            let mut all = bound.clone();
            all.extend_from_slice(rest);
            ctx.apply(&callee, all)
        }))
    });
    r.native("juxt", Arity::at_least(1), |_, args| {
        let callees = args.to_vec();
        Ok(Procedure::closure(Arity::at_least(0), move |ctx, rest| {
            let results = callees
                .iter()
                .map(|c| ctx.apply(c, rest.to_vec()))
                .collect::<AleResult<Vec<_>>>()?;
            Ok(Value::vector(results))
        }))
    });
    r.native("force", Arity::exactly(1), |ctx, args| match args.first() {
        Some(Value::Promise(p)) => p.force(ctx),
        Some(other) => Ok(other.clone()),
        None => Ok(Value::Null),
    });
    r.native("%delay", Arity::exactly(1), |_, args| {
        Ok(Value::Promise(Arc::new(Promise::new(
            args.first().cloned().unwrap_or_default(),
        ))))
    });
    r.native("is-a", Arity::exactly(2), |_, args| {
        let [Value::Keyword(kind), value] = args else {
            return Err(AleError::runtime("got non-keyword, expected keyword"));
        };
        match type_matches(kind, value) {
            Some(matches) => Ok(Value::Bool(matches)),
            None => Err(AleError::runtime(format!("unknown predicate: :{kind}"))),
        }
    });
    r.native("assert-type", Arity::exactly(2), |_, args| {
        let [Value::Keyword(kind), value] = args else {
            return Err(AleError::runtime("got non-keyword, expected keyword"));
        };
        match type_matches(kind, value) {
            Some(true) => Ok(value.clone()),
            Some(false) => Err(AleError::runtime(format!(
                "got {}, expected {kind}",
                crate::compile::describe_value(value)
            ))),
            None => Err(AleError::runtime(format!("unknown predicate: :{kind}"))),
        }
    });
    for ((name, negated, test), negation) in PREDICATES.iter().zip(NEGATIONS) {
        r.native(name, Arity::at_least(1), *test);
        r.native(negated, Arity::at_least(1), *negation);
    }
    r.native("print", Arity::at_least(0), |ctx, args| {
        write_out(ctx, args, false, false)
    });
    r.native("println", Arity::at_least(0), |ctx, args| {
        write_out(ctx, args, false, true)
    });
    r.native("pr", Arity::at_least(0), |ctx, args| {
        write_out(ctx, args, true, false)
    });
    r.native("prn", Arity::at_least(0), |ctx, args| {
        write_out(ctx, args, true, true)
    });
}

fn write_out(ctx: &mut Ctx, args: &[Value], quoted: bool, newline: bool) -> AleResult<Value> {
    if !ctx.out_bound {
        return Err(AleError::runtime("name is not bound in namespace: *out*"));
    }
    let mut parts = Vec::with_capacity(args.len());
    for arg in args {
        let value = seq::realize_deep(ctx, arg)?;
        parts.push(if quoted {
            ctx.reader_text(&value)?
        } else {
            ctx.display_text(&value)?
        });
    }
    let text = parts.join(" ");
    if ctx.out.len() + text.len() > ctx.limits().max_output_bytes {
        return Err(ctx.output_too_large());
    }
    ctx.out.push_str(&text);
    if newline {
        ctx.out.push('\n');
    }
    Ok(Value::Null)
}

fn all_eq(args: &[Value]) -> bool {
    match args.split_first() {
        Some((first, rest)) => rest.iter().all(|other| other == first),
        None => true,
    }
}

/// `str`: the display forms of the arguments, nulls skipped, lazy sequences realised.
pub(crate) fn str_of(ctx: &mut Ctx, args: &[Value]) -> AleResult<String> {
    let mut out = String::new();
    for arg in args {
        if matches!(arg, Value::Null) {
            continue;
        }
        let value = seq::realize_deep(ctx, arg)?;
        out.push_str(&ctx.display_text(&value)?);
        if out.len() > ctx.limits().max_output_bytes {
            return Err(ctx.output_too_large());
        }
    }
    Ok(out)
}

type Pred = fn(&mut Ctx, &[Value]) -> AleResult<Value>;

macro_rules! predicates {
    ($( $name:literal, $negated:literal => |$v:ident| $test:expr; )+) => {
        const PREDICATES: &[(&str, &str, Pred)] = &[
            $( ($name, $negated, |_ctx, args| {
                let mut all = true;
                for $v in args {
                    let ok: bool = $test;
                    if !ok { all = false; }
                }
                Ok(Value::Bool(all))
            }), )+
        ];
        const NEGATIONS: &[Pred] = &[
            $( |_ctx, args| {
                let mut none = true;
                for $v in args {
                    let ok: bool = $test;
                    if ok { none = false; }
                }
                Ok(Value::Bool(none))
            }, )+
        ];
    };
}

predicates! {
    "null?", "!null?" => |v| matches!(v, Value::Null);
    "empty?", "!empty?" => |v| is_empty(v)?;
    "string?", "!string?" => |v| matches!(v, Value::String(_));
    "number?", "!number?" => |v| v.is_number();
    "keyword?", "!keyword?" => |v| matches!(v, Value::Keyword(_));
    "symbol?", "!symbol?" => |v| matches!(v, Value::Symbol(_));
    "local?", "!local?" => |v| matches!(v, Value::Symbol(Symbol { domain: None, .. }));
    "qualified?", "!qualified?" => |v| matches!(v, Value::Symbol(Symbol { domain: Some(_), .. }));
    "boolean?", "!boolean?" => |v| matches!(v, Value::Bool(_));
    "true?", "!true?" => |v| matches!(v, Value::Bool(true));
    "false?", "!false?" => |v| matches!(v, Value::Bool(false));
    "list?", "!list?" => |v| matches!(v, Value::Null | Value::List(_));
    "vector?", "!vector?" => |v| matches!(v, Value::Vector(_));
    "object?", "!object?" => |v| matches!(v, Value::Object(_));
    "mapped?", "!mapped?" => |v| matches!(v, Value::Object(_));
    "seq?", "!seq?" => |v| seq::is_seq(v);
    "pair?", "!pair?" => |v| matches!(v, Value::List(_) | Value::Cons(_) | Value::Lazy(_)) || (seq::is_seq(v) && !matches!(v, Value::Null) && !is_empty(v)?);
    "cons?", "!cons?" => |v| matches!(v, Value::Cons(_));
    "counted?", "!counted?" => |v| matches!(v, Value::Null | Value::List(_) | Value::Vector(_) | Value::String(_) | Value::Object(_) | Value::Bytes(_));
    "indexed?", "!indexed?" => |v| matches!(v, Value::Null | Value::List(_) | Value::Vector(_) | Value::String(_) | Value::Bytes(_));
    "reversible?", "!reversible?" => |v| matches!(v, Value::Null | Value::List(_) | Value::Vector(_) | Value::String(_));
    "appendable?", "!appendable?" => |v| matches!(v, Value::Vector(_) | Value::String(_));
    "atom?", "!atom?" => |v| !matches!(v, Value::List(_) | Value::Vector(_) | Value::Object(_) | Value::Cons(_) | Value::Lazy(_));
    "procedure?", "!procedure?" => |v| matches!(v, Value::Procedure(_));
    "macro?", "!macro?" => |v| matches!(v, Value::Macro(_));
    "special?", "!special?" => |v| matches!(v, Value::Special(_));
    "promise?", "!promise?" => |v| matches!(v, Value::Promise(_));
    "resolved?", "!resolved?" => |v| !matches!(v, Value::Promise(p) if !p.is_resolved());
    "promise-forced?", "!promise-forced?" => |v| !matches!(v, Value::Promise(p) if !p.is_resolved());
    "bytes?", "!bytes?" => |v| matches!(v, Value::Bytes(_));
    "any?", "!any?" => |_v| true;
    "zero?", "!zero?" => |v| crate::number::is_zero(v)?;
    "even?", "!even?" => |v| crate::number::is_even(v)?;
    "odd?", "!odd?" => |v| !crate::number::is_even(v)? && !matches!(v, Value::Ratio(_));
    "nan?", "!nan?" => |v| matches!(v, Value::Float(f) if f.is_nan());
    "inf?", "!inf?" => |v| matches!(v, Value::Float(f) if *f == f64::INFINITY);
    "-inf?", "!-inf?" => |v| matches!(v, Value::Float(f) if *f == f64::NEG_INFINITY);
}

fn is_empty(value: &Value) -> AleResult<bool> {
    Ok(match value {
        Value::Null => true,
        Value::List(_) | Value::Cons(_) => false,
        Value::Vector(items) => items.is_empty(),
        Value::String(text) => text.is_empty(),
        Value::Object(map) => map.is_empty(),
        Value::Bytes(bytes) => bytes.is_empty(),
        Value::Lazy(seq) => seq.realized_prefix().is_some_and(|items| items.is_empty()),
        other => {
            return Err(AleError::runtime(format!(
                "got {}, expected sequence",
                other.type_name()
            )));
        }
    })
}

fn type_matches(kind: &str, value: &Value) -> Option<bool> {
    Some(match kind {
        "null" => matches!(value, Value::Null),
        "string" => matches!(value, Value::String(_)),
        "number" => value.is_number(),
        "integer" => matches!(value, Value::Int(_) | Value::BigInt(_)),
        "float" => matches!(value, Value::Float(_)),
        "ratio" => matches!(value, Value::Ratio(_)),
        "keyword" => matches!(value, Value::Keyword(_)),
        "symbol" => matches!(value, Value::Symbol(_)),
        "boolean" => matches!(value, Value::Bool(_)),
        "list" => matches!(value, Value::Null | Value::List(_)),
        "vector" => matches!(value, Value::Vector(_)),
        "object" => matches!(value, Value::Object(_)),
        "cons" => matches!(value, Value::Cons(_)),
        "procedure" => matches!(value, Value::Procedure(_)),
        "seq" => seq::is_seq(value),
        _ => return None,
    })
}
