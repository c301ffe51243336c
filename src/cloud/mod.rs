//! The Scrapy Cloud API, so that the unmodified `scrapinghub` Python client and `shub` work
//! against scrapyd-rs, on the same projects, eggs and jobs as the Scrapyd endpoints:
//! - **dash** under `/api/` ([`dash`]): projects, spiders, `run.json`, tags, deploys;
//! - **storage** under `/storage/` ([`storage`]): the job queue, job metadata, and each job's
//!   items, logs, requests and stats samples ([`jobdata`]).
//!
//! Projects, spiders and jobs get Scrapy Cloud's numeric ids and `p/s/n` keys in
//! [`registry`]. Clients authenticate with an API key as the HTTP basic user name (or
//! `?apikey=`); keys come from `api_keys` and `[api_keys]`, each with the projects it may read
//! or change ([`access`]). With no credentials configured at all (no keys, no
//! `username`/`password`) any key is accepted, for local use.

pub mod access;
pub mod activity;
pub mod collections;
pub mod control;
pub mod dash;
pub mod frontier;
pub mod jobdata;
pub mod legacy;
pub mod registry;
pub mod storage;
pub mod submit;
pub mod wire;

use crate::AppState;
use axum::Router;
use axum::middleware;

/// Where the dash API is mounted (`dash_endpoint = http://HOST:6800/api/`).
pub const DASH_PREFIX: &str = "/api/";
/// Where the storage API is mounted (`endpoint = http://HOST:6800/storage/`).
pub const STORAGE_PREFIX: &str = "/storage/";

/// Whether a request path belongs to the Scrapy Cloud API (which has its own authentication).
pub fn is_cloud_path(path: &str) -> bool {
    path.starts_with(DASH_PREFIX) || path.starts_with(STORAGE_PREFIX)
}

/// The dash and storage routers, behind the API-key check.
pub fn routes(state: &AppState) -> Router<AppState> {
    dash::routes(state.config.max_upload_size)
        .merge(storage::routes())
        .merge(activity::routes())
        .merge(collections::routes())
        .merge(frontier::routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            access::authorize,
        ))
}

/// The Scrapyd project that a Scrapy Cloud project id names.
pub async fn project_name(state: &AppState, id: &str) -> Option<String> {
    let id = crate::storage::model::parse_id(id)?;
    let known = state.eggs.projects();
    state.storage.project_by_id(id, known).await.ok().flatten()
}

/// The Scrapyd project named by a project id in a storage path, and the id.
pub async fn project(state: &AppState, p: &str) -> Result<(String, i64), wire::HubError> {
    let id = crate::storage::model::parse_id(p)
        .ok_or_else(|| wire::HubError::bad_request(format!("invalid project id: {p}")))?;
    let name = project_name(state, p)
        .await
        .ok_or_else(|| wire::HubError::not_found(format!("project {p} not found")))?;
    Ok((name, id))
}
