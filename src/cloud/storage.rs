//! The storage API under `/storage/`: what `ScrapinghubClient(endpoint=…)` calls for the job
//! queue (`jobq`), job metadata (`jobs`), job data (`items`, `logs`, `requests`, `samples`),
//! spider ids and summaries. JSON lines in and out; msgpack out when asked; errors as HTTP
//! statuses ([`super::wire`]).

use super::access::Caller;
use super::control;
use super::jobdata::{Filter, ReadOptions, Stream, StreamKind, job_dir, read_entries};
use super::project;
use super::registry::{RESERVED_META, STATES, drop_reserved, shown_field};
use super::submit::{Submission, SubmitError, Submitted, requested_state, submit};
use super::wire::{self, HubError, HubResult, MAX_VALUE, decode_body, json_lines, lines, one};
use crate::AppState;
use crate::api::params::{Params, parse_urlencoded};
use crate::storage::model::Uniqueness;
use crate::storage::model::{CloudJob, JobKey, JobQuery, now_ms, parse_id};
use axum::Router;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

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

/// The query parameters.
fn query(raw: &Option<String>) -> Params {
    raw.as_deref()
        .map(|q| parse_urlencoded(q.as_bytes()))
        .unwrap_or_default()
}

fn text_list(params: &Params, key: &str) -> Result<Vec<String>, HubError> {
    params
        .all(key)
        .map_err(|e| HubError::bad_request(e.message))
}

fn text(params: &Params, key: &str) -> Result<Option<String>, HubError> {
    params
        .text(key)
        .map_err(|e| HubError::bad_request(e.message))
}

