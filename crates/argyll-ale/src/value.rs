//! Ale values.
//!
//! Values are immutable and cheap to clone (`Arc` inside), and `Send + Sync`, so compiled
//! programs and their constants can be shared by every thread of the engine.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use num_bigint::BigInt;
use num_rational::BigRational;

use crate::error::AleResult;
use crate::lazy::LazySeq;
use crate::proc::{Procedure, Promise};

/// A symbol: `name` or `domain/name`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Symbol {
    /// The namespace part of a qualified symbol.
    pub domain: Option<Arc<str>>,
    /// The name.
    pub name: Arc<str>,
}

impl Symbol {
    /// A local (unqualified) symbol.
    pub fn local(name: &str) -> Self {
        Symbol {
            domain: None,
            name: Arc::from(name),
        }
    }

    /// A qualified symbol `domain/name`.
    pub fn qualified(domain: &str, name: &str) -> Self {
        Symbol {
            domain: Some(Arc::from(domain)),
            name: Arc::from(name),
        }
    }

    /// Whether the symbol is unqualified and named `name`.
    pub fn is(&self, name: &str) -> bool {
        self.domain.is_none() && &*self.name == name
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.domain {
            Some(domain) => write!(f, "{domain}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A node of a non-empty list; `rest` is `None` at the end. Lists know their length.
pub struct ListNode {
    /// The element.
    pub first: Value,
    /// The remaining nodes.
    pub rest: Option<Arc<ListNode>>,
    /// Number of elements from this node to the end.
    pub count: usize,
}

impl Drop for ListNode {
    /// Unlinks the tail (and nested containers) iteratively: dropping a long or deep list must
    /// not recurse once per element.
    fn drop(&mut self) {
        let first = std::mem::take(&mut self.first);
        let rest = self.rest.take();
        if rest.is_some() || is_container(&first) {
            let mut values = vec![first];
            values.extend(rest.map(Value::List));
            dismantle(values);
        }
    }
}

/// An object's entries (hash map with any value as key).
pub type ObjectMap = HashMap<Value, Value>;

/// A vector's elements. Dropping one dismantles nested containers iteratively.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Items(pub Vec<Value>);

/// An object's entries. Dropping one dismantles nested containers iteratively.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Object(pub ObjectMap);

/// A pair's car and cdr. Dropping one dismantles nested containers iteratively.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Pair(pub Value, pub Value);

impl std::ops::Deref for Items {
    type Target = Vec<Value>;
    fn deref(&self) -> &Vec<Value> {
        &self.0
    }
}

impl std::ops::Deref for Object {
    type Target = ObjectMap;
    fn deref(&self) -> &ObjectMap {
        &self.0
    }
}

/// Takes apart `values` and every container only they own, without recursion, so that
/// dropping data nested tens of thousands of levels deep cannot overflow the stack.
fn dismantle(mut values: Vec<Value>) {
    while let Some(value) = values.pop() {
        match value {
            Value::Vector(items) => {
                if let Ok(mut items) = Arc::try_unwrap(items) {
                    values.append(&mut items.0);
                }
            }
            Value::Object(map) => {
                if let Ok(mut map) = Arc::try_unwrap(map) {
                    for (key, item) in map.0.drain() {
                        values.push(key);
                        values.push(item);
                    }
                }
            }
            Value::Cons(pair) => {
                if let Ok(mut pair) = Arc::try_unwrap(pair) {
                    values.push(std::mem::take(&mut pair.0));
                    values.push(std::mem::take(&mut pair.1));
                }
            }
            Value::List(node) => {
                if let Ok(mut node) = Arc::try_unwrap(node) {
                    values.push(std::mem::take(&mut node.first));
                    if let Some(rest) = node.rest.take() {
                        values.push(Value::List(rest));
                    }
                }
            }
            _ => {}
        }
    }
}

impl Drop for Items {
    fn drop(&mut self) {
        if self.0.iter().any(is_container) {
            dismantle(std::mem::take(&mut self.0));
        }
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        if self
            .0
            .iter()
            .any(|(k, v)| is_container(k) || is_container(v))
        {
            let mut values = Vec::with_capacity(self.0.len() * 2);
            for (key, item) in self.0.drain() {
                values.push(key);
                values.push(item);
            }
            dismantle(values);
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if is_container(&self.0) || is_container(&self.1) {
            dismantle(vec![
                std::mem::take(&mut self.0),
                std::mem::take(&mut self.1),
            ]);
        }
    }
}

fn is_container(value: &Value) -> bool {
    matches!(
        value,
        Value::Vector(_) | Value::Object(_) | Value::Cons(_) | Value::List(_)
    )
}

/// An Ale value.
#[derive(Clone, Default)]
pub enum Value {
    /// The empty list, Ale's only "nothing".
    #[default]
    Null,
    /// `#t` / `#f`.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// An integer beyond 64 bits (never one that fits).
    BigInt(Arc<BigInt>),
    /// An exact ratio (never a whole number).
    Ratio(Arc<BigRational>),
    /// A float.
    Float(f64),
    /// A string (a sequence of Unicode scalar values).
    String(Arc<str>),
    /// A keyword (stored without the colon).
    Keyword(Arc<str>),
    /// A symbol.
    Symbol(Symbol),
    /// A non-empty list.
    List(Arc<ListNode>),
    /// A vector.
    Vector(Arc<Items>),
    /// An object.
    Object(Arc<Object>),
    /// A pair whose cdr is not a sequence.
    Cons(Arc<Pair>),
    /// Bytes.
    Bytes(Arc<Vec<u8>>),
    /// A lazy sequence.
    Lazy(Arc<LazySeq>),
    /// A procedure (lambda or builtin).
    Procedure(Arc<Procedure>),
    /// A macro (a procedure over forms, run at compile time).
    Macro(Arc<Procedure>),
    /// A special form, by name.
    Special(Arc<str>),
    /// A promise (`delay`, `future`).
    Promise(Arc<Promise>),
    /// A `let-rec` binding's cell. Internal: reads of such a binding always go through the
    /// cell, so programs never see this variant.
    #[doc(hidden)]
    Cell(Arc<std::sync::OnceLock<Value>>),
}

impl Value {
    /// A string value.
    pub fn string(text: impl Into<Arc<str>>) -> Self {
        Value::String(text.into())
    }

    /// A keyword value (without the colon).
    pub fn keyword(name: impl Into<Arc<str>>) -> Self {
        Value::Keyword(name.into())
    }

    /// A local symbol.
    pub fn symbol(name: &str) -> Self {
        Value::Symbol(Symbol::local(name))
    }

    /// A vector of the given elements.
    pub fn vector(items: Vec<Value>) -> Self {
        Value::Vector(Arc::new(Items(items)))
    }

    /// An object with the given entries.
    pub fn object(map: ObjectMap) -> Self {
        Value::Object(Arc::new(Object(map)))
    }

    /// A pair `(car . cdr)` (use [`crate::seq`]'s `cons` to prepend to sequences instead).
    pub fn pair(car: Value, cdr: Value) -> Self {
        Value::Cons(Arc::new(Pair(car, cdr)))
    }

    /// A list of the given elements (`()` when empty).
    pub fn list(items: impl IntoIterator<Item = Value, IntoIter: DoubleEndedIterator>) -> Self {
        let mut tail: Option<Arc<ListNode>> = None;
        for item in items.into_iter().rev() {
            let count = tail.as_ref().map_or(0, |node| node.count) + 1;
            tail = Some(Arc::new(ListNode {
                first: item,
                rest: tail,
                count,
            }));
        }
        tail.map_or(Value::Null, Value::List)
    }

    /// `item` prepended to the list `rest` (which must be a list or null).
    pub fn list_cons(item: Value, rest: Option<Arc<ListNode>>) -> Self {
        let count = rest.as_ref().map_or(0, |node| node.count) + 1;
        Value::List(Arc::new(ListNode {
            first: item,
            rest,
            count,
        }))
    }

    /// Whether the value is true in a condition: everything but `#f`.
    pub fn is_truthy(&self) -> bool {
        !matches!(self, Value::Bool(false))
    }

    /// Ale's type name (`number`, `string`, `list`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::BigInt(_) => "integer",
            Value::Ratio(_) => "ratio",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Keyword(_) => "keyword",
            Value::Symbol(_) => "symbol",
            Value::List(_) => "list",
            Value::Vector(_) => "vector",
            Value::Object(_) => "object",
            Value::Cons(_) => "cons",
            Value::Bytes(_) => "bytes",
            Value::Lazy(_) => "lazy sequence",
            Value::Procedure(_) => "procedure",
            Value::Macro(_) => "macro",
            Value::Special(_) => "special",
            Value::Promise(_) => "promise",
            Value::Cell(_) => "cell",
        }
    }

    /// Whether the value is a number of any kind.
    pub fn is_number(&self) -> bool {
        matches!(
            self,
            Value::Int(_) | Value::BigInt(_) | Value::Ratio(_) | Value::Float(_)
        )
    }

    /// The elements of a list (empty for null), for code that walks forms.
    pub fn list_items(&self) -> Option<Vec<Value>> {
        match self {
            Value::Null => Some(Vec::new()),
            Value::List(node) => {
                let mut items = Vec::with_capacity(node.count);
                let mut cursor = Some(node);
                while let Some(current) = cursor {
                    items.push(current.first.clone());
                    cursor = current.rest.as_ref();
                }
                Some(items)
            }
            _ => None,
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::print::reader_form(self))
    }
}

impl fmt::Display for Value {
    /// The display form (`str`): top-level strings unquoted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::print::display_form(self))
    }
}

/// Structural, type-strict equality (Ale's `eq`): `1` ≠ `1.0`, lists ≠ vectors, objects as
/// maps. Floats compare by value except that NaN equals NaN, so that objects keyed by NaN work.
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        matches!(self.equal_counting(other, &mut || Ok(())), Ok(true))
    }
}

