//! Job metadata of the storage API (`/storage/jobs/…`): the metadata of a project's or a
//! spider's jobs, and one job's whole metadata or one field of it, read, set and deleted.

use super::jobq::job_query;
use super::{number, parse_key, spider_param};
use crate::AppState;
use crate::cloud::control;
use crate::cloud::project;
use crate::cloud::registry::{RESERVED_META, drop_reserved};
use crate::cloud::wire::query_params;
use crate::cloud::wire::{
    self, HubError, HubResult, RequestBody, decode_body, json_lines, lines, one,
};
use crate::storage::model::{CloudJob, JobKey};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use serde_json::{Map, Value};

/// The job of a `jobs/<p>/<s>/<j>` path.
pub(super) async fn job_at(
    state: &AppState,
    p: &str,
    s: &str,
    j: &str,
) -> Result<(String, JobKey, CloudJob), HubError> {
    let (project, _) = project(state, p).await?;
    let key = parse_key(p, s, j)?;
    let pn = project.clone();
    let job = state.storage.cloud_job(&pn, key).await?;
    let job = job.ok_or_else(|| HubError::not_found(format!("job {key} not found")))?;
    Ok((project, key, job))
}

/// The metadata as shown (without `auth`).
fn shown_meta(job: &CloudJob) -> Value {
    let mut m = job.meta.clone();
    for hidden in ["auth", "_key", "key"] {
        m.remove(hidden);
    }
    m.insert("state".into(), job.state.clone().into());
    Value::Object(m)
}

/// The metadata of the jobs of a project (or one spider), newest first, one JSON line each
/// with its `_key` first; `jobq` filters (`state`, `has_tag`, `lacks_tag`, `startts`,
/// `endts`, `key`), `start` (a number to skip) and `count`.
async fn jobs_meta(
    state: &AppState,
    p: &str,
    spider: Option<&str>,
    q: &Option<String>,
) -> HubResult {
    let (project, _) = project(state, p).await?;
    let params = query_params(q);
    let mut query = job_query(state, &project, &params, None).await?;
    if let Some(s) = spider {
        query.spider_id = Some(spider_param(s)?);
    }
    query.skip = number(&params, "start")?.unwrap_or(0).max(0) as usize;
    query.count = number(&params, "count")?.map(|c| c.max(0) as usize);
    let jobs = state.storage.cloud_jobs(&project, query).await?;
    let out: Vec<Value> = jobs
        .iter()
        .map(|j| {
            let mut m = Map::new();
            m.insert("_key".into(), j.key.to_string().into());
            if let Value::Object(meta) = shown_meta(j) {
                m.extend(meta.into_iter().filter(|(k, _)| k != "_key"));
            }
            Value::Object(m)
        })
        .collect();
    Ok(lines(&out, false))
}

/// `GET jobs/<p>`.
pub(super) async fn project_jobs_meta(
    State(state): State<AppState>,
    Path(p): Path<String>,
    q: RawQuery,
) -> HubResult {
    jobs_meta(&state, &p, None, &q.0).await
}

/// `GET jobs/<p>/<s>`.
pub(super) async fn spider_jobs_meta(
    State(state): State<AppState>,
    Path((p, s)): Path<(String, String)>,
    q: RawQuery,
) -> HubResult {
    jobs_meta(&state, &p, Some(&s), &q.0).await
}

/// `GET jobs/<key>`: the whole metadata object.
pub(super) async fn meta_get(
    State(state): State<AppState>,
    Path((p, s, j)): Path<(String, String, String)>,
) -> HubResult {
    let (_, _, job) = job_at(&state, &p, &s, &j).await?;
    Ok(one(&shown_meta(&job)))
}

/// `POST jobs/<key>`: merges a JSON object into the metadata.
pub(super) async fn meta_post(
    State(state): State<AppState>,
    Path((p, s, j)): Path<(String, String, String)>,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> HubResult {
    let (project, key, _) = job_at(&state, &p, &s, &j).await?;
    let mut fields = Map::new();
    for v in json_lines(&decode_body(&headers, &body)?)? {
        match v {
            Value::Object(m) => fields.extend(m),
            _ => return Err(HubError::bad_request("expected a JSON object")),
        }
    }
    drop_reserved(&mut fields);
    state
        .storage
        .edit_cloud_meta(&project, vec![key], move |meta| meta.extend(fields.clone()))
        .await?;
    Ok(wire::empty())
}

/// `DELETE jobs/<key>`: removes the job — its queue entry or crawl, its metadata and data.
pub(super) async fn meta_delete(
    State(state): State<AppState>,
    Path((p, s, j)): Path<(String, String, String)>,
) -> HubResult {
    let (_, _, job) = job_at(&state, &p, &s, &j).await?;
    control::delete(&state, &job).await?;
    Ok(wire::empty())
}

/// `GET jobs/<key>/<field>`: one value (`null` when absent).
pub(super) async fn field_get(
    State(state): State<AppState>,
    Path((p, s, j, field)): Path<(String, String, String, String)>,
) -> HubResult {
    let (_, _, job) = job_at(&state, &p, &s, &j).await?;
    let meta = shown_meta(&job);
    Ok(one(meta.get(&field).unwrap_or(&Value::Null)))
}

/// `POST jobs/<key>/<field>`: sets one value.
pub(super) async fn field_post(
    State(state): State<AppState>,
    Path((p, s, j, field)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> HubResult {
    let (project, key, _) = job_at(&state, &p, &s, &j).await?;
    if RESERVED_META.contains(&field.as_str()) {
        return Err(HubError::bad_request(format!("{field} cannot be set")));
    }
    let body = decode_body(&headers, &body)?;
    let value: Value = serde_json::from_slice(body.trim_ascii())
        .map_err(|e| HubError::bad_request(format!("Error parsing data: {e}")))?;
    state
        .storage
        .edit_cloud_meta(&project, vec![key], move |meta| {
            meta.insert(field.clone(), value.clone());
        })
        .await?;
    Ok(wire::empty())
}

/// `DELETE jobs/<key>/<field>`.
pub(super) async fn field_delete(
    State(state): State<AppState>,
    Path((p, s, j, field)): Path<(String, String, String, String)>,
) -> HubResult {
    let (project, key, _) = job_at(&state, &p, &s, &j).await?;
    if RESERVED_META.contains(&field.as_str()) {
        return Err(HubError::bad_request(format!("{field} cannot be deleted")));
    }
    state
        .storage
        .edit_cloud_meta(&project, vec![key], move |meta| {
            meta.remove(&field);
        })
        .await?;
    Ok(wire::empty())
}
