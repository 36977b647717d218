//! `/ui/engine`: the instance (version, store, id) and the health of every registered step.
//! Live: health changes and step registrations refresh it.

use argyll_model::HealthStatus;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use crate::Console;
use crate::api::EngineInfo;
use crate::shell::{self, Fragment, Live};

/// Events after which the page is fetched again.
const EVENTS: &[&str] = shell::CATALOG_EVENTS;

pub(crate) async fn page(
    State(console): State<Console>,
    Query(fragment): Query<Fragment>,
) -> Response {
    let live = Live::engine(EVENTS, 0);
    let read = async {
        let info = console.api.info().await?;
        let steps = console.api.steps().await?;
        let mut health = console.api.health().await?;
        // Health entries outlive unregistration (as in the original): show registered steps.
        health.retain(|id, _| steps.iter().any(|s| s.id.as_str() == id));
        for step in &steps {
            health.entry(step.id.to_string()).or_default();
        }
        Ok::<_, crate::ApiError>((info, health))
    };
    let (status, body) = match read.await {
        Ok((info, health)) => (StatusCode::OK, engine(&info, &health)),
        Err(error) => (StatusCode::BAD_GATEWAY, shell::api_error(&error)),
    };
    shell::page(status, &fragment, "Engine", "/ui/engine", Some(&live), body)
}

fn engine(
    info: &EngineInfo,
    health: &std::collections::BTreeMap<String, argyll_model::HealthState>,
) -> Markup {
    let count = |status: HealthStatus| health.values().filter(|h| h.status == status).count();
    html! {
        h1 { "Engine" }
        dl.facts {
            dt { "Version" } dd #version { (info.version) }
            dt { "Store" } dd #store { (info.store) }
            dt { "Instance" } dd { code { (info.instance_id) } }
            dt { "Steps" } dd #step-health {
                (count(HealthStatus::Healthy)) " healthy, "
                (count(HealthStatus::Unhealthy)) " unhealthy, "
                (count(HealthStatus::Unknown)) " unknown"
            }
        }
        h2 { "Step health" }
        @if health.is_empty() {
            p.empty { "No steps are registered yet." }
        } @else {
            div.table-box {
                table.health {
                    thead { tr { th { "Step" } th { "Health" } th { "Error" } } }
                    tbody {
                        @for (step, state) in health {
                            tr data-step=(step) {
                                td { a href={ "/ui/steps#step-" (step) } { code { (step) } } }
                                td { span class={ "badge health-" (state.status.as_str()) } { (state.status.as_str()) } }
                                td.health-error { (state.error) }
                            }
                        }
                    }
                }
            }
        }
    }
}
