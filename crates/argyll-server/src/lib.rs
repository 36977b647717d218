//! # argyll-server
//!
//! Argyll's HTTP API over an [`argyll_engine::Engine`]: the original's REST endpoints with the
//! same paths, bodies, status codes and `{"error","status"}` error bodies (`api.md` §1, with
//! the contract's changed codes), the webhook (`api.md` §2, decision 14), the WebSocket event
//! stream (`api.md` §4), CORS, a request-body limit and graceful shutdown. Beyond the
//! original: `GET /engine/flow/{id}?wait=5s` long-polls until the flow is terminal, and
//! `GET /engine/flow` takes `status`, `limit` and `cursor`; `GET /engine/flow/{id}/events`
//! takes `from` and `limit` (and says `next_from`); `GET /engine/info` gives the version,
//! store, instance id and id length limit; [`router_with`]/[`serve_with`] mount more routes
//! (the console) beside the API; engine-aggregate subscribers get
//! `flow_activated`/`flow_deactivated` (derived from the flow feed).
//!
//! Every way in is bounded (decision 25): request bodies by size and by time, connections by
//! count and by header/idle time (`connections`, its own accept loop on hyper), WebSocket
//! clients by count and each by its own send queue (`ws`); every error, rejections of the
//! framework included, is the `{"error","status"}` body (`error`).
//!
//! [`router`] builds the axum router (embeddable in another service, which then owns the
//! connection limits); [`serve`] runs it on a listener within [`ConnectionLimits`] until a
//! shutdown signal, then lets in-flight requests and work finish.
//!
//! **Must not depend on**: a concrete store, configuration loading or logging setup — the
//! binary composes those.

mod api;
mod connections;
mod error;
mod webhook;
mod ws;

use std::future::Future;
use std::time::Duration;

use argyll_engine::Engine;
use argyll_store::Store;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use connections::ConnectionLimits;
pub use error::ApiError;
pub use ws::WsLimits;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest accepted request body (413 above).
    pub max_request_bytes: usize,
    /// Longest `?wait=` of a long-poll read.
    pub max_long_poll: Duration,
    /// How long a graceful shutdown waits for running work.
    pub shutdown_timeout: Duration,
    /// Where archived flows are read from (decision 20), when archiving is configured.
    pub archive: Option<argyll_archive::Bucket>,
    /// Connection cap and header/idle timeout of [`serve`].
    pub connections: ConnectionLimits,
    /// Time for a request's whole body to arrive (`ENGINE_BODY_TIMEOUT`); slower ones get 408.
    pub body_timeout: Duration,
    /// WebSocket clients and their send queues.
    pub websocket: WsLimits,
    /// The store's name as `GET /engine/info` reports it (`local`, `memory`, `redis`).
    pub store_name: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_request_bytes: 10 << 20,
            max_long_poll: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(10),
            archive: None,
            connections: ConnectionLimits::default(),
            body_timeout: Duration::from_secs(30),
            websocket: WsLimits::default(),
            store_name: String::new(),
        }
    }
}

/// What every handler sees.
#[derive(Debug)]
pub struct AppState<S> {
    engine: Engine<S>,
    config: ServerConfig,
    closing: watch::Receiver<bool>,
    /// One permit per WebSocket client (`WS_MAX_CLIENTS`).
    ws_clients: std::sync::Arc<tokio::sync::Semaphore>,
}

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState {
            engine: self.engine.clone(),
            config: self.config.clone(),
            closing: self.closing.clone(),
            ws_clients: self.ws_clients.clone(),
        }
    }
}

/// The API router over `engine`. WebSocket streams end when `closing` turns true.
pub fn router<S: Store>(
    engine: Engine<S>,
    config: ServerConfig,
    closing: watch::Receiver<bool>,
) -> Router {
    router_with(engine, config, closing, Router::new())
}

