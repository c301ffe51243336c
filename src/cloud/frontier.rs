//! The Hub Crawl Frontier (HCF) of the storage API (`/storage/hcf/<project id>/…`): what
//! `project.frontiers` of the `scrapinghub` client uses to share a crawl's request queue
//! between jobs.
//!
//! A project has frontiers, a frontier has slots, and a slot has
//! - **fingerprints**: every `fp` ever added to the slot (with its `fdata`), listed in
//!   lexicographic order; an `fp` the slot already has is a duplicate and is not queued again;
//! - **a queue of batches**: the requests (`fp` and `qdata`) added with a new fingerprint.
//!   The new requests of one write are grouped by priority `p` (an integer 0–255, default 0)
//!   and cut into batches of at most [`BATCH_SIZE`] (100) requests, so a batch never mixes
//!   priorities. Batches are read lowest priority number first, then oldest first, and stay
//!   queued until deleted by id. A batch is never extended after its write, so a consumer that
//!   read a batch deletes exactly what it read.
//!
//! A batch id is 18 hex digits: the priority (2), then the batch's number in its slot (16, from
//! the slot's counter, never reused while the slot exists), like Scrapy Cloud's
//! `0015f77dd5c7800001`.
//!
//! Tables in `jobs.db`: `cloud_frontier_slot` (one row per project, frontier and slot, with its
//! id and batch counter: created by its first write and removed by a slot delete),
//! `cloud_frontier_fingerprint` (by slot and `fp`) and `cloud_frontier_request` (by slot,
//! priority, batch and position: the queue order). Reads go through the tables in pages (one
//! store read each) and are streamed, so a large slot is never held in memory.

use super::collections::{param_count, project_of, query_params};
use super::wire::{self, ChannelBody, StorageError, StorageResult, decode_body};
use crate::AppState;
use crate::jobs::JOBS_DB;
use crate::store::{Db, StoreError};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

/// Most requests in one batch.
pub const BATCH_SIZE: usize = 100;

/// Highest priority number (`p`).
pub const MAX_PRIORITY: i64 = 255;

/// Batches read from SQLite per store call.
const PAGE_BATCHES: usize = 20;

/// Fingerprints read from SQLite per store call.
const PAGE_FINGERPRINTS: usize = 1000;

/// Creates the frontier tables if needed.
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    // Three B-trees keyed by what they are read by (the daemon's start-up writes stay small).
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS cloud_frontier_slot (
            project TEXT, frontier TEXT, slot TEXT, id INTEGER NOT NULL,
            next_batch INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (project, frontier, slot)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS cloud_frontier_fingerprint (
            slot INTEGER, fp TEXT, fdata TEXT,
            PRIMARY KEY (slot, fp)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS cloud_frontier_request (
            slot INTEGER, priority INTEGER, batch INTEGER, n INTEGER, fp TEXT NOT NULL, qdata TEXT,
            PRIMARY KEY (slot, priority, batch, n)) WITHOUT ROWID;",
    )
}

/// One slot: a Scrapyd project, a frontier and a slot name.
#[derive(Debug, Clone)]
pub struct SlotRef {
    pub project: String,
    pub frontier: String,
    pub slot: String,
}

/// A request to add: its fingerprint, queue data and fingerprint data (JSON texts), priority.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRequest {
    pub fp: String,
    pub qdata: Option<String>,
    pub fdata: Option<String>,
    pub priority: i64,
}

/// A queued batch: its number in the slot, priority, and requests (`fp`, `qdata` JSON text).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: i64,
    pub priority: i64,
    pub requests: Vec<(String, Option<String>)>,
}

impl Batch {
    /// The batch id on the wire.
    pub fn wire_id(&self) -> String {
        format!("{:02x}{:016x}", self.priority, self.id)
    }

    /// The batch's JSON line: `{"id":…,"requests":[[fp, qdata_or_null],…]}`.
    pub fn render(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(self.wire_id().as_bytes());
        out.extend_from_slice(b"\",\"requests\":[");
        for (i, (fp, qdata)) in self.requests.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'[');
            out.extend(serde_json::to_vec(fp).unwrap_or_default());
            out.push(b',');
            out.extend_from_slice(qdata.as_deref().unwrap_or("null").as_bytes());
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
}

/// The priority and batch number of a wire batch id (`None` if it is not one of ours).
pub fn parse_batch_id(text: &str) -> Option<(i64, i64)> {
    if text.len() != 18 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let priority = i64::from_str_radix(&text[..2], 16).ok()?;
    Some((priority, i64::from_str_radix(&text[2..], 16).ok()?))
}

