//! `/ui/flow/{id}`: one flow — its status, the plan as a graph with each step coloured by its
//! state (work items done / total on fan-outs), each step's details (inputs, outputs, error or
//! skip reason, work items with attempts and next retry, child flows), the attribute values
//! and who provided them, the parent flow, and a timeline of its events. Live: every event of
//! the flow refreshes it. Archived flows are read the same way (the API reads them back).

use argyll_model::{FlowState, StepStatus, WorkStatus, child_flow_id};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use crate::Console;
use crate::api::{EventPage, path_segment};
use crate::graph::{Decoration, StepGraph};
use crate::shell::{self, Live};

/// Events shown per page of the timeline.
const EVENTS_PER_PAGE: usize = 200;
/// Work items listed per step (a fan-out can have a hundred thousand).
const WORK_ITEMS_SHOWN: usize = 1_000;
/// Characters of a value shown before it is cut (the full value is in the event timeline).
const VALUE_CHARS: usize = 2_000;

/// Query of the flow page: `fragment=1` and the timeline's first event (`events_from`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct FlowQuery {
    #[serde(default)]
    fragment: Option<String>,
    #[serde(default)]
    events_from: Option<u64>,
}

pub(crate) async fn page(
    State(console): State<Console>,
    Path(id): Path<String>,
    Query(query): Query<FlowQuery>,
) -> Response {
    let fragment = shell::Fragment::from_flag(query.fragment.as_deref());
    let live = Live {
        subscribe: serde_json::json!({ "aggregate_id": ["flow", id] }).to_string(),
        events: &[],
        min_interval_ms: 250,
    };
    let from = query.events_from.unwrap_or(0);
    let read = async {
        let Some(state) = console.api.flow(&id).await? else {
            return Ok(None);
        };
        let events = console.api.events(&id, from, EVENTS_PER_PAGE).await?;
        let max_id_length = console.api.max_id_length().await?;
        Ok::<_, crate::ApiError>(Some((state, events, max_id_length)))
    };
    let title = format!("Flow {id}");
    match read.await {
        Ok(Some((state, events, max_id_length))) => {
            let live = (!state.is_terminal() && !events.archived).then_some(&live);
            shell::page(
                StatusCode::OK,
                &fragment,
                &title,
                "/ui/flows",
                live,
                flow(&state, &events, from, max_id_length),
            )
        }
        Ok(None) => shell::page(
            StatusCode::NOT_FOUND,
            &fragment,
            "Flow not found",
            "/ui/flows",
            None,
            html! {
                h1 { "Flow not found" }
                p { "No flow " code { (id) } " is stored or archived." }
            },
        ),
        Err(error) => shell::page(
            StatusCode::BAD_GATEWAY,
            &fragment,
            &title,
            "/ui/flows",
            Some(&live),
            shell::api_error(&error),
        ),
    }
}

