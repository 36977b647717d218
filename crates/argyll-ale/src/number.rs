//! The numeric tower: integers that overflow into big integers, exact ratios and floats, with
//! contagion float > ratio > big integer > integer (`ale.md` §3.3.3).

use std::cmp::Ordering;
use std::sync::Arc;

use num_bigint::BigInt;
use num_integer::Integer;
use num_rational::BigRational;
use num_traits::{ToPrimitive, Zero};

use crate::error::AleError;
use crate::value::Value;

/// A number lifted to the widest kind of a pair of operands.
enum Pair {
    Ints(i64, i64),
    Bigs(BigInt, BigInt),
    Ratios(BigRational, BigRational),
    Floats(f64, f64),
}

/// An arithmetic operation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Op {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `mod`
    Mod,
}

pub(crate) fn expected_number(value: &Value) -> AleError {
    AleError::runtime(format!("got {}, expected number", value.type_name()))
}

fn to_big(value: &Value) -> Option<BigInt> {
    match value {
        Value::Int(i) => Some(BigInt::from(*i)),
        Value::BigInt(b) => Some((**b).clone()),
        _ => None,
    }
}

fn to_ratio(value: &Value) -> Option<BigRational> {
    match value {
        Value::Ratio(r) => Some((**r).clone()),
        other => to_big(other).map(BigRational::from_integer),
    }
}

/// The value of a number as a float.
pub fn to_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Int(i) => Some(*i as f64),
        Value::BigInt(b) => b.to_f64(),
        Value::Ratio(r) => ratio_to_f64(r),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn ratio_to_f64(r: &BigRational) -> Option<f64> {
    match (r.numer().to_f64(), r.denom().to_f64()) {
        (Some(n), Some(d)) if n.is_finite() && d.is_finite() => Some(n / d),
        _ => r.to_f64(),
    }
}

fn lift(a: &Value, b: &Value) -> Result<Pair, AleError> {
    if !a.is_number() {
        return Err(expected_number(a));
    }
    if !b.is_number() {
        return Err(expected_number(b));
    }
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => Pair::Ints(*x, *y),
        (Value::Float(_), _) | (_, Value::Float(_)) => {
            Pair::Floats(to_f64(a).unwrap_or(f64::NAN), to_f64(b).unwrap_or(f64::NAN))
        }
        (Value::Ratio(_), _) | (_, Value::Ratio(_)) => match (to_ratio(a), to_ratio(b)) {
            (Some(x), Some(y)) => Pair::Ratios(x, y),
            _ => return Err(expected_number(a)),
        },
        _ => match (to_big(a), to_big(b)) {
            (Some(x), Some(y)) => Pair::Bigs(x, y),
            _ => return Err(expected_number(a)),
        },
    })
}

/// A big integer as the narrowest value: an `Int` when it fits.
pub fn from_big(value: BigInt) -> Value {
    match value.to_i64() {
        Some(small) => Value::Int(small),
        None => Value::BigInt(Arc::new(value)),
    }
}

/// A ratio as the narrowest value: an integer when it is whole.
pub fn from_ratio(value: BigRational) -> Value {
    if value.is_integer() {
        from_big(value.to_integer())
    } else {
        Value::Ratio(Arc::new(value))
    }
}

fn divide_by_zero() -> AleError {
    AleError::runtime("divide by zero")
}

/// Applies `op` to two numbers.
pub fn arithmetic(op: Op, a: &Value, b: &Value) -> Result<Value, AleError> {
    Ok(match lift(a, b)? {
        Pair::Ints(x, y) => match op {
            Op::Add => x
                .checked_add(y)
                .map_or_else(|| from_big(BigInt::from(x) + y), Value::Int),
            Op::Sub => x
                .checked_sub(y)
                .map_or_else(|| from_big(BigInt::from(x) - y), Value::Int),
            Op::Mul => x
                .checked_mul(y)
                .map_or_else(|| from_big(BigInt::from(x) * y), Value::Int),
            Op::Div => {
                if y == 0 {
                    return Err(divide_by_zero());
                }
                from_ratio(BigRational::new(BigInt::from(x), BigInt::from(y)))
            }
            Op::Mod => {
                if y == 0 {
                    return Err(divide_by_zero());
                }
                // Floored modulo: the result has the sign of the divisor. i64::MIN mod -1 is 0.
                Value::Int(
                    x.checked_rem_euclid(y)
                        .map_or(0, |r| if r != 0 && y < 0 { r + y } else { r }),
                )
            }
        },
        Pair::Bigs(x, y) => match op {
            Op::Add => from_big(x + y),
            Op::Sub => from_big(x - y),
            Op::Mul => from_big(x * y),
            Op::Div => {
                if y.is_zero() {
                    return Err(divide_by_zero());
                }
                // Ale's quirk: exact division with a big integer (and no ratio) truncates.
                from_big(x / y)
            }
            Op::Mod => {
                if y.is_zero() {
                    return Err(divide_by_zero());
                }
                // Ale's quirk: big integers use the truncated remainder (sign of the dividend).
                from_big(x % y)
            }
        },
        Pair::Ratios(x, y) => match op {
            Op::Add => from_ratio(x + y),
            Op::Sub => from_ratio(x - y),
            Op::Mul => from_ratio(x * y),
            Op::Div => {
                if y.is_zero() {
                    return Err(divide_by_zero());
                }
                from_ratio(x / y)
            }
            Op::Mod => {
                if y.is_zero() {
                    return Err(divide_by_zero());
                }
                let quotient = (&x / &y).floor();
                from_ratio(x - y * quotient)
            }
        },
        Pair::Floats(x, y) => Value::Float(match op {
            Op::Add => x + y,
            Op::Sub => x - y,
            Op::Mul => x * y,
            Op::Div => x / y,
            Op::Mod => {
                if y == 0.0 {
                    f64::NAN
                } else {
                    let r = x % y;
                    if r != 0.0 && (r < 0.0) != (y < 0.0) {
                        r + y
                    } else {
                        r
                    }
                }
            }
        }),
    })
}

/// `-x`.
pub fn negate(value: &Value) -> Result<Value, AleError> {
    arithmetic(Op::Sub, &Value::Int(0), value).map(|v| match (value, v) {
        (Value::Float(f), _) => Value::Float(-f),
        (_, v) => v,
    })
}

/// Numeric comparison; `None` when either side is NaN (incomparable).
pub fn compare(a: &Value, b: &Value) -> Result<Option<Ordering>, AleError> {
    Ok(match lift(a, b)? {
        Pair::Ints(x, y) => Some(x.cmp(&y)),
        Pair::Bigs(x, y) => Some(x.cmp(&y)),
        Pair::Ratios(x, y) => Some(x.cmp(&y)),
        Pair::Floats(x, y) => x.partial_cmp(&y),
    })
}

/// Whether a number is zero.
pub fn is_zero(value: &Value) -> Result<bool, AleError> {
    Ok(compare(value, &Value::Int(0))? == Some(Ordering::Equal))
}

/// Whether an integer is even (`None` for non-integers).
pub fn is_even(value: &Value) -> Result<bool, AleError> {
    match value {
        Value::Int(i) => Ok(i % 2 == 0),
        Value::BigInt(b) => Ok(b.is_even()),
        Value::Ratio(_) => Ok(false),
        Value::Float(f) => Ok(f % 2.0 == 0.0),
        other => Err(expected_number(other)),
    }
}
