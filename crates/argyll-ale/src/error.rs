//! Errors: every failure is a value with a phase and a message, never a panic.

use std::fmt;

/// When an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Reading the source text (syntax).
    Read,
    /// Compiling read forms: unknown names, arity, special-form syntax, macro expansion.
    Compile,
    /// Running: type errors, `raise`, division by zero, missing keys.
    Runtime,
    /// A resource budget ran out (evaluation steps, recursion depth, wall clock, output size,
    /// memory); [`AleError::limit_kind`] says which.
    Limit,
}

/// Which budget of [`crate::Limits`] a run exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// `max_steps`.
    Steps,
    /// `max_depth`.
    Depth,
    /// `timeout`.
    Time,
    /// `max_output_bytes`.
    Output,
    /// `max_memory_bytes`.
    Memory,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Read => "read",
            Phase::Compile => "compile",
            Phase::Runtime => "runtime",
            Phase::Limit => "limit",
        })
    }
}

/// An Ale error: the message users see (Ale's wording where it has one) and its phase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AleError {
    /// When it happened.
    pub phase: Phase,
    /// What happened.
    pub message: String,
    /// The budget, for errors of phase [`Phase::Limit`]: embedders classify limit errors by it
    /// rather than by their wording.
    limit: Option<LimitKind>,
}

impl AleError {
    /// A reader error at a position: `<message> (line L, column C)`.
    pub fn read(message: impl fmt::Display, line: usize, column: usize) -> Self {
        AleError {
            phase: Phase::Read,
            message: format!("{message} (line {line}, column {column})"),
            limit: None,
        }
    }

    /// A compile error.
    pub fn compile(message: impl Into<String>) -> Self {
        AleError {
            phase: Phase::Compile,
            message: message.into(),
            limit: None,
        }
    }

    /// A run-time error.
    pub fn runtime(message: impl Into<String>) -> Self {
        AleError {
            phase: Phase::Runtime,
            message: message.into(),
            limit: None,
        }
    }

    /// A budget error.
    pub fn limit(kind: LimitKind, message: impl Into<String>) -> Self {
        AleError {
            phase: Phase::Limit,
            message: message.into(),
            limit: Some(kind),
        }
    }

    /// The budget this error exhausted; `None` unless the phase is [`Phase::Limit`].
    pub fn limit_kind(&self) -> Option<LimitKind> {
        self.limit
    }

    /// The limit error for output beyond `max_bytes` (printed forms, JSON results).
    pub fn output_too_large(max_bytes: usize) -> Self {
        AleError::limit(
            LimitKind::Output,
            format!("output size limit exceeded ({max_bytes} bytes)"),
        )
    }

    /// The limit error for a run holding more than `max_bytes` of memory: `memory limit
    /// exceeded (64 MiB)`, in bytes when the limit is not a whole number of MiB.
    pub fn memory_limit(max_bytes: usize) -> Self {
        const MIB: usize = 1024 * 1024;
        let size = if max_bytes.is_multiple_of(MIB) {
            format!("{} MiB", max_bytes / MIB)
        } else {
            format!("{max_bytes} bytes")
        };
        AleError::limit(LimitKind::Memory, format!("memory limit exceeded ({size})"))
    }
}

/// Result alias of the crate.
pub type AleResult<T> = Result<T, AleError>;
