//! `/ui/steps`: every registered step as a graph of the attributes it produces
//! and consumes, and as a table with its type, endpoint or script and health. Live: steps
//! registered, updated or removed elsewhere and health changes refresh it.

use std::collections::BTreeMap;

use argyll_model::{HealthState, HealthStatus, Step, StepType};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use crate::Console;
use crate::api::path_segment;
use crate::graph::{Decoration, StepGraph};
use crate::shell::{self, Fragment, Live};

/// Events after which the page is fetched again.
const EVENTS: &[&str] = shell::CATALOG_EVENTS;

/// Characters of a script shown in the table.
const SCRIPT_CHARS: usize = 80;

pub(crate) async fn page(
    State(console): State<Console>,
    Query(fragment): Query<Fragment>,
) -> Response {
    let live = Live::engine(EVENTS, 0);
    let (status, body) = match read_catalog(&console).await {
        Ok((steps, health)) => (StatusCode::OK, catalog(&steps, &health)),
        Err(error) => (StatusCode::BAD_GATEWAY, shell::api_error(&error)),
    };
    shell::page(status, &fragment, "Steps", "/ui/steps", Some(&live), body)
}

async fn read_catalog(
    console: &Console,
) -> Result<(Vec<Step>, BTreeMap<String, HealthState>), crate::ApiError> {
    let steps = console.api.steps().await?;
    let health = console.api.health().await?;
    Ok((steps, health))
}

fn catalog(steps: &[Step], health: &BTreeMap<String, HealthState>) -> Markup {
    html! {
        h1 { "Steps" }
        div.actions {
            p.summary { (steps.len()) " registered" }
            a.button #register-step href="/ui/steps/new" { "Register a step" }
        }
        @if steps.is_empty() {
            p.empty { "No steps are registered yet." }
        } @else {
            figure.graph-box {
                (StepGraph::new(steps).svg(&|step: &Step| {
                    let status = health
                        .get(step.id.as_str())
                        .map_or(HealthStatus::Unknown, |h| h.status);
                    Decoration {
                        class: format!("health-{}", status.as_str()),
                        state: status.as_str().to_owned(),
                        note: None,
                        href: format!("#step-{}", step.id),
                    }
                }))
                figcaption {
                    "Steps (boxes) output attributes (pills) that other steps take as inputs; "
                    "dashed lines are optional inputs."
                }
            }
            div.table-box {
                table.steps {
                    thead { tr { th { "Step" } th { "Type" } th { "Runs" } th { "Health" } } }
                    tbody {
                        @for step in steps {
                            (row(step, health.get(step.id.as_str())))
                        }
                    }
                }
            }
        }
    }
}

fn row(step: &Step, health: Option<&HealthState>) -> Markup {
    let status = health.map_or(HealthStatus::Unknown, |h| h.status);
    html! {
        tr #{ "step-" (step.id) } data-step=(step.id) {
            td {
                strong { (step.name) } br; code { (step.id) } br;
                a.edit href={ "/ui/steps/" (path_segment(step.id.as_str())) "/edit" } { "Edit" }
            }
            td { (step.step_type.as_str()) }
            td.runs { (runs(step)) }
            td {
                span class={ "badge health-" (status.as_str()) } { (status.as_str()) }
                @if let Some(error) = health.map(|h| h.error.as_str()).filter(|e| !e.is_empty()) {
                    div.health-error { (error) }
                }
            }
        }
    }
}

/// What the step runs: its endpoint, its script (cut) or the goals of its child flow.
fn runs(step: &Step) -> Markup {
    match step.step_type {
        StepType::Script => {
            let script = step.script.as_ref();
            let text: String = script
                .map(|s| s.script.chars().take(SCRIPT_CHARS).collect())
                .unwrap_or_default();
            let cut = script.is_some_and(|s| s.script.chars().count() > SCRIPT_CHARS);
            html! {
                span.lang { (script.map_or("", |s| s.language.as_str())) }
                " " code { (text) @if cut { "…" } }
            }
        }
        StepType::Flow => html! {
            "flow of " code { (step.flow.as_ref().map(|f| f.goals.join(", ")).unwrap_or_default()) }
        },
        _ => html! { code { (step.http.as_ref().map_or("", |h| h.endpoint.as_str())) } },
    }
}
