//! `POST /webhook/{flow}/{step}/{token}` (`api.md` §2, decision 14).

use argyll_engine::{EngineError, FlowCommandError, WorkReport};
use argyll_model::{Args, StepType};
use argyll_store::Store;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::{ApiError, AppState};

#[derive(Deserialize)]
struct StepResult {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    outputs: Option<Args>,
    #[serde(default)]
    error: Option<String>,
    /// Ours: a failure the step's retry policy should retry.
    #[serde(default)]
    retryable: bool,
}

pub(crate) async fn receive<S: Store>(
    State(app): State<AppState<S>>,
    Path((flow_id, step_id, token)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let flow = app
        .engine
        .flow(&flow_id)
        .await?
        .ok_or_else(|| ApiError::bad_request("Flow not found: flow not found"))?;
    let execution = flow
        .executions
        .get(&step_id)
        .ok_or_else(|| ApiError::bad_request("Step execution not found"))?;
    if flow
        .plan
        .steps
        .get(&step_id)
        .is_some_and(|step| step.step_type != StepType::Async)
    {
        return Err(ApiError::bad_request(
            FlowCommandError::NotAsync(step_id).to_string(),
        ));
    }
    if !execution.work_items.contains_key(&token) {
        return Err(ApiError::bad_request("Work item not found for token"));
    }
    let limit = app.engine.config().step_max_response_bytes;
    // A result too large to keep fails the item for good, as a too-large reply would, and is
    // answered 413 once that is recorded.
    let too_large = (body.len() > limit).then(|| {
        format!(
            "step response too large: {} bytes, the limit is {limit} bytes (STEP_MAX_RESPONSE_BYTES)",
            body.len()
        )
    });
    let report = match &too_large {
        Some(error) => WorkReport::Failed(error.clone()),
        None => {
            let result: StepResult = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("Invalid JSON: {e}")))?;
            match result {
                StepResult {
                    success: true,
                    outputs,
                    ..
                } => WorkReport::Succeeded(outputs.unwrap_or_default()),
                StepResult {
                    error,
                    retryable: true,
                    ..
                } => WorkReport::Retry(error.unwrap_or_default()),
                StepResult { error, .. } => WorkReport::Failed(error.unwrap_or_default()),
            }
        }
    };
    match app
        .engine
        .report_work(&flow_id, &step_id, &token, report)
        .await
    {
        Ok(()) => match too_large {
            Some(error) => Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, error)),
            None => Ok((StatusCode::OK, Body::empty()).into_response()),
        },
        Err(EngineError::FlowNotFound(_)) => {
            Err(ApiError::bad_request("Flow not found: flow not found"))
        }
        Err(EngineError::Work(refused)) => Err(ApiError::bad_request(refused.to_string())),
        Err(other) => Err(other.into()),
    }
}
