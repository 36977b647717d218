//! The compiler: macro-expands read forms and turns them into a tree of [`Node`]s with every
//! name resolved — locals to frame slots, globals to their bound values — and the arity of
//! calls to known procedures checked, as the original does at step registration.

use std::sync::Arc;

use crate::error::{AleError, AleResult};
use crate::eval::Ctx;
use crate::ns::{Entry, Namespace};
use crate::print::reader_form;
use crate::proc::{CaptureFrom, LambdaCase, LambdaTemplate, Procedure};
use crate::value::{Symbol, Value};

/// Compiled code.
pub enum Node {
    /// A constant.
    Const(Value),
    /// A slot of the current frame.
    Local(usize),
    /// A value captured by the current closure.
    Captured(usize),
    /// A `let-rec` cell in a slot of the current frame.
    LocalCell(usize),
    /// A `let-rec` cell captured by the current closure.
    CapturedCell(usize),
    /// A global declared but not bound at compile time, looked up when run.
    Global(Arc<Entry>, Arc<str>),
    /// `(if test then else)`.
    If(Box<(Node, Node, Node)>),
    /// `(begin ...)`.
    Begin(Vec<Node>),
    /// Parallel `let`: evaluate every value, then fill the slots.
    Let(Vec<(usize, Node)>, Box<Node>),
    /// `let-rec`: create cells, evaluate the values with the cells visible, fill the cells.
    LetRec(Vec<(usize, Node)>, Box<Node>),
    /// A lambda expression: creates a closure.
    Lambda(Arc<LambdaTemplate>),
    /// A call (arguments are evaluated right to left, as in Ale).
    Call(Box<Node>, Vec<Node>),
    /// A vector literal with evaluated elements.
    Vector(Vec<Node>),
    /// An object literal with evaluated keys and values.
    Object(Vec<(Node, Node)>),
    /// A dotted pair literal with evaluated car and cdr.
    Cons(Box<(Node, Node)>),
    /// `(%define name value)` in a namespace.
    Define(Arc<Namespace>, Arc<str>, Box<Node>),
    /// `(eval form)`: compile and run a value at run time.
    Eval(Arc<Namespace>, Box<Node>),
    /// `(macroexpand form)` / `(macroexpand-1 form)`.
    MacroExpand(Arc<Namespace>, Box<Node>, bool),
    /// `(define-namespace name forms...)`: runs the forms in that namespace.
    DefineNamespace(Arc<str>, Vec<Value>),
    /// `(import ns specs...)`: binds names of `ns` here.
    Import(Arc<Namespace>, Arc<str>, Vec<(Arc<str>, Arc<str>)>),
}

impl Node {
    /// Whether two nodes are the same code (names of locals do not matter: they are slots).
    pub fn same_code(&self, other: &Node) -> bool {
        use Node::*;
        let all = |a: &[Node], b: &[Node]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_code(y))
        };
        match (self, other) {
            (Const(a), Const(b)) => a == b,
            (Local(a), Local(b))
            | (Captured(a), Captured(b))
            | (LocalCell(a), LocalCell(b))
            | (CapturedCell(a), CapturedCell(b)) => a == b,
            (Global(a, _), Global(b, _)) => Arc::ptr_eq(a, b),
            (If(a), If(b)) => a.0.same_code(&b.0) && a.1.same_code(&b.1) && a.2.same_code(&b.2),
            (Begin(a), Begin(b)) | (Vector(a), Vector(b)) => all(a, b),
            (Let(a, x), Let(b, y)) | (LetRec(a, x), LetRec(b, y)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((s, n), (t, m))| s == t && n.same_code(m))
                    && x.same_code(y)
            }
            (Lambda(a), Lambda(b)) => a.same_code(b),
            (Call(f, a), Call(g, b)) => f.same_code(g) && all(a, b),
            (Object(a), Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((k, v), (l, w))| k.same_code(l) && v.same_code(w))
            }
            (Cons(a), Cons(b)) => a.0.same_code(&b.0) && a.1.same_code(&b.1),
            _ => false,
        }
    }
}

