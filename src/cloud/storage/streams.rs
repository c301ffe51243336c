//! Job data of the storage API (`/storage/{items,logs,requests,samples}/…`): reads of one job's,
//! a spider's or a project's entries, one entry or a stream's stats, and batch writes; the
//! streams themselves are [`crate::cloud::jobdata`]'s.

use super::meta::job_at;
use super::{number, parse_key, spider_param, time_range};
use crate::AppState;
use crate::cloud::jobdata::{
    Filter, ReadOptions, Stream, StreamKind, job_dir, jobs_with_data, read_entries,
};
use crate::cloud::wire::{
    self, HubError, HubResult, MAX_VALUE, RequestBody, decode_body, json_lines, lines, one,
};
use crate::cloud::wire::{param_list, param_text, query_params};
use crate::cloud::{STORAGE_PREFIX, project};
use crate::storage::model::JobKey;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use serde_json::Value;

/// The stream kind of a data path (`/storage/<kind>/…`).
fn kind_of(uri_path: &str) -> Result<StreamKind, HubError> {
    uri_path
        .trim_start_matches(STORAGE_PREFIX)
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
    let params = query_params(q);
    let mut opts = ReadOptions {
        count: number(&params, "count")?.map(|c| c.max(0) as u64),
        msgpack: kind.allows_msgpack() && wire::wants_msgpack(headers),
        ..ReadOptions::default()
    };
    if let Some(start) = param_text(&params, "start")? {
        opts.start = Some(entry_key(&start)?);
    }
    if let Some(after) = param_text(&params, "startafter")? {
        let (key, n) = entry_key(&after)?;
        let next = n
            .checked_add(1)
            .ok_or_else(|| HubError::bad_request(format!("invalid entry key: {after}")))?;
        opts.start = Some((key, next));
    }
    for i in param_list(&params, "index")? {
        opts.index.push(
            i.parse::<u64>()
                .map_err(|_| HubError::bad_request(format!("invalid index: {i}")))?,
        );
    }
    (opts.startts, opts.endts) = time_range(&params)?;
    let meta = param_list(&params, "meta")?;
    opts.with_keys = meta.iter().any(|m| m == "_key");
    opts.with_ts = meta.iter().any(|m| m == "_ts");
    opts.nodata = param_text(&params, "nodata")?.is_some_and(|v| v == "1" || v == "true");
    opts.filters = param_list(&params, "filter")?
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
pub(super) async fn stream_read(
    State(state): State<AppState>,
    Path((p, s, j)): Path<(String, String, String)>,
    uri: axum::http::Uri,
    q: RawQuery,
    headers: HeaderMap,
) -> HubResult {
    let key = parse_key(&p, &s, &j)?;
    // On a cluster, a job another node ran has its data on that node's disk.
    if state.storage.is_shared()
        && !job_dir(&state.config.jobdata_dir, key.project, key.spider, key.n).exists()
    {
        let (project, _, job) = job_at(&state, &p, &s, &j).await?;
        if let Some(answer) =
            crate::web::proxy::to_job_owner(&state, &project, &job.job, &uri, &headers).await
        {
            return Ok(answer);
        }
    }
    read_jobs(&state, kind_of(uri.path())?, vec![key], &q.0, &headers)
}

/// `GET <kind>/<p>/<s>`: the entries of a spider's jobs, job after job.
pub(super) async fn spider_stream_read(
    State(state): State<AppState>,
    Path((p, s)): Path<(String, String)>,
    uri: axum::http::Uri,
    q: RawQuery,
    headers: HeaderMap,
) -> HubResult {
    let (_, project_id) = project(&state, &p).await?;
    let spider = spider_param(&s)?;
    let keys = jobs_with_data(&state.config.jobdata_dir, project_id, Some(spider));
    read_jobs(&state, kind_of(uri.path())?, keys, &q.0, &headers)
}

/// `GET <kind>/<p>`: the entries of a project's jobs.
pub(super) async fn project_stream_read(
    State(state): State<AppState>,
    Path(p): Path<String>,
    uri: axum::http::Uri,
    q: RawQuery,
    headers: HeaderMap,
) -> HubResult {
    let (_, project_id) = project(&state, &p).await?;
    let keys = jobs_with_data(&state.config.jobdata_dir, project_id, None);
    read_jobs(&state, kind_of(uri.path())?, keys, &q.0, &headers)
}

/// `GET <kind>/<key>/<n>` (one entry) and `GET <kind>/<key>/stats`.
pub(super) async fn stream_entry(
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
pub(super) async fn stream_write(
    State(state): State<AppState>,
    Path((p, s, j)): Path<(String, String, String)>,
    uri: axum::http::Uri,
    q: RawQuery,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> HubResult {
    let (_, key, _) = job_at(&state, &p, &s, &j).await?;
    let stream = stream_of(&state, uri.path(), key)?;
    let params = query_params(&q.0);
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
