//! The job queue of the storage API (`/storage/jobq/<p>/…`): counts and lists of jobs, and the
//! writes that make, start, update and cancel them (`push`, `startjob`, `update`, `cancel`).

use super::summaries::summary;
use super::{number, parse_key, time_range};
use crate::AppState;
use crate::api::params::Params;
use crate::cloud::access::Caller;
use crate::cloud::control;
use crate::cloud::project;
use crate::cloud::registry::{STATES, drop_reserved};
use crate::cloud::submit::{Submission, SubmitError, Submitted, requested_state, submit};
use crate::cloud::wire::{
    self, HubError, HubResult, RequestBody, decode_body, json_lines, lines, one,
};
use crate::cloud::wire::{param_list, param_text, query_params};
use crate::storage::model::Uniqueness;
use crate::storage::model::{JobKey, JobQuery, parse_id};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use serde_json::{Map, Value, json};

/// Filters of `jobq` reads.
pub(super) async fn job_query(
    state: &AppState,
    project: &str,
    params: &Params,
    default_state: Option<&str>,
) -> Result<JobQuery, HubError> {
    let mut q = JobQuery::default();
    for s in param_list(params, "state")? {
        if !STATES.contains(&s.as_str()) {
            return Err(HubError::bad_request(format!("invalid state: {s}")));
        }
        q.states.push(s);
    }
    if q.states.is_empty()
        && let Some(s) = default_state
    {
        q.states.push(s.to_owned());
    }
    if let Some(spider) = param_text(params, "spider")? {
        // A spider name (the client's form), else a spider id.
        let by_name = state.storage.spider_id(project, &spider, false).await?;
        let id = by_name.or_else(|| parse_id(&spider));
        // An unknown spider has no jobs.
        q.spider_id = Some(id.unwrap_or(-1));
    }
    q.has_tag = param_list(params, "has_tag")?;
    q.lacks_tag = param_list(params, "lacks_tag")?;
    (q.startts, q.endts) = time_range(params)?;
    for k in param_list(params, "key")? {
        q.keys.push(
            JobKey::parse(&k).ok_or_else(|| HubError::bad_request(format!("invalid key: {k}")))?,
        );
    }
    Ok(q)
}

/// `jobq/<p>/count`: how many jobs match (finished ones unless `state` is given).
pub(super) async fn jobq_count(
    State(state): State<AppState>,
    Path(p): Path<String>,
    q: RawQuery,
) -> HubResult {
    let (project, _) = project(&state, &p).await?;
    let params = query_params(&q.0);
    let query = job_query(&state, &project, &params, Some("finished")).await?;
    let jobs = state.storage.cloud_jobs(&project, query).await?;
    Ok(one(&jobs.len().into()))
}

/// `jobq/<p>/list`: job summaries, newest first.
pub(super) async fn jobq_list(
    State(state): State<AppState>,
    Path(p): Path<String>,
    q: RawQuery,
) -> HubResult {
    let (project, _) = project(&state, &p).await?;
    let params = query_params(&q.0);
    let mut query = job_query(&state, &project, &params, Some("finished")).await?;
    query.skip = number(&params, "start")?.unwrap_or(0).max(0) as usize;
    query.count = Some(number(&params, "count")?.unwrap_or(1000).clamp(0, 100_000) as usize);
    if let Some(stop) = param_text(&params, "stop")? {
        query.stop = JobKey::parse(&stop);
    }
    summary_lines(&state, project, query, &params).await
}

/// The summaries of the jobs a query selects (with the `jobmeta` fields asked for).
async fn summary_lines(
    state: &AppState,
    project: String,
    query: JobQuery,
    params: &Params,
) -> HubResult {
    let jobmeta = param_list(params, "jobmeta")?;
    let jobs = state.storage.cloud_jobs(&project, query).await?;
    let out: Vec<Value> = jobs.iter().map(|j| summary(j, &jobmeta)).collect();
    Ok(lines(&out, false))
}

/// `jobq/<p>/jobsummary?key=…&jobmeta=…`: summaries of the jobs named, in any state.
pub(super) async fn jobq_jobsummary(
    State(state): State<AppState>,
    Path(p): Path<String>,
    q: RawQuery,
) -> HubResult {
    let (project, _) = project(&state, &p).await?;
    let params = query_params(&q.0);
    let query = job_query(&state, &project, &params, None).await?;
    if query.keys.is_empty() {
        return Ok(lines(&[], false));
    }
    summary_lines(&state, project, query, &params).await
}

