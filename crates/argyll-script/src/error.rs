//! Script errors: a phase and a message, so the engine can tell a bad registration from a
//! failing run from an exhausted budget.

use std::fmt;

/// Where a script failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Reading or compiling the script (reported at step registration).
    Compile,
    /// Running it: a raised error, a type error, a bad result.
    Runtime,
    /// It exceeded one of the [`crate::ScriptLimits`].
    Limit(LimitKind),
}

/// Which budget a script exhausted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Memory (Lua's state, an Ale run's live memory) or output size (Ale values written out).
    Memory,
    /// Lua instructions or Ale evaluation steps, or Ale recursion depth.
    Steps,
    /// Wall-clock time.
    Time,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Compile => "compile",
            Phase::Runtime => "runtime",
            Phase::Limit(LimitKind::Memory) => "memory limit",
            Phase::Limit(LimitKind::Steps) => "step limit",
            Phase::Limit(LimitKind::Time) => "time limit",
        })
    }
}

/// A failed compile or run. `Display` is the message users see in step and work events.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScriptError {
    /// Where it failed.
    pub phase: Phase,
    /// What went wrong, in the language's own words where it has them.
    pub message: String,
}

impl ScriptError {
    /// A compile error.
    pub fn compile(message: impl Into<String>) -> Self {
        ScriptError {
            phase: Phase::Compile,
            message: message.into(),
        }
    }

    /// A runtime error.
    pub fn runtime(message: impl Into<String>) -> Self {
        ScriptError {
            phase: Phase::Runtime,
            message: message.into(),
        }
    }

    /// A limit error.
    pub fn limit(kind: LimitKind, message: impl Into<String>) -> Self {
        ScriptError {
            phase: Phase::Limit(kind),
            message: message.into(),
        }
    }

    /// The original's error for a language other than `ale` and `lua`.
    pub fn invalid_language(language: &str) -> Self {
        ScriptError::compile(format!("invalid script language: {language}"))
    }
}
