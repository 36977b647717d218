//! The REST endpoints of `api.md` §1.

use std::time::Duration;

use argyll_engine::{CatalogError, EngineError, Registration, StartFlow, flow_digest};
use argyll_model::{Args, StepDocument, sanitize_flow_id};
use argyll_store::{FlowOrder, FlowOutcome, FlowPhase, FlowQuery, Store};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, AppState};

type ApiResult = Result<Response, ApiError>;

fn ok(body: Value) -> ApiResult {
    Ok((StatusCode::OK, Json(body)).into_response())
}

fn decode<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid_json(&e))
}

pub(crate) async fn health() -> Response {
    Json(json!({"service": "argyll-engine", "status": "healthy"})).into_response()
}

/// `GET /engine/info` (an addition): the version, the store in use and the instance's id.
pub(crate) async fn info<S: Store>(State(app): State<AppState<S>>) -> Response {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "store": app.config.store_name,
        "instance_id": app.engine.config().instance_id,
        "max_id_length": app.engine.config().max_id_length,
    }))
    .into_response()
}

pub(crate) async fn engine_state<S: Store>(State(app): State<AppState<S>>) -> ApiResult {
    let state = app
        .engine
        .engine_state()
        .await
        .map_err(|e| ApiError::failed("get engine state", e))?;
    Ok(Json(state).into_response())
}

pub(crate) async fn list_steps<S: Store>(State(app): State<AppState<S>>) -> ApiResult {
    let catalog = app.engine.catalog().await?;
    let steps: Vec<&argyll_model::Step> = catalog.state.steps.values().collect();
    ok(json!({"steps": steps, "count": steps.len()}))
}

pub(crate) async fn register_step<S: Store>(
    State(app): State<AppState<S>>,
    body: Bytes,
) -> ApiResult {
    let document: StepDocument = decode(&body)?;
    let step = document
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let registration = app.engine.register_step(step.clone()).await?;
    let status = match registration {
        Registration::Created => StatusCode::CREATED,
        Registration::Unchanged => StatusCode::OK,
    };
    Ok((
        status,
        Json(json!({"step": step, "message": "Step registered"})),
    )
        .into_response())
}

pub(crate) async fn get_step<S: Store>(
    State(app): State<AppState<S>>,
    Path(step_id): Path<String>,
) -> ApiResult {
    let catalog = app.engine.catalog().await?;
    match catalog.state.steps.get(&step_id) {
        Some(step) => Ok(Json(step).into_response()),
        None => Err(ApiError::not_found(format!("step not found: {step_id}"))),
    }
}

