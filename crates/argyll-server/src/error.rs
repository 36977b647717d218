//! The `{"error","status"}` error body and the status code of each engine error.

use argyll_engine::{AggregateError, CatalogError, EngineError};
use argyll_plan::PlanError;
use argyll_store::StoreError;
use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An API error: a status and the message of the error body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The `error` text.
    pub message: String,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// An engine error whose message names the operation (`failed to get flow: ...`); the
    /// status stays the error's own (503 while the store is unavailable, else 500 or 4xx).
    pub fn failed(operation: &str, error: EngineError) -> Self {
        let mut api = ApiError::from(error);
        api.message = format!("failed to {operation}: {}", api.message);
        api
    }

    /// 400 for a request body that is not the expected JSON.
    pub fn invalid_json(error: &serde_json::Error) -> Self {
        Self::bad_request(format!("invalid JSON request: {error}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "request failed");
        }
        let body = json!({"error": self.message, "status": self.status.as_u16()});
        (self.status, Json(body)).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        let status = match &error {
            EngineError::InvalidStep(_)
            | EngineError::Script(_)
            | EngineError::Init(_)
            | EngineError::Work(_)
            | EngineError::TooManyWorkItems(_)
            | EngineError::StateTooLarge(_)
            | EngineError::InvalidRequest(_)
            | EngineError::Catalog(
                CatalogError::TypeConflict(_) | CatalogError::Cycle(_) | CatalogError::FlowCycle(_),
            ) => StatusCode::BAD_REQUEST,
            EngineError::Plan(PlanError::NoGoals) => {
                return ApiError::bad_request("At least one goal step ID is required");
            }
            EngineError::Catalog(CatalogError::StepExists(_)) | EngineError::FlowExists(_) => {
                StatusCode::CONFLICT
            }
            EngineError::Catalog(CatalogError::StepNotFound(_))
            | EngineError::Plan(PlanError::StepNotFound { .. })
            | EngineError::FlowNotFound(_) => StatusCode::NOT_FOUND,
            EngineError::Aggregate(AggregateError::Store(StoreError::Unavailable(_))) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // A listing's cursor that is not one the store gave out: the client's mistake.
            EngineError::Aggregate(AggregateError::Store(StoreError::InvalidCursor(_))) => {
                StatusCode::BAD_REQUEST
            }
            EngineError::Aggregate(_) | EngineError::Setup(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.to_string())
    }
}

/// Runs the request with its body read within `timeout` and `limit` before the handler runs,
/// and turns an error answer that is not yet the `{"error","status"}` body into one.
pub(crate) async fn bounded_request(
    limit: usize,
    timeout: std::time::Duration,
    request: Request,
    next: Next,
) -> Response {
    let request = match read_body_in_time(limit, timeout, request).await {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    errors_as_json(next.run(request).await).await
}

/// Reads the whole request body, within `timeout` in all (a client trickling a body byte by
/// byte cannot hold a connection and a task forever) and `limit` bytes: 408 or 413 in the
/// usual error body otherwise. Requests without a body (most `GET`s) pass untouched.
async fn read_body_in_time(
    limit: usize,
    timeout: std::time::Duration,
    request: Request,
) -> Result<Request, Response> {
    use http_body_util::BodyExt;
    if http_body::Body::is_end_stream(request.body()) {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(timeout, http_body_util::Limited::new(body, limit).collect());
    let bytes = match read.await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body too large: the limit is {limit} bytes (ENGINE_MAX_REQUEST_BYTES)"
                ),
            )
            .into_response());
        }
        Ok(Err(error)) => {
            return Err(
                ApiError::bad_request(format!("request body could not be read: {error}"))
                    .into_response(),
            );
        }
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {} s (ENGINE_BODY_TIMEOUT)",
                    timeout.as_secs_f64()
                ),
            )
            .into_response());
        }
    };
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// Error answers that did not come from a handler — extractor rejections, a bad WebSocket
/// upgrade, a method the route lacks — are plain text in axum; this rewrites every such answer
/// into the `{"error","status"}` body, so clients parse one shape. (Bodies over the limit never
/// get here: [`read_body_in_time`] answers them first.)
async fn errors_as_json(response: Response) -> Response {
    let status = response.status();
    let is_error = status.is_client_error() || status.is_server_error();
    // JSON errors are already the API's; HTML ones are pages of the console meant for people.
    let is_json_or_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| {
            value.as_bytes().starts_with(b"application/json")
                || value.as_bytes().starts_with(b"text/html")
        });
    if !is_error || is_json_or_page {
        return response;
    }
    // Rejection texts are one short line; more is not a message worth echoing.
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut rewritten = ApiError::new(status, message).into_response();
    rewritten.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rewritten
}
