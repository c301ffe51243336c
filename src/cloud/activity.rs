//! A project's activity log (`activity/<p>`) and its settings (`projects/<p>/settings`), in
//! `jobs.db`.
//!
//! The registry writes `job:scheduled`, `job:started`, `job:completed`, `job:cancelled` and
//! `job:deleted` events as jobs move; clients may add their own. The newest
//! [`ACTIVITY_TO_KEEP`] events of each project are kept.

use super::project;
use super::registry::now_ms;
use super::wire::{self, StorageError, StorageResult, decode_body, json_lines, lines, one};
use crate::AppState;
use crate::api::params::parse_urlencoded;
use crate::jobs::JOBS_DB;
use crate::store::{Db, StoreError};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::get;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

/// Events kept per project (at least: the log is trimmed every [`TRIM_EVERY`] events).
pub const ACTIVITY_TO_KEEP: i64 = 10_000;

/// Events written between two trims of the log.
const TRIM_EVERY: u64 = 1_000;

/// The settings of a project that never wrote its own: the keys clients read, empty.
fn new_project_settings() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("botgroups".into(), Value::Array(Vec::new()));
    m
}

/// Creates the tables if needed.
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS cloud_activity (
            id INTEGER PRIMARY KEY,
            project TEXT NOT NULL,
            ts INTEGER NOT NULL,
            event TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS cloud_activity_by_project ON cloud_activity (project, id);
        CREATE TABLE IF NOT EXISTS cloud_project_settings (
            project TEXT PRIMARY KEY,
            settings TEXT NOT NULL
        );",
    )
}

/// An event as stored: its time and the event object.
#[derive(Debug, Clone)]
pub struct Event {
    pub ts: i64,
    pub project: String,
    pub event: Map<String, Value>,
}