pub(crate) async fn update_step<S: Store>(
    State(app): State<AppState<S>>,
    Path(step_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let document: StepDocument = decode(&body)?;
    if document.step.id != step_id {
        return Err(ApiError::bad_request(
            "Step ID in URL does not match step ID in body",
        ));
    }
    let step = document
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    app.engine.update_step(step.clone()).await?;
    ok(json!({"step": step, "message": "Step updated"}))
}

pub(crate) async fn unregister_step<S: Store>(
    State(app): State<AppState<S>>,
    Path(step_id): Path<String>,
) -> ApiResult {
    match app.engine.unregister_step(&step_id).await {
        Ok(()) => ok(json!({"message": "Step unregistered"})),
        Err(EngineError::Catalog(CatalogError::StepNotFound(_))) => {
            Err(ApiError::not_found(format!("step not found: {step_id}")))
        }
        Err(other) => Err(other.into()),
    }
}

pub(crate) async fn list_health<S: Store>(State(app): State<AppState<S>>) -> ApiResult {
    let catalog = app.engine.catalog().await?;
    let health = &catalog.state.health;
    ok(json!({"health": health, "count": health.len()}))
}

pub(crate) async fn get_health<S: Store>(
    State(app): State<AppState<S>>,
    Path(step_id): Path<String>,
) -> ApiResult {
    let catalog = app.engine.catalog().await?;
    match catalog.state.health.get(&step_id) {
        Some(health) => Ok(Json(health).into_response()),
        None => Err(ApiError::not_found(format!(
            "Health not found for step: {step_id}"
        ))),
    }
}

#[derive(Deserialize)]
struct PlanRequest {
    #[serde(default)]
    goals: Option<Vec<String>>,
    #[serde(default)]
    init: Option<Args>,
}

pub(crate) async fn plan<S: Store>(State(app): State<AppState<S>>, body: Bytes) -> ApiResult {
    let request: PlanRequest = decode(&body)?;
    let goals = request.goals.unwrap_or_default();
    let plan = app
        .engine
        .plan(&goals, &request.init.unwrap_or_default())
        .await?;
    Ok(Json(plan).into_response())
}

#[derive(Deserialize)]
struct StartRequest {
    #[serde(default)]
    id: String,
    #[serde(default)]
    goals: Option<Vec<String>>,
    #[serde(default)]
    init: Option<Args>,
}

pub(crate) async fn start_flow<S: Store>(State(app): State<AppState<S>>, body: Bytes) -> ApiResult {
    let request: StartRequest = decode(&body)?;
    let flow_id = sanitize_flow_id(&request.id)
        .map_err(|_| ApiError::bad_request("Valid Flow ID is required"))?;
    let goals = request.goals.unwrap_or_default();
    if goals.is_empty() {
        return Err(ApiError::bad_request(
            "At least one goal step ID is required",
        ));
    }
    let started = app
        .engine
        .start_flow(StartFlow {
            flow_id,
            goals,
            init: request.init.unwrap_or_default(),
            metadata: Default::default(),
        })
        .await?;
    let status = if started.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"message": "", "flow_id": started.flow_id})),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    archived: Option<String>,
    sort: Option<String>,
    prefix: Option<String>,
}

pub(crate) async fn list_flows<S: Store>(
    State(app): State<AppState<S>>,
    Query(query): Query<ListQuery>,
) -> ApiResult {
    let outcome = match query.status.as_deref() {
        None | Some("") => None,
        Some("active") => Some(FlowOutcome::Active),
        Some("completed") => Some(FlowOutcome::Completed),
        Some("failed") => Some(FlowOutcome::Failed),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid status: {other} (expected active, completed or failed)"
            )));
        }
    };
    let limit = match query.limit.as_deref() {
        None | Some("") => 0,
        Some(text) => match text.parse::<usize>() {
            Ok(limit) if limit > 0 => limit,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid limit: {text} (expected a whole number greater than zero)"
                )));
            }
        },
    };
    let order = match query.sort.as_deref() {
        None | Some("" | "id") => FlowOrder::ById,
        Some("recent") => FlowOrder::NewestFirst,
        Some("oldest") => FlowOrder::OldestFirst,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid sort: {other} (expected recent, oldest or id)"
            )));
        }
    };
    let page = app
        .engine
        .list_flows(&FlowQuery {
            outcome,
            phases: if matches!(query.archived.as_deref(), Some("true" | "1")) {
                vec![
                    FlowPhase::Active,
                    FlowPhase::Deactivated,
                    FlowPhase::Archiving,
                    FlowPhase::Archived,
                ]
            } else {
                vec![FlowPhase::Active, FlowPhase::Deactivated]
            },
            top_level_only: true,
            prefix: query.prefix.filter(|p| !p.is_empty()),
            order,
            after: query.cursor.filter(|c| !c.is_empty()),
            limit,
        })
        .await
        .map_err(|e| ApiError::failed("list flows", e))?;
    let flows: Vec<Value> = page
        .entries
        .iter()
        .map(|entry| json!({"id": entry.flow_id, "digest": flow_digest(entry)}))
        .collect();
    let mut body = json!({"flows": flows, "count": flows.len()});
    if let (Some(next), Some(map)) = (page.next_after, body.as_object_mut()) {
        map.insert("next_cursor".into(), Value::String(next));
    }
    ok(body)
}

