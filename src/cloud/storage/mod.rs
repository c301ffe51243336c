//! The storage API under `/storage/`: what `ScrapinghubClient(endpoint=…)` calls for the job
//! queue (`jobq`), job metadata (`jobs`), job data (`items`, `logs`, `requests`, `samples`),
//! spider ids and summaries. JSON lines in and out; msgpack out when asked; errors as HTTP
//! statuses ([`super::wire`]).
//!
//! This file holds the routes, the spider-id and time endpoints and the parameter helpers the
//! resources share; each resource has its own file: `jobq`, `summaries`, `meta` (job
//! metadata) and `streams` (job data).

mod jobq;
mod meta;
mod streams;
mod summaries;

use super::project;
use super::wire::{HubError, HubResult, one, param_text, query_params};
use crate::AppState;
use crate::api::params::Params;
use crate::storage::model::{JobKey, now_ms};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use jobq::{
    job_cancel, jobq_cancel, jobq_count, jobq_jobsummary, jobq_list, jobq_push, jobq_startjob,
    jobq_update,
};
use meta::{
    field_delete, field_get, field_post, meta_delete, meta_get, meta_post, project_jobs_meta,
    spider_jobs_meta,
};
use streams::{project_stream_read, spider_stream_read, stream_entry, stream_read, stream_write};
use summaries::{
    last_summaries, project_summaries, project_summary, spider_last_summary, spider_summary_all,
    spider_summary_state, summary_all, summary_state,
};

pub fn routes() -> Router<AppState> {
    let mut r = Router::new()
        .route("/storage/system/ts", get(system_ts))
        .route("/storage/ids/{p}/spider/{name}", get(spider_id))
        .route("/storage/jobq/{p}/count", get(jobq_count))
        .route("/storage/jobq/{p}/jobsummary", get(jobq_jobsummary))
        .route("/storage/jobq/{p}/list", get(jobq_list))
        .route("/storage/jobq/{p}/summary", get(summary_all))
        .route("/storage/jobq/{p}/summary/{state}", get(summary_state))
        .route("/storage/jobq/{p}/{s}/summary", get(spider_summary_all))
        .route(
            "/storage/jobq/{p}/{s}/summary/{state}",
            get(spider_summary_state),
        )
        .route("/storage/jobq/{p}/update", post(jobq_update))
        .route("/storage/jobq/{p}/push", post(jobq_push))
        .route("/storage/jobq/{p}/startjob", post(jobq_startjob))
        .route("/storage/jobq/{p}/cancel", post(jobq_cancel))
        .route("/storage/jobq/{p}/{s}/{j}/cancel", post(job_cancel))
        .route("/storage/projects/jobsummaries", get(project_summaries))
        .route("/storage/projects/{p}/jobsummary", get(project_summary))
        .route("/storage/spiders/{p}/lastjobsummary", get(last_summaries))
        .route(
            "/storage/spiders/{p}/{s}/lastjobsummary",
            get(spider_last_summary),
        )
        .route("/storage/jobs/{p}", get(project_jobs_meta))
        .route("/storage/jobs/{p}/{s}", get(spider_jobs_meta))
        .route(
            "/storage/jobs/{p}/{s}/{j}",
            get(meta_get).post(meta_post).delete(meta_delete),
        )
        .route(
            "/storage/jobs/{p}/{s}/{j}/{field}",
            get(field_get).post(field_post).delete(field_delete),
        );
    for kind in ["items", "logs", "requests", "samples"] {
        r = r
            .route(&format!("/storage/{kind}/{{p}}"), get(project_stream_read))
            .route(
                &format!("/storage/{kind}/{{p}}/{{s}}"),
                get(spider_stream_read),
            )
            .route(
                &format!("/storage/{kind}/{{p}}/{{s}}/{{j}}"),
                get(stream_read).post(stream_write),
            )
            .route(
                &format!("/storage/{kind}/{{p}}/{{s}}/{{j}}/{{n}}"),
                get(stream_entry),
            );
    }
    r
}

fn number(params: &Params, key: &str) -> Result<Option<i64>, HubError> {
    param_text(params, key)?
        .map(|t| {
            t.trim()
                .parse::<i64>()
                .map_err(|_| HubError::bad_request(format!("invalid {key}: {t}")))
        })
        .transpose()
}

/// A spider id of a path.
fn spider_param(s: &str) -> Result<i64, HubError> {
    crate::storage::model::parse_id(s)
        .ok_or_else(|| HubError::bad_request(format!("invalid spider id: {s}")))
}

fn parse_key(p: &str, s: &str, j: &str) -> Result<JobKey, HubError> {
    JobKey::parse(&format!("{p}/{s}/{j}"))
        .ok_or_else(|| HubError::bad_request(format!("invalid job key: {p}/{s}/{j}")))
}

/// `system/ts`: the server's time (ms).
async fn system_ts() -> Response {
    one(&now_ms().into())
}

/// `ids/<p>/spider/<name>`: the spider's id, or `null` (`create=1` gives one).
async fn spider_id(
    State(state): State<AppState>,
    Path((p, name)): Path<(String, String)>,
    q: RawQuery,
) -> HubResult {
    let (project, _) = project(&state, &p).await?;
    let params = query_params(&q.0);
    let create = param_text(&params, "create")?
        .is_some_and(|c| !matches!(c.as_str(), "" | "0" | "false" | "False"));
    let known = state
        .eggs
        .spiders(&project, None)
        .await
        .map(|s| s.contains(&name))
        .unwrap_or(false);
    let id = state
        .storage
        .spider_id(&project, &name, create || known)
        .await?;
    Ok(one(&id.into()))
}

/// `startts` and `endts` (ms; from `startts` included to `endts` excluded). An `endts` before
/// `startts` is ignored, as Scrapy Cloud ignores it.
fn time_range(params: &Params) -> Result<(Option<i64>, Option<i64>), HubError> {
    let start = number(params, "startts")?;
    let end = number(params, "endts")?;
    Ok(match (start, end) {
        (Some(s), Some(e)) if e < s => (Some(s), None),
        range => range,
    })
}
