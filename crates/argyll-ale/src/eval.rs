//! The evaluator: runs compiled nodes with budgets on steps, depth, time and memory.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::compile::{Compiler, Node};
use crate::error::{AleError, AleResult, LimitKind};
use crate::memory::{MemoryMeter, thread_live};
use crate::ns::Namespace;
use crate::proc::{CaptureFrom, Lambda, Procedure};
use crate::value::{ObjectMap, Value};

/// Budgets for one evaluation. Exceeding one is an error of phase [`crate::Phase::Limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Evaluation steps (roughly: nodes evaluated and sequence cells realised).
    pub max_steps: u64,
    /// Nested (non-tail) procedure calls.
    pub max_depth: usize,
    /// Wall-clock time.
    pub timeout: Option<Duration>,
    /// Bytes of any one printed form (`str`, `str!`, printing) and JSON values of a script's
    /// result. Values share structure, so a value built in a few steps can be exponentially
    /// large when written out; this bounds that work and memory.
    pub max_output_bytes: usize,
    /// Live heap bytes of the run: everything it allocated (inputs converted to Ale values,
    /// strings, vectors, objects, lists, lazy sequences, numbers, its JSON result) and has not
    /// freed yet. Enforced only when the program's global allocator is a
    /// [`MeteredAlloc`](crate::MeteredAlloc) ([`metering_installed`](crate::metering_installed));
    /// checked at every evaluation step, so a run overshoots by at most what one step allocates
    /// (a builtin call: a string it prints is bounded by `max_output_bytes`, plus the buffer it
    /// was printed into).
    pub max_memory_bytes: usize,
}

/// The default of [`Limits::max_memory_bytes`]: 64 MiB, Argyll's `SCRIPT_MEMORY_LIMIT_MB`.
pub const DEFAULT_MEMORY_LIMIT: usize = 64 * 1024 * 1024;

impl Default for Limits {
    /// Generous defaults: 10⁸ steps, depth 10 000, 1 s, 16 MiB of printed output, 64 MiB of
    /// memory.
    fn default() -> Self {
        Limits {
            max_steps: 100_000_000,
            max_depth: 10_000,
            timeout: Some(Duration::from_secs(1)),
            max_output_bytes: crate::print::DEFAULT_PRINT_BUDGET,
            max_memory_bytes: DEFAULT_MEMORY_LIMIT,
        }
    }
}

/// The state of one evaluation: budgets, and the output buffer of `print`-like builtins.
///
/// A context meters the memory of its thread from its creation to its end: create it before
/// converting a run's inputs and keep it until its result is converted back.
pub struct Ctx {
    limits: Limits,
    steps: u64,
    depth: usize,
    deadline: Option<Instant>,
    memory: MemoryBudget,
    /// Text written by `print`, `println`, `pr`, `prn` (Argyll leaves `*out*` unbound; the
    /// conformance runner reads this).
    pub out: String,
    /// Whether `*out*` is bound. Argyll leaves it unbound, so printing from a script is an
    /// error there; the conformance runner binds it to `out`.
    pub out_bound: bool,
    /// Namespaces made by `define-namespace` during this evaluation (scripts cannot create
    /// namespaces that outlive their run or leak into other scripts).
    namespaces: HashMap<String, Arc<Namespace>>,
    /// Declared last so that it is dropped last: the context's own buffers are freed while the
    /// run is still metered.
    _meter: MemoryMeter,
}

/// The memory budget of a run, as the thread count at which it is exceeded: checking it is one
/// thread-local read and a comparison.
#[derive(Clone, Copy, Debug)]
pub struct MemoryBudget {
    ceiling: isize,
    max_bytes: usize,
}

impl MemoryBudget {
    /// Fails when the thread holds more than the budget.
    #[inline]
    pub fn check(&self) -> AleResult<()> {
        if thread_live() > self.ceiling {
            return Err(AleError::memory_limit(self.max_bytes));
        }
        Ok(())
    }
}

