//! The embedding API used by Argyll's script runner: compile a script once for a set of input
//! names, call it many times with JSON inputs, get JSON outputs or a predicate verdict.

use std::sync::Arc;

use serde_json::{Map, Number, Value as Json};

use crate::builtins::root;
use crate::error::{AleError, AleResult};
use crate::eval::{Ctx, Limits, MemoryBudget, eval_form};
use crate::ns::Namespace;
use crate::print::{display_form, display_form_within};
use crate::read::read_all;
use crate::seq::realize_deep;
use crate::value::{ObjectMap, Value};

/// A compiled script or predicate: a lambda over the step's runtime inputs, in sorted order.
///
/// `Send + Sync`: one compiled program serves every flow and thread.
#[derive(Clone)]
pub struct Program {
    procedure: Value,
    arg_names: Arc<[String]>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("arg_names", &self.arg_names)
            .finish_non_exhaustive()
    }
}

/// Evaluates every form of `source` in a fresh namespace and returns the last value, with lazy
/// sequences realised. `setup` sources run first in the same namespace.
pub fn eval_source(setup: &[&str], source: &str, limits: Limits) -> AleResult<(Value, String)> {
    let ns = Namespace::new("", Some(root()));
    let mut ctx = Ctx::new(limits);
    ctx.out_bound = true;
    for part in setup {
        run_forms(&mut ctx, &ns, part)?;
    }
    let value = run_forms(&mut ctx, &ns, source)?;
    let value = realize_deep(&mut ctx, &value)?;
    Ok((value, ctx.out))
}

fn run_forms(ctx: &mut Ctx, ns: &Arc<Namespace>, source: &str) -> AleResult<Value> {
    let mut reader = crate::read::Reader::new(source);
    let mut last = Value::Null;
    while let Some(form) = reader.next_form()? {
        last = eval_form(ctx, ns, &form)?;
    }
    Ok(last)
}

impl Program {
    /// Compiles `script` as the body of `(lambda (<arg_names>) <script>)`, as the original does;
    /// the names should be the step's runtime inputs sorted by byte order.
    ///
    /// Compile-time checks run here: syntax, unknown names (a misspelt input is an error),
    /// special-form syntax and the arity of calls to builtins.
    pub fn compile(script: &str, arg_names: &[&str]) -> AleResult<Program> {
        Self::compile_with_limits(script, arg_names, Limits::default())
    }

