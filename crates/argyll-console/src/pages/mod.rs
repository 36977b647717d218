//! The console's pages, one module each.

pub(crate) mod catalog;
pub(crate) mod engine;
pub(crate) mod flow;
pub(crate) mod flows;
pub(crate) mod start;
pub(crate) mod step_editor;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use crate::shell::{self, Fragment};

/// Any other path under `/ui/`: a page saying so, with status 404.
pub(crate) async fn not_found(Query(fragment): Query<Fragment>) -> Response {
    shell::page(
        StatusCode::NOT_FOUND,
        &fragment,
        "Not found",
        "",
        None,
        html! {
            h1 { "Not found" }
            p { "There is no such page. " a href="/ui/" { "Back to the console" } "." }
        },
    )
}
