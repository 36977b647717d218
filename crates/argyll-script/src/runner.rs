//! The runner the engine calls: one [`ScriptEngine`] per language, compiled programs cached.

use std::sync::Arc;

use serde_json::{Map, Value as Json};

use crate::ale::AleEngine;
use crate::error::{LimitKind, Phase, ScriptError};
use crate::limits::ScriptLimits;
use crate::lua::LuaEngine;

/// Inputs and outputs of scripts: JSON objects keyed by attribute name.
pub type Attributes = Map<String, Json>;

/// A language: compiles scripts into reusable programs.
pub trait ScriptEngine: Send + Sync {
    /// The language's name on the wire (`"ale"`, `"lua"`).
    fn language(&self) -> &'static str;

    /// Compiles `source` with the step's runtime input names, sorted by byte order (they are
    /// bound positionally, as the original does).
    fn compile(
        &self,
        source: &str,
        arg_names: &[String],
    ) -> Result<Arc<dyn CompiledScript>, ScriptError>;
}

/// A compiled script, run once per work item, possibly from many threads at once.
pub trait CompiledScript: Send + Sync {
    /// Runs a script step: a returned object/table is the output map, anything else is
    /// `{"result": value}`.
    fn execute(
        &self,
        inputs: &Attributes,
        limits: &ScriptLimits,
    ) -> Result<Attributes, ScriptError>;

    /// Evaluates a predicate with the language's truthiness.
    fn evaluate_predicate(
        &self,
        inputs: &Attributes,
        limits: &ScriptLimits,
    ) -> Result<bool, ScriptError>;
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    language: &'static str,
    source: Arc<str>,
    arg_names: Arc<[String]>,
}

/// Compiled programs kept by default (the original keeps 1024 per language).
pub const DEFAULT_CACHE_CAPACITY: u64 = 4096;

/// The registry of languages plus a bounded cache of compiled programs, keyed by language,
/// source and argument names. Errors are not cached.
pub struct ScriptRunner {
    engines: Vec<Arc<dyn ScriptEngine>>,
    cache: moka::sync::Cache<CacheKey, Arc<dyn CompiledScript>>,
    limits: ScriptLimits,
}

impl ScriptRunner {
    /// Ale and Lua with `limits` for every run.
    pub fn new(limits: ScriptLimits) -> Self {
        Self::with_engines(
            limits,
            vec![Arc::new(AleEngine::new()), Arc::new(LuaEngine::new())],
        )
    }

    /// A runner over the given engines (tests and embedders can add or replace languages).
    pub fn with_engines(limits: ScriptLimits, engines: Vec<Arc<dyn ScriptEngine>>) -> Self {
        ScriptRunner {
            engines,
            cache: moka::sync::Cache::new(DEFAULT_CACHE_CAPACITY),
            limits,
        }
    }

    /// The limits applied to every run.
    pub fn limits(&self) -> &ScriptLimits {
        &self.limits
    }

    fn engine(&self, language: &str) -> Result<&Arc<dyn ScriptEngine>, ScriptError> {
        self.engines
            .iter()
            .find(|engine| engine.language() == language)
            .ok_or_else(|| ScriptError::invalid_language(language))
    }

    /// Compiles (or fetches from the cache) `source` in `language`.
    pub fn compile(
        &self,
        language: &str,
        source: &str,
        arg_names: &[String],
    ) -> Result<Arc<dyn CompiledScript>, ScriptError> {
        let engine = self.engine(language)?;
        let key = CacheKey {
            language: engine.language(),
            source: source.into(),
            arg_names: arg_names.into(),
        };
        if let Some(program) = self.cache.get(&key) {
            return Ok(program);
        }
        let program = engine.compile(source, arg_names)?;
        self.cache.insert(key, program.clone());
        Ok(program)
    }

    /// The registration-time check: compiles and drops the result (keeping it cached).
    pub fn validate(
        &self,
        language: &str,
        source: &str,
        arg_names: &[String],
    ) -> Result<(), ScriptError> {
        self.compile(language, source, arg_names).map(|_| ())
    }

    /// Runs a script step on the calling thread. From async code use [`ScriptRunner::execute`].
    pub fn execute_blocking(
        &self,
        language: &str,
        source: &str,
        arg_names: &[String],
        inputs: &Attributes,
    ) -> Result<Attributes, ScriptError> {
        self.compile(language, source, arg_names)?
            .execute(inputs, &self.limits)
    }

