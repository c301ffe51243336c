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
//! Kept by [`crate::storage`] (tables in `jobs.db`): `cloud_frontier_slot` (one row per project, frontier and slot, with its
//! id and batch counter: created by its first write and removed by a slot delete),
//! `cloud_frontier_fingerprint` (by slot and `fp`) and `cloud_frontier_request` (by slot,
//! priority, batch and position: the queue order). Reads go through the tables in pages (one
//! storage read each) and are streamed, so a large slot is never held in memory.

use super::collections::{param_count, project_of};
use super::wire::query_params;
use super::wire::{self, HubError, HubResult, decode_body};
use crate::AppState;
use crate::storage::model::{Batch, NewRequest, SlotRef};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde_json::{Value, json};

/// Highest priority number (`p`).
pub const MAX_PRIORITY: i64 = 255;

/// Batches read per storage call.
const PAGE_BATCHES: usize = 20;

/// Fingerprints read per storage call.
const PAGE_FINGERPRINTS: usize = 1000;

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
pub fn parse_requests(body: &[u8]) -> Result<Vec<NewRequest>, HubError> {
    let mut out = Vec::new();
    for (i, v) in wire::json_lines(body)?.into_iter().enumerate() {
        let line = i + 1;
        let Value::Object(mut m) = v else {
            return Err(HubError::bad_request(format!(
                "Error parsing data, line {line}: expected a JSON object"
            )));
        };
        let fp = match m.remove("fp") {
            Some(Value::String(fp)) if !fp.is_empty() => fp,
            _ => {
                return Err(HubError::bad_request(format!(
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
                return Err(HubError::bad_request(format!(
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

async fn slot_of(state: &AppState, p: &str, f: &str, slot: &str) -> Result<SlotRef, HubError> {
    if f.is_empty() || slot.is_empty() {
        return Err(HubError::bad_request("empty frontier or slot name"));
    }
    Ok(SlotRef {
        project: project_of(state, p).await?,
        frontier: f.to_owned(),
        slot: slot.to_owned(),
    })
}

/// `GET hcf/<p>/list`: the frontier names, as one JSON array on one line.
async fn frontiers(State(state): State<AppState>, Path(p): Path<String>) -> HubResult {
    let project = project_of(&state, &p).await?;
    let names = state.storage.frontier_names(&project).await?;
    Ok(wire::one(&json!(names)))
}

/// `GET hcf/<p>/<f>/list`: the slot names of a frontier, as one JSON array on one line.
async fn slots(State(state): State<AppState>, Path((p, f)): Path<(String, String)>) -> HubResult {
    let project = project_of(&state, &p).await?;
    let names = state.storage.frontier_slots(&project, &f).await?;
    Ok(wire::one(&json!(names)))
}

/// `POST hcf/<p>/<f>/s/<slot>`: adds requests (the batch writer's `start` is not needed: a
/// request sent again is a duplicate fingerprint); answers `{"newcount":N}`.
async fn add(
    State(state): State<AppState>,
    Path((p, f, slot)): Path<(String, String, String)>,
    headers: HeaderMap,
    super::wire::RequestBody(body): super::wire::RequestBody,
) -> HubResult {
    let s = slot_of(&state, &p, &f, &slot).await?;
    let requests = parse_requests(&decode_body(&headers, &body)?)?;
    let newcount = if requests.is_empty() {
        0
    } else {
        state.storage.frontier_add(s, requests).await?
    };
    Ok(wire::one(&json!({"newcount": newcount})))
}

/// `DELETE hcf/<p>/<f>/s/<slot>`: removes the slot.
async fn delete_slot(
    State(state): State<AppState>,
    Path((p, f, slot)): Path<(String, String, String)>,
) -> HubResult {
    let s = slot_of(&state, &p, &f, &slot).await?;
    state.storage.frontier_delete_slot(s).await?;
    Ok(wire::empty())
}

/// `GET hcf/<p>/<f>/s/<slot>/q[?mincount=N]`: queued batches in order, streamed; with
/// `mincount`, whole batches until at least N requests were sent, else all of them.
async fn read_queue(
    State(state): State<AppState>,
    Path((p, f, slot)): Path<(String, String, String)>,
    q: RawQuery,
) -> HubResult {
    let s = slot_of(&state, &p, &f, &slot).await?;
    let mincount = param_count(&query_params(&q.0), "mincount")?;
    let id = state.storage.frontier_slot_id(s).await?;
    let Some(slot_id) = id else {
        return Ok(wire::with_type(Body::empty(), false));
    };
    let pages = QueuePages {
        state,
        slot: slot_id,
        after: None,
        sent: 0,
        mincount,
        done: false,
    };
    Ok(wire::with_type(
        wire::paged_body(pages, "reading a frontier queue"),
        false,
    ))
}

/// A slot's queue, page by page: whole batches, until `mincount` requests were sent.
struct QueuePages {
    state: AppState,
    slot: i64,
    after: Option<(i64, i64)>,
    sent: u64,
    mincount: Option<u64>,
    done: bool,
}

impl wire::Pages for QueuePages {
    async fn next_page(&mut self) -> Result<Option<Vec<u8>>, HubError> {
        if self.done {
            return Ok(None);
        }
        let batches = self
            .state
            .storage
            .frontier_batches(self.slot, self.after, PAGE_BATCHES)
            .await?;
        self.done = batches.len() < PAGE_BATCHES;
        let mut out = Vec::new();
        for b in &batches {
            b.render(&mut out);
            out.push(b'\n');
            self.sent += b.requests.len() as u64;
            self.after = Some((b.priority, b.id));
            if self.mincount.is_some_and(|m| self.sent >= m) {
                self.done = true;
                break;
            }
        }
        Ok(Some(out))
    }
}

/// `POST hcf/<p>/<f>/s/<slot>/q/deleted`: deletes batches by id (JSON lines of ids, or of
/// arrays of ids); unknown ids are ignored.
async fn delete_batches(
    State(state): State<AppState>,
    Path((p, f, slot)): Path<(String, String, String)>,
    headers: HeaderMap,
    super::wire::RequestBody(body): super::wire::RequestBody,
) -> HubResult {
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
            .ok_or_else(|| HubError::bad_request(format!("invalid batch id: {v}")))?;
        ids.push(id);
    }
    state.storage.frontier_delete_batches(s, ids).await?;
    Ok(wire::empty())
}

/// `GET hcf/<p>/<f>/s/<slot>/f`: `{"fp":…}` lines (with `fdata` when it was given), in
/// lexicographic order, streamed.
async fn fingerprints(
    State(state): State<AppState>,
    Path((p, f, slot)): Path<(String, String, String)>,
) -> HubResult {
    let s = slot_of(&state, &p, &f, &slot).await?;
    let id = state.storage.frontier_slot_id(s).await?;
    let Some(slot_id) = id else {
        return Ok(wire::with_type(Body::empty(), false));
    };
    let pages = FingerprintPages {
        state,
        slot: slot_id,
        after: None,
        done: false,
    };
    Ok(wire::with_type(
        wire::paged_body(pages, "reading frontier fingerprints"),
        false,
    ))
}

/// A slot's fingerprints, page by page, in order.
struct FingerprintPages {
    state: AppState,
    slot: i64,
    after: Option<String>,
    done: bool,
}

impl wire::Pages for FingerprintPages {
    async fn next_page(&mut self) -> Result<Option<Vec<u8>>, HubError> {
        if self.done {
            return Ok(None);
        }
        let rows = self
            .state
            .storage
            .frontier_fingerprints(self.slot, self.after.take(), PAGE_FINGERPRINTS)
            .await?;
        self.done = rows.len() < PAGE_FINGERPRINTS;
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
        self.after = rows.last().map(|(fp, _)| fp.clone());
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DbsDir;
    use crate::storage::TestDb as Db;
    use crate::storage::model::plan_batches;
    #[allow(unused_imports)]
    use crate::storage::test_prelude::*;

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
