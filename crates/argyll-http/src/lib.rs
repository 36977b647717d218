//! # argyll-http
//!
//! Calling HTTP steps: the request the original sends (`engine.md` §5.6), per-step timeouts
//! (contract decision 6), responses read only up to a limit (`STEP_MAX_RESPONSE_BYTES`;
//! larger fails for good), and the classification of what comes back into success, retryable
//! and permanent failures (decision 7); plus the health check of steps with a `health_check` URL
//! (`engine.md` §5.17).
//!
//! **Owns**: [`HttpRunner`] (one pooled client for every step), [`StepRequest`] and the request
//! metadata rules ([`request_metadata`], [`webhook_url`]), [`CallOutcome`], [`HealthStatus`].
//!
//! **Must not depend on**: the engine or the store. It performs one call and reports what
//! happened; recording events, retries and health changes are the engine's job.
//!
//! Classification: transport errors and timeouts, HTTP 5xx and 429 are retryable; other 4xx
//! and a `200` whose body says `success: false` are permanent; a sync step must answer `200`
//! with `{"success": true, "outputs": {...}}`; an async step's initial reply may be `200` or
//! `202` and only acknowledges the work (its outputs come through the webhook).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value as Json};

/// The default step timeout (the original's `STEP_TIMEOUT`).
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one health check.
pub const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// `User-Agent` of step calls.
pub const USER_AGENT: &str = "Argyll-Engine/1.0";
/// The default [`HttpRunner::max_response_bytes`] (`STEP_MAX_RESPONSE_BYTES`): 4 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 << 20;

/// The webhook an async step posts its result to: `<base>/webhook/<flow>/<step>/<token>`
/// (not escaped, as in the original).
pub fn webhook_url(base: &str, flow_id: &str, step_id: &str, token: &str) -> String {
    format!(
        "{}/webhook/{flow_id}/{step_id}/{token}",
        base.trim_end_matches('/')
    )
}

/// The metadata sent with a call: the flow's metadata, then `flow_id`, `step_id`,
/// `receipt_token` and, for async steps, `webhook_url` — overwriting caller keys of the same
/// names.
pub fn request_metadata(
    flow_metadata: &Map<String, Json>,
    flow_id: &str,
    step_id: &str,
    token: &str,
    webhook: Option<String>,
) -> Map<String, Json> {
    let mut metadata = flow_metadata.clone();
    metadata.insert("flow_id".into(), Json::String(flow_id.into()));
    metadata.insert("step_id".into(), Json::String(step_id.into()));
    metadata.insert("receipt_token".into(), Json::String(token.into()));
    if let Some(url) = webhook {
        metadata.insert("webhook_url".into(), Json::String(url));
    }
    metadata
}

/// One call of a step's endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRequest {
    /// The step's `http.endpoint`.
    pub endpoint: String,
    /// The step's `http.timeout`; `None` (or zero) uses the runner's default.
    pub timeout: Option<Duration>,
    /// Whether the step is async (its reply only acknowledges the work).
    pub is_async: bool,
    /// The work item's inputs.
    pub arguments: Map<String, Json>,
    /// See [`request_metadata`].
    pub metadata: Map<String, Json>,
}

/// What a call came to.
#[derive(Clone, Debug, PartialEq)]
pub enum CallOutcome {
    /// A sync step finished: its outputs (`None` when it sent none).
    Completed(Option<Map<String, Json>>),
    /// An async step accepted the work; the result comes through the webhook.
    Accepted,
    /// Worth retrying (by the step's retry policy), with the work item's error text.
    Retryable(String),
    /// Not worth retrying, with the work item's error text.
    Permanent(String),
}

/// A step's health as a check found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthStatus {
    /// It answered below 400.
    Healthy,
    /// It failed, with the reason.
    Unhealthy(String),
}

/// Errors building the runner.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct BuildError(String);

/// The body a step answers with.
#[derive(Deserialize)]
struct StepResult {
    success: bool,
    #[serde(default)]
    outputs: Option<Map<String, Json>>,
    #[serde(default)]
    error: Option<String>,
}

/// Calls HTTP steps over one pooled client.
#[derive(Clone, Debug)]
pub struct HttpRunner {
    client: reqwest::Client,
    default_timeout: Duration,
    max_response_bytes: usize,
}

