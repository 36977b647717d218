//! The core macros, written in Rust: each turns a form into another form built from qualified
//! `ale/...` names, so that user bindings cannot capture them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Registry;
use crate::error::{AleError, AleResult};
use crate::eval::Ctx;
use crate::print::reader_form;
use crate::proc::Arity;
use crate::value::{Symbol, Value};

fn ale(name: &str) -> Value {
    Value::Symbol(Symbol::qualified("ale", name))
}

fn call(name: &str, args: impl IntoIterator<Item = Value>) -> Value {
    let mut items = vec![ale(name)];
    items.extend(args);
    Value::list(items)
}

fn temp(prefix: &str) -> Value {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Value::symbol(&format!("{prefix}#{n}"))
}

fn pair(a: Value, b: Value) -> Value {
    Value::vector(vec![a, b])
}

fn is_local(value: &Value) -> bool {
    matches!(value, Value::Symbol(Symbol { domain: None, .. }))
}

fn compile_error(message: String) -> AleError {
    AleError::compile(message)
}

fn define(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let Some((head, rest)) = args.split_first() else {
        return Ok(Value::Null);
    };
    match head {
        Value::List(node) => {
            let params = node.rest.clone().map_or(Value::Null, Value::List);
            define_function(node.first.clone(), params, rest)
        }
        Value::Cons(cell) => define_function(cell.0.clone(), cell.1.clone(), rest),
        name => Ok(call(
            "%define",
            [name.clone()].into_iter().chain(rest.iter().cloned()),
        )),
    }
}

fn define_function(name: Value, params: Value, body: &[Value]) -> AleResult<Value> {
    let lambda = call("lambda", [params].into_iter().chain(body.iter().cloned()));
    Ok(call(
        "%define",
        [name.clone(), call("label", [name, lambda])],
    ))
}

fn label(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let [name, form] = args else {
        return Err(Arity::exactly(2).mismatch(args.len()));
    };
    if !is_local(name) {
        return Err(compile_error(format!(
            "unexpected case syntax: {}",
            reader_form(name)
        )));
    }
    Ok(call(
        "let-rec",
        [pair(name.clone(), form.clone()), name.clone()],
    ))
}

fn lambda_rec(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let Some((name, rest)) = args.split_first() else {
        return Ok(Value::Null);
    };
    if !is_local(name) {
        return Err(compile_error(format!(
            "unexpected case syntax: {}",
            reader_form(name)
        )));
    }
    Ok(call(
        "label",
        [name.clone(), call("lambda", rest.iter().cloned())],
    ))
}

fn define_lambda(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let Some((name, rest)) = args.split_first() else {
        return Ok(Value::Null);
    };
    if !is_local(name) {
        return Err(compile_error(format!(
            "got {}, expected local",
            crate::compile::describe_value(name)
        )));
    }
    Ok(call(
        "%define",
        [
            name.clone(),
            call(
                "lambda-rec",
                [name.clone()].into_iter().chain(rest.iter().cloned()),
            ),
        ],
    ))
}

fn define_macro(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let Some((head, rest)) = args.split_first() else {
        return Ok(Value::Null);
    };
    let (name, lambda) = match head {
        Value::List(node) => {
            let params = node.rest.clone().map_or(Value::Null, Value::List);
            (
                node.first.clone(),
                call("lambda", [params].into_iter().chain(rest.iter().cloned())),
            )
        }
        Value::Cons(cell) => (
            cell.0.clone(),
            call(
                "lambda",
                [cell.1.clone()].into_iter().chain(rest.iter().cloned()),
            ),
        ),
        name => (name.clone(), call("lambda", rest.iter().cloned())),
    };
    Ok(call("%define", [name, call("macro", [lambda])]))
}

fn letfn(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let Some((spec, body)) = args.split_first() else {
        return Ok(Value::Null);
    };
    let forms = match spec {
        Value::Vector(items) => items.0.clone(),
        other => {
            return Err(compile_error(format!(
                "unexpected binding syntax: {}",
                reader_form(other)
            )));
        }
    };
    let mut bindings = Vec::with_capacity(forms.len());
    for form in forms {
        let name = form.list_items().and_then(|items| items.get(1).cloned());
        match name {
            Some(name) if is_local(&name) => bindings.push(pair(name, form)),
            _ => {
                return Err(compile_error(format!(
                    "unexpected binding syntax: {}",
                    reader_form(&form)
                )));
            }
        }
    }
    Ok(call(
        "let-rec",
        [Value::list(bindings)]
            .into_iter()
            .chain(body.iter().cloned()),
    ))
}