/// The requests of a write body: JSON lines `{"fp":…, "qdata":…, "fdata":…, "p":…}`.
pub fn parse_requests(body: &[u8]) -> Result<Vec<NewRequest>, StorageError> {
    let mut out = Vec::new();
    for (i, v) in wire::json_lines(body)?.into_iter().enumerate() {
        let line = i + 1;
        let Value::Object(mut m) = v else {
            return Err(StorageError::bad_request(format!(
                "Error parsing data, line {line}: expected a JSON object"
            )));
        };
        let fp = match m.remove("fp") {
            Some(Value::String(fp)) if !fp.is_empty() => fp,
            _ => {
                return Err(StorageError::bad_request(format!(
                    "Error parsing data, line {line}: missing value for fp field"
                )));
            }
        };
        let priority = match m.remove("p") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n))
                if n.as_i64().is_some_and(|p| (0..=MAX_PRIORITY).contains(&p)) =>
            {
                n.as_i64().unwrap_or(0)
            }
            Some(other) => {
                return Err(StorageError::bad_request(format!(
                    "Error parsing data, line {line}: p must be an integer from 0 to {MAX_PRIORITY}, not {other}"
                )));
            }
        };
        let text = |v: Option<Value>| match v {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.to_string()),
        };
        out.push(NewRequest {
            fp,
            qdata: text(m.remove("qdata")),
            fdata: text(m.remove("fdata")),
            priority,
        });
    }
    Ok(out)
}

/// Groups requests into batches: by priority (lowest first), in the order given, at most
/// [`BATCH_SIZE`] each.
pub fn plan_batches(requests: Vec<NewRequest>) -> Vec<(i64, Vec<NewRequest>)> {
    let mut by_priority: std::collections::BTreeMap<i64, Vec<NewRequest>> = Default::default();
    for r in requests {
        by_priority.entry(r.priority).or_default().push(r);
    }
    let mut out = Vec::new();
    for (priority, requests) in by_priority {
        let mut rest = requests.into_iter().peekable();
        while rest.peek().is_some() {
            out.push((priority, rest.by_ref().take(BATCH_SIZE).collect()));
        }
    }
    out
}

fn slot_id(conn: &Connection, s: &SlotRef) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT id FROM cloud_frontier_slot WHERE project = ?1 AND frontier = ?2 AND slot = ?3",
    )?
    .query_row(params![s.project, s.frontier, s.slot], |r| r.get(0))
    .optional()
}

