//! How the engine executes one work item: the [`StepRunner`] trait and the runners behind it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use argyll_http::{CallOutcome, HttpRunner, StepRequest, request_metadata, webhook_url};
use argyll_model::{Args, Step, StepType};
use argyll_script::ScriptRunner;

/// A boxed future of a work item's outcome (runners are used as trait objects).
pub type WorkFuture = Pin<Box<dyn Future<Output = WorkOutcome> + Send + 'static>>;

/// One work item to execute.
#[derive(Clone, Debug)]
pub struct WorkRequest {
    /// The flow.
    pub flow_id: String,
    /// The step, as planned.
    pub step: Arc<Step>,
    /// The work item's token (`receipt_token` for HTTP steps).
    pub token: String,
    /// The work item's inputs.
    pub inputs: Args,
    /// The flow's metadata.
    pub metadata: Args,
}

/// What executing a work item came to.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkOutcome {
    /// Finished with these outputs.
    Completed(Args),
    /// Accepted by an async step; the result arrives through the webhook.
    Accepted,
    /// Failed in a way worth retrying under the step's retry policy.
    Retryable(String),
    /// Failed for good.
    Failed(String),
}

/// Executes work items of some kind of step. Implementations must not panic; failures are
/// outcomes.
pub trait StepRunner: Send + Sync + 'static {
    /// Runs one work item.
    fn run(&self, work: WorkRequest) -> WorkFuture;
}

/// Runs sync and async HTTP steps through [`argyll_http`].
#[derive(Clone, Debug)]
pub struct HttpStepRunner {
    http: HttpRunner,
    webhook_base: Arc<str>,
}

impl HttpStepRunner {
    /// A runner whose async steps are told to post results under `webhook_base`.
    pub fn new(http: HttpRunner, webhook_base: &str) -> Self {
        HttpStepRunner {
            http,
            webhook_base: webhook_base.into(),
        }
    }
}

impl StepRunner for HttpStepRunner {
    fn run(&self, work: WorkRequest) -> WorkFuture {
        let http = self.http.clone();
        let webhook_base = self.webhook_base.clone();
        Box::pin(async move {
            let Some(config) = work.step.http.as_ref() else {
                return WorkOutcome::Failed(format!(
                    "step {} has no http configuration",
                    work.step.id
                ));
            };
            let is_async = work.step.step_type == StepType::Async;
            let webhook = is_async
                .then(|| webhook_url(&webhook_base, &work.flow_id, &work.step.id, &work.token));
            let request = StepRequest {
                endpoint: config.endpoint.clone(),
                timeout: u64::try_from(config.timeout)
                    .ok()
                    .filter(|ms| *ms > 0)
                    .map(Duration::from_millis),
                is_async,
                metadata: request_metadata(
                    &work.metadata,
                    &work.flow_id,
                    &work.step.id,
                    &work.token,
                    webhook,
                ),
                arguments: work.inputs,
            };
            match http.call(&request).await {
                CallOutcome::Completed(outputs) => {
                    WorkOutcome::Completed(outputs.unwrap_or_default())
                }
                CallOutcome::Accepted => WorkOutcome::Accepted,
                CallOutcome::Retryable(error) => WorkOutcome::Retryable(error),
                CallOutcome::Permanent(error) => WorkOutcome::Failed(error),
            }
        })
    }
}

/// Runs script steps (Ale, Lua) through [`argyll_script`], off the async workers. Script
/// errors are permanent: a script that failed once fails again on the same inputs.
#[derive(Debug, Clone)]
pub struct ScriptStepRunner {
    scripts: Arc<ScriptRunner>,
}

/// The step's runtime input names in byte order: how scripts receive their arguments.
pub fn script_arg_names(step: &Step) -> Vec<String> {
    step.runtime_inputs()
        .map(|(name, _)| name.clone())
        .collect()
}

impl ScriptStepRunner {
    /// A runner over `scripts` (shared with registration-time validation, so compiled programs
    /// are cached once).
    pub fn new(scripts: Arc<ScriptRunner>) -> Self {
        ScriptStepRunner { scripts }
    }
}