fn thunk(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    Ok(call(
        "lambda",
        [Value::Null].into_iter().chain(args.iter().cloned()),
    ))
}

fn and(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    Ok(match args {
        [] => Value::Bool(true),
        [single] => single.clone(),
        [first, rest @ ..] => {
            let t = temp("and");
            call(
                "let",
                [
                    pair(t.clone(), first.clone()),
                    call("if", [t.clone(), call("and", rest.iter().cloned()), t]),
                ],
            )
        }
    })
}

fn or(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    Ok(match args {
        [] => Value::Bool(false),
        [single] => single.clone(),
        [first, rest @ ..] => {
            let t = temp("or");
            call(
                "let",
                [
                    pair(t.clone(), first.clone()),
                    call("if", [t.clone(), t, call("or", rest.iter().cloned())]),
                ],
            )
        }
    })
}

fn bindings(spec: &Value) -> AleResult<Vec<Value>> {
    match spec {
        Value::Vector(_) => Ok(vec![spec.clone()]),
        Value::Null | Value::List(_) => Ok(spec.list_items().unwrap_or_default()),
        other => Err(compile_error(format!(
            "unexpected binding syntax: {}",
            reader_form(other)
        ))),
    }
}

fn let_star(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let Some((spec, body)) = args.split_first() else {
        return Ok(Value::Null);
    };
    let bindings = bindings(spec)?;
    let mut form = call("begin", body.iter().cloned());
    for binding in bindings.into_iter().rev() {
        form = call("let", [binding, form]);
    }
    Ok(form)
}

fn cond(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let Some((clause, rest)) = args.split_first() else {
        return Ok(Value::Null);
    };
    match clause {
        Value::Vector(parts) if parts.len() == 2 => {
            let (test, expr) = (
                parts.first().cloned().unwrap_or_default(),
                parts.get(1).cloned().unwrap_or_default(),
            );
            let otherwise = if rest.is_empty() {
                Value::Null
            } else {
                let mut items = vec![Value::symbol("cond")];
                items.extend(rest.iter().cloned());
                Value::list(items)
            };
            Ok(call("if", [test, expr, otherwise]))
        }
        other => Err(AleError::runtime(format!(
            "invalid cond clause: {}",
            reader_form(other)
        ))),
    }
}

fn case(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let Some((subject, clauses)) = args.split_first() else {
        return Ok(Value::Null);
    };
    let t = temp("case");
    let mut form = call("raise", [Value::string("no cases could be matched")]);
    for clause in clauses.iter().rev() {
        let Value::Vector(parts) = clause else {
            return Err(AleError::runtime(format!(
                "invalid case clause: {}",
                reader_form(clause)
            )));
        };
        let [test, result] = parts.as_slice() else {
            return Err(AleError::runtime(format!(
                "invalid case clause: {}",
                reader_form(clause)
            )));
        };
        let options = match test {
            Value::List(_) => test.list_items().unwrap_or_default(),
            other => vec![other.clone()],
        };
        let checks = options
            .into_iter()
            .map(|option| call("eq", [t.clone(), call("quote", [option])]));
        form = call("if", [call("or", checks), result.clone(), form]);
    }
    Ok(call("let", [pair(t, subject.clone()), form]))
}

fn when(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let Some((test, body)) = args.split_first() else {
        return Ok(Value::Null);
    };
    Ok(call(
        "if",
        [test.clone(), call("begin", body.iter().cloned())],
    ))
}

fn when_not(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let Some((test, body)) = args.split_first() else {
        return Ok(Value::Null);
    };
    Ok(call(
        "if",
        [
            test.clone(),
            Value::Null,
            call("begin", body.iter().cloned()),
        ],
    ))
}

fn unless(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    match args {
        [test, then] => Ok(call("if", [test.clone(), Value::Null, then.clone()])),
        [test, then, otherwise] => Ok(call("if", [test.clone(), otherwise.clone(), then.clone()])),
        _ => Err(Arity::between(2, 3).mismatch(args.len())),
    }
}

