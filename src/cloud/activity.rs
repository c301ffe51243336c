//! A project's activity log (`activity/<p>`) and its settings (`projects/<p>/settings`), in
//! `jobs.db`.
//!
//! The registry writes `job:scheduled`, `job:started`, `job:completed`, `job:cancelled` and
//! `job:deleted` events as jobs move; clients may add their own. The newest
//! [`ACTIVITY_TO_KEEP`] events of each project are kept.

use super::project;
use super::wire::{self, HubError, HubResult, decode_body, json_lines, lines, one};
use crate::AppState;
use crate::api::params::parse_urlencoded;
use crate::storage::model::{ACTIVITY_TO_KEEP, Event};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::{Map, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/storage/activity/projects", get(activity_projects))
        .route(
            "/storage/activity/{p}",
            get(activity_get).post(activity_post),
        )
        .route(
            "/storage/projects/{p}/settings",
            get(settings_get).post(settings_post),
        )
        .route(
            "/storage/projects/{p}/settings/{k}",
            get(setting_get).delete(setting_delete),
        )
}

/// Renders events with the meta fields asked for (`_ts`, `_project`) and the filters applied.
fn render(events: Vec<(Event, i64)>, raw: &Option<String>) -> HubResult {
    let params = raw
        .as_deref()
        .map(|q| parse_urlencoded(q.as_bytes()))
        .unwrap_or_default();
    let meta = params
        .all("meta")
        .map_err(|e| HubError::bad_request(e.message))?;
    let filters = params
        .all("filter")
        .map_err(|e| HubError::bad_request(e.message))?
        .iter()
        .map(|f| super::jobdata::Filter::parse(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(HubError::bad_request)?;
    let out: Vec<Value> = events
        .into_iter()
        .filter(|(e, _)| {
            let v = Value::Object(e.event.clone());
            filters.iter().all(|f| f.matches(&v))
        })
        .map(|(e, project_id)| {
            let mut m = e.event;
            if meta.iter().any(|m| m == "_ts") {
                m.insert("_ts".into(), e.ts.into());
            }
            if meta.iter().any(|m| m == "_project") {
                m.insert("_project".into(), project_id.into());
            }
            Value::Object(m)
        })
        .collect();
    Ok(lines(&out, false))
}

fn count_param(raw: &Option<String>, key: &str, default: usize) -> Result<usize, HubError> {
    let params = raw
        .as_deref()
        .map(|q| parse_urlencoded(q.as_bytes()))
        .unwrap_or_default();
    match params
        .text(key)
        .map_err(|e| HubError::bad_request(e.message))?
    {
        None => Ok(default),
        Some(t) => t
            .trim()
            .parse::<usize>()
            .map(|n| n.min(ACTIVITY_TO_KEEP as usize))
            .map_err(|_| HubError::bad_request(format!("invalid {key}: {t}"))),
    }
}

/// `GET activity/<p>`: newest first.
async fn activity_get(
    State(state): State<AppState>,
    Path(p): Path<String>,
    q: RawQuery,
) -> HubResult {
    let (name, id) = project(&state, &p).await?;
    let count = count_param(&q.0, "count", ACTIVITY_TO_KEEP as usize)?;
    let events = state.storage.activity(vec![name], count).await?;
    render(events.into_iter().map(|e| (e, id)).collect(), &q.0)
}

/// `GET activity/projects?p=…&pcount=…&count=…`: several projects' events, newest first.
async fn activity_projects(
    State(state): State<AppState>,
    caller: super::access::Caller,
    q: RawQuery,
) -> HubResult {
    let params =
        q.0.as_deref()
            .map(|s| parse_urlencoded(s.as_bytes()))
            .unwrap_or_default();
    let pcount = count_param(&q.0, "pcount", ACTIVITY_TO_KEEP as usize)?;
    let count = count_param(&q.0, "count", ACTIVITY_TO_KEEP as usize)?;
    let mut all = Vec::new();
    for p in params
        .all("p")
        .map_err(|e| HubError::bad_request(e.message))?
    {
        // The right first: a key cannot tell a missing project from one it may not read.
        if !super::access::reads_path_project(&state, &caller, &p).await {
            return Err(super::access::refused_here(&caller, &p));
        }
        let (name, id) = project(&state, &p).await?;
        let events = state.storage.activity(vec![name], pcount).await?;
        all.extend(events.into_iter().map(|e| (e, id)));
    }
    all.sort_by_key(|e| std::cmp::Reverse(e.0.ts));
    all.truncate(count);
    render(all, &q.0)
}

/// `POST activity/<p>`: JSON lines of events.
async fn activity_post(
    State(state): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    super::wire::RequestBody(body): super::wire::RequestBody,
) -> HubResult {
    let (name, id) = project(&state, &p).await?;
    let mut events = Vec::new();
    for v in json_lines(&decode_body(&headers, &body)?)? {
        let Value::Object(e) = v else {
            return Err(HubError::bad_request("an event must be a JSON object"));
        };
        if let Some(job) = e.get("job").and_then(Value::as_str)
            && !job.starts_with(&format!("{id}/"))
        {
            return Err(HubError::bad_request(format!(
                "job {job} is not of project {id}"
            )));
        }
        events.push(e);
    }
    state.storage.add_activity(&name, events).await?;
    Ok(wire::empty())
}

/// `GET projects/<p>/settings`: one JSON object.
async fn settings_get(State(state): State<AppState>, Path(p): Path<String>) -> HubResult {
    let (name, _) = project(&state, &p).await?;
    let settings = state.storage.project_settings(&name).await?;
    Ok(one(&Value::Object(settings)))
}

/// `POST projects/<p>/settings`: the whole object (the client sends it merged).
async fn settings_post(
    State(state): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    super::wire::RequestBody(body): super::wire::RequestBody,
) -> HubResult {
    let (name, _) = project(&state, &p).await?;
    let mut settings = Map::new();
    for v in json_lines(&decode_body(&headers, &body)?)? {
        match v {
            Value::Object(m) => settings.extend(m),
            _ => return Err(HubError::bad_request("settings must be a JSON object")),
        }
    }
    state.storage.set_project_settings(&name, settings).await?;
    Ok(wire::empty())
}

/// `GET projects/<p>/settings/<k>`: one value, `null` when absent.
async fn setting_get(
    State(state): State<AppState>,
    Path((p, k)): Path<(String, String)>,
) -> HubResult {
    let (name, _) = project(&state, &p).await?;
    let settings = state.storage.project_settings(&name).await?;
    Ok(one(settings.get(&k).unwrap_or(&Value::Null)))
}

/// `DELETE projects/<p>/settings/<k>`.
async fn setting_delete(
    State(state): State<AppState>,
    Path((p, k)): Path<(String, String)>,
) -> HubResult {
    let (name, _) = project(&state, &p).await?;
    state.storage.delete_project_setting(&name, &k).await?;
    Ok(wire::empty())
}
