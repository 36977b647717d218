//! # argyll-ale
//!
//! Ale, the small Lisp in which Argyll's script steps and predicates are written
//! (`shared/spec/ale.md`), implemented in Rust: a reader with Ale's syntax and error messages,
//! a compiler that macro-expands and resolves names at compile time (so a misspelt input is a
//! registration error, as in the original), an evaluator with tail calls, lazy sequences and
//! the numeric tower, and printers for Ale's display and reader forms.
//!
//! **Owns**: the language — values, reading, compiling, evaluating, printing — and the
//! embedding API ([`Program`]) that turns JSON inputs into a call and the result back into
//! JSON, exactly as Argyll's glue does.
//!
//! **Must not depend on**: any other Argyll crate, I/O or an async runtime. Scripts cannot reach
//! files, the network or the OS: `print` and friends write to an in-memory buffer. Every
//! evaluation runs under [`Limits`] (steps, recursion depth, wall clock); exceeding one is an
//! error with phase [`Phase::Limit`], never a hang, a stack overflow or a panic.
//!
//! Memory is the one budget the evaluator cannot count by itself: every builtin allocates. The
//! crate owns a memory meter for it ([`MeteredAlloc`], [`MemoryMeter`]): a global allocator
//! wrapper the embedder installs, which counts the live bytes each thread allocates during a
//! run, and which every run checks against [`Limits::max_memory_bytes`] at every step. Without
//! it installed ([`metering_installed`] is false), runs work the same but that limit is not
//! enforced. This is the crate's only `unsafe` code (the `GlobalAlloc` implementation, which
//! forwards to the wrapped allocator).
//!
//! ```
//! use argyll_ale::{Limits, Program};
//! use serde_json::json;
//!
//! let program = Program::compile("{:greeting (str \"Hello, \" name)}", &["name"]).unwrap();
//! let inputs = json!({"name": "Argyll"});
//! let outputs = program.run_script(inputs.as_object().unwrap(), Limits::default()).unwrap();
//! assert_eq!(outputs["greeting"], "Hello, Argyll");
//! ```

// Internal modules mark items `pub` to share them across modules; the public API is what this
// file re-exports.
#![allow(unreachable_pub)]
// Objects key on `Value`; values with interior mutability (lazy sequences, promises) hash and
// compare by identity, so mutation never changes a key.
#![allow(clippy::mutable_key_type)]

mod builtins;
mod compile;
pub mod conformance;
mod error;
mod eval;
mod lazy;
mod memory;
mod ns;
mod number;
mod print;
mod proc;
mod read;
mod script;
mod seq;
mod value;

pub use error::{AleError, AleResult, LimitKind, Phase};
pub use eval::{DEFAULT_MEMORY_LIMIT, Limits};
pub use memory::{MemoryMeter, MeteredAlloc, metering_installed};
pub use print::{
    DEFAULT_PRINT_BUDGET, display_form, display_form_within, format_float, reader_form,
    reader_form_within,
};
pub use read::read_all;
pub use script::{Program, ale_to_json, ale_to_json_within, eval_source, json_to_ale};
pub use value::{Symbol, Value};

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn programs_and_values_are_shareable() {
        assert_send_sync::<super::Program>();
        assert_send_sync::<super::Value>();
    }
}
