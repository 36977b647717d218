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
    /// A resource budget ran out (evaluation steps, recursion depth, wall clock).
    Limit,
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
}

impl AleError {
    /// A reader error at a position: `<message> (line L, column C)`.
    pub fn read(message: impl fmt::Display, line: usize, column: usize) -> Self {
        AleError {
            phase: Phase::Read,
            message: format!("{message} (line {line}, column {column})"),
        }
    }

    /// A compile error.
    pub fn compile(message: impl Into<String>) -> Self {
        AleError {
            phase: Phase::Compile,
            message: message.into(),
        }
    }

    /// A run-time error.
    pub fn runtime(message: impl Into<String>) -> Self {
        AleError {
            phase: Phase::Runtime,
            message: message.into(),
        }
    }

    /// A budget error.
    pub fn limit(message: impl Into<String>) -> Self {
        AleError {
            phase: Phase::Limit,
            message: message.into(),
        }
    }

    /// The limit error for output beyond `max_bytes` (printed forms, JSON results).
    pub fn output_too_large(max_bytes: usize) -> Self {
        AleError::limit(format!("output size limit exceeded ({max_bytes} bytes)"))
    }
}

/// Result alias of the crate.
pub type AleResult<T> = Result<T, AleError>;