fn if_let(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let (binding, then, otherwise) = match args {
        [b, t] => (b, t.clone(), Value::Null),
        [b, t, o] => (b, t.clone(), o.clone()),
        _ => return Err(Arity::between(2, 3).mismatch(args.len())),
    };
    let Value::Vector(parts) = binding else {
        return Err(compile_error(format!(
            "unexpected binding syntax: {}",
            reader_form(binding)
        )));
    };
    let [name, value] = parts.as_slice() else {
        return Err(compile_error("binding must be paired".into()));
    };
    let t = temp("if-let");
    Ok(call(
        "let",
        [
            pair(t.clone(), value.clone()),
            call(
                "if",
                [
                    t.clone(),
                    call("let", [pair(name.clone(), t), then]),
                    otherwise,
                ],
            ),
        ],
    ))
}

fn when_let(ctx: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let Some((binding, body)) = args.split_first() else {
        return Ok(Value::Null);
    };
    if_let(ctx, &[binding.clone(), call("begin", body.iter().cloned())])
}

fn thread(value: Value, step: &Value, last: bool) -> Value {
    match step {
        Value::List(_) => {
            let mut items = step.list_items().unwrap_or_default();
            if last {
                items.push(value);
            } else {
                items.insert(1.min(items.len()), value);
            }
            Value::list(items)
        }
        other => Value::list([other.clone(), value]),
    }
}

fn thread_first(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let Some((value, steps)) = args.split_first() else {
        return Ok(Value::Null);
    };
    Ok(steps
        .iter()
        .fold(value.clone(), |acc, step| thread(acc, step, false)))
}

fn thread_last(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let Some((value, steps)) = args.split_first() else {
        return Ok(Value::Null);
    };
    Ok(steps
        .iter()
        .fold(value.clone(), |acc, step| thread(acc, step, true)))
}

fn some_thread(args: &[Value], last: bool) -> AleResult<Value> {
    let Some((value, steps)) = args.split_first() else {
        return Ok(Value::Null);
    };
    let t = temp("some");
    let mut form = t.clone();
    for step in steps.iter().rev() {
        let inner = form;
        form = call(
            "let",
            [
                pair(t.clone(), thread(t.clone(), step, last)),
                call("if", [call("null?", [t.clone()]), Value::Null, inner]),
            ],
        );
    }
    // The first value is checked too.
    Ok(call(
        "let",
        [
            pair(t.clone(), value.clone()),
            call("if", [call("null?", [t.clone()]), Value::Null, form]),
        ],
    ))
}

fn cond_thread(args: &[Value], last: bool) -> AleResult<Value> {
    let Some((value, clauses)) = args.split_first() else {
        return Ok(Value::Null);
    };
    let t = temp("cond");
    let mut body = vec![];
    for clause in clauses {
        let Value::Vector(parts) = clause else {
            return Err(AleError::runtime(format!(
                "invalid cond clause: {}",
                reader_form(clause)
            )));
        };
        let [test, step] = parts.as_slice() else {
            return Err(AleError::runtime(format!(
                "invalid cond clause: {}",
                reader_form(clause)
            )));
        };
        body.push(pair(
            t.clone(),
            call(
                "if",
                [
                    Value::list([test.clone(), t.clone()]),
                    thread(t.clone(), step, last),
                    t.clone(),
                ],
            ),
        ));
    }
    let mut form = t.clone();
    for binding in body.into_iter().rev() {
        form = call("let", [binding, form]);
    }
    Ok(call("let", [pair(t, value.clone()), form]))
}

fn let_thread(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let Some((binding, steps)) = args.split_first() else {
        return Ok(Value::Null);
    };
    let Value::Vector(parts) = binding else {
        return Err(compile_error(format!(
            "unexpected binding syntax: {}",
            reader_form(binding)
        )));
    };
    let [name, value] = parts.as_slice() else {
        return Err(compile_error("binding must be paired".into()));
    };
    let mut form = name.clone();
    for step in steps.iter().rev() {
        form = call("let", [pair(name.clone(), step.clone()), form]);
    }
    Ok(call("let", [pair(name.clone(), value.clone()), form]))
}

fn method_call(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let [target, method, rest @ ..] = args else {
        return Err(Arity::at_least(2).mismatch(args.len()));
    };
    let mut items = vec![call("get", [target.clone(), method.clone()])];
    items.extend(rest.iter().cloned());
    Ok(Value::list(items))
}

