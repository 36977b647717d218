//! Lazy sequences: memoised, realised one cell at a time.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{AleError, AleResult};
use crate::eval::Ctx;
use crate::value::Value;

/// Computes the next cell: `None` for the end, or the element and the rest (any sequence).
pub type LazyThunk = Box<dyn FnOnce(&mut Ctx) -> AleResult<Option<(Value, Value)>> + Send>;

enum LazyState {
    Pending(LazyThunk),
    Forcing,
    Done(Option<(Value, Value)>),
    Failed(AleError),
}

/// A lazy sequence cell.
pub struct LazySeq {
    state: Mutex<LazyState>,
}

impl Drop for LazySeq {
    /// Unlinks realised cells iteratively, so dropping a long realised sequence does not
    /// recurse once per element.
    fn drop(&mut self) {
        let state = std::mem::replace(self.state.get_mut(), LazyState::Forcing);
        let LazyState::Done(Some((_, mut rest))) = state else {
            return;
        };
        loop {
            match rest {
                Value::Lazy(next) => match Arc::try_unwrap(next) {
                    Ok(seq) => {
                        let mut seq = seq;
                        let inner = std::mem::replace(seq.state.get_mut(), LazyState::Forcing);
                        match inner {
                            LazyState::Done(Some((_, tail))) => rest = tail,
                            _ => return,
                        }
                    }
                    Err(_) => return,
                },
                _ => return,
            }
        }
    }
}

impl LazySeq {
    /// A sequence whose first cell `thunk` computes when first needed.
    pub fn new(thunk: LazyThunk) -> Self {
        LazySeq {
            state: Mutex::new(LazyState::Pending(thunk)),
        }
    }

    /// The first cell, computing it once.
    pub fn force(&self, ctx: &mut Ctx) -> AleResult<Option<(Value, Value)>> {
        let thunk = {
            let mut state = self.state.lock();
            match std::mem::replace(&mut *state, LazyState::Forcing) {
                LazyState::Pending(thunk) => thunk,
                LazyState::Done(cell) => {
                    *state = LazyState::Done(cell.clone());
                    return Ok(cell);
                }
                LazyState::Failed(error) => {
                    *state = LazyState::Failed(error.clone());
                    return Err(error);
                }
                LazyState::Forcing => {
                    return Err(AleError::runtime("lazy sequence depends on itself"));
                }
            }
        };
        let outcome = thunk(ctx);
        let mut state = self.state.lock();
        *state = match &outcome {
            Ok(cell) => LazyState::Done(cell.clone()),
            Err(error) => LazyState::Failed(error.clone()),
        };
        outcome
    }

    /// The elements, when this cell and all that follow are already realised and form a chain
    /// of lazy cells ending in an empty sequence; used for printing.
    pub fn realized_prefix(&self) -> Option<Vec<Value>> {
        let mut items = Vec::new();
        let mut rest = {
            let state = self.state.lock();
            match &*state {
                LazyState::Done(None) => return Some(items),
                LazyState::Done(Some((first, rest))) => {
                    items.push(first.clone());
                    rest.clone()
                }
                _ => return None,
            }
        };
        loop {
            match rest {
                Value::Null => return Some(items),
                Value::List(_) | Value::Vector(_) => {
                    items.extend(crate::seq::plain_items(&rest)?);
                    return Some(items);
                }
                Value::Lazy(next) => {
                    let state = next.state.lock();
                    match &*state {
                        LazyState::Done(None) => return Some(items),
                        LazyState::Done(Some((first, tail))) => {
                            items.push(first.clone());
                            let tail = tail.clone();
                            drop(state);
                            rest = tail;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }
}