impl LambdaTemplate {
    /// Whether two lambdas compile to the same code.
    pub fn same_code(&self, other: &LambdaTemplate) -> bool {
        self.cases.len() == other.cases.len()
            && self.cases.iter().zip(&other.cases).all(|(a, b)| {
                a.fixed == b.fixed
                    && a.rest == b.rest
                    && a.frame_size == b.frame_size
                    && a.body.same_code(&b.body)
            })
            && self.captures.len() == other.captures.len()
    }
}

enum Binding {
    Slot(usize),
    Cell(usize),
}

#[derive(Default)]
struct Scope {
    blocks: Vec<Vec<(Arc<str>, usize, bool)>>,
    next_slot: usize,
    max_slot: usize,
    captures: Vec<(Arc<str>, CaptureFrom, bool)>,
}

impl Scope {
    fn find(&self, name: &str) -> Option<Binding> {
        for block in self.blocks.iter().rev() {
            for (bound, slot, cell) in block.iter().rev() {
                if &**bound == name {
                    return Some(if *cell {
                        Binding::Cell(*slot)
                    } else {
                        Binding::Slot(*slot)
                    });
                }
            }
        }
        None
    }

    fn alloc(&mut self) -> usize {
        let slot = self.next_slot;
        self.next_slot += 1;
        self.max_slot = self.max_slot.max(self.next_slot);
        slot
    }
}

/// What a name resolves to in a scope.
enum Resolved {
    Local(Node),
    Global(Arc<Entry>, Arc<str>),
}

/// Compiles forms of one program.
pub struct Compiler<'c> {
    ns: Arc<Namespace>,
    ctx: &'c mut Ctx,
    scopes: Vec<Scope>,
}

/// A compiled top-level form: its code and the frame it needs.
pub struct TopLevel {
    /// The code.
    pub node: Node,
    /// Slots of the top-level frame.
    pub frame_size: usize,
}

fn local_name(form: &Value) -> Option<Arc<str>> {
    match form {
        Value::Symbol(Symbol { domain: None, name }) => Some(name.clone()),
        _ => None,
    }
}

impl<'c> Compiler<'c> {
    /// A compiler for the namespace `ns`; `ctx` runs macros during expansion.
    pub fn new(ns: Arc<Namespace>, ctx: &'c mut Ctx) -> Self {
        Compiler {
            ns,
            ctx,
            scopes: Vec::new(),
        }
    }

    /// Compiles one top-level form.
    pub fn compile_top(&mut self, form: &Value) -> AleResult<TopLevel> {
        self.scopes.push(Scope {
            blocks: vec![Vec::new()],
            ..Scope::default()
        });
        let node = self.compile(form);
        let scope = self.scopes.pop().unwrap_or_default();
        Ok(TopLevel {
            node: node?,
            frame_size: scope.max_slot,
        })
    }

    fn resolve(&mut self, name: &str) -> Option<Node> {
        let depth = self.scopes.len();
        let mut found = None;
        for index in (0..depth).rev() {
            if let Some(binding) = self.scopes.get(index).and_then(|s| s.find(name)) {
                found = Some((index, binding));
                break;
            }
        }
        let (index, binding) = found?;
        if index + 1 == depth {
            return Some(match binding {
                Binding::Slot(slot) => Node::Local(slot),
                Binding::Cell(slot) => Node::LocalCell(slot),
            });
        }
        // Thread a capture through every lambda scope between the binding and here.
        let (mut from, is_cell) = match binding {
            Binding::Slot(slot) => (CaptureFrom::Local(slot), false),
            Binding::Cell(slot) => (CaptureFrom::Local(slot), true),
        };
        let mut captured_index = 0;
        for scope_index in index + 1..depth {
            let scope = self.scopes.get_mut(scope_index)?;
            let existing = scope.captures.iter().position(|(n, _, _)| &**n == name);
            captured_index = match existing {
                Some(position) => position,
                None => {
                    scope.captures.push((Arc::from(name), from, is_cell));
                    scope.captures.len() - 1
                }
            };
            from = CaptureFrom::Captured(captured_index);
        }
        Some(if is_cell {
            Node::CapturedCell(captured_index)
        } else {
            Node::Captured(captured_index)
        })
    }