fn lazy_seq(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    Ok(call(
        "%lazy-seq",
        [call(
            "lambda",
            [Value::Null].into_iter().chain(args.iter().cloned()),
        )],
    ))
}

fn delay(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    Ok(call(
        "%delay",
        [call(
            "lambda",
            [Value::Null].into_iter().chain(args.iter().cloned()),
        )],
    ))
}

fn for_lazy(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let Some((spec, body)) = args.split_first() else {
        return Ok(Value::Null);
    };
    let pairs = match spec {
        Value::Vector(parts) if parts.len() == 2 => vec![spec.clone()],
        Value::List(_) => spec.list_items().unwrap_or_default(),
        other => {
            return Err(AleError::runtime(format!(
                "invalid binding: {}",
                reader_form(other)
            )));
        }
    };
    for_levels(&pairs, body)
}

/// One `map` level per binding; outer levels `mapcat` the inner sequences.
fn for_levels(pairs: &[Value], body: &[Value]) -> AleResult<Value> {
    let Some((binding, inner)) = pairs.split_first() else {
        return Ok(call("begin", body.iter().cloned()));
    };
    let Value::Vector(parts) = binding else {
        return Err(AleError::runtime(format!(
            "invalid binding: {}",
            reader_form(binding)
        )));
    };
    let [name, coll] = parts.as_slice() else {
        return Err(AleError::runtime(format!(
            "invalid binding: {}",
            reader_form(binding)
        )));
    };
    let level = for_levels(inner, body)?;
    let lambda = call("lambda", [Value::list([name.clone()]), level]);
    Ok(call(
        if inner.is_empty() { "map" } else { "mapcat" },
        [lambda, coll.clone()],
    ))
}

fn for_each(ctx: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let lazy = for_lazy(ctx, args)?;
    Ok(call("last!", [call("seq->list", [lazy])]))
}

fn declare(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    Ok(call("%public", args.iter().cloned()))
}

fn negated(name: &str, args: &[Value]) -> Value {
    call("not", [call(name, args.iter().cloned())])
}

/// `` `form ``: code that rebuilds `form`, with `,x` inserting values and `,@xs` splicing.
fn syntax_quote(_: &mut Ctx, args: &[Value]) -> AleResult<Value> {
    let [form] = args else {
        return Err(Arity::exactly(1).mismatch(args.len()));
    };
    let mut gensyms = Vec::new();
    quasi(form, &mut gensyms)
}

fn unquoted<'a>(form: &'a Value, name: &str) -> Option<&'a Value> {
    let Value::List(node) = form else { return None };
    match &node.first {
        Value::Symbol(Symbol {
            domain: Some(d),
            name: n,
        }) if &**d == "ale" && &**n == name => node.rest.as_ref().map(|rest| &rest.first),
        Value::Symbol(Symbol {
            domain: None,
            name: n,
        }) if &**n == name => node.rest.as_ref().map(|rest| &rest.first),
        _ => None,
    }
}

fn quasi(form: &Value, gensyms: &mut Vec<(Arc<str>, Value)>) -> AleResult<Value> {
    if let Some(inner) = unquoted(form, "unquote") {
        return Ok(inner.clone());
    }
    match form {
        Value::Symbol(Symbol { domain: None, name }) if name.ends_with('#') && name.len() > 1 => {
            let generated = match gensyms.iter().find(|(n, _)| n == name) {
                Some((_, symbol)) => symbol.clone(),
                None => {
                    let symbol = temp(&format!("x-{}-gensym", &name[..name.len() - 1]));
                    gensyms.push((name.clone(), symbol.clone()));
                    symbol
                }
            };
            Ok(call("quote", [generated]))
        }
        Value::Symbol(Symbol { domain: None, name }) => {
            let qualified = if crate::builtins::root().resolve(name).is_some() {
                Value::Symbol(Symbol::qualified("ale", name))
            } else {
                form.clone()
            };
            Ok(call("quote", [qualified]))
        }
        Value::Symbol(_) => Ok(call("quote", [form.clone()])),
        Value::List(_) => {
            let parts = quasi_parts(&form.list_items().unwrap_or_default(), gensyms)?;
            Ok(call("seq->list", [call("concat!", parts)]))
        }
        Value::Vector(items) => {
            let parts = quasi_parts(items, gensyms)?;
            Ok(call("seq->vector", [call("concat!", parts)]))
        }
        Value::Object(map) => {
            let mut flat = Vec::with_capacity(map.len() * 2);
            for (k, v) in map.iter() {
                flat.push(k.clone());
                flat.push(v.clone());
            }
            let parts = quasi_parts(&flat, gensyms)?;
            Ok(call("seq->object", [call("concat!", parts)]))
        }
        Value::Cons(cell) => Ok(call(
            "cons",
            [quasi(&cell.0, gensyms)?, quasi(&cell.1, gensyms)?],
        )),
        Value::Null => Ok(Value::Null),
        other => Ok(other.clone()),
    }
}

