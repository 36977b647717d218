//! Arithmetic and numeric comparison.

use std::cmp::Ordering;

use super::Registry;
use crate::error::{AleError, AleResult};
use crate::eval::Ctx;
use crate::number::{Op, arithmetic, compare, expected_number, negate};
use crate::proc::Arity;
use crate::value::Value;

fn fold(op: Op, identity: i64, args: &[Value]) -> AleResult<Value> {
    match args {
        [] => Ok(Value::Int(identity)),
        [single] => {
            if single.is_number() {
                Ok(single.clone())
            } else {
                Err(expected_number(single))
            }
        }
        [first, rest @ ..] => rest
            .iter()
            .try_fold(first.clone(), |acc, next| arithmetic(op, &acc, next)),
    }
}

fn chain(args: &[Value], accept: fn(Ordering) -> bool) -> AleResult<Value> {
    for value in args {
        if !value.is_number() {
            return Err(expected_number(value));
        }
    }
    let mut result = true;
    for pair in args.windows(2) {
        if let [a, b] = pair {
            match compare(a, b)? {
                Some(ordering) if accept(ordering) => {}
                _ => result = false,
            }
        }
    }
    Ok(Value::Bool(result))
}

fn add(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    fold(Op::Add, 0, args)
}

fn mul(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    fold(Op::Mul, 1, args)
}

fn sub(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    match args {
        [single] => negate(single),
        _ => fold(Op::Sub, 0, args),
    }
}

fn div(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    match args {
        [single] => arithmetic(Op::Div, &Value::Int(1), single),
        _ => fold(Op::Div, 1, args),
    }
}

fn modulo(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    fold(Op::Mod, 0, args)
}

pub(super) fn register(r: &mut Registry<'_>) {
    r.native("+", Arity::at_least(0), add);
    r.native("*", Arity::at_least(0), mul);
    r.native("-", Arity::at_least(1), sub);
    r.native("/", Arity::at_least(1), div);
    r.native("mod", Arity::at_least(2), modulo);
    r.alias("modulo", "mod");
    r.native("inc", Arity::exactly(1), |_, args| {
        arithmetic(
            Op::Add,
            args.first().unwrap_or(&Value::Null),
            &Value::Int(1),
        )
    });
    r.native("dec", Arity::exactly(1), |_, args| {
        arithmetic(
            Op::Sub,
            args.first().unwrap_or(&Value::Null),
            &Value::Int(1),
        )
    });
    r.native("=", Arity::at_least(1), equal);
    r.native("!=", Arity::at_least(1), |ctx, args| {
        equal(ctx, args).map(|v| Value::Bool(!v.is_truthy()))
    });
    r.native("<", Arity::at_least(1), |_, args| {
        chain(args, |o| o == Ordering::Less)
    });
    r.native("<=", Arity::at_least(1), |_, args| {
        chain(args, |o| o != Ordering::Greater)
    });
    r.native(">", Arity::at_least(1), |_, args| {
        chain(args, |o| o == Ordering::Greater)
    });
    r.native(">=", Arity::at_least(1), |_, args| {
        chain(args, |o| o != Ordering::Less)
    });
}

/// `=`: numbers compare numerically; any other values structurally (contract decision 16, so
/// that `(= status "active")` works as Argyll's documentation promises).
/// `=` (decision 16): numbers by value across types, anything else structurally, each node
/// compared costing a step.
fn equal(ctx: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let Some((first, rest)) = args.split_first() else {
        return Err(AleError::runtime("got 0 arguments, expected 1 or more"));
    };
    for other in rest {
        let same = if first.is_number() && other.is_number() {
            compare(first, other)? == Some(Ordering::Equal)
        } else {
            first.equal_counting(other, &mut || ctx.tick())?
        };
        if !same {
            return Ok(Value::Bool(false));
        }
    }
    Ok(Value::Bool(true))
}
