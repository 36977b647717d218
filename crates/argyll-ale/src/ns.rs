//! Namespaces: the shared root namespace `ale` and a private namespace per program.
//!
//! Bindings are immutable and bind-once. A program's namespace chains to the root; a program
//! can shadow root names locally but never change them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use crate::error::{AleError, AleResult};
use crate::value::Value;

/// One declared name: bound once, possibly later than declared.
#[derive(Default)]
pub struct Entry {
    value: OnceLock<Value>,
    /// Private root names are invisible to programs.
    pub private: bool,
}

impl Entry {
    /// The bound value, if any.
    pub fn get(&self) -> Option<&Value> {
        self.value.get()
    }
}

/// A namespace.
pub struct Namespace {
    /// The namespace's name (`ale` for the root; programs are anonymous).
    pub name: Arc<str>,
    entries: RwLock<HashMap<Arc<str>, Arc<Entry>>>,
    parent: Option<Arc<Namespace>>,
}

impl Namespace {
    /// A namespace named `name` chained to `parent`.
    pub fn new(name: &str, parent: Option<Arc<Namespace>>) -> Arc<Self> {
        Arc::new(Namespace {
            name: Arc::from(name),
            entries: RwLock::new(HashMap::new()),
            parent,
        })
    }

    /// Declares `name` (no-op when already declared here) and returns its entry.
    pub fn declare(&self, name: &str, private: bool) -> Arc<Entry> {
        if let Ok(entries) = self.entries.read()
            && let Some(entry) = entries.get(name)
        {
            return entry.clone();
        }
        let mut entries = match self.entries.write() {
            Ok(entries) => entries,
            Err(poisoned) => poisoned.into_inner(),
        };
        entries
            .entry(Arc::from(name))
            .or_insert_with(|| {
                Arc::new(Entry {
                    value: OnceLock::new(),
                    private,
                })
            })
            .clone()
    }

    /// Binds `name` to `value`; a second binding is an error.
    pub fn bind(&self, name: &str, value: Value) -> AleResult<()> {
        let entry = self.declare(name, false);
        entry
            .value
            .set(value)
            .map_err(|_| AleError::runtime(format!("name is already bound in namespace: {name}")))
    }

    /// Binds a private name (root internals).
    pub fn bind_private(&self, name: &str, value: Value) {
        let entry = self.declare(name, true);
        let _ = entry.value.set(value);
    }

    /// Looks `name` up here, then in the parents (skipping private names of parents).
    pub fn resolve(&self, name: &str) -> Option<Arc<Entry>> {
        if let Ok(entries) = self.entries.read()
            && let Some(entry) = entries.get(name)
        {
            return Some(entry.clone());
        }
        let mut parent = self.parent.clone();
        while let Some(ns) = parent {
            if let Ok(entries) = ns.entries.read()
                && let Some(entry) = entries.get(name)
                && !entry.private
            {
                return Some(entry.clone());
            }
            parent = ns.parent.clone();
        }
        None
    }

    /// Names declared directly here, sorted.
    pub fn names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = match self.entries.read() {
            Ok(entries) => entries
                .iter()
                .filter(|(_, e)| !e.private)
                .map(|(k, _)| k.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }
}