    fn resolve_symbol(&mut self, symbol: &Symbol) -> AleResult<Resolved> {
        if symbol.domain.is_none()
            && let Some(node) = self.resolve(&symbol.name)
        {
            return Ok(Resolved::Local(node));
        }
        let entry = match &symbol.domain {
            None => self.ns.resolve(&symbol.name),
            Some(domain) if &**domain == "ale" => crate::builtins::root().resolve(&symbol.name),
            Some(domain) => self
                .ctx
                .namespace(domain)
                .and_then(|ns| ns.resolve(&symbol.name)),
        };
        match entry {
            Some(entry) => Ok(Resolved::Global(entry, symbol.name.clone())),
            None => Err(AleError::compile(format!(
                "name not declared in namespace: {symbol}"
            ))),
        }
    }

    /// The value a head symbol names at compile time (special form or macro), if any.
    fn head_value(&mut self, head: &Value) -> Option<Value> {
        let Value::Symbol(symbol) = head else {
            return None;
        };
        if symbol.domain.is_none() && self.resolve_local_only(&symbol.name) {
            return None;
        }
        match self.resolve_symbol(symbol) {
            Ok(Resolved::Global(entry, _)) => entry.get().cloned(),
            _ => None,
        }
    }

    fn resolve_local_only(&self, name: &str) -> bool {
        self.scopes.iter().any(|scope| scope.find(name).is_some())
    }

    /// Expands `form` once if its head names a macro.
    pub fn expand_once(&mut self, form: &Value) -> AleResult<Option<Value>> {
        let Value::List(node) = form else {
            return Ok(None);
        };
        let Some(Value::Macro(procedure)) = self.head_value(&node.first) else {
            return Ok(None);
        };
        let args = form
            .list_items()
            .unwrap_or_default()
            .into_iter()
            .skip(1)
            .collect::<Vec<_>>();
        procedure
            .check_arity(args.len())
            .map_err(|e| AleError::compile(e.message))?;
        let expanded = self
            .ctx
            .apply(&Value::Procedure(procedure.clone()), args)
            .map_err(|e| {
                if e.phase == crate::error::Phase::Limit {
                    e
                } else {
                    AleError::compile(e.message)
                }
            })?;
        Ok(Some(expanded))
    }

    /// Expands `form` until its head is no longer a macro.
    pub fn expand(&mut self, form: &Value) -> AleResult<Value> {
        let mut current = form.clone();
        while let Some(next) = self.expand_once(&current)? {
            self.ctx.tick()?;
            current = next;
        }
        Ok(current)
    }

    /// Compiles a form in the current scope.
    pub fn compile(&mut self, form: &Value) -> AleResult<Node> {
        self.ctx.tick()?;
        match form {
            Value::Symbol(symbol) => Ok(match self.resolve_symbol(symbol)? {
                Resolved::Local(node) => node,
                Resolved::Global(entry, name) => match entry.get() {
                    Some(value) => Node::Const(value.clone()),
                    None => Node::Global(entry, name),
                },
            }),
            Value::List(node) => {
                if let Some(head) = self.head_value(&node.first) {
                    match head {
                        Value::Special(name) => return self.compile_special(&name, form),
                        Value::Macro(_) => {
                            let expanded = self.expand(form)?;
                            return crate::eval::with_stack(|| self.compile(&expanded));
                        }
                        _ => {}
                    }
                }
                self.compile_call(form)
            }
            Value::Vector(items) => {
                let nodes = items
                    .iter()
                    .map(|item| self.compile(item))
                    .collect::<AleResult<Vec<_>>>()?;
                Ok(constant_or(nodes, Node::Vector, |values| {
                    Value::vector(values)
                }))
            }
            Value::Object(map) => {
                let mut pairs = Vec::with_capacity(map.len());
                for (key, value) in map.iter() {
                    pairs.push((self.compile(key)?, self.compile(value)?));
                }
                Ok(Node::Object(pairs))
            }
            Value::Cons(pair) => Ok(Node::Cons(Box::new((
                self.compile(&pair.0)?,
                self.compile(&pair.1)?,
            )))),
            other => Ok(Node::Const(other.clone())),
        }
    }