    /// Runs a script step on the calling thread under a smaller `budget` than the configured
    /// limits, for callers that can afford a few microseconds but not a blocked thread: `None`
    /// when the run hit a budget tighter than the real limit (run it again with
    /// [`ScriptRunner::execute`]; scripts are pure, so the aborted run left nothing behind),
    /// otherwise the run's real result.
    pub fn execute_within(
        &self,
        budget: &ScriptLimits,
        language: &str,
        source: &str,
        arg_names: &[String],
        inputs: &Attributes,
    ) -> Option<Result<Attributes, ScriptError>> {
        self.run_within(budget, language, source, arg_names, |program, limits| {
            program.execute(inputs, limits)
        })
    }

    /// [`ScriptRunner::execute_within`] for a predicate.
    pub fn evaluate_predicate_within(
        &self,
        budget: &ScriptLimits,
        language: &str,
        source: &str,
        arg_names: &[String],
        inputs: &Attributes,
    ) -> Option<Result<bool, ScriptError>> {
        self.run_within(budget, language, source, arg_names, |program, limits| {
            program.evaluate_predicate(inputs, limits)
        })
    }

    fn run_within<T>(
        &self,
        budget: &ScriptLimits,
        language: &str,
        source: &str,
        arg_names: &[String],
        run: impl FnOnce(&dyn CompiledScript, &ScriptLimits) -> Result<T, ScriptError>,
    ) -> Option<Result<T, ScriptError>> {
        let quick = ScriptLimits {
            memory_bytes: self.limits.memory_bytes.min(budget.memory_bytes),
            steps: self.limits.steps.min(budget.steps),
            timeout: self.limits.timeout.min(budget.timeout),
        };
        let program = match self.compile(language, source, arg_names) {
            Ok(program) => program,
            Err(error) => return Some(Err(error)),
        };
        let result = run(program.as_ref(), &quick);
        let cut_short = match &result {
            Err(ScriptError {
                phase: Phase::Limit(kind),
                ..
            }) => match kind {
                LimitKind::Memory => quick.memory_bytes < self.limits.memory_bytes,
                LimitKind::Steps => quick.steps < self.limits.steps,
                LimitKind::Time => quick.timeout < self.limits.timeout,
            },
            _ => false,
        };
        (!cut_short).then_some(result)
    }

    /// Evaluates a predicate on the calling thread. From async code use
    /// [`ScriptRunner::evaluate_predicate`].
    pub fn evaluate_predicate_blocking(
        &self,
        language: &str,
        source: &str,
        arg_names: &[String],
        inputs: &Attributes,
    ) -> Result<bool, ScriptError> {
        self.compile(language, source, arg_names)?
            .evaluate_predicate(inputs, &self.limits)
    }

    /// Runs a script step on tokio's blocking pool, so a slow script never stalls the async
    /// workers.
    pub async fn execute(
        self: &Arc<Self>,
        language: &str,
        source: &str,
        arg_names: &[String],
        inputs: Attributes,
    ) -> Result<Attributes, ScriptError> {
        let program = self.compile(language, source, arg_names)?;
        let limits = self.limits;
        on_blocking_pool(move || program.execute(&inputs, &limits)).await
    }

    /// Evaluates a predicate on tokio's blocking pool.
    pub async fn evaluate_predicate(
        self: &Arc<Self>,
        language: &str,
        source: &str,
        arg_names: &[String],
        inputs: Attributes,
    ) -> Result<bool, ScriptError> {
        let program = self.compile(language, source, arg_names)?;
        let limits = self.limits;
        on_blocking_pool(move || program.evaluate_predicate(&inputs, &limits)).await
    }
}

async fn on_blocking_pool<T: Send + 'static>(
    run: impl FnOnce() -> Result<T, ScriptError> + Send + 'static,
) -> Result<T, ScriptError> {
    tokio::task::spawn_blocking(run)
        .await
        .unwrap_or_else(|join| {
            Err(ScriptError::runtime(format!(
                "script run was aborted: {join}"
            )))
        })
}

impl std::fmt::Debug for ScriptRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let languages: Vec<&str> = self.engines.iter().map(|e| e.language()).collect();
        f.debug_struct("ScriptRunner")
            .field("languages", &languages)
            .field("cached_programs", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}