impl Db {
    /// Adds requests to a slot in one transaction: new fingerprints are recorded and their
    /// requests queued; returns how many fingerprints were new.
    pub fn frontier_add(
        &mut self,
        s: &SlotRef,
        requests: &[NewRequest],
    ) -> Result<usize, StoreError> {
        let conn = self.conn(JOBS_DB)?;
        let tx = conn.unchecked_transaction()?;
        let slot = match slot_id(&tx, s)? {
            Some(id) => id,
            None => {
                let id: i64 = tx.query_row(
                    "SELECT coalesce(max(id), 0) + 1 FROM cloud_frontier_slot",
                    [],
                    |r| r.get(0),
                )?;
                tx.execute(
                    "INSERT INTO cloud_frontier_slot (project, frontier, slot, id)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![s.project, s.frontier, s.slot, id],
                )?;
                id
            }
        };
        let mut new = Vec::new();
        for r in requests {
            let inserted = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO cloud_frontier_fingerprint (slot, fp, fdata)
                     VALUES (?1, ?2, ?3)",
                )?
                .execute(params![slot, r.fp, r.fdata])?;
            if inserted > 0 {
                new.push(r.clone());
            }
        }
        let newcount = new.len();
        let planned = plan_batches(new);
        let first: i64 = tx.query_row(
            "UPDATE cloud_frontier_slot SET next_batch = next_batch + ?2 WHERE id = ?1
             RETURNING next_batch - ?2",
            params![slot, planned.len() as i64],
            |r| r.get(0),
        )?;
        for (i, (priority, batch)) in planned.iter().enumerate() {
            for (n, r) in batch.iter().enumerate() {
                tx.prepare_cached(
                    "INSERT INTO cloud_frontier_request (slot, priority, batch, n, fp, qdata)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    slot,
                    priority,
                    first + i as i64,
                    n as i64,
                    r.fp,
                    r.qdata
                ])?;
            }
        }
        tx.commit()?;
        Ok(newcount)
    }

    /// The frontiers of a project that have slots, by name.
    pub fn frontier_names(&mut self, project: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn(JOBS_DB)?;
        let mut stmt = conn.prepare_cached(
            "SELECT DISTINCT frontier FROM cloud_frontier_slot WHERE project = ?1 ORDER BY frontier",
        )?;
        let names = stmt
            .query_map([project], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(names)
    }

    /// The slots of a frontier, by name.
    pub fn frontier_slots(
        &mut self,
        project: &str,
        frontier: &str,
    ) -> Result<Vec<String>, StoreError> {
        let conn = self.conn(JOBS_DB)?;
        let mut stmt = conn.prepare_cached(
            "SELECT slot FROM cloud_frontier_slot WHERE project = ?1 AND frontier = ?2 ORDER BY slot",
        )?;
        let names = stmt
            .query_map([project, frontier], |r| r.get(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(names)
    }

    /// The id of a slot, if it exists.
    pub fn frontier_slot_id(&mut self, s: &SlotRef) -> Result<Option<i64>, StoreError> {
        Ok(slot_id(self.conn(JOBS_DB)?, s)?)
    }

    /// Up to `limit` queued batches of a slot after `(priority, id)`, in queue order.
    pub fn frontier_batches(
        &mut self,
        slot: i64,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> Result<Vec<Batch>, StoreError> {
        let conn = self.conn(JOBS_DB)?;
        let (priority, batch) = after.unwrap_or((-1, -1));
        let heads: Vec<(i64, i64)> = conn
            .prepare_cached(
                "SELECT DISTINCT priority, batch FROM cloud_frontier_request
                 WHERE slot = ?1 AND (priority, batch) > (?2, ?3)
                 ORDER BY priority, batch LIMIT ?4",
            )?
            .query_map(params![slot, priority, batch, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(heads.len());
        let mut stmt = conn.prepare_cached(
            "SELECT fp, qdata FROM cloud_frontier_request
             WHERE slot = ?1 AND priority = ?2 AND batch = ?3 ORDER BY n",
        )?;
        for (priority, id) in heads {
            let requests = stmt
                .query_map(params![slot, priority, id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            out.push(Batch {
                id,
                priority,
                requests,
            });
        }
        Ok(out)
    }

    /// Deletes queued batches of a slot by `(priority, batch)` (unknown ones are ignored), in
    /// one transaction; returns how many were deleted.
    pub fn frontier_delete_batches(
        &mut self,
        s: &SlotRef,
        ids: &[(i64, i64)],
    ) -> Result<usize, StoreError> {
        let conn = self.conn(JOBS_DB)?;
        let Some(slot) = slot_id(conn, s)? else {
            return Ok(0);
        };
        let tx = conn.unchecked_transaction()?;
        let mut deleted = 0;
        for &(priority, batch) in ids {
            let n = tx
                .prepare_cached(
                    "DELETE FROM cloud_frontier_request
                     WHERE slot = ?1 AND priority = ?2 AND batch = ?3",
                )?
                .execute(params![slot, priority, batch])?;
            if n > 0 {
                deleted += 1;
            }
        }
        tx.commit()?;
        Ok(deleted)
    }

    /// Up to `limit` fingerprints of a slot after `after`, in order, with their `fdata`.
    pub fn frontier_fingerprints(
        &mut self,
        slot: i64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let conn = self.conn(JOBS_DB)?;
        let (from, op) = match after {
            Some(a) => (a, ">"),
            None => ("", ">="),
        };
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT fp, fdata FROM cloud_frontier_fingerprint
             WHERE slot = ?1 AND fp {op} ?2 ORDER BY fp LIMIT ?3"
        ))?;
        let rows = stmt
            .query_map(params![slot, from, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Deletes a slot: its fingerprints, batches and requests (one transaction).
    pub fn frontier_delete_slot(&mut self, s: &SlotRef) -> Result<(), StoreError> {
        let conn = self.conn(JOBS_DB)?;
        let Some(slot) = slot_id(conn, s)? else {
            return Ok(());
        };
        let tx = conn.unchecked_transaction()?;
        tx.execute("DELETE FROM cloud_frontier_request WHERE slot = ?1", [slot])?;
        tx.execute(
            "DELETE FROM cloud_frontier_fingerprint WHERE slot = ?1",
            [slot],
        )?;
        tx.execute(
            "DELETE FROM cloud_frontier_slot WHERE project = ?1 AND frontier = ?2 AND slot = ?3",
            params![s.project, s.frontier, s.slot],
        )?;
        tx.commit()?;
        Ok(())
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/storage/hcf/{p}/list", get(frontiers))
        .route("/storage/hcf/{p}/{f}/list", get(slots))
        .route(
            "/storage/hcf/{p}/{f}/s/{slot}",
            post(add).delete(delete_slot),
        )
        .route("/storage/hcf/{p}/{f}/s/{slot}/q", get(read_queue))
        .route(
            "/storage/hcf/{p}/{f}/s/{slot}/q/deleted",
            post(delete_batches),
        )
        .route("/storage/hcf/{p}/{f}/s/{slot}/f", get(fingerprints))
}

async fn slot_of(state: &AppState, p: &str, f: &str, slot: &str) -> Result<SlotRef, StorageError> {
    if f.is_empty() || slot.is_empty() {
        return Err(StorageError::bad_request("empty frontier or slot name"));
    }
    Ok(SlotRef {
        project: project_of(state, p).await?,
        frontier: f.to_owned(),
        slot: slot.to_owned(),
    })
}

/// `GET hcf/<p>/list`: the frontier names, as one JSON array on one line.
async fn frontiers(State(state): State<AppState>, Path(p): Path<String>) -> StorageResult {
    let project = project_of(&state, &p).await?;
    let (_, names) = state
        .store
        .read(move |db| db.frontier_names(&project))
        .await?;
    Ok(wire::one(&json!(names)))
}

/// `GET hcf/<p>/<f>/list`: the slot names of a frontier, as one JSON array on one line.
async fn slots(
    State(state): State<AppState>,
    Path((p, f)): Path<(String, String)>,
) -> StorageResult {
    let project = project_of(&state, &p).await?;
    let (_, names) = state
        .store
        .read(move |db| db.frontier_slots(&project, &f))
        .await?;
    Ok(wire::one(&json!(names)))
}

/// `POST hcf/<p>/<f>/s/<slot>`: adds requests (the batch writer's `start` is not needed: a
/// request sent again is a duplicate fingerprint); answers `{"newcount":N}`.
async fn add(
    State(state): State<AppState>,
    Path((p, f, slot)): Path<(String, String, String)>,
    headers: HeaderMap,
    super::wire::RequestBody(body): super::wire::RequestBody,
) -> StorageResult {
    let s = slot_of(&state, &p, &f, &slot).await?;
    let requests = parse_requests(&decode_body(&headers, &body)?)?;
    let newcount = if requests.is_empty() {
        0
    } else {
        state
            .store
            .call(move |db| db.frontier_add(&s, &requests))
            .await?
    };
    Ok(wire::one(&json!({"newcount": newcount})))
}

/// `DELETE hcf/<p>/<f>/s/<slot>`: removes the slot.
async fn delete_slot(
    State(state): State<AppState>,
    Path((p, f, slot)): Path<(String, String, String)>,
) -> StorageResult {
    let s = slot_of(&state, &p, &f, &slot).await?;
    state
        .store
        .call(move |db| db.frontier_delete_slot(&s))
        .await?;
    Ok(wire::empty())
}

/// `GET hcf/<p>/<f>/s/<slot>/q[?mincount=N]`: queued batches in order, streamed; with
/// `mincount`, whole batches until at least N requests were sent, else all of them.
async fn read_queue(
    State(state): State<AppState>,
    Path((p, f, slot)): Path<(String, String, String)>,
    q: RawQuery,
) -> StorageResult {
    let s = slot_of(&state, &p, &f, &slot).await?;
    let mincount = param_count(&query_params(&q.0), "mincount")?;
    let (_, id) = state.store.read(move |db| db.frontier_slot_id(&s)).await?;
    let Some(slot_id) = id else {
        return Ok(wire::with_type(Body::empty(), false));
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let mut after = None;
        let mut sent = 0u64;
        loop {
            let page = state
                .store
                .read(move |db| db.frontier_batches(slot_id, after, PAGE_BATCHES))
                .await;
            let batches = match page {
                Ok((_, b)) => b,
                Err(e) => {
                    tracing::warn!("storage API: reading a frontier queue failed: {e}");
                    return;
                }
            };
            let last_page = batches.len() < PAGE_BATCHES;
            let mut out = Vec::new();
            let mut enough = false;
            for b in &batches {
                b.render(&mut out);
                out.push(b'\n');
                sent += b.requests.len() as u64;
                after = Some((b.priority, b.id));
                if mincount.is_some_and(|m| sent >= m) {
                    enough = true;
                    break;
                }
            }
            if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                return;
            }
            if enough || last_page {
                return;
            }
        }
    });
    Ok(wire::with_type(Body::new(ChannelBody(rx)), false))
}

/// `POST hcf/<p>/<f>/s/<slot>/q/deleted`: deletes batches by id (JSON lines of ids, or of
/// arrays of ids); unknown ids are ignored.
async fn delete_batches(
    State(state): State<AppState>,
    Path((p, f, slot)): Path<(String, String, String)>,
    headers: HeaderMap,
    super::wire::RequestBody(body): super::wire::RequestBody,
) -> StorageResult {
    let s = slot_of(&state, &p, &f, &slot).await?;
    let mut texts = Vec::new();
    for v in wire::json_lines(&decode_body(&headers, &body)?)? {
        match v {
            Value::Array(items) => texts.extend(items),
            other => texts.push(other),
        }
    }
    let mut ids = Vec::new();
    for v in texts {
        let id = v
            .as_str()
            .and_then(parse_batch_id)
            .ok_or_else(|| StorageError::bad_request(format!("invalid batch id: {v}")))?;
        ids.push(id);
    }
    state
        .store
        .call(move |db| db.frontier_delete_batches(&s, &ids))
        .await?;
    Ok(wire::empty())
}

/// `GET hcf/<p>/<f>/s/<slot>/f`: `{"fp":…}` lines (with `fdata` when it was given), in
/// lexicographic order, streamed.
async fn fingerprints(
    State(state): State<AppState>,
    Path((p, f, slot)): Path<(String, String, String)>,
) -> StorageResult {
    let s = slot_of(&state, &p, &f, &slot).await?;
    let (_, id) = state.store.read(move |db| db.frontier_slot_id(&s)).await?;
    let Some(slot_id) = id else {
        return Ok(wire::with_type(Body::empty(), false));
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let mut after: Option<String> = None;
        loop {
            let from = after.clone();
            let page = state
                .store
                .read(move |db| {
                    db.frontier_fingerprints(slot_id, from.as_deref(), PAGE_FINGERPRINTS)
                })
                .await;
            let rows = match page {
                Ok((_, rows)) => rows,
                Err(e) => {
                    tracing::warn!("storage API: reading frontier fingerprints failed: {e}");
                    return;
                }
            };
            let last_page = rows.len() < PAGE_FINGERPRINTS;
            let mut out = Vec::new();
            for (fp, fdata) in &rows {
                out.extend_from_slice(b"{\"fp\":");
                out.extend(serde_json::to_vec(fp).unwrap_or_default());
                if let Some(fdata) = fdata {
                    out.extend_from_slice(b",\"fdata\":");
                    out.extend_from_slice(fdata.as_bytes());
                }
                out.extend_from_slice(b"}\n");
            }
            after = rows.last().map(|(fp, _)| fp.clone());
            if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                return;
            }
            if last_page {
                return;
            }
        }
    });
    Ok(wire::with_type(Body::new(ChannelBody(rx)), false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DbsDir;

    fn slot(name: &str) -> SlotRef {
        SlotRef {
            project: "p".into(),
            frontier: "f".into(),
            slot: name.into(),
        }
    }

    fn req(fp: &str, priority: i64) -> NewRequest {
        NewRequest {
            fp: fp.into(),
            qdata: None,
            fdata: None,
            priority,
        }
    }

    fn all_batches(db: &mut Db, s: &SlotRef) -> Vec<Batch> {
        let id = db.frontier_slot_id(s).unwrap().unwrap();
        let mut out: Vec<Batch> = Vec::new();
        loop {
            let after = out.last().map(|b| (b.priority, b.id));
            let page = db.frontier_batches(id, after, 3).unwrap();
            if page.is_empty() {
                return out;
            }
            out.extend(page);
        }
    }

    #[test]
    fn requests_parse_with_defaults_and_bad_ones_are_refused() {
        let r = parse_requests(
            br#"{"fp":"/a"}
{"fp":"/b","p":1,"qdata":{"depth":1},"fdata":"x"}"#,
        )
        .unwrap();
        assert_eq!(r[0], req("/a", 0));
        assert_eq!(r[1].qdata.as_deref(), Some(r#"{"depth":1}"#));
        assert_eq!(r[1].fdata.as_deref(), Some(r#""x""#));
        assert_eq!(r[1].priority, 1);
        for bad in [
            &br#"{"qdata":1}"#[..],
            br#"{"fp":""}"#,
            br#"{"fp":"a","p":-1}"#,
            br#"{"fp":"a","p":256}"#,
            br#"{"fp":"a","p":"high"}"#,
            br#""a""#,
        ] {
            assert!(
                parse_requests(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn batches_hold_at_most_100_requests_of_one_priority() {
        let mut reqs: Vec<NewRequest> = (0..250).map(|i| req(&format!("a{i}"), 2)).collect();
        reqs.insert(7, req("first", 0));
        let plan = plan_batches(reqs);
        let shape: Vec<(i64, usize)> = plan.iter().map(|(p, b)| (*p, b.len())).collect();
        assert_eq!(shape, [(0, 1), (2, 100), (2, 100), (2, 50)]);
        assert_eq!(plan[1].1[0].fp, "a0");
        assert_eq!(plan[3].1[49].fp, "a249");
    }

    #[test]
    fn new_fingerprints_are_counted_and_queued_once_lowest_priority_first() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        let s = slot("example.com");
        let first: Vec<NewRequest> = (0..150).map(|i| req(&format!("/{i:03}"), 1)).collect();
        assert_eq!(db.frontier_add(&s, &first).unwrap(), 150);
        // Duplicates (also within one write) are not new and not queued again.
        let again = vec![req("/000", 1), req("/top", 0), req("/top", 0)];
        assert_eq!(db.frontier_add(&s, &again).unwrap(), 1);
        let batches = all_batches(&mut db, &s);
        let shape: Vec<(i64, usize)> = batches
            .iter()
            .map(|b| (b.priority, b.requests.len()))
            .collect();
        assert_eq!(shape, [(0, 1), (1, 100), (1, 50)]);
        assert_eq!(batches[0].requests, [("/top".to_string(), None)]);
        assert!(batches[0].wire_id().starts_with("00"));
        assert!(batches[1].wire_id().starts_with("01"));
        assert_eq!(batches[1].wire_id().len(), 18);
        assert_eq!(
            parse_batch_id(&batches[1].wire_id()),
            Some((1, batches[1].id))
        );

        // Deleting batches (ids of another slot are ignored) leaves the fingerprints.
        let other = slot("other");
        db.frontier_add(&other, &[req("/x", 0)]).unwrap();
        let ids = |b: &[Batch]| b.iter().map(|b| (b.priority, b.id)).collect::<Vec<_>>();
        assert_eq!(
            db.frontier_delete_batches(&other, &ids(&batches[1..2]))
                .unwrap(),
            0
        );
        assert_eq!(
            db.frontier_delete_batches(&s, &ids(&batches[..2])).unwrap(),
            2
        );
        let left = all_batches(&mut db, &s);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].requests[0].0, "/100");
        let id = db.frontier_slot_id(&s).unwrap().unwrap();
        let fps = db.frontier_fingerprints(id, None, 2).unwrap();
        assert_eq!(
            fps,
            [("/000".to_string(), None), ("/001".to_string(), None)]
        );
        let next = db.frontier_fingerprints(id, Some("/149"), 10).unwrap();
        assert_eq!(next, [("/top".to_string(), None)]);

        assert_eq!(db.frontier_names("p").unwrap(), ["f"]);
        assert_eq!(
            db.frontier_slots("p", "f").unwrap(),
            ["example.com", "other"]
        );
        db.frontier_delete_slot(&s).unwrap();
        assert_eq!(db.frontier_slots("p", "f").unwrap(), ["other"]);
        assert!(db.frontier_slot_id(&s).unwrap().is_none());
        // A slot added again starts empty: its old fingerprints are new again.
        assert_eq!(db.frontier_add(&s, &[req("/000", 0)]).unwrap(), 1);
    }

    #[test]
    fn batches_render_as_the_client_reads_them() {
        let b = Batch {
            id: 5,
            priority: 1,
            requests: vec![
                ("/a".into(), None),
                ("/b".into(), Some(r#"{"depth":1}"#.into())),
            ],
        };
        let mut out = Vec::new();
        b.render(&mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"id": "010000000000000005", "requests": [["/a", null], ["/b", {"depth": 1}]]})
        );
    }
}