    fn compile_call(&mut self, form: &Value) -> AleResult<Node> {
        let items = form.list_items().unwrap_or_default();
        let mut items = items.into_iter();
        let head = items.next().unwrap_or(Value::Null);
        let callee = crate::eval::with_stack(|| self.compile(&head))?;
        let args = items
            .map(|arg| crate::eval::with_stack(|| self.compile(&arg)))
            .collect::<AleResult<Vec<_>>>()?;
        if let Node::Const(Value::Procedure(procedure)) = &callee {
            procedure
                .check_arity(args.len())
                .map_err(|e| AleError::compile(e.message))?;
        }
        Ok(Node::Call(Box::new(callee), args))
    }

    fn compile_body(&mut self, forms: &[Value]) -> AleResult<Node> {
        match forms {
            [] => Ok(Node::Const(Value::Null)),
            [single] => self.compile(single),
            many => Ok(Node::Begin(
                many.iter()
                    .map(|f| self.compile(f))
                    .collect::<AleResult<Vec<_>>>()?,
            )),
        }
    }

    fn compile_special(&mut self, name: &str, form: &Value) -> AleResult<Node> {
        let items = form.list_items().unwrap_or_default();
        let args = items.get(1..).unwrap_or_default();
        let arity_error = |expected: &str| {
            AleError::compile(format!("got {} arguments, expected {expected}", args.len()))
        };
        match name {
            "quote" => match args {
                [datum] => Ok(Node::Const(datum.clone())),
                _ => Err(arity_error("1")),
            },
            "if" => match args {
                [test, then] => Ok(Node::If(Box::new((
                    self.compile(test)?,
                    self.compile(then)?,
                    Node::Const(Value::Null),
                )))),
                [test, then, otherwise] => Ok(Node::If(Box::new((
                    self.compile(test)?,
                    self.compile(then)?,
                    self.compile(otherwise)?,
                )))),
                _ => Err(arity_error("2-3")),
            },
            "begin" => self.compile_body(args),
            "lambda" | "λ" => self.compile_lambda(args),
            "let" => self.compile_let(args, false),
            "let-rec" => self.compile_let(args, true),
            "%define" => match args {
                [Value::Symbol(Symbol { domain: None, name }), value] => {
                    // Not declared before the value is compiled: as in Ale, a name defined inside
                    // a body cannot be referenced later in the same compiled form.
                    let node = self.compile(value)?;
                    Ok(Node::Define(self.ns.clone(), name.clone(), Box::new(node)))
                }
                [other, _] => Err(AleError::compile(format!(
                    "got {}, expected local",
                    describe_value(other)
                ))),
                _ => Err(arity_error("2")),
            },
            "%public" | "%private" | "declare" => {
                for arg in args {
                    match local_name(arg) {
                        Some(n) => {
                            self.ns.declare(&n, false);
                        }
                        None => {
                            return Err(AleError::compile(format!(
                                "got {}, expected local",
                                describe_value(arg)
                            )));
                        }
                    }
                }
                Ok(Node::Const(Value::Null))
            }
            "eval" => match args {
                [expr] => Ok(Node::Eval(self.ns.clone(), Box::new(self.compile(expr)?))),
                _ => Err(arity_error("1")),
            },
            "macroexpand" | "macroexpand-1" => match args {
                [expr] => Ok(Node::MacroExpand(
                    self.ns.clone(),
                    Box::new(self.compile(expr)?),
                    name == "macroexpand-1",
                )),
                _ => Err(arity_error("1")),
            },
            "define-namespace" => match args.split_first() {
                Some((Value::Symbol(Symbol { domain: None, name }), body)) => {
                    Ok(Node::DefineNamespace(name.clone(), body.to_vec()))
                }
                Some((other, _)) => Err(AleError::compile(format!(
                    "got {}, expected local",
                    describe_value(other)
                ))),
                None => Err(arity_error("1 or more")),
            },
            "import" => {
                let Some((
                    Value::Symbol(Symbol {
                        domain: None,
                        name: from,
                    }),
                    specs,
                )) = args.split_first()
                else {
                    return Err(AleError::compile("import needs a namespace name"));
                };
                let mut names = Vec::new();
                for spec in specs {
                    match spec {
                        Value::Symbol(Symbol { domain: None, name }) => {
                            names.push((name.clone(), name.clone()))
                        }
                        Value::Vector(pair) => match pair.as_slice() {
                            [alias, original] => match (local_name(alias), local_name(original)) {
                                (Some(alias), Some(original)) => names.push((alias, original)),
                                _ => {
                                    return Err(AleError::compile(format!(
                                        "unexpected import syntax: {}",
                                        reader_form(spec)
                                    )));
                                }
                            },
                            _ => {
                                return Err(AleError::compile(format!(
                                    "unexpected import syntax: {}",
                                    reader_form(spec)
                                )));
                            }
                        },
                        Value::List(_) | Value::Null => {
                            for item in spec.list_items().unwrap_or_default() {
                                let name = local_name(&item).ok_or_else(|| {
                                    AleError::compile(format!(
                                        "unexpected import syntax: {}",
                                        reader_form(&item)
                                    ))
                                })?;
                                names.push((name.clone(), name));
                            }
                        }
                        other => {
                            return Err(AleError::compile(format!(
                                "unexpected import syntax: {}",
                                reader_form(other)
                            )));
                        }
                    }
                }
                Ok(Node::Import(self.ns.clone(), from.clone(), names))
            }
            other => Err(AleError::compile(format!(
                "special form not supported: {other}"
            ))),
        }
    }

