//! `/ui/` and `/ui/flows`: every top-level flow, newest first — status, id, goals, start time
//! and duration — filtered by status and id prefix, in pages read with the API's cursor (so a
//! page costs the same with a hundred flows or a million). Live: flows starting or finishing
//! anywhere refresh the page (at most once a second).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use crate::Console;
use crate::api::{FlowFilter, FlowList, path_segment, query_value};
use crate::shell::{self, Fragment, Live};

/// Flows per page.
const PAGE: usize = 50;
/// The longest prefix or cursor taken from a URL.
const MAX_FILTER_CHARS: usize = 1024;

const EVENTS: &[&str] = &["flow_activated", "flow_deactivated"];

/// The page's query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct FlowsQuery {
    #[serde(default)]
    fragment: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

pub(crate) async fn page(
    State(console): State<Console>,
    Query(query): Query<FlowsQuery>,
) -> Response {
    let fragment = Fragment::from_flag(query.fragment.as_deref());
    let bounded = |text: Option<String>| {
        text.unwrap_or_default()
            .chars()
            .take(MAX_FILTER_CHARS)
            .collect::<String>()
    };
    let filter = FlowFilter {
        status: bounded(query.status).trim().to_owned(),
        prefix: bounded(query.prefix),
        cursor: bounded(query.cursor),
        limit: PAGE,
    };
    let live = Live::engine(EVENTS, 1000);
    let (status, body) = match console.api.flows(&filter).await {
        Ok(list) => (StatusCode::OK, flows(&filter, &list)),
        Err(error) if error.status() == Some(400) => (
            StatusCode::BAD_REQUEST,
            html! { (filters(&filter)) p.field-errors role="alert" { (error.message()) } },
        ),
        Err(error) => (StatusCode::BAD_GATEWAY, shell::api_error(&error)),
    };
    shell::page(status, &fragment, "Flows", "/ui/flows", Some(&live), body)
}

fn filters(filter: &FlowFilter) -> Markup {
    html! {
        h1 { "Flows" }
        form.filters method="get" action="/ui/flows" {
            label for="status" { "Status" }
            select #status name="status" {
                @for (value, label) in [("", "All"), ("active", "Active"), ("completed", "Completed"), ("failed", "Failed")] {
                    option value=(value) selected[filter.status == value] { (label) }
                }
            }
            label for="prefix" { "Id starts with" }
            input #prefix type="text" name="prefix" value=(filter.prefix) autocomplete="off" spellcheck="false";
            button type="submit" { "Filter" }
        }
    }
}

fn flows(filter: &FlowFilter, list: &FlowList) -> Markup {
    let link = |cursor: Option<&str>| {
        let mut url = String::from("/ui/flows?");
        for (name, value) in [
            ("status", filter.status.as_str()),
            ("prefix", filter.prefix.as_str()),
        ] {
            if !value.is_empty() {
                url.push_str(&format!("{name}={}&", query_value(value)));
            }
        }
        if let Some(cursor) = cursor {
            url.push_str(&format!("cursor={}", query_value(cursor)));
        }
        url.trim_end_matches(['&', '?']).to_owned()
    };
    html! {
        (filters(filter))
        @if list.flows.is_empty() {
            p.empty #no-flows {
                @if filter.cursor.is_empty() { "No flows match." } @else { "No more flows." }
            }
        } @else {
            div.table-box {
                table.flows {
                    thead { tr { th { "Status" } th { "Flow" } th { "Goals" } th { "Started" } th { "Duration" } } }
                    tbody {
                        @for flow in &list.flows {
                            @let digest = &flow.digest;
                            tr data-flow=(flow.id) data-status=(digest.status) {
                                td {
                                    span class={ "badge status-" (digest.status) } { (status_icon(&digest.status)) " " (digest.status) }
                                    @if !digest.error.is_empty() {
                                        div.health-error { (digest.error.chars().take(160).collect::<String>()) }
                                    }
                                }
                                td { a href={ "/ui/flow/" (path_segment(&flow.id)) } { code { (flow.id) } } }
                                td { (digest.goals.join(", ")) }
                                td.time { @if let Some(at) = digest.created_at { (at) } }
                                td.time {
                                    @if let (Some(start), Some(end)) = (digest.created_at, digest.completed_at.filter(|t| !t.is_zero())) {
                                        (super::flow::duration_text(end.millis_since(start)))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if !filter.cursor.is_empty() { a #newest href=(link(None)) { "Newest" } " " }
            @if let Some(next) = &list.next_cursor { a #older href=(link(Some(next))) { "Older flows" } }
        }
    }
}

fn status_icon(status: &str) -> &'static str {
    match status {
        "completed" => "✓",
        "failed" => "✗",
        "active" => "●",
        _ => "○",
    }
}
