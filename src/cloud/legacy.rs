//! The old dash API under `/api/`: what python-scrapinghub's legacy `scrapinghub.Connection`
//! sends (`scrapinghub/legacy.py`), `shub deploy-egg`/`copy-eggs`/`fetch-eggs`, and scripts
//! written against the Scrapinghub dashboard API of 2012–2019:
//! - jobs: `jobs/list.json|.jl` (the `.jl` form starts with a status line), `jobs/count.json`,
//!   `jobs/update.json` (tags of the jobs a filter selects), `jobs/stop.json`,
//!   `jobs/delete.json`;
//! - a job's data: `items.json|.jl` and `log.json|.jl`, read from any offset exactly (the
//!   legacy client resumes a broken read by offset);
//! - `reports/add.json`: a report kept in the job's metadata (`reports`);
//! - `eggs/add.json`, `eggs/list.json`, `eggs/delete.json`, `eggs/bundle.zip`: a project's
//!   extra eggs, put on its crawls' `sys.path` after the project's egg;
//! - `as/*` (Portia, discontinued by Zyte): a clear error.
//!
//! Answers are the dash envelope (`{"status": …}`), but for the data reads, whose errors are
//! 400 (404 for a job that does not exist) so that HTTP clients notice them.

use super::access::Caller;
use super::control;
use super::dash::{deploy_target, project_param};
use super::jobdata::{
    DataCounts, ReadOptions, Stream, StreamKind, data_counts, job_dir, read_entries,
};
use super::registry::STATES;
use super::wire::{self, MAX_VALUE};
use crate::AppState;
use crate::api::params::Params;
use crate::config::ProjectRight;
use crate::error::{ApiError, ApiResult, Reply};
use crate::storage::model::{CloudJob, JobKey, JobQuery, apply_tags, now_ms, tags_of};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Map, Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/jobs/list.json", get(jobs_list_json))
        .route("/api/jobs/list.jl", get(jobs_list_jl))
        .route("/api/jobs/count.json", get(jobs_count))
        .route("/api/jobs/update.json", post(jobs_update))
        .route("/api/jobs/stop.json", post(jobs_stop))
        .route("/api/jobs/delete.json", post(jobs_delete))
        .route(
            "/api/items.jl",
            get(|s, c, p| data_read(s, c, p, Data::Items, false)),
        )
        .route(
            "/api/items.json",
            get(|s, c, p| data_read(s, c, p, Data::Items, true)),
        )
        .route(
            "/api/log.jl",
            get(|s, c, p| data_read(s, c, p, Data::Log, false)),
        )
        .route(
            "/api/log.json",
            get(|s, c, p| data_read(s, c, p, Data::Log, true)),
        )
        .route("/api/reports/add.json", post(reports_add))
        .route("/api/eggs/add.json", post(eggs_add))
        .route("/api/eggs/list.json", get(eggs_list))
        .route("/api/eggs/delete.json", post(eggs_delete))
        .route("/api/eggs/bundle.zip", get(eggs_bundle))
        .route("/api/as/project-slybot.zip", any(portia))
        .route("/api/as/spider-properties.json", any(portia))
}

/// Parameters every call may carry besides its own.
const COMMON: [&str; 2] = ["project", "apikey"];