    fn compile_let(&mut self, args: &[Value], recursive: bool) -> AleResult<Node> {
        let Some((spec, body)) = args.split_first() else {
            return Err(AleError::compile("got 0 arguments, expected 1 or more"));
        };
        let pairs: Vec<(Arc<str>, Value)> = match spec {
            Value::Vector(binding) => vec![binding_pair(binding)?],
            Value::List(_) => {
                let mut pairs = Vec::new();
                for item in spec.list_items().unwrap_or_default() {
                    match &item {
                        Value::Vector(binding) => pairs.push(binding_pair(binding)?),
                        other => {
                            return Err(AleError::compile(format!(
                                "unexpected binding syntax: {}",
                                reader_form(other)
                            )));
                        }
                    }
                }
                pairs
            }
            other => {
                return Err(AleError::compile(format!(
                    "unexpected binding syntax: {}",
                    reader_form(other)
                )));
            }
        };
        for (index, (name, _)) in pairs.iter().enumerate() {
            if pairs.iter().take(index).any(|(seen, _)| seen == name) {
                return Err(AleError::compile(format!("name already bound: {name}")));
            }
        }
        let scope_index = self.scopes.len().saturating_sub(1);
        let saved_next = self.scopes.get(scope_index).map_or(0, |s| s.next_slot);
        let mut slots = Vec::with_capacity(pairs.len());
        for _ in &pairs {
            slots.push(self.scopes.get_mut(scope_index).map_or(0, Scope::alloc));
        }
        let block: Vec<(Arc<str>, usize, bool)> = pairs
            .iter()
            .zip(&slots)
            .map(|((name, _), slot)| (name.clone(), *slot, recursive))
            .collect();
        let values = if recursive {
            if let Some(scope) = self.scopes.get_mut(scope_index) {
                scope.blocks.push(block.clone());
            }
            let values = pairs
                .iter()
                .map(|(_, expr)| self.compile(expr))
                .collect::<AleResult<Vec<_>>>();
            if let Some(scope) = self.scopes.get_mut(scope_index) {
                scope.blocks.pop();
            }
            values?
        } else {
            pairs
                .iter()
                .map(|(_, expr)| self.compile(expr))
                .collect::<AleResult<Vec<_>>>()?
        };
        if let Some(scope) = self.scopes.get_mut(scope_index) {
            scope.blocks.push(block);
        }
        let body = self.compile_body(body);
        if let Some(scope) = self.scopes.get_mut(scope_index) {
            scope.blocks.pop();
            scope.next_slot = saved_next;
        }
        let bindings = slots.into_iter().zip(values).collect();
        Ok(if recursive {
            Node::LetRec(bindings, Box::new(body?))
        } else {
            Node::Let(bindings, Box::new(body?))
        })
    }