/// The API router over `engine` with `routes` beside it (the console), behind the same
/// request limits. `routes` must not repeat a path of the API: axum refuses overlapping
/// routes when the router is built (at start-up, never on a request).
pub fn router_with<S: Store>(
    engine: Engine<S>,
    config: ServerConfig,
    closing: watch::Receiver<bool>,
    routes: Router,
) -> Router {
    let limit = config.max_request_bytes;
    let body_timeout = config.body_timeout;
    let ws_clients = std::sync::Arc::new(tokio::sync::Semaphore::new(
        config.websocket.max_clients.max(1),
    ));
    let state = AppState {
        engine,
        config,
        closing,
        ws_clients,
    };
    Router::new()
        .route("/health", get(api::health))
        .route("/engine", get(api::engine_state::<S>))
        .route("/engine/", get(api::engine_state::<S>))
        .route(
            "/engine/step",
            get(api::list_steps::<S>).post(api::register_step::<S>),
        )
        .route(
            "/engine/step/{step_id}",
            get(api::get_step::<S>)
                .put(api::update_step::<S>)
                .delete(api::unregister_step::<S>),
        )
        .route("/engine/info", get(api::info::<S>))
        .route("/engine/health", get(api::list_health::<S>))
        .route("/engine/health/{step_id}", get(api::get_health::<S>))
        .route("/engine/plan", post(api::plan::<S>))
        .route(
            "/engine/flow",
            get(api::list_flows::<S>).post(api::start_flow::<S>),
        )
        .route("/engine/flow/{flow_id}", get(api::get_flow::<S>))
        .route("/engine/flow/{flow_id}/events", get(api::flow_events::<S>))
        .route("/engine/ws", get(ws::upgrade::<S>))
        .route(
            "/webhook/{flow_id}/{step_id}/{token}",
            post(webhook::receive::<S>),
        )
        .with_state(state)
        .merge(routes)
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(move |request, next| {
            every_request(limit, body_timeout, request, next)
        }))
}

/// Serves `engine` on `listener` until `shutdown` resolves, within the connection limits of
/// `config`; then stops accepting, lets in-flight requests finish, closes WebSocket streams
/// and shuts the engine down (running work finishes, leases are released).
pub async fn serve<S: Store>(
    listener: TcpListener,
    engine: Engine<S>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, engine, config, Router::new(), shutdown).await
}

/// [`serve`] with `routes` beside the API (see [`router_with`]).
pub async fn serve_with<S: Store>(
    listener: TcpListener,
    engine: Engine<S>,
    config: ServerConfig,
    routes: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (closing_tx, closing) = watch::channel(false);
    let grace = config.shutdown_timeout;
    let limits = config.connections;
    let app = router_with(engine.clone(), config, closing, routes);
    connections::serve_bounded(listener, app, limits, grace, async move {
        shutdown.await;
        let _ = closing_tx.send(true);
    })
    .await;
    engine.shutdown(grace).await;
    Ok(())
}

/// Unknown paths and methods: the original's text (`404 page not found`), in the error body
/// every other error uses.
async fn not_found() -> Response {
    ApiError::not_found("404 page not found").into_response()
}

/// What every request goes through, in one middleware (one layer's cost per request): CORS
/// (`api.md` §0: every response allows any origin; any `OPTIONS` request is answered 200), the
/// body read within its size and time limits, and errors in the `{"error","status"}` body.
/// Not `tower-http`'s `CorsLayer`: it answers only real preflights and puts the allowed methods
/// and headers on those alone, where the original answers every `OPTIONS` and every response
/// with all three headers; and it would be one more layer per request.
async fn every_request(
    limit: usize,
    body_timeout: Duration,
    request: Request,
    next: Next,
) -> Response {
    let mut response = if request.method() == Method::OPTIONS {
        Response::new(Body::empty())
    } else {
        error::bounded_request(limit, body_timeout, request, next).await
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, Authorization"),
    );
    response
}
