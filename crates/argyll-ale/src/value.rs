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
    /// Unlinks the tail iteratively: dropping a long list must not recurse once per element.
    fn drop(&mut self) {
        let mut next = self.rest.take();
        while let Some(node) = next {
            match Arc::try_unwrap(node) {
                Ok(mut inner) => next = inner.rest.take(),
                Err(_) => break,
            }
        }
    }
}

/// An object (hash map with any value as key).
pub type ObjectMap = HashMap<Value, Value>;

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
    Vector(Arc<Vec<Value>>),
    /// An object.
    Object(Arc<ObjectMap>),
    /// A pair whose cdr is not a sequence.
    Cons(Arc<(Value, Value)>),
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
        Value::Vector(Arc::new(items))
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
        crate::eval::with_stack(|| self.eq_inner(other))
    }
}

impl Value {
    fn eq_inner(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
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
                if Arc::ptr_eq(a, b) {
                    return true;
                }
                if a.count != b.count {
                    return false;
                }
                let (mut x, mut y) = (Some(a), Some(b));
                while let (Some(left), Some(right)) = (x, y) {
                    if left.first != right.first {
                        return false;
                    }
                    x = left.rest.as_ref();
                    y = right.rest.as_ref();
                }
                true
            }
            (Vector(a), Vector(b)) => a == b,
            (Object(a), Object(b)) => a == b,
            (Cons(a), Cons(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (Lazy(a), Lazy(b)) => Arc::ptr_eq(a, b),
            (Procedure(a), Procedure(b)) | (Macro(a), Macro(b)) => {
                Arc::ptr_eq(a, b) || same_lambda(a, b)
            }
            (Special(a), Special(b)) => a == b,
            (Promise(a), Promise(b)) => Arc::ptr_eq(a, b),
            (Cell(a), Cell(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
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
    fn hash<H: Hasher>(&self, state: &mut H) {
        crate::eval::with_stack(|| self.hash_inner(state));
    }
}

impl Value {
    fn hash_inner<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
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
                while let Some(current) = cursor {
                    current.first.hash(state);
                    cursor = current.rest.as_ref();
                }
            }
            Value::Vector(items) => items.hash(state),
            Value::Object(map) => {
                // Order-independent: combine entry hashes commutatively.
                let mut sum: u64 = 0;
                for (key, value) in map.iter() {
                    let mut entry = std::collections::hash_map::DefaultHasher::new();
                    key.hash(&mut entry);
                    value.hash(&mut entry);
                    sum = sum.wrapping_add(entry.finish());
                }
                map.len().hash(state);
                sum.hash(state);
            }
            Value::Cons(pair) => {
                pair.0.hash(state);
                pair.1.hash(state);
            }
            Value::Bytes(bytes) => bytes.hash(state),
            Value::Lazy(seq) => (Arc::as_ptr(seq) as usize).hash(state),
            Value::Procedure(p) | Value::Macro(p) => (Arc::as_ptr(p) as usize).hash(state),
            Value::Promise(p) => (Arc::as_ptr(p) as usize).hash(state),
            Value::Cell(c) => (Arc::as_ptr(c) as usize).hash(state),
        }
    }
}