impl Value {
    /// Structural equality that calls `visit` for every pair of nodes compared, so that the
    /// caller can charge the work to a budget: shared structure makes values whose unshared
    /// size is exponential in the steps that built them. Identical (shared) parts compare in
    /// one step.
    pub fn equal_counting(
        &self,
        other: &Value,
        visit: &mut dyn FnMut() -> AleResult<()>,
    ) -> AleResult<bool> {
        crate::eval::with_stack(|| self.equal_inner(other, visit))
    }

    fn equal_inner(
        &self,
        other: &Value,
        visit: &mut dyn FnMut() -> AleResult<()>,
    ) -> AleResult<bool> {
        use Value::*;
        visit()?;
        Ok(match (self, other) {
            (Null, Null) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (BigInt(a), BigInt(b)) => a == b,
            (Ratio(a), Ratio(b)) => a == b,
            (Float(a), Float(b)) => a == b || (a.is_nan() && b.is_nan()),
            (String(a), String(b)) => a == b,
            (Keyword(a), Keyword(b)) => a == b,
            (Symbol(a), Symbol(b)) => a == b,
            (List(a), List(b)) => {
                if a.count != b.count {
                    return Ok(false);
                }
                let (mut x, mut y) = (Some(a), Some(b));
                while let (Some(left), Some(right)) = (x, y) {
                    if Arc::ptr_eq(left, right) {
                        return Ok(true);
                    }
                    if !left.first.equal_counting(&right.first, visit)? {
                        return Ok(false);
                    }
                    x = left.rest.as_ref();
                    y = right.rest.as_ref();
                }
                true
            }
            (Vector(a), Vector(b)) => {
                if Arc::ptr_eq(a, b) {
                    return Ok(true);
                }
                if a.len() != b.len() {
                    return Ok(false);
                }
                for (left, right) in a.iter().zip(b.iter()) {
                    if !left.equal_counting(right, visit)? {
                        return Ok(false);
                    }
                }
                true
            }
            (Object(a), Object(b)) => {
                if Arc::ptr_eq(a, b) {
                    return Ok(true);
                }
                if a.0.len() != b.0.len() {
                    return Ok(false);
                }
                for (key, left) in a.0.iter() {
                    visit()?;
                    let Some(right) = b.0.get(key) else {
                        return Ok(false);
                    };
                    if !left.equal_counting(right, visit)? {
                        return Ok(false);
                    }
                }
                true
            }
            (Cons(a), Cons(b)) => {
                Arc::ptr_eq(a, b)
                    || (a.0.equal_counting(&b.0, visit)? && a.1.equal_counting(&b.1, visit)?)
            }
            (Bytes(a), Bytes(b)) => a == b,
            (Lazy(a), Lazy(b)) => Arc::ptr_eq(a, b),
            (Procedure(a), Procedure(b)) | (Macro(a), Macro(b)) => {
                Arc::ptr_eq(a, b) || same_lambda(a, b)
            }
            (Special(a), Special(b)) => a == b,
            (Promise(a), Promise(b)) => Arc::ptr_eq(a, b),
            (Cell(a), Cell(b)) => Arc::ptr_eq(a, b),
            _ => false,
        })
    }
}