/// Refuses a parameter the call does not know (a misspelt filter would select everything).
fn only(params: &Params, known: &[&str]) -> Result<(), ApiError> {
    match params
        .keys()
        .find(|k| !COMMON.contains(k) && !known.contains(k))
    {
        Some(k) => Err(ApiError::new(format!(
            "unknown parameter '{k}': this call takes {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// An integer parameter.
fn int_param(params: &Params, key: &str) -> Result<Option<i64>, ApiError> {
    params
        .text(key)?
        .map(|t| {
            t.trim()
                .parse::<i64>()
                .map_err(|_| ApiError::invalid(key, format!("expected an integer, got {t:?}")))
        })
        .transpose()
}

/// A non-negative integer parameter.
fn offset_param(params: &Params) -> Result<u64, ApiError> {
    match int_param(params, "offset")? {
        None => Ok(0),
        Some(n) => u64::try_from(n).map_err(|_| ApiError::invalid("offset", "expected 0 or more")),
    }
}

/// A job key parameter of this project.
fn job_key(text: &str, project_id: i64) -> Result<JobKey, ApiError> {
    let key = JobKey::parse(text)
        .ok_or_else(|| ApiError::invalid("job", format!("not a job key (p/s/n): {text}")))?;
    if key.project != project_id {
        return Err(ApiError::invalid(
            "job",
            format!("not a job of this project: {text}"),
        ));
    }
    Ok(key)
}

/// Milliseconds since the epoch as the old API wrote times: ISO 8601 in UTC, like Python's
/// `datetime.isoformat()` (`2010-09-28T15:09:57.629000`, no fraction when it is zero).
pub fn iso_time(ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .naive_utc();
    if ms.rem_euclid(1000) == 0 {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    }
}

// ------------------------------------------------------------------------------------------------
// Jobs

/// The filters of `jobs/*`: `job` (repeatable), `spider`, `state` (repeatable; pending,
/// running and finished when none), `has_tag` (any of them), `lacks_tag` (none of them),
/// `count` (at most that many; a negative count is the same number: newest first, the first
/// ones are the latest) and `offset`.
const FILTERS: [&str; 7] = [
    "job",
    "spider",
    "state",
    "has_tag",
    "lacks_tag",
    "count",
    "offset",
];

/// The jobs a filter selects, and how many match before `count` and `offset`.
struct Selected {
    jobs: Vec<CloudJob>,
    total: usize,
}

/// The jobs of `project` that the filter parameters select, newest first; with `paged`, only
/// those of the page that `offset` and `count` give.
async fn select_jobs(
    state: &AppState,
    project: &str,
    project_id: i64,
    params: &Params,
    paged: bool,
) -> Result<Selected, ApiError> {
    let mut query = JobQuery::default();
    for s in params.all("state")? {
        if !STATES.contains(&s.as_str()) {
            return Err(ApiError::invalid(
                "state",
                format!("{s:?} (pending, running, finished or deleted)"),
            ));
        }
        query.states.push(s);
    }
    if query.states.is_empty() {
        query.states = vec!["pending".into(), "running".into(), "finished".into()];
    }
    for k in params.all("job")? {
        query.keys.push(job_key(&k, project_id)?);
    }
    query.has_tag = params.all("has_tag")?;
    query.lacks_tag = params.all("lacks_tag")?;
    let count = int_param(params, "count")?.map(|c| c.unsigned_abs() as usize);
    let offset = offset_param(params)? as usize;
    let spider = params.text("spider")?;
    query.spider = spider;
    let jobs = state.storage.cloud_jobs(project, query).await?;
    let total = jobs.len();
    if !paged {
        return Ok(Selected { jobs, total });
    }
    if offset > total {
        return Err(ApiError::invalid(
            "offset",
            format!("{offset} is past the end: {total} jobs match"),
        ));
    }
    let jobs = jobs
        .into_iter()
        .skip(offset)
        .take(count.unwrap_or(usize::MAX))
        .collect();
    Ok(Selected { jobs, total })
}

/// A job as the old API described it.
fn job_line(job: &CloudJob, counts: DataCounts, now: i64) -> Value {
    let meta = &job.meta;
    let get = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    let mut m = Map::new();
    m.insert("id".into(), job.key.to_string().into());
    m.insert("spider".into(), job.spider.clone().into());
    m.insert(
        "spider_type".into(),
        meta.get("spider_type").cloned().unwrap_or("manual".into()),
    );
    m.insert("state".into(), job.state.clone().into());
    m.insert(
        "spider_args".into(),
        meta.get("spider_args").cloned().unwrap_or(json!({})),
    );
    m.insert("tags".into(), tags_of(meta).into());
    m.insert(
        "priority".into(),
        meta.get("priority").cloned().unwrap_or(2.into()),
    );
    m.insert("version".into(), get("version"));
    m.insert("close_reason".into(), get("close_reason"));
    m.insert("items_scraped".into(), counts.items.into());
    m.insert("errors_count".into(), counts.errors.into());
    m.insert("responses_received".into(), counts.requests.into());
    m.insert("logs".into(), counts.logs.into());
    m.insert("elapsed".into(), (now - job.ts).max(0).into());
    m.insert(
        "started_time".into(),
        meta.get("running_time")
            .and_then(Value::as_i64)
            .map(iso_time)
            .into(),
    );
    m.insert("updated_time".into(), iso_time(job.ts).into());
    m.insert("fields_count".into(), Value::Object(counts.fields));
    Value::Object(m)
}

/// The job lines of the jobs a filter selects, and how many match.
async fn listed_jobs(
    state: &AppState,
    caller: &Caller,
    params: &Params,
) -> Result<(Vec<Value>, usize), ApiError> {
    only(params, &FILTERS)?;
    let (project, project_id) = project_param(state, caller, params, ProjectRight::Read).await?;
    let selected = select_jobs(state, &project, project_id, params, true).await?;
    let root = state.config.jobdata_dir.clone();
    let lines = tokio::task::spawn_blocking(move || {
        let now = now_ms();
        selected
            .jobs
            .iter()
            .map(|j| {
                let dir = job_dir(&root, j.key.project, j.key.spider, j.key.n);
                job_line(j, data_counts(&dir), now)
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::internal("RuntimeError", e))?;
    Ok((lines, selected.total))
}

/// `jobs/list.json`: `{"status": "ok", "count": N, "total": M, "jobs": […]}`, newest first.
async fn jobs_list_json(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> ApiResult {
    let (jobs, total) = listed_jobs(&state, &caller, &params).await?;
    Ok(Reply::empty()
        .with("count", jobs.len())
        .with("total", total)
        .with("jobs", jobs))
}

/// `jobs/list.jl`: a status line `{"status": "ok", "count": N, "total": M}`, then one line per
/// job, newest first.
async fn jobs_list_jl(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Response, ApiError> {
    let (jobs, total) = listed_jobs(&state, &caller, &params).await?;
    let mut body =
        serde_json::to_vec(&json!({"status": "ok", "count": jobs.len(), "total": total}))
            .unwrap_or_default();
    body.push(b'\n');
    for j in &jobs {
        body.extend(serde_json::to_vec(j).unwrap_or_default());
        body.push(b'\n');
    }
    Ok(json_lines(Body::from(body)))
}

/// `jobs/count.json`: `{"status": "ok", "total": N}`, the jobs the filter selects (its
/// `count` and `offset` do not change the total).
async fn jobs_count(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult {
    only(&params, &FILTERS)?;
    let (project, project_id) = project_param(&state, &caller, &params, ProjectRight::Read).await?;
    let selected = select_jobs(&state, &project, project_id, &params, false).await?;
    Ok(Reply::empty().with("total", selected.total))
}

/// `jobs/update.json`: adds (`add_tag`) and removes (`remove_tag`) tags of the jobs the filter
/// selects; answers how many.
async fn jobs_update(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult {
    let mut known = FILTERS.to_vec();
    known.extend(["add_tag", "remove_tag"]);
    only(&params, &known)?;
    let (project, project_id) =
        project_param(&state, &caller, &params, ProjectRight::Write).await?;
    let add = params.all("add_tag")?;
    let remove = params.all("remove_tag")?;
    if add.is_empty() && remove.is_empty() {
        return Err(ApiError::new("No update modifiers provided"));
    }
    let selected = select_jobs(&state, &project, project_id, &params, true).await?;
    let keys: Vec<JobKey> = selected.jobs.iter().map(|j| j.key).collect();
    let count = state
        .storage
        .edit_cloud_meta(&project, keys, move |meta| {
            let mut tags = tags_of(meta);
            apply_tags(&mut tags, &add, &remove);
            meta.insert("tags".into(), tags.into());
        })
        .await?;
    Ok(Reply::empty().with("count", count))
}

/// The jobs named by `job` parameters (at least one; each must exist).
async fn named_jobs(
    state: &AppState,
    caller: &Caller,
    params: &Params,
    need: ProjectRight,
) -> Result<(String, Vec<CloudJob>), ApiError> {
    only(params, &["job"])?;
    let (project, project_id) = project_param(state, caller, params, need).await?;
    let texts = params.all("job")?;
    if texts.is_empty() {
        return Err(ApiError::missing("job"));
    }
    let keys = texts
        .iter()
        .map(|t| job_key(t, project_id))
        .collect::<Result<Vec<_>, _>>()?;
    let jobs = control::jobs_by_key(state, &project, keys.clone()).await?;
    if let Some(missing) = keys.iter().find(|k| jobs.iter().all(|j| j.key != **k)) {
        return Err(ApiError::new(format!("job {missing} not found")));
    }
    Ok((project, jobs))
}

/// `jobs/stop.json`: stops the jobs named (`job`, repeatable), pending or running, the way a
/// cancel does; answers how many were pending or running.
async fn jobs_stop(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult {
    let (project, jobs) = named_jobs(&state, &caller, &params, ProjectRight::Write).await?;
    let count = control::cancel(&state, &project, &jobs).await?;
    Ok(Reply::empty().with("count", count))
}

/// `jobs/delete.json`: deletes the jobs named (`job`, repeatable), stopping them, with their
/// data; answers how many.
async fn jobs_delete(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult {
    let (_, jobs) = named_jobs(&state, &caller, &params, ProjectRight::Write).await?;
    for job in &jobs {
        control::delete(&state, job).await?;
    }
    Ok(Reply::empty().with("count", jobs.len()))
}

// ------------------------------------------------------------------------------------------------
// A job's items and log

/// An error of a data read (400: HTTP clients see it; the legacy client would take a 200 line
/// for an item).
fn bad(e: ApiError) -> ApiError {
    ApiError {
        status: if e.status == StatusCode::OK {
            StatusCode::BAD_REQUEST
        } else {
            e.status
        },
        ..e
    }
}

/// The job whose data a read asks for: `job`, or for items the newest finished job of
/// `spider` (as the old API).
async fn data_job(
    state: &AppState,
    caller: &Caller,
    params: &Params,
    by_spider: bool,
) -> Result<JobKey, ApiError> {
    let (project, project_id) = project_param(state, caller, params, ProjectRight::Read).await?;
    let not_found = |what: String| ApiError {
        message: what,
        status: StatusCode::NOT_FOUND,
    };
    if let Some(text) = params.text("job")? {
        let key = job_key(&text, project_id)?;
        let jobs = control::jobs_by_key(state, &project, vec![key]).await?;
        return match jobs.first() {
            Some(j) => Ok(j.key),
            None => Err(not_found(format!("job {key} not found"))),
        };
    }
    let spider = match params.text("spider")? {
        Some(s) if by_spider => s,
        _ => return Err(ApiError::missing("job")),
    };
    let name = spider.clone();
    let query = JobQuery {
        states: vec!["finished".into()],
        spider: Some(spider),
        count: Some(1),
        ..JobQuery::default()
    };
    let last = state
        .storage
        .cloud_jobs(&project, query)
        .await?
        .first()
        .map(|j| j.key);
    last.ok_or_else(|| not_found(format!("spider {name} has no finished job")))
}

/// Where a read starts and how many entries it takes: from `offset` (which may be the end,
/// not past it), at most `count`, and at most `cap` (a page); a negative `count` is the last
/// ones (the last of them when a page cannot hold them all).
fn window(
    offset: u64,
    count: Option<i64>,
    total: u64,
    cap: Option<u64>,
    what: &str,
) -> Result<(u64, Option<u64>), ApiError> {
    if offset > total {
        return Err(ApiError::invalid(
            "offset",
            format!("{offset} is past the end: the job has {total} {what}"),
        ));
    }
    let (from, take) = match count {
        None => (offset, None),
        Some(c) if c >= 0 => (offset, Some(c as u64)),
        Some(c) => {
            let from = offset.max(total.saturating_sub(c.unsigned_abs()));
            let last = total - from;
            match cap {
                Some(cap) if last > cap => (total - cap, Some(cap)),
                _ => (from, Some(last)),
            }
        }
    };
    let take = match (take, cap) {
        (Some(t), Some(cap)) => Some(t.min(cap)),
        (t, None) => t,
        (None, cap) => cap,
    };
    Ok((from, take))
}

/// The JSON answers of the old API's data reads hold at most this many entries (`.jl`
/// answers hold them all).
const JSON_PAGE: u64 = 100;

/// An answer of JSON lines.
fn json_lines(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-jsonlines; charset=UTF-8"),
    );
    r
}

/// An answer of one JSON array.
fn json_array(items: &[Vec<u8>]) -> Response {
    let mut body = b"[".to_vec();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]\n");
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `items.jl` / `items.json`: a job's items from `offset` (the item number), at most `count`
/// (a negative count: the last ones), each with the `meta` fields asked for (`_key`, `_ts`).
async fn items(
    state: &AppState,
    caller: &Caller,
    params: &Params,
    as_array: bool,
) -> Result<Response, ApiError> {
    only(params, &["job", "spider", "offset", "count", "meta"])?;
    let key = data_job(state, caller, params, true).await?;
    let offset = offset_param(params)?;
    let count = int_param(params, "count")?;
    let mut opts = ReadOptions::default();
    for m in params.all("meta")? {
        match m.as_str() {
            "_key" => opts.with_keys = true,
            "_ts" => opts.with_ts = true,
            other => {
                return Err(ApiError::invalid(
                    "meta",
                    format!("{other:?} (_key or _ts)"),
                ));
            }
        }
    }
    let stream = Stream::new(
        job_dir(&state.config.jobdata_dir, key.project, key.spider, key.n),
        StreamKind::Items,
    );
    let reading = stream.clone();
    let total = tokio::task::spawn_blocking(move || reading.catch_up())
        .await
        .map_err(|e| ApiError::internal("RuntimeError", e))?
        .map_err(|e| ApiError::internal("OSError", e))?
        .values;
    let (from, take) = window(offset, count, total, as_array.then_some(JSON_PAGE), "items")?;
    opts.start = Some((key, from));
    opts.count = take;
    let sources = vec![(stream, key)];
    if as_array {
        let read = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            read_entries(&sources, &opts, &mut |chunk| {
                out.extend(chunk);
                true
            })
            .map(|()| out)
        })
        .await
        .map_err(|e| ApiError::internal("RuntimeError", e))?
        .map_err(|e| ApiError::internal("OSError", e))?;
        let lines: Vec<Vec<u8>> = read
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        return Ok(json_array(&lines));
    }
    Ok(json_lines(wire::blocking_body(move |sink| {
        if let Err(e) = read_entries(&sources, &opts, sink) {
            tracing::warn!("dash API: reading items failed: {e}");
        }
    })))
}

/// A `level` parameter: a level name (`DEBUG` … `CRITICAL`) or number.
fn level_param(params: &Params) -> Result<Option<i64>, ApiError> {
    let Some(text) = params.text("level")? else {
        return Ok(None);
    };
    let level = match text.trim().to_ascii_uppercase().as_str() {
        "DEBUG" => 10,
        "INFO" => 20,
        "WARN" | "WARNING" => 30,
        "ERROR" => 40,
        "CRITICAL" => 50,
        number => number.parse().map_err(|_| {
            ApiError::invalid(
                "level",
                format!("{text:?} (DEBUG, INFO, WARNING, ERROR, CRITICAL or a number)"),
            )
        })?,
    };
    Ok(Some(level))
}

/// A log entry as the old API showed it: `logLevel`, `message`, `time`.
fn log_line(json: &[u8], ts: Option<i64>) -> (i64, Value) {
    let entry: Value = serde_json::from_slice(json).unwrap_or(Value::Null);
    let level = entry.get("level").and_then(Value::as_i64).unwrap_or(0);
    let time = entry
        .get("time")
        .and_then(Value::as_i64)
        .or(ts)
        .unwrap_or(0);
    let line = json!({
        "logLevel": level,
        "message": entry.get("message").cloned().unwrap_or(Value::Null),
        "time": iso_time(time),
    });
    (level, line)
}

/// Calls `each` with the log lines of `stream` at `level` or above, from the `skip`-th of them,
/// at most `take`; stops when `each` returns `false`.
fn each_log_line(
    stream: &Stream,
    level: Option<i64>,
    skip: u64,
    take: Option<u64>,
    each: &mut dyn FnMut(&Value) -> bool,
) -> std::io::Result<()> {
    let values = stream.catch_up()?.values;
    let (from, mut skip) = if level.is_none() {
        (skip, 0)
    } else {
        (0, skip)
    };
    if from >= values || take == Some(0) {
        return Ok(());
    }
    let mut reader = stream.reader(from, values)?;
    let mut taken = 0;
    while let Some(e) = reader.next_entry()? {
        let (l, line) = log_line(e.json, e.ts);
        if level.is_some_and(|min| l < min) {
            continue;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        taken += 1;
        if !each(&line) || take.is_some_and(|t| taken >= t) {
            break;
        }
    }
    Ok(())
}

/// `log.jl` / `log.json`: a job's log entries at `level` or above, from `offset` (counted in
/// the entries shown), at most `count` (a negative count: the last ones).
async fn log(
    state: &AppState,
    caller: &Caller,
    params: &Params,
    as_array: bool,
) -> Result<Response, ApiError> {
    only(params, &["job", "offset", "count", "level"])?;
    let key = data_job(state, caller, params, false).await?;
    let offset = offset_param(params)?;
    let count = int_param(params, "count")?;
    let level = level_param(params)?;
    let stream = Stream::new(
        job_dir(&state.config.jobdata_dir, key.project, key.spider, key.n),
        StreamKind::Logs,
    );
    let counting = stream.clone();
    let total = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        let values = counting.catch_up()?.values;
        if level.is_none() {
            return Ok(values);
        }
        let mut n = 0;
        each_log_line(&counting, level, 0, None, &mut |_| {
            n += 1;
            true
        })?;
        Ok(n)
    })
    .await
    .map_err(|e| ApiError::internal("RuntimeError", e))?
    .map_err(|e| ApiError::internal("OSError", e))?;
    let (from, take) = window(
        offset,
        count,
        total,
        as_array.then_some(JSON_PAGE),
        "log entries",
    )?;
    if as_array {
        let lines = tokio::task::spawn_blocking(move || {
            let mut lines = Vec::new();
            each_log_line(&stream, level, from, take, &mut |l| {
                lines.push(serde_json::to_vec(l).unwrap_or_default());
                true
            })
            .map(|()| lines)
        })
        .await
        .map_err(|e| ApiError::internal("RuntimeError", e))?
        .map_err(|e| ApiError::internal("OSError", e))?;
        return Ok(json_array(&lines));
    }
    Ok(json_lines(wire::blocking_body(move |sink| {
        let mut out = Vec::new();
        let read = each_log_line(&stream, level, from, take, &mut |l| {
            out.extend(serde_json::to_vec(l).unwrap_or_default());
            out.push(b'\n');
            out.len() < 1 << 16 || sink(std::mem::take(&mut out))
        });
        if let Err(e) = read {
            tracing::warn!("dash API: reading a log failed: {e}");
        }
        if !out.is_empty() {
            sink(out);
        }
    })))
}

/// A job's data, as the old API read it.
#[derive(Debug, Clone, Copy)]
enum Data {
    Items,
    Log,
}

/// `items.jl|.json`, `log.jl|.json` (`as_array`: the `.json` form).
async fn data_read(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    data: Data,
    as_array: bool,
) -> Response {
    let read = match data {
        Data::Items => items(&state, &caller, &params, as_array).await,
        Data::Log => log(&state, &caller, &params, as_array).await,
    };
    read.unwrap_or_else(|e| bad(e).into_response())
}

// ------------------------------------------------------------------------------------------------
// Reports

/// The formats a report may have.
const REPORT_TYPES: [&str; 2] = ["text/plain", "text/x-rst"];

/// `reports/add.json` (multipart: `project`, `job`, `key`, `content_type`, file `content`):
/// keeps the report in the job's metadata, `reports.<key>` = `{"content_type", "content",
/// "added"}`; a report of the same key is replaced.
async fn reports_add(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult {
    only(&params, &["job", "key", "content_type", "content"])?;
    let (project, project_id) =
        project_param(&state, &caller, &params, ProjectRight::Write).await?;
    let job = params.text("job")?.ok_or_else(|| {
        ApiError::new("'job' parameter is required (reports of a whole project are not kept)")
    })?;
    let key = job_key(&job, project_id)?;
    let name = params.required("key")?;
    if name.is_empty()
        || name.len() > crate::names::MAX_NAME_LEN
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(
            "key",
            "expected 1 to 200 printable characters",
        ));
    }
    let content_type = params.required("content_type")?;
    if !REPORT_TYPES.contains(&content_type.as_str()) {
        return Err(ApiError::invalid(
            "content_type",
            format!("{content_type:?} (text/plain or text/x-rst)"),
        ));
    }
    let content = params
        .bytes("content")
        .ok_or_else(|| ApiError::missing("content"))?;
    if content.len() > MAX_VALUE {
        return Err(ApiError::invalid(
            "content",
            format!("{} bytes (at most {MAX_VALUE})", content.len()),
        ));
    }
    let content = String::from_utf8(content.to_vec())
        .map_err(|_| ApiError::invalid("content", "not UTF-8 text"))?;
    let report = json!({"content_type": content_type, "content": content, "added": now_ms()});
    let found = state
        .storage
        .edit_cloud_meta(&project, vec![key], move |meta| {
            let mut reports = match meta.remove("reports") {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            reports.insert(name.clone(), report.clone());
            meta.insert("reports".into(), Value::Object(reports));
        })
        .await?
        > 0;
    if !found {
        return Err(ApiError::new(format!("job {key} not found")));
    }
    Ok(Reply::empty())
}

// ------------------------------------------------------------------------------------------------
// Extra eggs

/// `eggs/add.json` (multipart: `project`, `name`, `version`, file `egg`): adds (or replaces)
/// an extra egg of the project.
async fn eggs_add(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult {
    only(&params, &["name", "version", "egg"])?;
    let project = deploy_target(&state, &caller, &params).await?;
    let name = params.required("name")?;
    let version = params.required("version")?;
    let data = params
        .bytes("egg")
        .ok_or_else(|| ApiError::missing("egg"))?;
    let egg = crate::eggs::NewExtraEgg {
        name: &name,
        version: &version,
        data,
    };
    state.eggs.add_extra_egg(&project, &egg).await?;
    tracing::info!(project = %project, egg = %name, version = %version, "added an extra egg");
    Ok(Reply::empty().with("name", name).with("version", version))
}

/// `eggs/list.json`: the project's extra eggs, `{"eggs": [{"name", "version"}]}`.
async fn eggs_list(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult {
    only(&params, &[])?;
    let (project, _) = project_param(&state, &caller, &params, ProjectRight::Read).await?;
    let eggs: Vec<Value> = state
        .eggs
        .extra_eggs(&project)?
        .into_iter()
        .map(|e| json!({"name": e.name, "version": e.version}))
        .collect();
    Ok(Reply::empty().with("eggs", eggs))
}

/// `eggs/delete.json` (`project`, `name`).
async fn eggs_delete(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult {
    only(&params, &["name"])?;
    let (project, _) = project_param(&state, &caller, &params, ProjectRight::Write).await?;
    let name = params.required("name")?;
    if !state.eggs.delete_extra_egg(&project, &name).await? {
        return Err(ApiError::new(format!("egg '{name}' not found")));
    }
    Ok(Reply::empty())
}

/// `eggs/bundle.zip`: a zip of the project's eggs, each extra egg as `<name>.egg` and the
/// project's newest version as `__main__.egg` (what `shub fetch-eggs`/`copy-eggs` read).
async fn eggs_bundle(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Response, ApiError> {
    only(&params, &[])?;
    let (project, _) = project_param(&state, &caller, &params, ProjectRight::Read).await?;
    let mut files: Vec<(String, std::path::PathBuf)> = state
        .eggs
        .extra_eggs(&project)?
        .into_iter()
        .map(|e| (format!("{}.egg", e.name), e.path))
        .collect();
    if let Some(v) = state.eggs.resolve(&project, None)? {
        files.push(("__main__.egg".into(), state.eggs.egg_path(&project, &v)));
    }
    let zip = tokio::task::spawn_blocking(move || bundle(&files))
        .await
        .map_err(|e| ApiError::internal("RuntimeError", e))?
        .map_err(|e| ApiError::internal("OSError", e))?;
    let mut r = Response::new(Body::from(zip));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"eggs-{project}.zip\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// A zip (stored, not compressed: eggs are zips already) of these files under these names.
fn bundle(files: &[(String, std::path::PathBuf)]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    for (name, path) in files {
        let data = std::fs::read(path)?;
        zip.start_file(name.as_str(), options)
            .map_err(std::io::Error::other)?;
        zip.write_all(&data)?;
    }
    zip.finish().map_err(std::io::Error::other)?;
    Ok(out.into_inner())
}

// ------------------------------------------------------------------------------------------------
// Portia

/// `as/project-slybot.zip`, `as/spider-properties.json`: Portia's, which Zyte discontinued.
async fn portia(uri: axum::http::Uri) -> ApiError {
    let name = uri
        .path()
        .trim_start_matches(super::DASH_PREFIX)
        .trim_end_matches(".json")
        .trim_end_matches(".zip");
    ApiError {
        message: format!(
            "{name} is part of Portia (autoscraping), which Zyte discontinued: scrapyd-rs runs \
             Scrapy projects deployed as eggs, not Portia projects"
        ),
        status: StatusCode::GONE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_python_isoformat_in_utc() {
        assert_eq!(iso_time(1_285_686_597_629), "2010-09-28T15:09:57.629000");
        assert_eq!(iso_time(1_285_686_597_000), "2010-09-28T15:09:57");
    }

    #[test]
    fn a_window_starts_at_the_offset_or_takes_the_last_entries() {
        let w = |offset, count, total, cap| window(offset, count, total, cap, "items").unwrap();
        assert_eq!(w(0, None, 10, None), (0, None));
        assert_eq!(w(10, None, 10, None), (10, None));
        assert_eq!(w(3, Some(4), 10, None), (3, Some(4)));
        assert_eq!(w(0, Some(-4), 10, None), (6, Some(4)));
        assert_eq!(w(8, Some(-4), 10, None), (8, Some(2)));
        assert_eq!(w(0, Some(-40), 10, None), (0, Some(10)));
        // A page of 100: the first 100 from the offset, or the last 100.
        assert_eq!(w(20, None, 150, Some(100)), (20, Some(100)));
        assert_eq!(w(0, Some(120), 150, Some(100)), (0, Some(100)));
        assert_eq!(w(0, Some(-120), 150, Some(100)), (50, Some(100)));
        assert_eq!(w(0, Some(-30), 150, Some(100)), (120, Some(30)));
        let err = window(11, None, 10, None, "items").unwrap_err();
        assert_eq!(
            err.message,
            "offset is invalid: 11 is past the end: the job has 10 items"
        );
    }

    #[test]
    fn log_entries_get_the_old_field_names() {
        let (level, line) = log_line(br#"{"time":1285686597629,"level":40,"message":"x"}"#, None);
        assert_eq!(level, 40);
        assert_eq!(
            line,
            json!({"logLevel": 40, "message": "x", "time": "2010-09-28T15:09:57.629000"})
        );
        let (_, line) = log_line(br#"{"level":20,"message":"y"}"#, Some(1_285_686_597_000));
        assert_eq!(line["time"], "2010-09-28T15:09:57");
    }
}