fn number(params: &Params, key: &str) -> Result<Option<i64>, HubError> {
    text(params, key)?
        .map(|t| {
            t.trim()
                .parse::<i64>()
                .map_err(|_| HubError::bad_request(format!("invalid {key}: {t}")))
        })
        .transpose()
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
    let params = query(&q.0);
    let create = text(&params, "create")?
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

/// Filters of `jobq` reads.
async fn job_query(
    state: &AppState,
    project: &str,
    params: &Params,
    default_state: Option<&str>,
) -> Result<JobQuery, HubError> {
    let mut q = JobQuery::default();
    for s in text_list(params, "state")? {
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
    if let Some(spider) = text(params, "spider")? {
        // A spider name (the client's form), else a spider id.
        let by_name = state.storage.spider_id(project, &spider, false).await?;
        let id = by_name.or_else(|| parse_id(&spider));
        // An unknown spider has no jobs.
        q.spider_id = Some(id.unwrap_or(-1));
    }
    q.has_tag = text_list(params, "has_tag")?;
    q.lacks_tag = text_list(params, "lacks_tag")?;
    (q.startts, q.endts) = time_range(params)?;
    for k in text_list(params, "key")? {
        q.keys.push(
            JobKey::parse(&k).ok_or_else(|| HubError::bad_request(format!("invalid key: {k}")))?,
        );
    }
    Ok(q)
}

/// A job summary line: the default fields, or `key`, `state`, `ts`, `elapsed` and the `jobmeta`
/// fields asked for.
fn summary(job: &CloudJob, jobmeta: &[String]) -> Value {
    let now = now_ms();
    let mut m = Map::new();
    m.insert("key".into(), job.key.to_string().into());
    m.insert("state".into(), job.state.clone().into());
    m.insert("ts".into(), job.ts.into());
    m.insert("elapsed".into(), (now - job.ts).max(0).into());
    if !jobmeta.is_empty() {
        let asked = jobmeta
            .iter()
            .filter(|f| shown_field(f) && !RESERVED_META.contains(&f.as_str()));
        for f in asked {
            if let Some(v) = job.meta.get(f) {
                m.insert(f.clone(), v.clone());
            }
        }
        return Value::Object(m);
    }
    m.insert("spider".into(), job.spider.clone().into());
    for f in [
        "pending_time",
        "running_time",
        "finished_time",
        "close_reason",
        "version",
    ] {
        if let Some(v) = job.meta.get(f) {
            m.insert(f.into(), v.clone());
        }
    }
    if let Some(Value::Array(tags)) = job.meta.get("tags")
        && !tags.is_empty()
    {
        m.insert("tags".into(), Value::Array(tags.clone()));
    }
    if let Some(Value::Object(stats)) = job.meta.get("scrapystats") {
        let stat = |k: &str| stats.get(k).and_then(Value::as_i64).unwrap_or(0);
        let logs: i64 = stats
            .iter()
            .filter(|(k, _)| k.starts_with("log_count/"))
            .filter_map(|(_, v)| v.as_i64())
            .sum();
        m.insert("items".into(), stat("item_scraped_count").into());
        m.insert("pages".into(), stat("response_received_count").into());
        m.insert("errors".into(), stat("log_count/ERROR").into());
        m.insert("logs".into(), logs.into());
    }
    Value::Object(m)
}

/// `jobq/<p>/count`: how many jobs match (finished ones unless `state` is given).
async fn jobq_count(
    State(state): State<AppState>,
    Path(p): Path<String>,
    q: RawQuery,
) -> HubResult {
    let (project, _) = project(&state, &p).await?;
    let params = query(&q.0);
    let query = job_query(&state, &project, &params, Some("finished")).await?;
    let jobs = state.storage.cloud_jobs(&project, query).await?;
    Ok(one(&jobs.len().into()))
}

/// `jobq/<p>/list`: job summaries, newest first.
async fn jobq_list(State(state): State<AppState>, Path(p): Path<String>, q: RawQuery) -> HubResult {
    let (project, _) = project(&state, &p).await?;
    let params = query(&q.0);
    let mut query = job_query(&state, &project, &params, Some("finished")).await?;
    query.skip = number(&params, "start")?.unwrap_or(0).max(0) as usize;
    query.count = Some(number(&params, "count")?.unwrap_or(1000).clamp(0, 100_000) as usize);
    if let Some(stop) = text(&params, "stop")? {
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
    let jobmeta = text_list(params, "jobmeta")?;
    let jobs = state.storage.cloud_jobs(&project, query).await?;
    let out: Vec<Value> = jobs.iter().map(|j| summary(j, &jobmeta)).collect();
    Ok(lines(&out, false))
}

/// `jobq/<p>/jobsummary?key=…&jobmeta=…`: summaries of the jobs named, in any state.
async fn jobq_jobsummary(
    State(state): State<AppState>,
    Path(p): Path<String>,
    q: RawQuery,
) -> HubResult {
    let (project, _) = project(&state, &p).await?;
    let params = query(&q.0);
    let query = job_query(&state, &project, &params, None).await?;
    if query.keys.is_empty() {
        return Ok(lines(&[], false));
    }
    summary_lines(&state, project, query, &params).await
}

/// Summary lines per state (`pending`, `running`, `finished`), each with its count and up to
/// `count` (5) summaries.
async fn summaries(
    state: &AppState,
    p: &str,
    spider: Option<&str>,
    only: Option<&str>,
    q: &Option<String>,
) -> HubResult {
    let (project, _) = project(state, p).await?;
    let params = query(q);
    let count = number(&params, "count")?.unwrap_or(5).clamp(0, 1000) as usize;
    let skip = number(&params, "start")?.unwrap_or(0).max(0) as usize;
    let jobmeta = text_list(&params, "jobmeta")?;
    let spider_id = match spider {
        Some(s) => Some(
            parse_id(s).ok_or_else(|| HubError::bad_request(format!("invalid spider id: {s}")))?,
        ),
        None => None,
    };
    let states: Vec<&str> = match only {
        Some(s) if ["pending", "running", "finished"].contains(&s) => vec![s],
        Some(s) => return Err(HubError::bad_request(format!("invalid state: {s}"))),
        None => vec!["pending", "running", "finished"],
    };
    let states: Vec<String> = states.into_iter().map(str::to_owned).collect();
    let queries: Vec<JobQuery> = states
        .iter()
        .map(|s| JobQuery {
            states: vec![s.clone()],
            spider_id,
            ..JobQuery::default()
        })
        .collect();
    let found = state.storage.cloud_jobs_each(&project, queries).await?;
    let groups: Vec<(String, Vec<CloudJob>)> = states.into_iter().zip(found).collect();
    let out: Vec<Value> = groups
        .iter()
        .map(|(name, jobs)| {
            let list: Vec<Value> = jobs
                .iter()
                .skip(skip)
                .take(count)
                .map(|j| summary(j, &jobmeta))
                .collect();
            json!({"name": name, "count": jobs.len(), "summary": list})
        })
        .collect();
    Ok(lines(&out, false))
}

async fn summary_all(
    State(state): State<AppState>,
    Path(p): Path<String>,
    q: RawQuery,
) -> HubResult {
    summaries(&state, &p, None, None, &q.0).await
}

async fn summary_state(
    State(state): State<AppState>,
    Path((p, s)): Path<(String, String)>,
    q: RawQuery,
) -> HubResult {
    summaries(&state, &p, None, Some(&s), &q.0).await
}

async fn spider_summary_all(
    State(state): State<AppState>,
    Path((p, s)): Path<(String, String)>,
    q: RawQuery,
) -> HubResult {
    summaries(&state, &p, Some(&s), None, &q.0).await
}

async fn spider_summary_state(
    State(state): State<AppState>,
    Path((p, s, st)): Path<(String, String, String)>,
    q: RawQuery,
) -> HubResult {
    summaries(&state, &p, Some(&s), Some(&st), &q.0).await
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
async fn jobq_push(
    State(state): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    super::wire::RequestBody(body): super::wire::RequestBody,
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
async fn jobq_startjob(
    State(state): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    super::wire::RequestBody(body): super::wire::RequestBody,
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
async fn jobq_update(
    State(state): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    super::wire::RequestBody(body): super::wire::RequestBody,
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
async fn jobq_cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(p): Path<String>,
    q: RawQuery,
    headers: HeaderMap,
    super::wire::RequestBody(body): super::wire::RequestBody,
) -> HubResult {
    let (project, project_id) = project(&state, &p).await?;
    if let Some(count) = number(&query(&q.0), "count")? {
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
async fn job_cancel(
    State(state): State<AppState>,
    Path((p, s, j)): Path<(String, String, String)>,
) -> HubResult {
    let (project, _) = project(&state, &p).await?;
    let key = parse_key(&p, &s, &j)?;
    let jobs = control::jobs_by_key(&state, &project, vec![key]).await?;
    let count = control::cancel(&state, &project, &jobs).await?;
    Ok(one(&json!({"count": count})))
}

/// Pending, running and finished counts of a project.
async fn project_counts(state: &AppState, project: &str) -> Result<Value, HubError> {
    let id = state.storage.project_id(project).await?;
    let queries = ["pending", "running", "finished"]
        .map(|s| JobQuery {
            states: vec![s.into()],
            ..JobQuery::default()
        })
        .to_vec();
    let found = state.storage.cloud_jobs_each(project, queries).await?;
    let counts = (id, found.iter().map(Vec::len).collect::<Vec<_>>());
    let running = state.launcher_running_hint(counts.1[1]);
    Ok(json!({
        "project": counts.0, "pending": counts.1[0], "running": counts.1[1],
        "finished": counts.1[2], "has_capacity": running,
    }))
}

/// `projects/jobsummaries[?state=…]`: the projects the caller may read that have jobs in one
/// of these states (pending or running when none is given), one JSON line.
async fn project_summaries(
    State(state): State<AppState>,
    caller: Caller,
    q: RawQuery,
) -> HubResult {
    let mut states = Vec::new();
    for s in text_list(&query(&q.0), "state")? {
        if !["pending", "running", "finished"].contains(&s.as_str()) {
            return Err(HubError::bad_request(format!("invalid state: {s}")));
        }
        states.push(s);
    }
    if states.is_empty() {
        states = vec!["pending".into(), "running".into()];
    }
    let mut out = Vec::new();
    for p in state.eggs.projects() {
        let c = project_counts(&state, &p).await?;
        let readable = c["project"].as_i64().is_some_and(|id| caller.reads(&p, id));
        if readable && states.iter().any(|s| c[s.as_str()] != 0) {
            out.push(c);
        }
    }
    Ok(one(&Value::Array(out)))
}

/// `projects/<p>/jobsummary`.
async fn project_summary(State(state): State<AppState>, Path(p): Path<String>) -> HubResult {
    let (project, _) = project(&state, &p).await?;
    let mut c = project_counts(&state, &project).await?;
    c["running_units_count"] = c["running"].clone();
    c["pending_units_max"] = Value::Null;
    Ok(one(&c))
}

/// The newest finished job of each spider (or of one).
async fn last_jobs(
    state: &AppState,
    p: &str,
    spider: Option<&str>,
    q: &Option<String>,
) -> HubResult {
    let (project, _) = project(state, p).await?;
    let params = query(q);
    let count = number(&params, "count")?.map(|c| c.max(0) as usize);
    let start = text(&params, "start")?;
    let startafter = text(&params, "startafter")?;
    let spider_id = match spider {
        Some(s) => Some(
            parse_id(s).ok_or_else(|| HubError::bad_request(format!("invalid spider id: {s}")))?,
        ),
        None => None,
    };
    let query = JobQuery {
        states: vec!["finished".into()],
        spider_id,
        ..JobQuery::default()
    };
    let jobs = state.storage.cloud_jobs(&project, query).await?;
    let mut seen = std::collections::HashSet::new();
    let mut last: Vec<&CloudJob> = jobs.iter().filter(|j| seen.insert(j.key.spider)).collect();
    last.sort_by_key(|j| j.key.spider);
    let key_of = |j: &CloudJob| format!("{}/{}", j.key.project, j.key.spider);
    if let Some(s) = start {
        last.retain(|j| key_of(j) >= s);
    }
    if let Some(s) = startafter {
        last.retain(|j| key_of(j) > s);
    }
    let out: Vec<Value> = last
        .into_iter()
        .take(count.unwrap_or(usize::MAX))
        .map(|j| summary(j, &[]))
        .collect();
    Ok(lines(&out, false))
}

async fn last_summaries(
    State(state): State<AppState>,
    Path(p): Path<String>,
    q: RawQuery,
) -> HubResult {
    last_jobs(&state, &p, None, &q.0).await
}

async fn spider_last_summary(
    State(state): State<AppState>,
    Path((p, s)): Path<(String, String)>,
    q: RawQuery,
) -> HubResult {
    last_jobs(&state, &p, Some(&s), &q.0).await
}

/// The job of a `jobs/<p>/<s>/<j>` path.
async fn job_at(
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
    let params = query(q);
    let mut query = job_query(state, &project, &params, None).await?;
    if let Some(s) = spider {
        query.spider_id = Some(
            parse_id(s).ok_or_else(|| HubError::bad_request(format!("invalid spider id: {s}")))?,
        );
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
async fn project_jobs_meta(
    State(state): State<AppState>,
    Path(p): Path<String>,
    q: RawQuery,
) -> HubResult {
    jobs_meta(&state, &p, None, &q.0).await
}

/// `GET jobs/<p>/<s>`.
async fn spider_jobs_meta(
    State(state): State<AppState>,
    Path((p, s)): Path<(String, String)>,
    q: RawQuery,
) -> HubResult {
    jobs_meta(&state, &p, Some(&s), &q.0).await
}

/// `GET jobs/<key>`: the whole metadata object.
async fn meta_get(
    State(state): State<AppState>,
    Path((p, s, j)): Path<(String, String, String)>,
) -> HubResult {
    let (_, _, job) = job_at(&state, &p, &s, &j).await?;
    Ok(one(&shown_meta(&job)))
}

/// `POST jobs/<key>`: merges a JSON object into the metadata.
async fn meta_post(
    State(state): State<AppState>,
    Path((p, s, j)): Path<(String, String, String)>,
    headers: HeaderMap,
    super::wire::RequestBody(body): super::wire::RequestBody,
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
async fn meta_delete(
    State(state): State<AppState>,
    Path((p, s, j)): Path<(String, String, String)>,
) -> HubResult {
    let (_, _, job) = job_at(&state, &p, &s, &j).await?;
    control::delete(&state, &job).await?;
    Ok(wire::empty())
}

/// `GET jobs/<key>/<field>`: one value (`null` when absent).
async fn field_get(
    State(state): State<AppState>,
    Path((p, s, j, field)): Path<(String, String, String, String)>,
) -> HubResult {
    let (_, _, job) = job_at(&state, &p, &s, &j).await?;
    let meta = shown_meta(&job);
    Ok(one(meta.get(&field).unwrap_or(&Value::Null)))
}

/// `POST jobs/<key>/<field>`: sets one value.
async fn field_post(
    State(state): State<AppState>,
    Path((p, s, j, field)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    super::wire::RequestBody(body): super::wire::RequestBody,
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
async fn field_delete(
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

/// The stream kind of a data path (`/storage/<kind>/…`).
fn kind_of(uri_path: &str) -> Result<StreamKind, HubError> {
    uri_path
        .trim_start_matches(super::STORAGE_PREFIX)
        .split('/')
        .next()
        .and_then(StreamKind::parse)
        .ok_or_else(|| HubError::not_found("unknown resource"))
}

/// The stream of a job's data path.
fn stream_of(state: &AppState, uri_path: &str, key: JobKey) -> Result<Stream, HubError> {
    Ok(Stream::new(
        job_dir(&state.config.jobdata_dir, key.project, key.spider, key.n),
        kind_of(uri_path)?,
    ))
}

/// An entry key `p/s/j/n` (of `start`/`startafter`).
fn entry_key(text: &str) -> Result<(JobKey, u64), HubError> {
    let bad = || HubError::bad_request(format!("invalid entry key: {text}"));
    let (job, n) = text.rsplit_once('/').ok_or_else(bad)?;
    Ok((
        JobKey::parse(job).ok_or_else(bad)?,
        n.parse().map_err(|_| bad())?,
    ))
}

/// Reads entries of one job, a spider's jobs or a project's jobs (`keys`, in order), streamed;
/// `count`, `start`, `startafter`, `index`, `meta` (`_key`, `_ts`), `nodata` and `filter` as
/// Scrapy Cloud.
fn read_jobs(
    state: &AppState,
    kind: StreamKind,
    keys: Vec<JobKey>,
    q: &Option<String>,
    headers: &HeaderMap,
) -> HubResult {
    let params = query(q);
    let mut opts = ReadOptions {
        count: number(&params, "count")?.map(|c| c.max(0) as u64),
        msgpack: kind.allows_msgpack() && wire::wants_msgpack(headers),
        ..ReadOptions::default()
    };
    if let Some(start) = text(&params, "start")? {
        opts.start = Some(entry_key(&start)?);
    }
    if let Some(after) = text(&params, "startafter")? {
        let (key, n) = entry_key(&after)?;
        let next = n
            .checked_add(1)
            .ok_or_else(|| HubError::bad_request(format!("invalid entry key: {after}")))?;
        opts.start = Some((key, next));
    }
    for i in text_list(&params, "index")? {
        opts.index.push(
            i.parse::<u64>()
                .map_err(|_| HubError::bad_request(format!("invalid index: {i}")))?,
        );
    }
    (opts.startts, opts.endts) = time_range(&params)?;
    let meta = text_list(&params, "meta")?;
    opts.with_keys = meta.iter().any(|m| m == "_key");
    opts.with_ts = meta.iter().any(|m| m == "_ts");
    opts.nodata = text(&params, "nodata")?.is_some_and(|v| v == "1" || v == "true");
    opts.filters = text_list(&params, "filter")?
        .iter()
        .map(|f| Filter::parse(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(HubError::bad_request)?;
    let sources: Vec<(Stream, JobKey)> = keys
        .into_iter()
        .map(|k| {
            let dir = job_dir(&state.config.jobdata_dir, k.project, k.spider, k.n);
            (Stream::new(dir, kind), k)
        })
        .collect();
    let msgpack = opts.msgpack;
    let body = wire::blocking_body(move |sink| {
        if let Err(e) = read_entries(&sources, &opts, sink) {
            tracing::warn!("storage API: reading a stream failed: {e}");
        }
    });
    Ok(wire::with_type(body, msgpack))
}

/// `GET <kind>/<p>/<s>/<j>`: a job's entries.
async fn stream_read(
    State(state): State<AppState>,
    Path((p, s, j)): Path<(String, String, String)>,
    uri: axum::http::Uri,
    q: RawQuery,
    headers: HeaderMap,
) -> HubResult {
    let key = parse_key(&p, &s, &j)?;
    read_jobs(&state, kind_of(uri.path())?, vec![key], &q.0, &headers)
}

/// `GET <kind>/<p>/<s>`: the entries of a spider's jobs, job after job.
async fn spider_stream_read(
    State(state): State<AppState>,
    Path((p, s)): Path<(String, String)>,
    uri: axum::http::Uri,
    q: RawQuery,
    headers: HeaderMap,
) -> HubResult {
    let (_, project_id) = project(&state, &p).await?;
    let spider =
        parse_id(&s).ok_or_else(|| HubError::bad_request(format!("invalid spider id: {s}")))?;
    let keys = super::jobdata::jobs_with_data(&state.config.jobdata_dir, project_id, Some(spider));
    read_jobs(&state, kind_of(uri.path())?, keys, &q.0, &headers)
}

/// `GET <kind>/<p>`: the entries of a project's jobs.
async fn project_stream_read(
    State(state): State<AppState>,
    Path(p): Path<String>,
    uri: axum::http::Uri,
    q: RawQuery,
    headers: HeaderMap,
) -> HubResult {
    let (_, project_id) = project(&state, &p).await?;
    let keys = super::jobdata::jobs_with_data(&state.config.jobdata_dir, project_id, None);
    read_jobs(&state, kind_of(uri.path())?, keys, &q.0, &headers)
}

/// `GET <kind>/<key>/<n>` (one entry) and `GET <kind>/<key>/stats`.
async fn stream_entry(
    State(state): State<AppState>,
    Path((p, s, j, n)): Path<(String, String, String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> HubResult {
    let key = parse_key(&p, &s, &j)?;
    let stream = stream_of(&state, uri.path(), key)?;
    if n == "stats" {
        let indexed = tokio::task::spawn_blocking(move || stream.catch_up())
            .await
            .map_err(HubError::internal)?
            .map_err(HubError::internal)?;
        return Ok(one(&indexed.stats()));
    }
    let number: u64 = n
        .parse()
        .map_err(|_| HubError::bad_request(format!("invalid entry number: {n}")))?;
    let msgpack = stream.kind().allows_msgpack() && wire::wants_msgpack(&headers);
    let (_, line) = tokio::task::spawn_blocking(move || stream.get(number))
        .await
        .map_err(HubError::internal)?
        .map_err(HubError::internal)?
        .ok_or_else(|| HubError::not_found(format!("entry {key}/{number} not found")))?;
    let value: Value = serde_json::from_slice(&line).map_err(HubError::internal)?;
    Ok(lines(&[value], msgpack))
}

/// `POST <kind>/<key>?start=N`: appends JSON lines (a batch writer; a batch sent again with the
/// same `start` is not stored twice).
async fn stream_write(
    State(state): State<AppState>,
    Path((p, s, j)): Path<(String, String, String)>,
    uri: axum::http::Uri,
    q: RawQuery,
    headers: HeaderMap,
    super::wire::RequestBody(body): super::wire::RequestBody,
) -> HubResult {
    let (_, key, _) = job_at(&state, &p, &s, &j).await?;
    let stream = stream_of(&state, uri.path(), key)?;
    let params = query(&q.0);
    let start = number(&params, "start")?.map(|s| s.max(0) as u64);
    let body = decode_body(&headers, &body)?;
    for line in body.split(|b| *b == b'\n') {
        if line.len() > MAX_VALUE {
            return Err(HubError::too_large(format!(
                "Error parsing data, Serialized value too large - max {MAX_VALUE} bytes"
            )));
        }
    }
    let values = json_lines(&body)?;
    tokio::task::spawn_blocking(move || stream.append(start, &values))
        .await
        .map_err(HubError::internal)?
        .map_err(HubError::internal)?;
    Ok(wire::empty())
}

impl AppState {
    /// Whether the daemon can start another job now.
    fn launcher_running_hint(&self, running: usize) -> bool {
        running < self.config.capacity()
    }
}