/// The job a `jobq/<p>/push` line asks for: `spider`, optional `state`, `priority` (0–4),
/// `spider_args` and `job_settings` (objects), `unique`; the other keys are metadata.
fn push_submission(project: &str, line: Value) -> Result<Submission, HubError> {
    let Value::Object(mut fields) = line else {
        return Err(HubError::bad_request("expected a JSON object per line"));
    };
    let spider = fields
        .remove("spider")
        .and_then(|s| s.as_str().map(str::to_owned))
        .ok_or_else(|| HubError::bad_request("missing spider"))?;
    crate::names::check(&spider).map_err(|e| HubError::bad_request(e.message))?;
    let wanted = requested_state(fields.remove("state")).map_err(HubError::bad_request)?;
    drop_reserved(&mut fields);
    let priority = match fields.get("priority") {
        None | Some(Value::Null) => 2,
        Some(v) => v.as_i64().filter(|p| (0..=4).contains(p)).ok_or_else(|| {
            HubError::bad_request(format!("invalid priority {v}: expected 0 to 4"))
        })?,
    };
    let object = |key: &str| -> Result<Map<String, Value>, HubError> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(other) => Err(HubError::bad_request(format!(
                "invalid {key} {other}: expected a JSON object"
            ))),
        }
    };
    let args = crate::storage::model::string_pairs(&object("spider_args")?);
    let settings = crate::storage::model::string_pairs(&object("job_settings")?);
    let unique = match fields.get("unique") {
        Some(v) if !v.is_null() => Uniqueness::Value(v.clone()),
        _ => Uniqueness::None,
    };
    fields.entry("scheduled_by").or_insert_with(|| "api".into());
    Ok(Submission {
        project: project.to_owned(),
        spider,
        priority,
        args,
        settings,
        meta: fields,
        state: wanted,
        unique,
        new_spiders: true,
    })
}

