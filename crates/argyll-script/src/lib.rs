//! # argyll-script
//!
//! Script steps and predicates: the layer the engine calls to compile a step's script at
//! registration and to run it per work item, in Ale or Lua, with the safety the original lacks
//! (contract decisions 17 and 18).
//!
//! **Owns**: the [`ScriptEngine`]/[`CompiledScript`] traits; the [`ScriptRunner`] registry by
//! language (`ale`, `lua`; anything else is "invalid script language: <name>") with a bounded
//! cache (moka) of compiled programs keyed by language, source and argument names; the Ale
//! engine (over `argyll-ale`); the Lua engine (mlua, vendored Lua 5.2) with its sandbox, pool of
//! states, fresh globals per run and JSON conversions; [`ScriptLimits`] (memory, steps, wall
//! clock) and their configuration variables.
//!
//! **Must not depend on**: the engine, the store, HTTP or configuration crates. It runs no I/O:
//! scripts cannot reach files, the network or the OS, and `print` output is discarded.
//!
//! A run that exceeds a limit fails with [`Phase::Limit`]; no script can panic or abort the
//! process. Async callers use [`ScriptRunner::execute`], which runs on tokio's blocking pool.
//!
//! Lua's budget and deadline are checked between VM instructions; C library calls that could
//! run long without executing instructions are covered too: allocation-heavy ones (`string.rep`,
//! `table.concat`) by the memory limit, and pattern matching (`find`, `match`, `gmatch`, `gsub`)
//! by our own port of Lua 5.2's matcher, which charges every step to the run's budget. Ale's
//! memory limit counts the live bytes a run allocates through [`MeteredAlloc`] (re-exported from
//! `argyll-ale`), which the program must install as its global allocator, wrapping the allocator
//! it would use anyway. Without it ([`metering_installed`] is false), Ale runs are bounded only by
//! their steps and by `memory_bytes` for any one value written out.
//!
//! ```
//! #[global_allocator]
//! static ALLOCATOR: argyll_script::MeteredAlloc<std::alloc::System> =
//!     argyll_script::MeteredAlloc(std::alloc::System);
//! # fn main() { assert!(argyll_script::metering_installed()); }
//! ```
//!
//! ```
//! use argyll_script::{ScriptLimits, ScriptRunner};
//! use serde_json::json;
//!
//! let runner = ScriptRunner::new(ScriptLimits::default());
//! let inputs = json!({"x": 2}).as_object().cloned().unwrap_or_default();
//! let args = vec!["x".to_owned()];
//! let lua = runner.execute_blocking("lua", "return {result = (x or 0) * 3}", &args, &inputs)?;
//! assert_eq!(lua["result"], 6);
//! let ale = runner.execute_blocking("ale", "{:result (* x 3)}", &args, &inputs)?;
//! assert_eq!(ale["result"], 6);
//! # Ok::<(), argyll_script::ScriptError>(())
//! ```

mod ale;
mod error;
mod limits;
mod lua;
mod lua_pattern;
mod runner;

pub use ale::AleEngine;
pub use argyll_ale::{MeteredAlloc, metering_installed};
pub use error::{LimitKind, Phase, ScriptError};
pub use limits::{LimitConfigError, ScriptLimits};
pub use lua::LuaEngine;
pub use runner::{Attributes, CompiledScript, DEFAULT_CACHE_CAPACITY, ScriptEngine, ScriptRunner};