    fn compile_lambda(&mut self, args: &[Value]) -> AleResult<Node> {
        let Some(first) = args.first() else {
            return Err(AleError::compile("no parameter cases defined"));
        };
        // Multi-case form: every argument is a vector `[params body...]`. Each case's parameters
        // are checked before the next case's shape, as Ale reports them.
        let cases: Vec<(Value, Vec<Value>)> = if matches!(first, Value::Vector(_)) {
            let mut cases = Vec::new();
            for case in args {
                match case {
                    Value::Vector(items) => {
                        let params = items.first().cloned().unwrap_or(Value::Null);
                        if !matches!(
                            params,
                            Value::Null | Value::List(_) | Value::Cons(_) | Value::Symbol(_)
                        ) {
                            return Err(AleError::compile(format!(
                                "unexpected parameter syntax: {}",
                                reader_form(&params)
                            )));
                        }
                        parse_params(&params)?;
                        cases.push((params, items.get(1..).unwrap_or_default().to_vec()));
                    }
                    other => {
                        return Err(AleError::compile(format!(
                            "unexpected case syntax: {}",
                            reader_form(other)
                        )));
                    }
                }
            }
            cases
        } else {
            vec![(first.clone(), args.get(1..).unwrap_or_default().to_vec())]
        };
        let mut compiled: Vec<LambdaCase> = Vec::new();
        let mut scope_captures = Vec::new();
        self.scopes.push(Scope::default());
        let outcome = (|| -> AleResult<()> {
            for (params, body) in &cases {
                let (names, rest) = parse_params(params)?;
                let fixed = if rest { names.len() - 1 } else { names.len() };
                let case_probe = LambdaCase {
                    fixed,
                    rest,
                    frame_size: 0,
                    body: Node::Const(Value::Null),
                    signature: reader_form(params),
                };
                if compiled.iter().any(|earlier| covers(earlier, &case_probe)) {
                    return Err(AleError::compile(format!(
                        "unreachable parameter case: {}",
                        reader_form(params)
                    )));
                }
                let scope = self
                    .scopes
                    .last_mut()
                    .ok_or_else(|| AleError::compile("scope lost"))?;
                scope.blocks = vec![Vec::new()];
                scope.next_slot = 0;
                scope.max_slot = 0;
                let mut block = Vec::new();
                for name in &names {
                    let slot = scope.alloc();
                    block.push((name.clone(), slot, false));
                }
                scope.blocks.push(block);
                let body = self.compile_body(body)?;
                let frame_size = self.scopes.last().map_or(0, |s| s.max_slot);
                compiled.push(LambdaCase {
                    body,
                    frame_size,
                    ..case_probe
                });
            }
            Ok(())
        })();
        if let Some(scope) = self.scopes.pop() {
            scope_captures = scope.captures;
        }
        outcome?;
        let captures = scope_captures
            .into_iter()
            .map(|(_, from, _)| from)
            .collect();
        Ok(Node::Lambda(Arc::new(LambdaTemplate {
            cases: compiled,
            captures,
        })))
    }
}