/// `jobq/<p>/push`: one job per JSON line. A job for a deployed spider is queued and runs
/// here like a scheduled one; others are registered for an external runner (a `running` one
/// gets its token, `auth`). Every line is checked before any job is made.
pub(super) async fn jobq_push(
    State(state): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> HubResult {
    let (project, _) = project(&state, &p).await?;
    let submissions = json_lines(&decode_body(&headers, &body)?)?
        .into_iter()
        .map(|line| push_submission(&project, line))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for submission in submissions {
        out.push(match submit(&state, submission).await {
            Ok(Submitted::Queued(key)) => json!({"key": key.to_string(), "auth": null}),
            Ok(Submitted::Registered { key, auth }) => {
                json!({"key": key.to_string(), "auth": auth})
            }
            Err(e @ SubmitError::SameUnique(_)) => json!({"error": e.to_string()}),
            Err(SubmitError::Storage(e)) => return Err(e.into()),
            Err(e) => return Err(HubError::bad_request(e.to_string())),
        });
    }
    Ok(lines(&out, false))
}

/// `jobq/<p>/startjob`: the next pending external job, now running, with its metadata, `key`
/// and `auth`; an empty answer when there is none.
pub(super) async fn jobq_startjob(
    State(state): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> HubResult {
    let (project, _) = project(&state, &p).await?;
    let mut params = Map::new();
    for v in json_lines(&decode_body(&headers, &body)?)? {
        if let Value::Object(m) = v {
            params.extend(m);
        }
    }
    drop_reserved(&mut params);
    let job = state.storage.start_external(&project, params).await?;
    let Some(job) = job else {
        return Ok(wire::empty());
    };
    let mut m = job.meta.clone();
    m.insert("key".into(), job.key.to_string().into());
    m.insert("state".into(), job.state.clone().into());
    Ok(one(&Value::Object(m)))
}

/// One line of a `jobq/<p>/update` body: the jobs it names (a job key, or a spider key for
/// every job of the spider), the state to move them to, and metadata to merge.
struct JobUpdate {
    query: JobQuery,
    state: Option<String>,
    fields: Map<String, Value>,
}

/// Parses one `jobq/<p>/update` line of project `project_id`.
fn parse_update(line: Value, project_id: i64) -> Result<JobUpdate, HubError> {
    let Value::Object(mut fields) = line else {
        return Err(HubError::bad_request("expected a JSON object per line"));
    };
    let key_text = fields
        .remove("key")
        .and_then(|k| k.as_str().map(str::to_owned))
        .ok_or_else(|| HubError::bad_request("missing key"))?;
    let state = match fields.remove("state") {
        Some(Value::String(s)) if STATES.contains(&s.as_str()) => Some(s),
        Some(other) => {
            return Err(HubError::bad_request(format!("invalid state: {other}")));
        }
        None => None,
    };
    drop_reserved(&mut fields);
    let bad_key = || HubError::bad_request(format!("invalid key: {key_text}"));
    let mut parts = key_text.split('/');
    if parts.next().and_then(parse_id) != Some(project_id) {
        return Err(HubError::bad_request(format!(
            "key {key_text} is not of project {project_id}"
        )));
    }
    let query = match (parts.next().and_then(parse_id), parts.next()) {
        (Some(s), None) => JobQuery {
            states: vec!["pending".into(), "running".into(), "finished".into()],
            spider_id: Some(s),
            ..JobQuery::default()
        },
        (Some(_), Some(_)) => JobQuery {
            keys: vec![JobKey::parse(&key_text).ok_or_else(bad_key)?],
            ..JobQuery::default()
        },
        _ => return Err(bad_key()),
    };
    Ok(JobUpdate {
        query,
        state,
        fields,
    })
}

/// `jobq/<p>/update`: state changes and metadata, one JSON line per job (or per spider key).
/// Every line is checked, and the jobs it names found, before any job changes.
pub(super) async fn jobq_update(
    State(state): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> HubResult {
    let (project, project_id) = project(&state, &p).await?;
    let mut planned = Vec::new();
    for line in json_lines(&decode_body(&headers, &body)?)? {
        let update = parse_update(line, project_id)?;
        let jobs = control::jobs_matching(&state, &project, update.query.clone()).await?;
        if let Some(s) = update.state.as_deref() {
            control::check_transition(&jobs, s).map_err(HubError::bad_request)?;
        }
        planned.push((jobs, update));
    }
    let mut out = Vec::new();
    for (jobs, update) in planned {
        for job in jobs {
            let fields = update.fields.clone();
            control::update(&state, &job, update.state.as_deref(), fields).await?;
            out.push(json!({"key": job.key.to_string(), "prevstate": job.state}));
        }
    }
    Ok(lines(&out, false))
}

/// `jobq/<p>/cancel` with `[{"key": …}, …]`.
pub(super) async fn jobq_cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<String>,
    q: RawQuery,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> HubResult {
    let (project, project_id) = project(&state, &p).await?;
    if let Some(count) = number(&query_params(&q.0), "count")? {
        // Zyte's bulk cancel by count is for its admins: others get Forbidden, as documented.
        if !caller.is_admin() {
            return Err(HubError::new(
                axum::http::StatusCode::FORBIDDEN,
                "cancelling by count needs an admin key",
            ));
        }
        let count = control::cancel_newest(&state, &project, count.max(0) as usize).await?;
        return Ok(one(&json!({"count": count})));
    }
    let body = decode_body(&headers, &body)?;
    let list: Value = serde_json::from_slice(&body)
        .map_err(|e| HubError::bad_request(format!("expected a JSON array: {e}")))?;
    let mut keys = Vec::new();
    for entry in list.as_array().into_iter().flatten() {
        let text = entry.get("key").and_then(Value::as_str).unwrap_or_default();
        match JobKey::parse(text) {
            Some(k) if k.project == project_id => keys.push(k),
            _ => return Err(HubError::bad_request(format!("invalid key: {text}"))),
        }
    }
    let jobs = control::jobs_by_key(&state, &project, keys).await?;
    let count = control::cancel(&state, &project, &jobs).await?;
    Ok(one(&json!({"count": count})))
}

/// `jobq/<p>/<s>/<j>/cancel`.
pub(super) async fn job_cancel(
    State(state): State<AppState>,
    Path((p, s, j)): Path<(String, String, String)>,
) -> HubResult {
    let (project, _) = project(&state, &p).await?;
    let key = parse_key(&p, &s, &j)?;
    let jobs = control::jobs_by_key(&state, &project, vec![key]).await?;
    let count = control::cancel(&state, &project, &jobs).await?;
    Ok(one(&json!({"count": count})))
}