fn quasi_parts(items: &[Value], gensyms: &mut Vec<(Arc<str>, Value)>) -> AleResult<Vec<Value>> {
    items
        .iter()
        .map(|item| match unquoted(item, "unquote-splicing") {
            Some(spliced) => Ok(spliced.clone()),
            None => Ok(call("list", [quasi(item, gensyms)?])),
        })
        .collect()
}

pub(super) fn register(r: &mut Registry<'_>) {
    r.macro_("define", Arity::at_least(1), define);
    r.macro_("label", Arity::exactly(2), label);
    r.macro_("lambda-rec", Arity::at_least(1), lambda_rec);
    r.macro_("define-lambda", Arity::at_least(1), define_lambda);
    r.macro_("define-macro", Arity::at_least(1), define_macro);
    r.macro_("thunk", Arity::at_least(0), thunk);
    r.macro_("letfn", Arity::at_least(1), letfn);
    r.macro_("and", Arity::at_least(0), and);
    r.macro_("or", Arity::at_least(0), or);
    r.macro_("!and", Arity::at_least(0), |_, args| {
        Ok(negated("and", args))
    });
    r.macro_("!or", Arity::at_least(0), |_, args| Ok(negated("or", args)));
    r.macro_("let*", Arity::at_least(1), let_star);
    r.macro_("cond", Arity::at_least(0), cond);
    r.macro_("case", Arity::at_least(1), case);
    r.macro_("when", Arity::at_least(1), when);
    r.macro_("when-not", Arity::at_least(1), when_not);
    r.macro_("unless", Arity::between(2, 3), unless);
    r.macro_("if-let", Arity::between(2, 3), if_let);
    r.macro_("when-let", Arity::at_least(1), when_let);
    r.macro_("->", Arity::at_least(1), thread_first);
    r.macro_("->>", Arity::at_least(1), thread_last);
    r.macro_("some->", Arity::at_least(1), |_, args| {
        some_thread(args, false)
    });
    r.macro_("some->>", Arity::at_least(1), |_, args| {
        some_thread(args, true)
    });
    r.macro_("cond->", Arity::at_least(1), |_, args| {
        cond_thread(args, false)
    });
    r.macro_("cond->>", Arity::at_least(1), |_, args| {
        cond_thread(args, true)
    });
    r.macro_("let->", Arity::at_least(1), let_thread);
    r.macro_(":", Arity::at_least(2), method_call);
    r.macro_("lazy-seq", Arity::at_least(0), lazy_seq);
    r.macro_("delay", Arity::at_least(0), delay);
    r.macro_("delay-force", Arity::at_least(0), delay);
    r.macro_("lazy", Arity::at_least(0), delay);
    r.macro_("future", Arity::at_least(0), delay);
    r.macro_("for", Arity::at_least(1), for_lazy);
    r.macro_("for-each", Arity::at_least(1), for_each);
    r.macro_("declare", Arity::at_least(0), declare);
    r.macro_("private", Arity::at_least(0), declare);
    r.macro_("syntax-quote", Arity::exactly(1), syntax_quote);
    r.native("comp", Arity::at_least(0), |_, args| {
        let steps = args.to_vec();
        Ok(crate::proc::Procedure::closure(
            Arity::at_least(0),
            move |ctx, rest| {
                let mut iter = steps.iter();
                let Some(first) = iter.next() else {
                    return Ok(rest.first().cloned().unwrap_or_default());
                };
                let mut value = ctx.apply(first, rest.to_vec())?;
                for step in iter {
                    value = ctx.apply(step, vec![value])?;
                }
                Ok(value)
            },
        ))
    });
}
