//! `/ui/steps/new` and `/ui/steps/{id}/edit`: register or edit a step in a JSON editor, with
//! templates for each kind of step (HTTP sync and async, Ale and Lua scripts, flow). The
//! browser sends it to the public API (`POST /engine/step`, `PUT /engine/step/{id}`) and shows
//! the JSON syntax error, or the server's validation message (its 400 answer), next to the
//! editor; on success it returns to the steps page at the step.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::Console;
use crate::shell::{self, Fragment};

/// The templates offered: (label, step).
fn templates() -> Vec<(&'static str, Value)> {
    vec![
        (
            "HTTP step (sync)",
            json!({"id": "my-step", "name": "My step", "type": "sync",
                   "attributes": {"input": {"role": "required", "type": "string"},
                                  "output": {"role": "output", "type": "string"}},
                   "http": {"endpoint": "http://localhost:9000/my-step", "timeout": 5000}}),
        ),
        (
            "HTTP step (async, completed by webhook)",
            json!({"id": "my-async-step", "name": "My async step", "type": "async",
                   "attributes": {"input": {"role": "required", "type": "string"},
                                  "output": {"role": "output", "type": "string"}},
                   "http": {"endpoint": "http://localhost:9000/my-async-step"}}),
        ),
        (
            "Script step (Ale)",
            json!({"id": "my-ale-step", "name": "My Ale step", "type": "script",
                   "attributes": {"name": {"role": "required", "type": "string"},
                                  "greeting": {"role": "output", "type": "string"}},
                   "script": {"language": "ale", "script": "{:greeting (str \"Hello, \" name)}"}}),
        ),
        (
            "Script step (Lua)",
            json!({"id": "my-lua-step", "name": "My Lua step", "type": "script",
                   "attributes": {"name": {"role": "required", "type": "string"},
                                  "greeting": {"role": "output", "type": "string"}},
                   "script": {"language": "lua", "script": "return {greeting = 'Hello, ' .. name}"}}),
        ),
        (
            "Flow step (runs a child flow)",
            json!({"id": "my-flow-step", "name": "My flow step", "type": "flow",
                   "attributes": {"name": {"role": "required", "type": "string"},
                                  "greeting": {"role": "output", "type": "string"}},
                   "flow": {"goals": ["my-ale-step"]}}),
        ),
    ]
}

pub(crate) async fn new(Query(fragment): Query<Fragment>) -> Response {
    let first = templates()
        .first()
        .map(|(_, step)| pretty(step))
        .unwrap_or_default();
    shell::page(
        StatusCode::OK,
        &fragment,
        "Register a step",
        "/ui/steps",
        None,
        editor("Register a step", None, &first),
    )
}

pub(crate) async fn edit(
    State(console): State<Console>,
    Path(id): Path<String>,
    Query(fragment): Query<Fragment>,
) -> Response {
    match console.api.step(&id).await {
        Ok(Some(step)) => {
            let text = serde_json::to_value(&step)
                .map(|v| pretty(&v))
                .unwrap_or_default();
            shell::page(
                StatusCode::OK,
                &fragment,
                "Edit a step",
                "/ui/steps",
                None,
                editor("Edit a step", Some(&id), &text),
            )
        }
        Ok(None) => shell::page(
            StatusCode::NOT_FOUND,
            &fragment,
            "Step not found",
            "/ui/steps",
            None,
            html! {
                h1 { "Step not found" }
                p { "No step " code { (id) } " is registered. " a href="/ui/steps/new" { "Register one" } "." }
            },
        ),
        Err(error) => shell::page(
            StatusCode::BAD_GATEWAY,
            &fragment,
            "Edit a step",
            "/ui/steps",
            None,
            shell::api_error(&error),
        ),
    }
}

fn editor(title: &str, editing: Option<&str>, text: &str) -> Markup {
    html! {
        h1 { (title) @if let Some(id) = editing { " " code { (id) } } }
        form #step-form data-step-editor="" data-editing=[editing] novalidate {
            @if editing.is_none() {
                label for="step-template" { "Start from" }
                select #step-template {
                    @for (label, step) in templates() {
                        option value=(pretty(&step)) { (label) }
                    }
                }
            }
            label for="step-json" { "Step (JSON)" }
            textarea #step-json name="step" rows="22" spellcheck="false"
                aria-describedby="step-errors" { (text) }
            p #step-errors.field-errors role="alert" {}
            button type="submit" #step-save { @if editing.is_some() { "Save" } @else { "Register" } }
        }
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_a_valid_step() {
        for (label, template) in templates() {
            let step: argyll_model::Step =
                serde_json::from_value(template).unwrap_or_else(|e| panic!("{label}: {e}"));
            assert!(!step.id.is_empty(), "{label}");
        }
    }
}
