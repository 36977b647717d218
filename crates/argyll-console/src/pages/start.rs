//! `/ui/start`: start a flow — pick goals among the registered steps, see the plan for them
//! (`POST /engine/plan`, drawn as a graph) with the init attributes it needs and their types,
//! fill the init values in a JSON editor (checked as they are typed: JSON syntax, missing
//! required attributes, declared types; the server's own answer shown the same way), start,
//! and land on the live flow view. The browser talks to the public API for the start itself;
//! the preview is rendered here (`/ui/start/preview?goal=…`).

use std::collections::BTreeMap;

use argyll_model::{AttributeRole, AttributeType, ExecutionPlan, Step};
use axum::extract::{Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::Console;
use crate::graph::{Decoration, StepGraph};
use crate::shell::{self, Fragment};

/// Goals a preview takes at most (each a registered step id).
const MAX_GOALS: usize = 100;

pub(crate) async fn page(
    State(console): State<Console>,
    Query(fragment): Query<Fragment>,
) -> Response {
    let (status, body) = match console.api.steps().await {
        Ok(steps) => (StatusCode::OK, form(&steps)),
        Err(error) => (StatusCode::BAD_GATEWAY, shell::api_error(&error)),
    };
    shell::page(status, &fragment, "Start a flow", "/ui/start", None, body)
}

fn form(steps: &[Step]) -> Markup {
    html! {
        h1 { "Start a flow" }
        @if steps.is_empty() {
            p.empty { "No steps are registered yet: " a href="/ui/steps/new" { "register one" } " first." }
        } @else {
            form #start-form data-start="" novalidate {
                fieldset.goals {
                    legend { "Goals" }
                    @for step in steps {
                        label.goal {
                            input type="checkbox" name="goal" value=(step.id);
                            " " (step.name) " " code { (step.id) }
                        }
                    }
                }
                div #plan-preview aria-live="polite" {
                    p.empty { "Pick one or more goals to see the plan." }
                }
                label for="flow-id" { "Flow id" }
                input #flow-id type="text" name="id" required autocomplete="off" spellcheck="false";
                label for="init" { "Init values (JSON object)" }
                textarea #init name="init" rows="10" spellcheck="false"
                    aria-describedby="init-errors" { "{}" }
                ul #init-errors.field-errors role="alert" {}
                button type="submit" #start-button { "Start" }
                p #start-error.field-errors role="alert" {}
            }
        }
    }
}

/// `GET /ui/start/preview?goal=a&goal=b`: the plan for those goals, as the start form shows it.
pub(crate) async fn preview(State(console): State<Console>, RawQuery(query): RawQuery) -> Response {
    let goals: Vec<String> = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.strip_prefix("goal="))
        .map(percent_decode)
        .filter(|goal| !goal.is_empty())
        .take(MAX_GOALS)
        .collect();
    let fragment = Fragment::from_flag(Some("1"));
    if goals.is_empty() {
        return shell::page(
            StatusCode::OK,
            &fragment,
            "",
            "",
            None,
            html! { p.empty { "Pick one or more goals to see the plan." } },
        );
    }
    match console.api.plan(&goals).await {
        Ok(plan) => shell::page(StatusCode::OK, &fragment, "", "", None, plan_preview(&plan)),
        Err(error) => shell::page(
            StatusCode::OK,
            &fragment,
            "",
            "",
            None,
            html! { p.field-errors role="alert" { (error.message()) } },
        ),
    }
}

fn plan_preview(plan: &ExecutionPlan) -> Markup {
    // What the editor checks: each required init attribute and its declared type.
    let required: BTreeMap<&str, &str> = plan
        .required
        .iter()
        .map(|name| (name.as_str(), declared_type(plan, name)))
        .collect();
    let template: serde_json::Map<String, Value> = required
        .iter()
        .map(|(name, kind)| ((*name).to_owned(), example(kind)))
        .collect();
    html! {
        div #plan data-required=(json!(required).to_string())
            data-template=(serde_json::to_string_pretty(&template).unwrap_or_default()) {
            p.summary {
                (plan.steps.len()) " steps will run"
                @let excluded = plan.excluded.satisfied.len() + plan.excluded.missing.len();
                @if excluded > 0 { ", " (excluded) " excluded" }
                "."
            }
            figure.graph-box {
                (StepGraph::new(plan.steps.values()).svg(&|step| Decoration {
                    class: "status-pending".into(),
                    state: "in the plan".into(),
                    note: plan.is_goal(step.id.as_str()).then(|| "goal".to_owned()),
                    href: format!("/ui/steps#step-{}", step.id),
                }))
            }
            @if required.is_empty() {
                p #required-attributes { "No init values are required." }
            } @else {
                p { "Required init values:" }
                ul #required-attributes {
                    @for (name, kind) in &required {
                        li data-attribute=(name) { code { (name) } @if !kind.is_empty() { ": " (kind) } }
                    }
                }
            }
        }
    }
}

/// The type the plan's consumers declare for `name` (`""` when none does).
fn declared_type<'a>(plan: &'a ExecutionPlan, name: &str) -> &'a str {
    plan.steps
        .values()
        .filter_map(|step| step.attributes.get(name))
        .filter(|spec| spec.role != AttributeRole::Output)
        .map(|spec| spec.attr_type.as_str())
        .find(|kind| !kind.is_empty())
        .unwrap_or_default()
}

/// A value of `kind` to start the editor with.
fn example(kind: &str) -> Value {
    match AttributeType::parse(kind) {
        AttributeType::String => json!(""),
        AttributeType::Number => json!(0),
        AttributeType::Boolean => json!(false),
        AttributeType::Object => json!({}),
        AttributeType::Array => json!([]),
        _ => Value::Null,
    }
}

/// `%XX` and `+` decoded (a goal is a step id: any text).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(value) = hex {
                    out.push(value);
                    i += 2;
                } else {
                    out.push(byte);
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Fb+c%3"), "a/b c%3");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }

    #[test]
    fn the_template_has_a_value_of_each_declared_type() {
        assert_eq!(example("string"), json!(""));
        assert_eq!(example("array"), json!([]));
        assert_eq!(example(""), Value::Null);
    }
}
