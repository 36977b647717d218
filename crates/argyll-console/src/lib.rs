//! # argyll-console
//!
//! The web console the `argyll` binary serves at `/ui/`: pages rendered on the server from
//! the public HTTP API, kept live in the browser by a small ES module that listens on the
//! public WebSocket and fetches the changed part of the page again. It reads nothing but the
//! public API, so any instance can serve it; the server-side reads go to
//! [`ConsoleConfig::api_url`], while the browser's WebSocket and its two writes (starting a
//! flow, saving a step) go to the instance that served the page.
//!
//! **Owns**: the console's routes ([`router`]), its pages (`pages`), the page shell and
//! themes (`shell`), the embedded assets with content-hashed names (`assets`), the API reads
//! it makes (`api`), and the layered graph layout it draws as SVG ([`layout`], `graph`).
//!
//! **Must not depend on**: the engine, the stores or the server crate — only the model
//! (the API's types) and HTTP. No JavaScript build step: the scripts and styles are plain
//! files embedded with `include_str!`.

mod api;
mod assets;
mod graph;
pub mod layout;
mod pages;
mod shell;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;

pub use api::ApiError;

/// Where the console reads from.
#[derive(Clone, Debug)]
pub struct ConsoleConfig {
    /// Base URL of the public API the pages are rendered from (e.g. `http://127.0.0.1:8080`).
    pub api_url: String,
    /// Time limit of one API read.
    pub api_timeout: Duration,
}

impl ConsoleConfig {
    /// Reads from the API at `api_url` with the default time limit (10 s).
    pub fn new(api_url: impl Into<String>) -> Self {
        ConsoleConfig {
            api_url: api_url.into(),
            api_timeout: Duration::from_secs(10),
        }
    }
}

/// What every console handler sees.
#[derive(Clone, Debug)]
struct Console {
    api: Arc<api::Api>,
}

/// The console's routes: `/` redirects to `/ui/`; pages under `/ui/`; assets under
/// `/ui/assets/`. Mount it beside the API (the server merges it into its router).
pub fn router(config: ConsoleConfig) -> Router {
    let console = Console {
        api: Arc::new(api::Api::new(&config)),
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pages::flows::page))
        .route("/ui/flows", get(pages::flows::page))
        .route("/ui/steps", get(pages::catalog::page))
        .route("/ui/steps/new", get(pages::step_editor::new))
        .route("/ui/steps/{id}/edit", get(pages::step_editor::edit))
        .route("/ui/start", get(pages::start::page))
        .route("/ui/start/preview", get(pages::start::preview))
        .route("/ui/engine", get(pages::engine::page))
        .route("/ui/flow/{id}", get(pages::flow::page))
        .route("/ui/assets/{file}", get(assets::serve))
        .route("/ui/{*rest}", get(pages::not_found))
        .with_state(console)
}
