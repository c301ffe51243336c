//! The web pages: `/` (projects and links), `/jobs` (pending, running and finished tables with
//! Cancel buttons), and the `/logs/` and `/items/` trees (directory listings with a "Last
//! modified" column, and the files themselves with range support). HTML is rendered by
//! [`pages`]; this module gathers the data and serves files safely inside their folders.

pub mod pages;
pub mod proxy;

use crate::AppState;
use crate::api::webservices::jobs_snapshot;
use crate::config::Service;
use crate::listing::{items_url, log_url};
use crate::storage::model::{local_time, now_micros};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::path::{Path, PathBuf};
use tower::ServiceExt;

/// The routes of the pages and file trees that this configuration enables.
pub fn routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new()
        .route("/", get(home))
        .route("/jobs", get(jobs));
    if state.config.logs_dir.is_some() {
        router = router
            .route("/logs", get(|| async { found("/logs/") }))
            .route("/logs/", get(logs))
            .route("/logs/{*path}", get(logs));
    }
    if state.config.items_local().is_some() {
        router = router
            .route("/items", get(|| async { found("/items/") }))
            .route("/items/", get(items))
            .route("/items/{*path}", get(items));
    }
    router
}

/// A 302 redirect, as Twisted answers `/logs` → `/logs/`.
fn found(location: &str) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Twisted's 404 page, for any unknown path.
pub async fn not_found() -> Response {
    let body = "\n<html>\n  <head><title>404 - No Such Resource</title></head>\n  <body>\n    <h1>No Such Resource</h1>\n    <p>Sorry. No luck finding that resource.</p>\n  </body>\n</html>\n";
    (StatusCode::NOT_FOUND, Html(body)).into_response()
}

fn base_path(state: &AppState, headers: &HeaderMap) -> String {
    headers
        .get(state.config.prefix_header.as_str())
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn html(body: String) -> Response {
    let mut r = Html(body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let base = base_path(&state, &headers);
    let projects = state.eggs.projects();
    let c = &state.config;
    html(pages::home(
        &base,
        &projects,
        c.items_local().is_some(),
        c.logs_dir.is_some(),
    ))
}

async fn jobs(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let base = base_path(&state, &headers);
    let snap = match jobs_snapshot(&state, None).await {
        Ok(s) => s,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.message).into_response(),
    };
    let pending: Vec<pages::PendingRow> = snap
        .pending
        .iter()
        .map(|p| pages::PendingRow {
            project: p.project.clone(),
            spider: p.spider.clone(),
            job: p.job.clone(),
        })
        .collect();
    let running: Vec<pages::RunningRow> = snap
        .running
        .iter()
        .map(|r| pages::RunningRow {
            project: r.project.clone(),
            spider: r.spider.clone(),
            job: r.job.clone(),
            pid: r.pid,
            start: local_time(r.start_time),
            log_url: log_url(&state.config, &r.project, &r.spider, &r.job),
            items_url: items_url(&state.config, &r.project, &r.spider, &r.job),
        })
        .collect();
    let finished: Vec<pages::FinishedRow> = snap
        .finished
        .iter()
        .map(|r| pages::FinishedRow {
            project: r.project.clone(),
            spider: r.spider.clone(),
            job: r.job.clone(),
            start: local_time(r.start_time),
            end: local_time(r.end_time.unwrap_or(r.start_time)),
            log_url: log_url(&state.config, &r.project, &r.spider, &r.job),
            items_url: items_url(&state.config, &r.project, &r.spider, &r.job),
            outcome: r.outcome.clone(),
        })
        .collect();
    let cancel_enabled = state
        .config
        .services
        .iter()
        .any(|(_, s)| *s == Service::Cancel);
    let page = pages::jobs(
        &base,
        &pending,
        &running,
        &finished,
        local_time(now_micros()),
        state.config.items_local().is_some(),
        cancel_enabled,
    );
    html(page)
}

async fn logs(State(state): State<AppState>, req: Request) -> Response {
    match state.config.logs_dir.clone() {
        Some(root) => serve_file_of_any_node(&state, &root, "/logs", req).await,
        None => not_found().await,
    }
}

async fn items(State(state): State<AppState>, req: Request) -> Response {
    match state.config.items_local().map(Path::to_path_buf) {
        Some(root) => serve_file_of_any_node(&state, &root, "/items", req).await,
        None => not_found().await,
    }
}

/// A file of this node's tree, or (on a cluster) of the node that ran its job.
async fn serve_file_of_any_node(
    state: &AppState,
    root: &Path,
    mount: &str,
    req: Request,
) -> Response {
    let here = resolve(root, mount, req.uri().path()).is_some_and(|p| p.exists());
    if here {
        return serve_tree(root, mount, req).await;
    }
    match proxy::forward(state, mount, req).await {
        Ok(response) => response,
        Err(req) => serve_tree(root, mount, req).await,
    }
}

/// Maps a request path under `mount` to a path inside `root`, refusing anything that is not a
/// plain name (`..`, `.`, encoded slashes, NUL) or that resolves outside `root` through a link.
fn resolve(root: &Path, mount: &str, path: &str) -> Option<PathBuf> {
    let rest = path.strip_prefix(mount)?;
    let mut target = root.to_path_buf();
    for segment in rest.split('/').filter(|s| !s.is_empty()) {
        let decoded =
            String::from_utf8(crate::api::params::percent_decode_path(segment.as_bytes())).ok()?;
        if !crate::names::is_safe(&decoded) {
            return None;
        }
        target.push(decoded);
    }
    let real_root = root.canonicalize().ok()?;
    let real = target.canonicalize().ok()?;
    real.starts_with(&real_root).then_some(real)
}

async fn serve_tree(root: &Path, mount: &str, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let Some(target) = resolve(root, mount, &path) else {
        return file_not_found();
    };
    if target.is_dir() {
        if !path.ends_with('/') {
            return found(&format!("{path}/"));
        }
        return html(pages::directory_listing(&path, &list_dir(&target)));
    }
    if !target.is_file() {
        return file_not_found();
    }
    let mime = HeaderValue::from_static("text/plain");
    let encoding = pages::content_encoding(&target.to_string_lossy());
    let service = tower_http::services::ServeFile::new(&target);
    match service.oneshot(req).await {
        Ok(response) => {
            let mut response = response.map(Body::new);
            response.headers_mut().insert(header::CONTENT_TYPE, mime);
            if let Some(enc) = encoding {
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc));
            }
            response
        }
        Err(_) => file_not_found(),
    }
}

fn file_not_found() -> Response {
    let body = "\n<html>\n  <head><title>404 - No Such Resource</title></head>\n  <body>\n    <h1>No Such Resource</h1>\n    <p>File not found.</p>\n  </body>\n</html>\n";
    (StatusCode::NOT_FOUND, Html(body)).into_response()
}

fn list_dir(dir: &Path) -> Vec<pages::ListingEntry> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            let modified = meta.modified().ok()?;
            let micros = modified
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_micros() as i64;
            Some(pages::ListingEntry {
                name: e.file_name().into_string().ok()?,
                is_dir: meta.is_dir(),
                size: meta.len(),
                modified: local_time(micros),
            })
        })
        .collect()
}