impl StepRunner for ScriptStepRunner {
    fn run(&self, work: WorkRequest) -> WorkFuture {
        let scripts = self.scripts.clone();
        Box::pin(async move {
            let Some(config) = work.step.script.as_ref() else {
                return WorkOutcome::Failed(format!("step {} has no script", work.step.id));
            };
            match scripts
                .execute(
                    config.language.as_str(),
                    &config.script,
                    &script_arg_names(&work.step),
                    work.inputs,
                )
                .await
            {
                Ok(outputs) => WorkOutcome::Completed(outputs),
                Err(error) => WorkOutcome::Failed(error.message),
            }
        })
    }
}

/// Why an in-process handler failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying.
    #[error("{0}")]
    Retryable(String),
    /// Not worth retrying.
    #[error("{0}")]
    Permanent(String),
}

type Handler = Arc<
    dyn Fn(WorkRequest) -> Pin<Box<dyn Future<Output = Result<Args, HandlerError>> + Send>>
        + Send
        + Sync,
>;

/// In-process step handlers for embedded use: a step whose endpoint is `local://NAME` runs
/// the Rust function registered under `NAME`, with no HTTP hop.
#[derive(Clone, Default)]
pub struct LocalHandlers {
    handlers: Arc<parking_lot::RwLock<HashMap<String, Handler>>>,
}

/// The scheme of in-process endpoints.
pub const LOCAL_SCHEME: &str = "local://";

impl LocalHandlers {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the handler for `local://name`.
    pub fn register<F, Fut>(&self, name: &str, handler: F)
    where
        F: Fn(WorkRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Args, HandlerError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |work| Box::pin(handler(work)));
        self.handlers.write().insert(name.to_owned(), handler);
    }

    fn get(&self, name: &str) -> Option<Handler> {
        self.handlers.read().get(name).cloned()
    }
}

impl StepRunner for LocalHandlers {
    fn run(&self, work: WorkRequest) -> WorkFuture {
        let endpoint = work
            .step
            .http
            .as_ref()
            .map(|http| http.endpoint.clone())
            .unwrap_or_default();
        let name = endpoint
            .strip_prefix(LOCAL_SCHEME)
            .unwrap_or(&endpoint)
            .to_owned();
        let handler = self.get(&name);
        Box::pin(async move {
            let Some(handler) = handler else {
                return WorkOutcome::Failed(format!(
                    "no local handler registered for {LOCAL_SCHEME}{name}"
                ));
            };
            match handler(work).await {
                Ok(outputs) => WorkOutcome::Completed(outputs),
                Err(HandlerError::Retryable(error)) => WorkOutcome::Retryable(error),
                Err(HandlerError::Permanent(error)) => WorkOutcome::Failed(error),
            }
        })
    }
}

/// Picks the runner for a work item by step type: `local://` endpoints go to the local
/// handlers, other sync/async steps to HTTP, script steps to the script runner (the engine
/// runs flow steps itself).
#[derive(Clone)]
pub struct RunnerSet {
    /// HTTP steps.
    pub http: Arc<dyn StepRunner>,
    /// Script steps.
    pub scripts: Arc<dyn StepRunner>,
    /// `local://` steps.
    pub local: Arc<dyn StepRunner>,
}

impl StepRunner for RunnerSet {
    fn run(&self, work: WorkRequest) -> WorkFuture {
        match work.step.step_type {
            StepType::Sync | StepType::Async => {
                let local = work
                    .step
                    .http
                    .as_ref()
                    .is_some_and(|http| http.endpoint.starts_with(LOCAL_SCHEME));
                if local {
                    self.local.run(work)
                } else {
                    self.http.run(work)
                }
            }
            StepType::Script => self.scripts.run(work),
            // The engine starts child flows itself; a flow step never reaches a runner.
            StepType::Flow => Box::pin(async {
                WorkOutcome::Failed("flow steps are run by the engine, not by a step runner".into())
            }),
            StepType::Unrecognized(ref kind) => {
                let message = format!("unsupported step type: {kind}");
                Box::pin(async move { WorkOutcome::Failed(message) })
            }
        }
    }
}

impl std::fmt::Debug for LocalHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.handlers.read().keys().cloned().collect();
        f.debug_struct("LocalHandlers")
            .field("names", &names)
            .finish()
    }
}

impl std::fmt::Debug for RunnerSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerSet").finish_non_exhaustive()
    }
}