fn flow(state: &FlowState, events: &EventPage, from: u64, max_id_length: usize) -> Markup {
    let parent = state
        .metadata
        .get("parent_flow_id")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());
    let duration =
        (!state.completed_at.is_zero()).then(|| state.completed_at.millis_since(state.created_at));
    html! {
        h1 { "Flow " code #flow-id { (state.id) } }
        dl.facts {
            dt { "Status" } dd { span #flow-status class={ "badge status-" (state.status.as_str()) } { (state.status.as_str()) } }
            dt { "Goals" } dd { (state.plan.goals.join(", ")) }
            dt { "Started" } dd { (state.created_at) }
            @if let Some(ms) = duration {
                dt { "Finished" } dd { (state.completed_at) " (" (duration_text(ms)) ")" }
            }
            @if !state.error.is_empty() {
                dt { "Error" } dd.health-error #flow-error { (state.error) }
            }
            @if let Some(parent) = parent {
                dt { "Parent flow" } dd { a #parent-link href={ "/ui/flow/" (path_segment(parent)) } { code { (parent) } } }
            }
            @if events.archived {
                dt { "Archived" } dd { "yes (read-only: read back from the archive)" }
            }
        }
        h2 { "Plan" }
        figure.graph-box {
            (StepGraph::new(state.plan.steps.values()).svg(&|step| {
                let execution = state.executions.get(step.id.as_str());
                let status = execution.map_or(StepStatus::Pending, |e| e.status);
                let items = execution.map(|e| &e.work_items);
                let note = items.filter(|w| w.len() > 1).map(|w| {
                    let done = w.count(WorkStatus::Succeeded) + w.count(WorkStatus::Failed);
                    format!("{done}/{} items", w.len())
                });
                Decoration {
                    class: format!("status-{}", status.as_str()),
                    state: status.as_str().to_owned(),
                    note,
                    href: format!("#exec-{}", step.id),
                }
            }))
            figcaption { "Steps coloured by state: pending, active, completed, failed, skipped (dashed). Select a step for its details." }
        }
        h2 { "Steps" }
        @for (id, step) in &state.plan.steps {
            @let execution = state.executions.get(id.as_str());
            @let status = execution.map_or(StepStatus::Pending, |e| e.status);
            details.step-detail #{ "exec-" (id) } data-step=(id) data-status=(status.as_str()) {
                summary {
                    span class={ "badge status-" (status.as_str()) } { (status.as_str()) }
                    " " strong { (step.name) } " " code { (id) }
                }
                @if let Some(execution) = execution {
                    dl.facts {
                        @if !execution.started_at.is_zero() { dt { "Started" } dd { (execution.started_at) } }
                        @if !execution.completed_at.is_zero() {
                            dt { "Finished" } dd { (execution.completed_at) " (" (duration_text(execution.duration)) ")" }
                        }
                        @if !execution.error.is_empty() {
                            dt { @if status == StepStatus::Skipped { "Skipped because" } @else { "Error" } }
                            dd.step-error { (execution.error) }
                        }
                    }
                    @if let Some(inputs) = &execution.inputs {
                        h3 { "Inputs" } (json_block(&serde_json::to_value(inputs.as_ref()).unwrap_or_default()))
                    }
                    @if !execution.outputs.is_empty() {
                        h3 { "Outputs" } (json_block(&serde_json::to_value(execution.outputs.as_ref()).unwrap_or_default()))
                    }
                    @if !execution.work_items.is_empty() {
                        h3 { "Work items (" (execution.work_items.len()) ")" }
                        @if execution.work_items.len() > WORK_ITEMS_SHOWN {
                            p.summary { "The first " (WORK_ITEMS_SHOWN) " are shown; the step's events list all of them." }
                        }
                        div.table-box {
                            table.work-items {
                                thead { tr { th { "Item" } th { "Status" } th { "Attempts" } th { "Next retry" } th { "Error" } } }
                                tbody {
                                    @for (token, item) in execution.work_items.iter().take(WORK_ITEMS_SHOWN) {
                                        tr data-token=(token) {
                                            td {
                                                code { (short(token)) }
                                                @if step.step_type == argyll_model::StepType::Flow {
                                                    @let child = child_flow_id(&state.id, id, token, max_id_length);
                                                    " " a.child-link href={ "/ui/flow/" (path_segment(&child)) } { "child flow" }
                                                }
                                            }
                                            td { span class={ "badge work-" (item.status.as_str()) } { (item.status.as_str()) } }
                                            td { (attempts(item.status, item.retry_count)) }
                                            td { @if !item.next_retry_at.is_zero() && matches!(item.status, WorkStatus::Pending | WorkStatus::Active) { (item.next_retry_at) } }
                                            td.step-error { (item.error) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } @else {
                    p.empty { "Not started." }
                }
            }
        }
        h2 { "Attributes" }
        @if state.attributes.is_empty() {
            p.empty { "No values yet." }
        } @else {
            div.table-box {
                table.attributes {
                    thead { tr { th { "Attribute" } th { "Value" } th { "Provided by" } } }
                    tbody {
                        @for (name, value) in state.attributes.iter() {
                            tr data-attribute=(name) {
                                td { code { (name) } }
                                td { (json_inline(&value.value)) }
                                td {
                                    @match &value.step {
                                        Some(step) => { a href={ "#exec-" (step) } { code { (step) } } }
                                        None => { "init" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Events" }
        (timeline(events, from))
    }
}

fn timeline(events: &EventPage, from: u64) -> Markup {
    html! {
        ol.timeline start=(from.saturating_add(1)) {
            @for event in &events.events {
                @let kind = text_at(event, &["type"]);
                @let sequence = event.get("sequence").and_then(Value::as_u64).unwrap_or_default();
                li data-type=(kind) {
                    details #{ "event-" (sequence) } {
                        summary {
                            span.time { (text_at(event, &["timestamp"])) }
                            " " code { (kind) }
                            @let step = text_at(event, &["data", "step_id"]);
                            @if !step.is_empty() { " · " (step) }
                        }
                        (json_block(event.get("data").unwrap_or(&Value::Null)))
                    }
                }
            }
        }
        nav.pager aria-label="Events" {
            @if from > 0 {
                a href={ "?events_from=" (from.saturating_sub(EVENTS_PER_PAGE as u64)) } { "Earlier events" }
            }
            @if let Some(next) = events.next_from {
                " " a href={ "?events_from=" (next) } { "Later events" }
            }
        }
    }
}

/// The string at `path` in `value`, or `""`.
fn text_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Attempts of a work item: one plus its retries once it has run.
fn attempts(status: WorkStatus, retries: i64) -> i64 {
    match status {
        WorkStatus::Pending if retries == 0 => 0,
        _ => retries + 1,
    }
}

fn short(token: &str) -> &str {
    token.get(..8).unwrap_or(token)
}

pub(crate) fn duration_text(ms: i64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

fn json_block(value: &Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    html! { pre.json { (cut(&text)) } }
}

fn json_inline(value: &Value) -> Markup {
    let text = serde_json::to_string(value).unwrap_or_default();
    html! { code.json { (cut(&text)) } }
}

fn cut(text: &str) -> String {
    if text.chars().count() <= VALUE_CHARS {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(VALUE_CHARS).collect();
        short.push_str(" …");
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_durations_and_cuts() {
        assert_eq!(attempts(WorkStatus::Pending, 0), 0);
        assert_eq!(attempts(WorkStatus::Pending, 2), 3);
        assert_eq!(attempts(WorkStatus::Succeeded, 0), 1);
        assert_eq!(duration_text(12), "12 ms");
        assert_eq!(duration_text(1_500), "1.5 s");
        assert_eq!(duration_text(125_000), "2 min 5 s");
        assert_eq!(
            cut(&"x".repeat(VALUE_CHARS + 5)).chars().count(),
            VALUE_CHARS + 2
        );
    }
}