#[derive(Deserialize)]
pub(crate) struct FlowQueryParams {
    wait: Option<String>,
}

pub(crate) async fn get_flow<S: Store>(
    State(app): State<AppState<S>>,
    Path(flow_id): Path<String>,
    Query(params): Query<FlowQueryParams>,
) -> ApiResult {
    let flow = match params.wait.as_deref().filter(|w| !w.is_empty()) {
        None => app.engine.flow(&flow_id).await,
        Some(text) => {
            let wait = parse_wait(text).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid wait: {text} (expected a duration such as 5s or 500ms)"
                ))
            })?;
            let wait = wait.min(app.config.max_long_poll);
            app.engine.wait_for_flow(&flow_id, wait).await
        }
    }
    .map_err(|e| ApiError::failed("get flow", e))?;
    if let Some(flow) = flow {
        return Ok(Json(flow).into_response());
    }
    // Decision 20: archived flows stay readable.
    match read_archived(&app, &flow_id).await? {
        Some(archived) => {
            let mut state = serde_json::to_value(&archived.state)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            if let Some(map) = state.as_object_mut() {
                map.insert("archived".into(), Value::Bool(true));
            }
            ok(state)
        }
        None => Err(ApiError::not_found(format!("flow not found: {flow_id}"))),
    }
}

async fn read_archived<S: Store>(
    app: &AppState<S>,
    flow_id: &str,
) -> Result<Option<argyll_archive::ArchivedFlow>, ApiError> {
    let Some(bucket) = &app.config.archive else {
        return Ok(None);
    };
    bucket.read(flow_id).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("failed to read archived flow: {e}"),
        )
    })
}

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    from: Option<String>,
    limit: Option<String>,
}

/// `GET /engine/flow/{id}/events`: the flow's event log, from the store or the archive.
/// Additions: `from` (first sequence, default 0) and `limit` (most events, default all); a
/// page that stops before the end says where the next one starts (`next_from`).
pub(crate) async fn flow_events<S: Store>(
    State(app): State<AppState<S>>,
    Path(flow_id): Path<String>,
    Query(query): Query<EventsQuery>,
) -> ApiResult {
    let whole = |name: &str, text: Option<&str>, least: u64| -> Result<Option<u64>, ApiError> {
        match text {
            None | Some("") => Ok(None),
            Some(text) => match text.parse::<u64>() {
                Ok(value) if value >= least => Ok(Some(value)),
                _ => Err(ApiError::bad_request(format!(
                    "invalid {name}: {text} (expected a whole number of at least {least})"
                ))),
            },
        }
    };
    let from = whole("from", query.from.as_deref(), 0)?.unwrap_or(0);
    let limit = whole("limit", query.limit.as_deref(), 1)?
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let aggregate = argyll_events::AggregateId::Flow(flow_id.clone());
    let events = app
        .engine
        .store()
        .read(&aggregate, 0)
        .await
        .map_err(|e| ApiError::failed("read flow events", e.into()))?;
    let page = |all: &[&argyll_events::EventEnvelope], archived: bool| {
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(all.len());
        let end = start.saturating_add(limit).min(all.len());
        let events = all.get(start..end).unwrap_or_default();
        let mut body = json!({"events": events, "count": events.len(), "archived": archived});
        if let (true, Some(map)) = (end < all.len(), body.as_object_mut()) {
            map.insert("next_from".into(), json!(end));
        }
        body
    };
    if !events.is_empty() {
        let events: Vec<&argyll_events::EventEnvelope> = events.iter().map(AsRef::as_ref).collect();
        return ok(page(&events, false));
    }
    match read_archived(&app, &flow_id).await? {
        Some(archived) => {
            let events: Vec<&argyll_events::EventEnvelope> = archived.events.iter().collect();
            ok(page(&events, true))
        }
        None => Err(ApiError::not_found(format!("flow not found: {flow_id}"))),
    }
}

/// `5s`, `500ms`, `1m`, or a plain number of seconds.
fn parse_wait(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}