impl Ctx {
    /// A context with the given limits; the clock and the memory meter start now.
    pub fn new(limits: Limits) -> Self {
        let meter = MemoryMeter::start();
        Ctx {
            limits,
            steps: 0,
            depth: 0,
            deadline: limits.timeout.map(|t| Instant::now() + t),
            memory: MemoryBudget {
                ceiling: meter.ceiling(limits.max_memory_bytes),
                max_bytes: limits.max_memory_bytes,
            },
            out: String::new(),
            out_bound: false,
            namespaces: HashMap::new(),
            _meter: meter,
        }
    }

    /// Counts one step; fails when a budget is exhausted.
    ///
    /// Every node evaluated ticks, so this is the evaluator's hottest path: it only counts and
    /// compares (a thread-local read for memory), and leaves building errors and reading the
    /// clock to [`Ctx::tick_slow`], kept out of line so that this stays inlined.
    #[inline]
    pub fn tick(&mut self) -> AleResult<()> {
        self.steps += 1;
        if self.steps > self.limits.max_steps
            || thread_live() > self.memory.ceiling
            || self.steps & 0x3ff == 0
        {
            return self.tick_slow();
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn tick_slow(&mut self) -> AleResult<()> {
        if self.steps > self.limits.max_steps {
            return Err(AleError::limit(
                LimitKind::Steps,
                format!(
                    "evaluation step limit exceeded ({} steps)",
                    self.limits.max_steps
                ),
            ));
        }
        if let Err(error) = self.memory.check() {
            // Memory freed while the error unwinds must not let cleanup code (`%defer`) run
            // on: like the step budget, an exhausted memory budget stays exhausted.
            self.memory.ceiling = isize::MIN;
            return Err(error);
        }
        if self.steps & 0x3ff == 0
            && let Some(deadline) = self.deadline
            && Instant::now() > deadline
        {
            let millis = self.limits.timeout.map_or(0, |t| t.as_millis());
            return Err(AleError::limit(
                LimitKind::Time,
                format!("evaluation time limit exceeded ({millis} ms)"),
            ));
        }
        Ok(())
    }

    /// The memory budget of this run, for work outside the evaluator (JSON conversion).
    pub fn memory_budget(&self) -> MemoryBudget {
        self.memory
    }

    /// The namespace `name`, created (chained to the root) when it does not exist yet.
    pub fn namespace_or_create(&mut self, name: &str) -> Arc<Namespace> {
        self.namespaces
            .entry(name.to_owned())
            .or_insert_with(|| Namespace::new(name, Some(crate::builtins::root())))
            .clone()
    }

    /// A namespace created by `define-namespace` in this evaluation.
    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.get(name).cloned()
    }

    /// The budgets of this evaluation.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The display form of `value` as data (`str`): an error beyond `max_output_bytes`.
    pub fn display_text(&self, value: &Value) -> AleResult<String> {
        crate::print::display_form_within(value, self.limits.max_output_bytes)
            .ok_or_else(|| self.output_too_large())
    }

    /// The reader form of `value` as data (`str!`): an error beyond `max_output_bytes`.
    pub fn reader_text(&self, value: &Value) -> AleResult<String> {
        crate::print::reader_form_within(value, self.limits.max_output_bytes)
            .ok_or_else(|| self.output_too_large())
    }

    /// The error for output beyond `max_output_bytes`.
    pub fn output_too_large(&self) -> AleError {
        AleError::output_too_large(self.limits.max_output_bytes)
    }

    /// Steps used so far.
    pub fn steps_used(&self) -> u64 {
        self.steps
    }

    /// Calls a callable value with arguments.
    pub fn apply(&mut self, callee: &Value, args: Vec<Value>) -> AleResult<Value> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            self.depth -= 1;
            return Err(AleError::limit(
                LimitKind::Depth,
                format!(
                    "recursion depth limit exceeded ({} calls)",
                    self.limits.max_depth
                ),
            ));
        }
        let outcome = with_stack(|| self.apply_loop(callee.clone(), args));
        self.depth -= 1;
        outcome
    }

    fn apply_loop(&mut self, mut callee: Value, mut args: Vec<Value>) -> AleResult<Value> {
        loop {
            self.tick()?;
            let procedure = match &callee {
                Value::Procedure(procedure) => procedure.clone(),
                other => return crate::builtins::call_value(self, other, &args),
            };
            match &*procedure {
                Procedure::Native { arity, func, .. } => {
                    if !arity.accepts(args.len()) {
                        return Err(arity.mismatch(args.len()));
                    }
                    return func(self, &args);
                }
                Procedure::Closure { arity, func } => {
                    if !arity.accepts(args.len()) {
                        return Err(arity.mismatch(args.len()));
                    }
                    return func(self, &args);
                }
                Procedure::Lambda(lambda) => {
                    let Some(case) = lambda.template.case_for(args.len()) else {
                        return Err(AleError::runtime("no matching parameter pattern"));
                    };
                    let mut frame =
                        vec![Value::Null; case.frame_size.max(case.fixed + usize::from(case.rest))];
                    let rest = if case.rest {
                        Some(args.split_off(case.fixed))
                    } else {
                        None
                    };
                    for (slot, arg) in frame.iter_mut().zip(args) {
                        *slot = arg;
                    }
                    if let Some(rest) = rest
                        && let Some(slot) = frame.get_mut(case.fixed)
                    {
                        *slot = Value::vector(rest);
                    }
                    let mut env = Env {
                        frame,
                        captured: &lambda.captured,
                    };
                    match self.eval_tail(&case.body, &mut env)? {
                        Flow::Value(value) => return Ok(value),
                        Flow::Tail(next, next_args) => {
                            callee = next;
                            args = next_args;
                        }
                    }
                }
            }
        }
    }

    /// Runs a top-level node with a fresh frame.
    pub fn run_top(&mut self, node: &Node, frame_size: usize) -> AleResult<Value> {
        let mut env = Env {
            frame: vec![Value::Null; frame_size],
            captured: &[],
        };
        self.eval(node, &mut env)
    }

    fn eval(&mut self, node: &Node, env: &mut Env<'_>) -> AleResult<Value> {
        match self.eval_tail(node, env)? {
            Flow::Value(value) => Ok(value),
            Flow::Tail(callee, args) => self.apply(&callee, args),
        }
    }

    fn eval_tail(&mut self, node: &Node, env: &mut Env<'_>) -> AleResult<Flow> {
        self.tick()?;
        Ok(Flow::Value(match node {
            Node::Const(value) => value.clone(),
            Node::Local(slot) => env.frame.get(*slot).cloned().unwrap_or_default(),
            Node::Captured(index) => env.captured.get(*index).cloned().unwrap_or_default(),
            Node::LocalCell(slot) => read_cell(env.frame.get(*slot))?,
            Node::CapturedCell(index) => read_cell(env.captured.get(*index))?,
            Node::Global(entry, name) => match entry.get() {
                Some(value) => value.clone(),
                None => {
                    return Err(AleError::runtime(format!(
                        "name is not bound in namespace: {name}"
                    )));
                }
            },
            Node::If(parts) => {
                let (test, then, otherwise) = &**parts;
                let branch = if self.eval(test, env)?.is_truthy() {
                    then
                } else {
                    otherwise
                };
                return self.eval_tail(branch, env);
            }
            Node::Begin(nodes) => {
                let Some((last, init)) = nodes.split_last() else {
                    return Ok(Flow::Value(Value::Null));
                };
                for node in init {
                    self.eval(node, env)?;
                }
                return self.eval_tail(last, env);
            }
            Node::Let(bindings, body) => {
                let values = bindings
                    .iter()
                    .map(|(_, n)| self.eval(n, env))
                    .collect::<AleResult<Vec<_>>>()?;
                for ((slot, _), value) in bindings.iter().zip(values) {
                    if let Some(target) = env.frame.get_mut(*slot) {
                        *target = value;
                    }
                }
                return self.eval_tail(body, env);
            }
            Node::LetRec(bindings, body) => {
                let cells: Vec<Arc<OnceLock<Value>>> =
                    bindings.iter().map(|_| Arc::new(OnceLock::new())).collect();
                for ((slot, _), cell) in bindings.iter().zip(&cells) {
                    if let Some(target) = env.frame.get_mut(*slot) {
                        *target = Value::Cell(cell.clone());
                    }
                }
                for ((_, node), cell) in bindings.iter().zip(&cells) {
                    let value = self.eval(node, env)?;
                    let _ = cell.set(value);
                }
                return self.eval_tail(body, env);
            }
            Node::Lambda(template) => {
                let captured = template
                    .captures
                    .iter()
                    .map(|from| match from {
                        CaptureFrom::Local(slot) => {
                            env.frame.get(*slot).cloned().unwrap_or_default()
                        }
                        CaptureFrom::Captured(index) => {
                            env.captured.get(*index).cloned().unwrap_or_default()
                        }
                    })
                    .collect();
                Value::Procedure(Arc::new(Procedure::Lambda(Lambda {
                    template: template.clone(),
                    captured,
                })))
            }
            Node::Call(callee, arg_nodes) => {
                let mut args = vec![Value::Null; arg_nodes.len()];
                for (slot, node) in args.iter_mut().zip(arg_nodes.iter()).rev() {
                    *slot = self.eval(node, env)?;
                }
                let callee = self.eval(callee, env)?;
                return Ok(Flow::Tail(callee, args));
            }
            Node::Vector(nodes) => Value::vector(
                nodes
                    .iter()
                    .map(|n| self.eval(n, env))
                    .collect::<AleResult<Vec<_>>>()?,
            ),
            Node::Object(pairs) => {
                let mut map = ObjectMap::with_capacity(pairs.len());
                for (key, value) in pairs {
                    let key = self.eval(key, env)?;
                    let value = self.eval(value, env)?;
                    map.entry(key).or_insert(value);
                }
                Value::object(map)
            }
            Node::Cons(pair) => {
                let car = self.eval(&pair.0, env)?;
                let cdr = self.eval(&pair.1, env)?;
                crate::seq::cons(car, cdr)
            }
            Node::Define(ns, name, value) => {
                let value = self.eval(value, env)?;
                ns.bind(name, value)?;
                Value::Symbol(crate::value::Symbol {
                    domain: None,
                    name: name.clone(),
                })
            }
            Node::Eval(ns, form) => {
                let form = self.eval(form, env)?;
                eval_form(self, ns, &form)?
            }
            Node::DefineNamespace(name, forms) => {
                let ns = self.namespace_or_create(name);
                for form in forms {
                    eval_form(self, &ns, form)?;
                }
                Value::vector(
                    ns.names()
                        .into_iter()
                        .map(|n| {
                            Value::Symbol(crate::value::Symbol {
                                domain: None,
                                name: n,
                            })
                        })
                        .collect(),
                )
            }
            Node::Import(target, from, names) => {
                let Some(source) = self.namespace(from) else {
                    return Err(AleError::runtime(format!("namespace not found: {from}")));
                };
                for (alias, original) in names {
                    let value = source
                        .resolve(original)
                        .and_then(|entry| entry.get().cloned())
                        .ok_or_else(|| {
                            AleError::runtime(format!("name is not bound in namespace: {original}"))
                        })?;
                    target.bind(alias, value)?;
                }
                Value::Null
            }
            Node::MacroExpand(ns, form, once) => {
                let form = self.eval(form, env)?;
                let mut compiler = Compiler::new(ns.clone(), self);
                if *once {
                    compiler.expand_once(&form)?.unwrap_or(form)
                } else {
                    compiler.expand(&form)?
                }
            }
        }))
    }
}

/// Compiles and runs one form in `ns`.
pub fn eval_form(ctx: &mut Ctx, ns: &Arc<Namespace>, form: &Value) -> AleResult<Value> {
    let top = Compiler::new(ns.clone(), ctx).compile_top(form)?;
    ctx.run_top(&top.node, top.frame_size)
}

fn read_cell(value: Option<&Value>) -> AleResult<Value> {
    match value {
        Some(Value::Cell(cell)) => cell
            .get()
            .cloned()
            .ok_or_else(|| AleError::runtime("recursive binding used before it was bound")),
        Some(other) => Ok(other.clone()),
        None => Ok(Value::Null),
    }
}

struct Env<'a> {
    frame: Vec<Value>,
    captured: &'a [Value],
}

enum Flow {
    Value(Value),
    Tail(Value, Vec<Value>),
}

/// Runs `f` with enough stack, growing it on the heap when deep recursion needs more.
pub fn with_stack<T>(f: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(128 * 1024, 2 * 1024 * 1024, f)
}
