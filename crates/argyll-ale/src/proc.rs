//! Procedures: builtins written in Rust, closures made by builtins, and compiled lambdas.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::compile::Node;
use crate::error::{AleError, AleResult};
use crate::eval::Ctx;
use crate::value::Value;

/// A builtin's implementation.
pub type NativeFn = fn(&mut Ctx, &[Value]) -> AleResult<Value>;

/// A procedure made at run time by a builtin (`partial`, `constantly`, `comp`, ...).
pub type ClosureFn = Arc<dyn Fn(&mut Ctx, &[Value]) -> AleResult<Value> + Send + Sync>;

/// How many arguments a procedure takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arity {
    /// At least this many.
    pub min: usize,
    /// At most this many; `None` for variadic.
    pub max: Option<usize>,
}

impl Arity {
    /// Exactly `n` arguments.
    pub const fn exactly(n: usize) -> Self {
        Arity {
            min: n,
            max: Some(n),
        }
    }

    /// `n` or more arguments.
    pub const fn at_least(n: usize) -> Self {
        Arity { min: n, max: None }
    }

    /// Between `min` and `max` arguments.
    pub const fn between(min: usize, max: usize) -> Self {
        Arity {
            min,
            max: Some(max),
        }
    }

    /// Whether `n` arguments are accepted.
    pub fn accepts(&self, n: usize) -> bool {
        n >= self.min && self.max.is_none_or(|max| n <= max)
    }

    /// The error for `n` arguments: `got 2 arguments, expected 1` / `1-3` / `1 or more`.
    pub fn mismatch(&self, n: usize) -> AleError {
        AleError::runtime(format!(
            "got {n} {}, expected {}",
            plural(n),
            self.describe()
        ))
    }

    fn describe(&self) -> String {
        match self.max {
            None => format!("{} or more", self.min),
            Some(max) if max == self.min => format!("{max}"),
            Some(max) => format!("{}-{max}", self.min),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "argument" } else { "arguments" }
}

/// One parameter case of a lambda.
pub struct LambdaCase {
    /// Fixed parameters.
    pub fixed: usize,
    /// Whether extra arguments are collected into a vector bound to the last parameter.
    pub rest: bool,
    /// Slots the case's frame needs (parameters and every `let` inside).
    pub frame_size: usize,
    /// The body.
    pub body: Node,
    /// The parameter list as written, for error messages.
    pub signature: String,
}

impl LambdaCase {
    /// Whether `n` arguments select this case.
    pub fn accepts(&self, n: usize) -> bool {
        if self.rest {
            n >= self.fixed
        } else {
            n == self.fixed
        }
    }
}

/// Where a lambda's captured value comes from when the closure is created.
#[derive(Clone, Copy, Debug)]
pub enum CaptureFrom {
    /// A slot of the enclosing frame.
    Local(usize),
    /// A value the enclosing closure captured.
    Captured(usize),
}

/// The compiled, shareable part of a lambda.
pub struct LambdaTemplate {
    /// Parameter cases, first match wins.
    pub cases: Vec<LambdaCase>,
    /// What to capture from the enclosing scope.
    pub captures: Vec<CaptureFrom>,
}

impl LambdaTemplate {
    /// The case for `n` arguments.
    pub fn case_for(&self, n: usize) -> Option<&LambdaCase> {
        self.cases.iter().find(|case| case.accepts(n))
    }

    /// The arity error for `n` arguments, listing every accepted count: `expected 1-3, 5, 7 or more`.
    pub fn mismatch(&self, n: usize) -> AleError {
        AleError::runtime(format!(
            "got {n} {}, expected {}",
            plural(n),
            self.describe()
        ))
    }