impl Eq for Value {}

/// Two lambdas are `eq` when they compile to the same code over equal captured values (Ale
/// compares procedures by their code: `(lambda (x) (* x 2))` equals `(lambda (y) (* y 2))`).
fn same_lambda(a: &Procedure, b: &Procedure) -> bool {
    match (a, b) {
        (Procedure::Lambda(x), Procedure::Lambda(y)) => {
            x.template.same_code(&y.template) && x.captured == y.captured
        }
        _ => false,
    }
}

impl Hash for Value {
    /// Hashes a bounded prefix of the value, in a traversal order that equal values share, so
    /// that hashing stays cheap for values with a huge unshared size. Equal values hash alike.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut budget = HASH_BUDGET;
        self.hash_within(state, &mut budget);
    }
}

/// Nodes visited when hashing one value.
const HASH_BUDGET: usize = 256;
/// Nodes visited when hashing one key of an object that is itself being hashed.
const OBJECT_KEY_HASH_BUDGET: usize = 8;

impl Value {
    fn hash_within<H: Hasher>(&self, state: &mut H, budget: &mut usize) {
        std::mem::discriminant(self).hash(state);
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        match self {
            Value::Null => {}
            Value::Bool(b) => b.hash(state),
            Value::Int(i) => i.hash(state),
            Value::BigInt(i) => i.hash(state),
            Value::Ratio(r) => r.hash(state),
            Value::Float(f) => {
                let normalised = if f.is_nan() {
                    f64::NAN
                } else if *f == 0.0 {
                    0.0
                } else {
                    *f
                };
                normalised.to_bits().hash(state)
            }
            Value::String(s) | Value::Keyword(s) | Value::Special(s) => s.hash(state),
            Value::Symbol(s) => s.hash(state),
            Value::List(node) => {
                node.count.hash(state);
                let mut cursor = Some(node);
                while let Some(current) = cursor
                    && *budget > 0
                {
                    crate::eval::with_stack(|| current.first.hash_within(state, budget));
                    cursor = current.rest.as_ref();
                }
            }
            Value::Vector(items) => {
                items.len().hash(state);
                for item in items.iter() {
                    if *budget == 0 {
                        break;
                    }
                    crate::eval::with_stack(|| item.hash_within(state, budget));
                }
            }
            Value::Object(map) => {
                // Entries combine commutatively (equal objects may differ in insertion order),
                // and only when all of them fit the budget, so that the cut-off never depends
                // on the order.
                map.0.len().hash(state);
                if map.0.len() <= *budget {
                    *budget -= map.0.len();
                    let mut sum: u64 = 0;
                    for key in map.0.keys() {
                        let mut entry = std::collections::hash_map::DefaultHasher::new();
                        let mut key_budget = OBJECT_KEY_HASH_BUDGET;
                        crate::eval::with_stack(|| key.hash_within(&mut entry, &mut key_budget));
                        sum = sum.wrapping_add(entry.finish());
                    }
                    sum.hash(state);
                }
            }
            Value::Cons(pair) => {
                crate::eval::with_stack(|| pair.0.hash_within(state, budget));
                crate::eval::with_stack(|| pair.1.hash_within(state, budget));
            }
            Value::Bytes(bytes) => bytes.hash(state),
            Value::Lazy(seq) => (Arc::as_ptr(seq) as usize).hash(state),
            Value::Procedure(p) | Value::Macro(p) => (Arc::as_ptr(p) as usize).hash(state),
            Value::Promise(p) => (Arc::as_ptr(p) as usize).hash(state),
            Value::Cell(c) => (Arc::as_ptr(c) as usize).hash(state),
        }
    }
}
