//! Ale through [`argyll_ale::Program`]: the script is the body of `(lambda (<args>) ...)`.

use std::sync::Arc;

use argyll_ale::{AleError, LimitKind as AleLimit, Limits, Phase as AlePhase, Program};

use crate::error::{LimitKind, ScriptError};
use crate::limits::ScriptLimits;
use crate::runner::{Attributes, CompiledScript, ScriptEngine};

/// The Ale language.
#[derive(Debug, Default)]
pub struct AleEngine;

impl AleEngine {
    /// The engine (stateless: programs carry everything).
    pub fn new() -> Self {
        AleEngine
    }
}

struct AleScript(Program);

/// The memory limit bounds both the live memory of a run (enforced when the process installs
/// `argyll_ale::MeteredAlloc` as its global allocator) and any one value written out.
fn ale_limits(limits: &ScriptLimits) -> Limits {
    Limits {
        max_steps: limits.steps,
        timeout: Some(limits.timeout),
        max_output_bytes: limits.memory_bytes,
        max_memory_bytes: limits.memory_bytes,
        ..Limits::default()
    }
}

fn script_error(error: AleError) -> ScriptError {
    match error.phase {
        AlePhase::Read | AlePhase::Compile => ScriptError::compile(error.message),
        AlePhase::Runtime => ScriptError::runtime(error.message),
        AlePhase::Limit => {
            let kind = match error.limit_kind() {
                Some(AleLimit::Time) => LimitKind::Time,
                Some(AleLimit::Memory | AleLimit::Output) => LimitKind::Memory,
                Some(AleLimit::Steps | AleLimit::Depth) | None => LimitKind::Steps,
            };
            ScriptError::limit(kind, error.message)
        }
    }
}

impl ScriptEngine for AleEngine {
    fn language(&self) -> &'static str {
        "ale"
    }

    fn compile(
        &self,
        source: &str,
        arg_names: &[String],
    ) -> Result<Arc<dyn CompiledScript>, ScriptError> {
        let names: Vec<&str> = arg_names.iter().map(String::as_str).collect();
        let program = Program::compile(source, &names).map_err(script_error)?;
        Ok(Arc::new(AleScript(program)))
    }
}

impl CompiledScript for AleScript {
    fn execute(
        &self,
        inputs: &Attributes,
        limits: &ScriptLimits,
    ) -> Result<Attributes, ScriptError> {
        self.0
            .run_script(inputs, ale_limits(limits))
            .map_err(script_error)
    }

    fn evaluate_predicate(
        &self,
        inputs: &Attributes,
        limits: &ScriptLimits,
    ) -> Result<bool, ScriptError> {
        self.0
            .run_predicate(inputs, ale_limits(limits))
            .map_err(script_error)
    }
}
