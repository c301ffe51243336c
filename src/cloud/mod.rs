//! The Scrapy Cloud API, so that the unmodified `scrapinghub` Python client and `shub` work
//! against scrapyd-rs, on the same projects, eggs and jobs as the Scrapyd endpoints:
//! - **dash** under `/api/` ([`dash`]): projects, spiders, `run.json`, tags, deploys;
//! - **storage** under `/storage/` ([`storage`]): the job queue, job metadata, and each job's
//!   items, logs, requests and stats samples ([`jobdata`]).
//!
//! Projects, spiders and jobs get Scrapy Cloud's numeric ids and `p/s/n` keys in
//! [`registry`]. Clients authenticate with an API key as the HTTP basic user name (or
//! `?apikey=`); keys come from `api_keys`. With no credentials configured at all (no
//! `api_keys`, no `username`/`password`) any key is accepted, for local use.

pub mod activity;
pub mod collections;
pub mod dash;
pub mod frontier;
pub mod jobdata;
pub mod registry;
pub mod storage;
pub mod wire;

use crate::AppState;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine;

/// Where the dash API is mounted (`dash_endpoint = http://HOST:6800/api/`).
pub const DASH_PREFIX: &str = "/api/";
/// Where the storage API is mounted (`endpoint = http://HOST:6800/storage/`).
pub const STORAGE_PREFIX: &str = "/storage/";

/// Whether a request path belongs to the Scrapy Cloud API (which has its own authentication).
pub fn is_cloud_path(path: &str) -> bool {
    path.starts_with(DASH_PREFIX) || path.starts_with(STORAGE_PREFIX)
}

/// The credentials of a request: the basic-auth user name and password, or the `apikey`
/// query parameter (with no password).
fn credentials(req: &Request) -> Option<(String, String)> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION)
        && let Ok(text) = value.to_str()
        && let Some(encoded) = text
            .trim()
            .strip_prefix("Basic ")
            .or(text.trim().strip_prefix("basic "))
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim())
    {
        let decoded = String::from_utf8_lossy(&decoded).into_owned();
        let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        return Some((user.to_owned(), password.to_owned()));
    }
    let query = req.uri().query()?;
    crate::api::params::parse_urlencoded(query.as_bytes())
        .text("apikey")
        .ok()
        .flatten()
        .map(|k| (k, String::new()))
}

/// Whether `user:password` is a job's own credentials (`p/s/n` and the token its runner got),
/// which open the storage API (not scheduling) as on Scrapy Cloud.
async fn job_credentials_valid(state: &AppState, user: &str, password: &str) -> bool {
    let Some(key) = registry::JobKey::parse(user) else {
        return false;
    };
    if password.is_empty() {
        return false;
    }
    let known = state.eggs.projects();
    let token = state
        .store
        .read(move |db| {
            let Some(project) = db.project_by_id(key.project, &known)? else {
                return Ok(None);
            };
            Ok(db.cloud_job(&project, key)?.and_then(|j| {
                j.meta
                    .get("auth")
                    .and_then(|a| a.as_str().map(str::to_owned))
            }))
        })
        .await
        .ok()
        .and_then(|(_, t)| t);
    token.is_some_and(|t| crate::api::auth::constant_time_eq(t.as_bytes(), password.as_bytes()))
}

/// Whether `key` may use the API.
pub fn key_allowed(config: &crate::config::Config, key: Option<&str>) -> bool {
    if config.api_keys.is_empty() && !config.auth_enabled() {
        return true;
    }
    key.is_some_and(|k| {
        config
            .api_keys
            .iter()
            .any(|allowed| crate::api::auth::constant_time_eq(allowed.as_bytes(), k.as_bytes()))
    })
}

/// Middleware: refuses an unknown key (storage: 401; dash: 403 with its JSON, as Zyte's).
async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let credentials = credentials(&req);
    let key = credentials.as_ref().map(|(user, _)| user.as_str());
    // The server's clock is public (the client reads it without credentials).
    if key_allowed(&state.config, key) || req.uri().path() == "/storage/system/ts" {
        return next.run(req).await;
    }
    let dash = req.uri().path().starts_with(DASH_PREFIX);
    if !dash
        && let Some((user, password)) = &credentials
        && job_credentials_valid(&state, user, password).await
    {
        return next.run(req).await;
    }
    // Read the body anyway: a client that keeps the connection must find it clean.
    let _ = axum::body::to_bytes(req.into_body(), wire::MAX_BODY).await;
    if dash {
        (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"status\": \"error\", \"message\": \"Authentication failed\"}\n",
        )
            .into_response()
    } else {
        wire::StorageError::new(StatusCode::UNAUTHORIZED, "Unauthorized").into_response()
    }
}

/// The dash and storage routers, behind the API-key check.
pub fn routes(state: &AppState) -> Router<AppState> {
    dash::routes()
        .merge(storage::routes())
        .merge(activity::routes())
        .merge(collections::routes())
        .merge(frontier::routes())
        .layer(middleware::from_fn_with_state(state.clone(), require_key))
}

/// The Scrapyd project that a Scrapy Cloud project id names.
pub async fn project_name(state: &AppState, id: &str) -> Option<String> {
    let id = registry::parse_id(id)?;
    let known = state.eggs.projects();
    state
        .store
        .call(move |db| db.project_by_id(id, &known))
        .await
        .ok()
        .flatten()
}

/// The Scrapyd project named by a project id in a storage path, and the id.
pub async fn project(state: &AppState, p: &str) -> Result<(String, i64), wire::StorageError> {
    let id = registry::parse_id(p)
        .ok_or_else(|| wire::StorageError::bad_request(format!("invalid project id: {p}")))?;
    let name = project_name(state, p)
        .await
        .ok_or_else(|| wire::StorageError::not_found(format!("project {p} not found")))?;
    Ok((name, id))
}
