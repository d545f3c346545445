//! The dashboard page and its files, embedded at compile time (no network
//! at run time). `build.rs` checks the files exist and says how to fetch the
//! chart library when they do not.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

macro_rules! dashboard_file {
    ($path:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../dashboard/",
            $path
        ))
    };
}

const INDEX: &[u8] = dashboard_file!("src/index.html");

/// (name, content type, bytes) of every file under `/assets/`.
pub const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        dashboard_file!("src/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        dashboard_file!("src/app.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        dashboard_file!("node_modules/uplot/dist/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        dashboard_file!("node_modules/uplot/dist/uPlot.min.css"),
    ),
];

/// The Content-Security-Policy of every page: only our own scripts and
/// styles; no inline script, no other origin.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn headers(content_type: &'static str) -> [(header::HeaderName, &'static str); 4] {
    [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-cache"),
    ]
}

/// `GET /`.
pub async fn index() -> Response {
    (headers("text/html; charset=utf-8"), INDEX).into_response()
}

/// `GET /assets/{name}`.
pub async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => (headers(content_type), *bytes).into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