impl HttpRunner {
    /// A runner whose calls time out after `default_timeout` unless the step sets its own.
    pub fn new(default_timeout: Duration) -> Result<Self, BuildError> {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|error| BuildError(error.to_string()))?;
        Ok(HttpRunner {
            client,
            default_timeout,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        })
    }

    /// Reads step responses up to `bytes`; a larger one fails the work item for good with
    /// `step response too large` (a step answering 100 MB used to abort the engine).
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// The largest step response read.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    fn too_large(&self, size: Option<u64>) -> CallOutcome {
        let size = size.map_or_else(
            || "more than the limit".to_owned(),
            |n| format!("{n} bytes"),
        );
        CallOutcome::Permanent(format!(
            "step response too large: {size}, the limit is {} bytes (STEP_MAX_RESPONSE_BYTES)",
            self.max_response_bytes
        ))
    }

    /// The response body, read chunk by chunk up to the limit.
    async fn read_capped(
        &self,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, Result<CallOutcome, reqwest::Error>> {
        let limit = self.max_response_bytes;
        if let Some(length) = response.content_length()
            && length > u64::try_from(limit).unwrap_or(u64::MAX)
        {
            return Err(Ok(self.too_large(Some(length))));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(Err)? {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(Ok(self.too_large(None)));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Calls the step and classifies the result.
    pub async fn call(&self, request: &StepRequest) -> CallOutcome {
        let timeout = request
            .timeout
            .filter(|t| !t.is_zero())
            .unwrap_or(self.default_timeout);
        let body =
            serde_json::json!({ "arguments": request.arguments, "metadata": request.metadata });
        let response = self
            .client
            .post(&request.endpoint)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(timeout)
            .json(&body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) if error.is_timeout() => {
                return CallOutcome::Retryable(format!(
                    "work not completed: step timed out after {} ms",
                    timeout.as_millis()
                ));
            }
            Err(error) => {
                return CallOutcome::Retryable(format!(
                    "work not completed: {}",
                    transport_text(&error)
                ));
            }
        };
        let status = response.status().as_u16();
        if request.is_async && status == 202 {
            return CallOutcome::Accepted;
        }
        if status != 200 {
            let text = format!("step returned HTTP error: status {status}");
            return if status == 429 || status >= 500 || !(400..500).contains(&status) {
                CallOutcome::Retryable(format!("work not completed: {text}"))
            } else {
                CallOutcome::Permanent(text)
            };
        }
        let bytes = match self.read_capped(response).await {
            Ok(bytes) => bytes,
            Err(Ok(too_large)) => return too_large,
            Err(Err(error)) if error.is_timeout() => {
                return CallOutcome::Retryable(format!(
                    "work not completed: step timed out after {} ms",
                    timeout.as_millis()
                ));
            }
            Err(Err(error)) => return CallOutcome::Permanent(transport_text(&error)),
        };
        let result: StepResult = match serde_json::from_slice(&bytes) {
            Ok(result) => result,
            Err(error) => return CallOutcome::Permanent(format!("invalid step response: {error}")),
        };
        match (result.success, result.error) {
            (true, _) if request.is_async => CallOutcome::Accepted,
            (true, _) => CallOutcome::Completed(result.outputs),
            (false, Some(error)) if !error.is_empty() => {
                CallOutcome::Permanent(format!("step unsuccessful: {error}"))
            }
            (false, _) => CallOutcome::Permanent("step unsuccessful".into()),
        }
    }

    /// GETs a step's `health_check` URL with a 3 s timeout: transport errors and statuses
    /// from 400 are unhealthy (`HTTP 500 Internal Server Error`).
    pub async fn check_health(&self, url: &str) -> HealthStatus {
        match self
            .client
            .get(url)
            .timeout(HEALTH_CHECK_TIMEOUT)
            .send()
            .await
        {
            Err(error) => HealthStatus::Unhealthy(transport_text(&error)),
            Ok(response) if response.status().as_u16() >= 400 => {
                let status = response.status();
                HealthStatus::Unhealthy(
                    format!(
                        "HTTP {} {}",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or("")
                    )
                    .trim_end()
                    .to_owned(),
                )
            }
            Ok(_) => HealthStatus::Healthy,
        }
    }
}

/// The error with its causes, which is where reqwest keeps the useful part
/// ("connection refused").
fn transport_text(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