impl Db {
    /// Appends events to a project's log (then keeps the newest [`ACTIVITY_TO_KEEP`]).
    pub fn add_activity(
        &mut self,
        project: &str,
        events: &[Map<String, Value>],
    ) -> Result<(), StoreError> {
        let conn = self.conn(JOBS_DB)?;
        let now = now_ms();
        let mut insert = conn.prepare_cached(
            "INSERT INTO cloud_activity (project, ts, event) VALUES (?1, ?2, ?3)",
        )?;
        for e in events {
            insert.execute(params![project, now, Value::Object(e.clone()).to_string()])?;
        }
        drop(insert);
        // Trimming walks the project's log: done once per [`TRIM_EVERY`] events, not per event.
        self.activity_writes += events.len() as u64;
        if self.activity_writes >= TRIM_EVERY {
            self.activity_writes = 0;
            self.conn(JOBS_DB)?.execute(
                "DELETE FROM cloud_activity WHERE project = ?1 AND id <=
                   (SELECT id FROM cloud_activity WHERE project = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                params![project, ACTIVITY_TO_KEEP],
            )?;
        }
        Ok(())
    }

    /// Records a job event (`job:<what>`) by `user`.
    pub(crate) fn job_activity(&mut self, project: &str, key: &str, what: &str, user: &str) {
        let mut e = Map::new();
        e.insert("event".into(), format!("job:{what}").into());
        e.insert("job".into(), key.into());
        e.insert("user".into(), user.into());
        if let Err(err) = self.add_activity(project, &[e]) {
            tracing::warn!("cannot record activity: {err}");
        }
    }

    /// The newest events of `projects` (all of them merged, newest first), at most `count`.
    pub fn activity(
        &mut self,
        projects: &[String],
        count: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let conn = self.conn(JOBS_DB)?;
        let mut out = Vec::new();
        let mut stmt = conn.prepare_cached(
            "SELECT id, ts, event FROM cloud_activity WHERE project = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        for p in projects {
            let rows = stmt.query_map(params![p, count as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            for row in rows {
                let (id, ts, text) = row?;
                out.push((
                    id,
                    Event {
                        ts,
                        project: p.clone(),
                        event: serde_json::from_str(&text).unwrap_or_default(),
                    },
                ));
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.0));
        out.truncate(count);
        Ok(out.into_iter().map(|(_, e)| e).collect())
    }

    /// A project's settings object. A project whose settings were never written has the keys
    /// Scrapy Cloud gives a new project, with nothing in them (`botgroups: []`); once written
    /// (even a key deleted), the object is what was written.
    pub fn project_settings(&mut self, project: &str) -> Result<Map<String, Value>, StoreError> {
        let text: Option<String> = self
            .conn(JOBS_DB)?
            .query_row(
                "SELECT settings FROM cloud_project_settings WHERE project = ?1",
                [project],
                |r| r.get(0),
            )
            .optional()?;
        Ok(match text {
            Some(t) => serde_json::from_str(&t).unwrap_or_default(),
            None => new_project_settings(),
        })
    }

    /// Replaces a project's settings object.
    pub fn set_project_settings(
        &mut self,
        project: &str,
        settings: &Map<String, Value>,
    ) -> Result<(), StoreError> {
        self.conn(JOBS_DB)?.execute(
            "INSERT INTO cloud_project_settings (project, settings) VALUES (?1, ?2)
             ON CONFLICT (project) DO UPDATE SET settings = excluded.settings",
            params![project, Value::Object(settings.clone()).to_string()],
        )?;
        Ok(())
    }
}

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
fn render(events: Vec<(Event, i64)>, raw: &Option<String>) -> StorageResult {
    let params = raw
        .as_deref()
        .map(|q| parse_urlencoded(q.as_bytes()))
        .unwrap_or_default();
    let meta = params
        .all("meta")
        .map_err(|e| StorageError::bad_request(e.message))?;
    let filters = params
        .all("filter")
        .map_err(|e| StorageError::bad_request(e.message))?
        .iter()
        .map(|f| super::jobdata::Filter::parse(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(StorageError::bad_request)?;
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

fn count_param(raw: &Option<String>, key: &str, default: usize) -> Result<usize, StorageError> {
    let params = raw
        .as_deref()
        .map(|q| parse_urlencoded(q.as_bytes()))
        .unwrap_or_default();
    match params
        .text(key)
        .map_err(|e| StorageError::bad_request(e.message))?
    {
        None => Ok(default),
        Some(t) => t
            .trim()
            .parse::<usize>()
            .map(|n| n.min(ACTIVITY_TO_KEEP as usize))
            .map_err(|_| StorageError::bad_request(format!("invalid {key}: {t}"))),
    }
}

/// `GET activity/<p>`: newest first.
async fn activity_get(
    State(state): State<AppState>,
    Path(p): Path<String>,
    q: RawQuery,
) -> StorageResult {
    let (name, id) = project(&state, &p).await?;
    let count = count_param(&q.0, "count", ACTIVITY_TO_KEEP as usize)?;
    let (_, events) = state
        .store
        .read(move |db| db.activity(&[name], count))
        .await?;
    render(events.into_iter().map(|e| (e, id)).collect(), &q.0)
}

/// `GET activity/projects?p=…&pcount=…&count=…`: several projects' events, newest first.
async fn activity_projects(
    State(state): State<AppState>,
    caller: super::access::Caller,
    q: RawQuery,
) -> StorageResult {
    let params =
        q.0.as_deref()
            .map(|s| parse_urlencoded(s.as_bytes()))
            .unwrap_or_default();
    let pcount = count_param(&q.0, "pcount", ACTIVITY_TO_KEEP as usize)?;
    let count = count_param(&q.0, "count", ACTIVITY_TO_KEEP as usize)?;
    let mut all = Vec::new();
    for p in params
        .all("p")
        .map_err(|e| StorageError::bad_request(e.message))?
    {
        // The right first: a key cannot tell a missing project from one it may not read.
        if !super::access::reads_path_project(&state, &caller, &p).await {
            return Err(super::access::refused_here(&caller, &p));
        }
        let (name, id) = project(&state, &p).await?;
        let (_, events) = state
            .store
            .read(move |db| db.activity(&[name], pcount))
            .await?;
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
) -> StorageResult {
    let (name, id) = project(&state, &p).await?;
    let mut events = Vec::new();
    for v in json_lines(&decode_body(&headers, &body)?)? {
        let Value::Object(e) = v else {
            return Err(StorageError::bad_request("an event must be a JSON object"));
        };
        if let Some(job) = e.get("job").and_then(Value::as_str)
            && !job.starts_with(&format!("{id}/"))
        {
            return Err(StorageError::bad_request(format!(
                "job {job} is not of project {id}"
            )));
        }
        events.push(e);
    }
    state
        .store
        .call(move |db| db.add_activity(&name, &events))
        .await?;
    Ok(wire::empty())
}

/// `GET projects/<p>/settings`: one JSON object.
async fn settings_get(State(state): State<AppState>, Path(p): Path<String>) -> StorageResult {
    let (name, _) = project(&state, &p).await?;
    let (_, settings) = state
        .store
        .read(move |db| db.project_settings(&name))
        .await?;
    Ok(one(&Value::Object(settings)))
}

/// `POST projects/<p>/settings`: the whole object (the client sends it merged).
async fn settings_post(
    State(state): State<AppState>,
    Path(p): Path<String>,
    headers: HeaderMap,
    super::wire::RequestBody(body): super::wire::RequestBody,
) -> StorageResult {
    let (name, _) = project(&state, &p).await?;
    let mut settings = Map::new();
    for v in json_lines(&decode_body(&headers, &body)?)? {
        match v {
            Value::Object(m) => settings.extend(m),
            _ => return Err(StorageError::bad_request("settings must be a JSON object")),
        }
    }
    state
        .store
        .call(move |db| db.set_project_settings(&name, &settings))
        .await?;
    Ok(wire::empty())
}

/// `GET projects/<p>/settings/<k>`: one value, `null` when absent.
async fn setting_get(
    State(state): State<AppState>,
    Path((p, k)): Path<(String, String)>,
) -> StorageResult {
    let (name, _) = project(&state, &p).await?;
    let (_, settings) = state
        .store
        .read(move |db| db.project_settings(&name))
        .await?;
    Ok(one(settings.get(&k).unwrap_or(&Value::Null)))
}

/// `DELETE projects/<p>/settings/<k>`.
async fn setting_delete(
    State(state): State<AppState>,
    Path((p, k)): Path<(String, String)>,
) -> StorageResult {
    let (name, _) = project(&state, &p).await?;
    state
        .store
        .call(move |db| {
            let mut settings = db.project_settings(&name)?;
            settings.remove(&k);
            db.set_project_settings(&name, &settings)
        })
        .await?;
    Ok(wire::empty())
}