    /// [`Program::compile`] with explicit budgets for macro expansion.
    pub fn compile_with_limits(
        script: &str,
        arg_names: &[&str],
        limits: Limits,
    ) -> AleResult<Program> {
        for name in arg_names {
            if crate::read::parse_symbol(name).is_none_or(|s| s.domain.is_some())
                || name
                    .chars()
                    .any(|c| c.is_whitespace() || "()[]{}\"';`,".contains(c))
            {
                return Err(AleError::compile(format!(
                    "invalid argument name for a script: {name:?}"
                )));
            }
        }
        let source = format!("(lambda ({}) {script})", arg_names.join(" "));
        let forms = read_all(&source)?;
        let [form] = forms.as_slice() else {
            return Err(AleError::compile("script must be a single expression"));
        };
        let ns = Namespace::new("", Some(root()));
        let mut ctx = Ctx::new(limits);
        let procedure = eval_form(&mut ctx, &ns, form)?;
        if !crate::compile::is_lambda(&procedure) {
            return Err(AleError::compile(format!(
                "not a procedure, got: {}",
                procedure.type_name()
            )));
        }
        Ok(Program {
            procedure,
            arg_names: arg_names.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    /// The input names, in argument order.
    pub fn arg_names(&self) -> &[String] {
        &self.arg_names
    }

    /// Calls the program with `inputs` (absent names are `null`) and returns the raw Ale value,
    /// lazy sequences realised.
    pub fn call(&self, inputs: &Map<String, Json>, limits: Limits) -> AleResult<Value> {
        let mut ctx = Ctx::new(limits);
        self.call_in(&mut ctx, inputs)
    }

    /// [`Program::call`] in `ctx`, which meters the run's memory from the conversion of its
    /// inputs on.
    fn call_in(&self, ctx: &mut Ctx, inputs: &Map<String, Json>) -> AleResult<Value> {
        let args = self
            .arg_names
            .iter()
            .map(|name| inputs.get(name).map_or(Value::Null, json_to_ale))
            .collect();
        let value = ctx.apply(&self.procedure, args)?;
        realize_deep(ctx, &value)
    }

    /// Runs a script step: an object result is the output map, anything else is
    /// `{"result": value}`.
    pub fn run_script(
        &self,
        inputs: &Map<String, Json>,
        limits: Limits,
    ) -> AleResult<Map<String, Json>> {
        let mut ctx = Ctx::new(limits);
        let value = self.call_in(&mut ctx, inputs)?;
        // The JSON of a value can be far larger than the value (shared parts are written out
        // each time), so the conversion is metered too.
        let memory = ctx.memory_budget();
        let json = JsonWriter::new(limits.max_output_bytes, Some(memory)).value(&value, 0)?;
        memory.check()?;
        match json {
            Json::Object(map) if matches!(value, Value::Object(_)) => Ok(map),
            other => {
                let mut outputs = Map::new();
                outputs.insert("result".to_owned(), other);
                Ok(outputs)
            }
        }
    }

    /// Evaluates a predicate: true unless the result is exactly `#f`.
    pub fn run_predicate(&self, inputs: &Map<String, Json>, limits: Limits) -> AleResult<bool> {
        Ok(self.call(inputs, limits)?.is_truthy())
    }
}

/// JSON to Ale: objects get keyword keys, arrays become vectors, integral JSON numbers written
/// without a fraction become integers and the rest floats, `null` is the empty list.
pub fn json_to_ale(value: &Json) -> Value {
    crate::eval::with_stack(|| json_to_ale_inner(value))
}

fn json_to_ale_inner(value: &Json) -> Value {
    match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => match n.as_u64() {
                Some(u) => crate::number::from_big(u.into()),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
        },
        Json::String(s) => Value::string(s.as_str()),
        Json::Array(items) => Value::vector(items.iter().map(json_to_ale).collect()),
        Json::Object(map) => {
            let mut object = ObjectMap::with_capacity(map.len());
            for (key, item) in map {
                object.insert(Value::keyword(key.as_str()), json_to_ale(item));
            }
            Value::object(object)
        }
    }
}

/// Ale to JSON (`ale.md` §1.5): keywords become their names, lists and vectors arrays, `()`
/// null, object keys their display text; ratios, big integers and other values their printed
/// text. Lazy sequences must be realised first ([`Program::call`] does). Non-finite floats
/// cannot be JSON and are an error.
pub fn ale_to_json(value: &Value) -> AleResult<Json> {
    ale_to_json_within(value, crate::print::DEFAULT_PRINT_BUDGET)
}

/// [`ale_to_json`] refusing results whose JSON text would exceed about `max_bytes` (each
/// value counts at least one byte, strings their length): structure sharing makes small values
/// with huge expansions cheap to build.
pub fn ale_to_json_within(value: &Value, max_bytes: usize) -> AleResult<Json> {
    JsonWriter::new(max_bytes, None).value(value, 0)
}

/// serde_json reads at most 128 levels of nesting; deeper outputs could be written but never
/// read back, so they are refused here.
const MAX_JSON_DEPTH: usize = 128;

struct JsonWriter {
    left: usize,
    max_bytes: usize,
    memory: Option<MemoryBudget>,
}

impl JsonWriter {
    fn new(max_bytes: usize, memory: Option<MemoryBudget>) -> Self {
        JsonWriter {
            left: max_bytes,
            max_bytes,
            memory,
        }
    }

    fn spend(&mut self, bytes: usize) -> AleResult<()> {
        self.left = self
            .left
            .checked_sub(bytes.max(1))
            .ok_or_else(|| AleError::output_too_large(self.max_bytes))?;
        if let Some(memory) = &self.memory {
            memory.check()?;
        }
        Ok(())
    }

    fn text(&mut self, value: &Value) -> AleResult<String> {
        let text = display_form_within(value, self.left)
            .ok_or_else(|| AleError::output_too_large(self.max_bytes))?;
        self.spend(text.len())?;
        Ok(text)
    }

    fn items<'a>(
        &mut self,
        items: impl Iterator<Item = &'a Value>,
        depth: usize,
    ) -> AleResult<Json> {
        let mut out = Vec::new();
        for item in items {
            out.push(self.value(item, depth + 1)?);
        }
        Ok(Json::Array(out))
    }

    fn value(&mut self, value: &Value, depth: usize) -> AleResult<Json> {
        if depth >= MAX_JSON_DEPTH {
            return Err(AleError::runtime(format!(
                "output nested too deeply for JSON (more than {MAX_JSON_DEPTH} levels)"
            )));
        }
        self.spend(1)?;
        Ok(match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::Number(Number::from(*i)),
            Value::Float(f) => Json::Number(Number::from_f64(*f).ok_or_else(|| {
                AleError::runtime(format!("cannot convert {} to JSON", display_form(value)))
            })?),
            Value::Keyword(name) => {
                self.spend(name.len())?;
                Json::String(name.to_string())
            }
            Value::String(text) => {
                self.spend(text.len())?;
                Json::String(text.to_string())
            }
            Value::Symbol(_) => Json::String(self.text(value)?),
            Value::Vector(items) => self.items(items.iter(), depth)?,
            Value::List(_) => {
                let items = value.list_items().unwrap_or_default();
                self.items(items.iter(), depth)?
            }
            Value::Object(map) => {
                let mut out = Map::new();
                for (key, item) in map.iter() {
                    // Go's `%v` of the key: keyword names, raw strings, `true`/`false`.
                    let key = match key {
                        Value::Keyword(name) => {
                            self.spend(name.len())?;
                            name.to_string()
                        }
                        Value::Bool(b) => b.to_string(),
                        other => self.text(other)?,
                    };
                    let item = self.value(item, depth + 1)?;
                    out.insert(key, item);
                }
                Json::Object(out)
            }
            Value::Lazy(seq) => match seq.realized_prefix() {
                Some(items) => self.items(items.iter(), depth)?,
                None => Json::String(self.text(value)?),
            },
            other => Json::String(self.text(other)?),
        })
    }
}
