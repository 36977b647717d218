//! The page shell: document head (assets, viewport), navigation, theme switch, and the live
//! region that `console.js` refreshes. Every page is one call to [`page`]; a request with
//! `?fragment=1` gets only the live region's content (what the script swaps in).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::assets;

/// The navigation's entries: (path, label).
const NAVIGATION: &[(&str, &str)] = &[
    ("/ui/flows", "Flows"),
    ("/ui/steps", "Steps"),
    ("/ui/start", "Start a flow"),
    ("/ui/engine", "Engine"),
];

/// `?fragment=1`: only the live region.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Fragment {
    #[serde(default)]
    fragment: Option<String>,
}

impl Fragment {
    /// From the value of a `fragment` parameter read with other parameters.
    pub(crate) fn from_flag(flag: Option<&str>) -> Fragment {
        Fragment {
            fragment: flag.map(str::to_owned),
        }
    }

    fn wanted(&self) -> bool {
        matches!(self.fragment.as_deref(), Some("1" | "true"))
    }
}

/// What keeps a page live: the WebSocket subscription (JSON of the `subscribe` message's
/// `data`) and the event types after which the live region is fetched again (none listed:
/// after any event of the subscription).
#[derive(Debug)]
pub(crate) struct Live {
    pub subscribe: String,
    pub events: &'static [&'static str],
    /// Least time between two refreshes (a busy engine would otherwise keep the page
    /// reloading its region back to back).
    pub min_interval_ms: u32,
}

/// Events that change what the catalog and the engine page show.
pub(crate) const CATALOG_EVENTS: &[&str] = &[
    "step_registered",
    "step_updated",
    "step_unregistered",
    "step_health_changed",
];

impl Live {
    /// Live on these events of the engine aggregate, refreshed at most every
    /// `min_interval_ms`.
    pub(crate) fn engine(events: &'static [&'static str], min_interval_ms: u32) -> Live {
        Live {
            subscribe: serde_json::json!({"aggregate_id": ["engine"], "event_types": events})
                .to_string(),
            events,
            min_interval_ms,
        }
    }
}

/// A page: `title`, the navigation entry it belongs to, and its live region `body`.
pub(crate) fn page(
    status: StatusCode,
    fragment: &Fragment,
    title: &str,
    current: &str,
    live: Option<&Live>,
    body: Markup,
) -> Response {
    if fragment.wanted() {
        return respond(status, body);
    }
    let document = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Argyll" }
                link rel="icon" type="image/svg+xml" href=(assets::url("favicon", "svg"));
                link rel="stylesheet" href=(assets::url("console", "css"));
                script type="module" src=(assets::url("console", "js")) {}
            }
            body {
                header.top {
                    a.brand href="/ui/" { "Argyll" }
                    nav aria-label="Main" {
                        ul {
                            @for (path, label) in NAVIGATION {
                                li {
                                    @if *path == current {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    button.theme type="button" data-theme-toggle aria-pressed="false"
                        title="Switch between the light and the dark theme" { "Theme" }
                }
                @if let Some(live) = live {
                    main #live data-live=""
                        data-live-subscribe=(live.subscribe)
                        data-live-events=(live.events.join(","))
                        data-live-interval=(live.min_interval_ms) {
                        (body)
                    }
                } @else {
                    main #live { (body) }
                }
            }
        }
    };
    respond(status, document)
}

fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The box a page shows when the API could not be read.
pub(crate) fn api_error(error: &crate::ApiError) -> Markup {
    html! {
        div.error role="alert" {
            p { strong { "Could not read the engine's API." } }
            p { (error.to_string()) }
        }
    }
}