    fn describe(&self) -> String {
        let mut fixed: Vec<usize> = self
            .cases
            .iter()
            .filter(|c| !c.rest)
            .map(|c| c.fixed)
            .collect();
        let rest_from = self.cases.iter().filter(|c| c.rest).map(|c| c.fixed).min();
        if let Some(from) = rest_from {
            fixed.retain(|n| *n < from);
        }
        fixed.sort_unstable();
        fixed.dedup();
        // Runs of consecutive counts: [1, 2, 3, 5] → (1, 3), (5, 5).
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for n in fixed {
            match runs.last_mut() {
                Some((_, end)) if *end + 1 == n => *end = n,
                _ => runs.push((n, n)),
            }
        }
        let mut parts: Vec<String> = Vec::new();
        let run_count = runs.len();
        for (index, (start, end)) in runs.into_iter().enumerate() {
            // A final run that reaches the variadic case joins it ("5 or more").
            if index + 1 == run_count && rest_from == Some(end + 1) {
                parts.push(format!("{start} or more"));
                return join_parts(&parts);
            }
            parts.push(if start == end {
                format!("{start}")
            } else {
                format!("{start}-{end}")
            });
        }
        if let Some(from) = rest_from {
            parts.push(format!("{from} or more"));
        }
        join_parts(&parts)
    }
}

fn join_parts(parts: &[String]) -> String {
    parts.join(", ")
}

/// A lambda closed over its captured values.
pub struct Lambda {
    /// The compiled code.
    pub template: Arc<LambdaTemplate>,
    /// Captured values (let-rec names are captured as cells).
    pub captured: Vec<Value>,
}

/// A callable procedure.
pub enum Procedure {
    /// A builtin.
    Native {
        /// Its name.
        name: &'static str,
        /// Accepted argument counts.
        arity: Arity,
        /// Its implementation.
        func: NativeFn,
    },
    /// A closure made by a builtin.
    Closure {
        /// Accepted argument counts.
        arity: Arity,
        /// Its implementation.
        func: ClosureFn,
    },
    /// A compiled lambda.
    Lambda(Lambda),
}

impl Procedure {
    /// A closure procedure.
    pub fn closure(
        arity: Arity,
        func: impl Fn(&mut Ctx, &[Value]) -> AleResult<Value> + Send + Sync + 'static,
    ) -> Value {
        Value::Procedure(Arc::new(Procedure::Closure {
            arity,
            func: Arc::new(func),
        }))
    }

    /// Checks a call with `n` arguments (used at compile time for known callees).
    pub fn check_arity(&self, n: usize) -> AleResult<()> {
        match self {
            Procedure::Native { arity, .. } | Procedure::Closure { arity, .. } => {
                if arity.accepts(n) {
                    Ok(())
                } else {
                    Err(arity.mismatch(n))
                }
            }
            Procedure::Lambda(lambda) => match lambda.template.case_for(n) {
                Some(_) => Ok(()),
                None => Err(lambda.template.mismatch(n)),
            },
        }
    }
}

/// A promise: `delay`, `future`, `lazy`.
pub struct Promise {
    state: Mutex<PromiseState>,
}

enum PromiseState {
    Pending(Value),
    Forcing,
    Done(Value),
    Failed(AleError),
}

impl Promise {
    /// A promise that calls `thunk` (a procedure of no arguments) when first forced.
    pub fn new(thunk: Value) -> Self {
        Promise {
            state: Mutex::new(PromiseState::Pending(thunk)),
        }
    }

    /// A promise already holding `value`.
    pub fn resolved(value: Value) -> Self {
        Promise {
            state: Mutex::new(PromiseState::Done(value)),
        }
    }

    /// Whether the value has been computed.
    pub fn is_resolved(&self) -> bool {
        matches!(*self.state.lock(), PromiseState::Done(_))
    }

    /// The value, computing it once.
    pub fn force(&self, ctx: &mut Ctx) -> AleResult<Value> {
        let thunk = {
            let mut state = self.state.lock();
            match std::mem::replace(&mut *state, PromiseState::Forcing) {
                PromiseState::Pending(thunk) => thunk,
                PromiseState::Done(value) => {
                    *state = PromiseState::Done(value.clone());
                    return Ok(value);
                }
                PromiseState::Failed(error) => {
                    *state = PromiseState::Failed(error.clone());
                    return Err(error);
                }
                PromiseState::Forcing => {
                    return Err(AleError::runtime("promise forced recursively"));
                }
            }
        };
        let outcome = ctx.apply(&thunk, Vec::new());
        let mut state = self.state.lock();
        *state = match &outcome {
            Ok(value) => PromiseState::Done(value.clone()),
            Err(error) => PromiseState::Failed(error.clone()),
        };
        outcome
    }
}