/// Whether `earlier` accepts every argument count `later` accepts.
fn covers(earlier: &LambdaCase, later: &LambdaCase) -> bool {
    match (earlier.rest, later.rest) {
        (true, _) => earlier.fixed <= later.fixed,
        (false, false) => earlier.fixed == later.fixed,
        (false, true) => false,
    }
}

fn binding_pair(binding: &[Value]) -> AleResult<(Arc<str>, Value)> {
    match binding {
        [name, value] => match local_name(name) {
            Some(name) => Ok((name, value.clone())),
            None => Err(AleError::compile(format!(
                "unexpected binding syntax: {}",
                reader_form(name)
            ))),
        },
        _ => Err(AleError::compile("binding must be paired")),
    }
}

/// Parameter names (the last is the rest parameter when the bool is set).
fn parse_params(params: &Value) -> AleResult<(Vec<Arc<str>>, bool)> {
    let bad = |form: &Value| {
        AleError::compile(format!(
            "unexpected parameter syntax: {}",
            reader_form(form)
        ))
    };
    match params {
        Value::Null => Ok((Vec::new(), false)),
        Value::Symbol(Symbol { domain: None, name }) => Ok((vec![name.clone()], true)),
        Value::List(_) => {
            let names = params
                .list_items()
                .unwrap_or_default()
                .iter()
                .map(|p| local_name(p).ok_or_else(|| bad(p)))
                .collect::<AleResult<Vec<_>>>()?;
            Ok((names, false))
        }
        Value::Cons(_) => {
            let mut names = Vec::new();
            let mut cursor = params.clone();
            loop {
                match cursor {
                    Value::Cons(pair) => {
                        names.push(local_name(&pair.0).ok_or_else(|| bad(&pair.0))?);
                        cursor = pair.1.clone();
                    }
                    Value::List(_) => {
                        for p in cursor.list_items().unwrap_or_default() {
                            names.push(local_name(&p).ok_or_else(|| bad(&p))?);
                        }
                        return Ok((names, false));
                    }
                    other => {
                        names.push(local_name(&other).ok_or_else(|| bad(&other))?);
                        return Ok((names, true));
                    }
                }
            }
        }
        other => Err(AleError::compile(format!(
            "unexpected case syntax: {}",
            reader_form(other)
        ))),
    }
}

/// Describes a value as Ale's type errors do: `number(99)`.
pub fn describe_value(value: &Value) -> String {
    match value {
        Value::Int(_) | Value::Float(_) | Value::BigInt(_) | Value::Ratio(_) => {
            format!("number({})", reader_form(value))
        }
        other => format!("{}({})", other.type_name(), reader_form(other)),
    }
}

fn constant_or(
    nodes: Vec<Node>,
    build: impl FnOnce(Vec<Node>) -> Node,
    constant: impl FnOnce(Vec<Value>) -> Value,
) -> Node {
    if nodes.iter().all(|n| matches!(n, Node::Const(_))) {
        let values = nodes
            .into_iter()
            .filter_map(|n| {
                if let Node::Const(v) = n {
                    Some(v)
                } else {
                    None
                }
            })
            .collect();
        Node::Const(constant(values))
    } else {
        build(nodes)
    }
}

/// Whether a procedure value is a lambda (the embedding API requires one).
pub fn is_lambda(value: &Value) -> bool {
    matches!(value, Value::Procedure(p) if matches!(**p, Procedure::Lambda(_)))
}
