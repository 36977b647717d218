//! The root namespace `ale`: special forms, macros, procedures and constants.

mod core;
mod macros;
mod numeric;
mod sequences;

use std::sync::{Arc, OnceLock};

use crate::error::{AleError, AleResult};
use crate::eval::Ctx;
use crate::ns::Namespace;
use crate::proc::{Arity, NativeFn, Procedure};
use crate::value::Value;

const SPECIAL_FORMS: &[&str] = &[
    "quote",
    "if",
    "begin",
    "lambda",
    "λ",
    "let",
    "let-rec",
    "%define",
    "%public",
    "%private",
    "eval",
    "macroexpand",
    "macroexpand-1",
    "declared",
    "import",
    "%mk-ns",
    "asm",
    "special",
    "define-namespace",
];

/// The shared root namespace, built once.
pub fn root() -> Arc<Namespace> {
    static ROOT: OnceLock<Arc<Namespace>> = OnceLock::new();
    // Built once for the process, usually inside the first run: not that run's memory.
    ROOT.get_or_init(|| crate::memory::unmetered(build_root))
        .clone()
}

fn build_root() -> Arc<Namespace> {
    let ns = Namespace::new("ale", None);
    for name in SPECIAL_FORMS {
        let _ = ns.bind(name, Value::Special(Arc::from(*name)));
    }
    let mut registry = Registry { ns: &ns };
    core::register(&mut registry);
    numeric::register(&mut registry);
    sequences::register(&mut registry);
    macros::register(&mut registry);
    for (name, value) in [
        ("true", Value::Bool(true)),
        ("false", Value::Bool(false)),
        ("null", Value::Null),
        ("+inf", Value::Float(f64::INFINITY)),
        ("-inf", Value::Float(f64::NEG_INFINITY)),
        ("nan", Value::Float(f64::NAN)),
        ("*pos-inf*", Value::Float(f64::INFINITY)),
        ("*neg-inf*", Value::Float(f64::NEG_INFINITY)),
        ("*space*", Value::string(" ")),
        ("*newline*", Value::string("\n")),
    ] {
        let _ = ns.bind(name, value);
    }
    for unbound in ["*in*", "*out*", "*err*", "*env*", "*args*"] {
        ns.declare(unbound, false);
    }
    ns
}

/// Adds builtins to the root namespace.
pub(crate) struct Registry<'a> {
    ns: &'a Namespace,
}

impl Registry<'_> {
    pub(crate) fn native(&mut self, name: &'static str, arity: Arity, func: NativeFn) {
        let _ = self.ns.bind(
            name,
            Value::Procedure(Arc::new(Procedure::Native { name, arity, func })),
        );
    }

    pub(crate) fn alias(&mut self, alias: &'static str, of: &str) {
        if let Some(value) = self.ns.resolve(of).and_then(|e| e.get().cloned()) {
            let _ = self.ns.bind(alias, value);
        }
    }

    pub(crate) fn macro_(&mut self, name: &'static str, arity: Arity, func: NativeFn) {
        let _ = self.ns.bind(
            name,
            Value::Macro(Arc::new(Procedure::Native { name, arity, func })),
        );
    }
}

/// Calls a value that is not a procedure: keywords and objects look up, sequences slice,
/// integers index, booleans return themselves (`ale.md` §3.3.1).
pub fn call_value(ctx: &mut Ctx, callee: &Value, args: &[Value]) -> AleResult<Value> {
    match callee {
        Value::Keyword(_) => match args {
            [target] => sequences::get_or(ctx, target, callee, Some(Value::Null)),
            [target, default] => sequences::get_or(ctx, target, callee, Some(default.clone())),
            _ => Err(Arity::between(1, 2).mismatch(args.len())),
        },
        Value::Object(_) => match args {
            [key] => sequences::get_or(ctx, callee, key, Some(Value::Null)),
            [key, default] => sequences::get_or(ctx, callee, key, Some(default.clone())),
            _ => Err(Arity::between(1, 2).mismatch(args.len())),
        },
        Value::Int(_) => match args {
            [target] => sequences::nth(ctx, target, callee, None),
            [target, default] => sequences::nth(ctx, target, callee, Some(default.clone())),
            _ => Err(Arity::between(1, 2).mismatch(args.len())),
        },
        Value::List(_) | Value::Vector(_) | Value::String(_) | Value::Null => {
            sequences::slice(ctx, callee, args)
        }
        Value::Bool(_) => Ok(callee.clone()),
        Value::Promise(promise) => promise.force(ctx),
        Value::Macro(procedure) => ctx.apply(&Value::Procedure(procedure.clone()), args.to_vec()),
        other => Err(AleError::runtime(format!(
            "got {}, expected procedure",
            other.type_name()
        ))),
    }
}
