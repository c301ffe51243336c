//! Collections of the storage API (`/storage/collections/<project id>/…`): key-value stores
//! per project, what `project.collections` of the `scrapinghub` client reads and writes.
//!
//! A collection is named by its project, a type and a name. Records are JSON objects of at most
//! 1 MiB ([`MAX_VALUE`]), identified by their `_key` (a non-empty string); a write of an existing
//! key replaces the record (upsert). The four types:
//! - `s` (store): one value per key;
//! - `cs` (cached store): records expire [`CACHE_RETENTION_MS`] (30 days, Scrapy Cloud's "a
//!   month") after they were written: an expired record is never returned or counted, and a
//!   write to the collection purges its expired records (at most once per
//!   [`PURGE_INTERVAL_MS`], an hour, so writes stay cheap);
//! - `vs` (versioned store): each key keeps up to [`VERSIONS_KEPT`] (3) versions: the newest
//!   in the record's columns, the older ones (with their write times) in its `older` column;
//!   every read (get, scan, count) sees the newest version only, and deleting a key deletes
//!   all its versions;
//! - `vcs` (versioned cached store): both.
//!
//! Kept by [`crate::storage`] (tables in `jobs.db`): `cloud_collection` (one row per project, type
//! and name, with its id and last purge time: created by the first write, removed by
//! `delete?name=`) and `cloud_collection_record` (by collection id and key: the current value,
//! its write time `ts` in ms, and the older versions).
//!
//! Scans are sorted by key (byte order of the UTF-8 text) and read in pages of [`PAGE_ROWS`]
//! rows, one storage read per page, streamed to the client as they come: a scan of a large
//! collection holds one page in memory and does not keep the store thread from other work. A
//! scan is therefore not a snapshot: records written while it runs may or may not be seen.

use super::jobdata::Filter;
use super::wire::{self, HubError, HubResult, MAX_VALUE, decode_body, json_lines};
use crate::AppState;
use crate::api::params::{Params, parse_urlencoded};
use crate::storage::model::now_ms;
use crate::storage::model::{
    CollectionRef, CollectionType, NewRecord, PageRequest, RenameOutcome, StoredRecord,
};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use std::collections::VecDeque;

/// Rows read per storage call during a scan, a count or a filtered delete.
pub const PAGE_ROWS: usize = 500;

/// The message of a record over [`MAX_VALUE`] (Scrapy Cloud's wording).
const TOO_LARGE: &str = "Error parsing data, Serialized value too large - max 1048576 bytes";

/// Whether a collection name is valid: `^\w+$`, as the client checks.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// One collection: a Scrapyd project, a type and a name.
/// fails the whole body.
pub fn parse_records(body: &[u8]) -> Result<Vec<NewRecord>, HubError> {
    let mut records = Vec::new();
    for (i, line) in body
        .split(|b| *b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if line.len() > MAX_VALUE {
            return Err(HubError::too_large(TOO_LARGE));
        }
        let value: Value = serde_json::from_slice(line).map_err(|e| {
            HubError::bad_request(format!("Error parsing data, line {}: {e}", i + 1))
        })?;
        let Value::Object(mut fields) = value else {
            return Err(HubError::bad_request(
                "Error parsing data, a record must be a JSON object",
            ));
        };
        let key = match fields.remove("_key") {
            None | Some(Value::Null) => {
                return Err(HubError::bad_request(
                    "Error parsing data, missing value for _key field",
                ));
            }
            Some(Value::String(k)) if !k.is_empty() => k,
            Some(other) => {
                return Err(HubError::bad_request(format!(
                    "Error parsing data, invalid value for _key field: {other}"
                )));
            }
        };
        let value = serde_json::to_string(&Value::Object(fields)).map_err(HubError::internal)?;
        records.push(NewRecord { key, value });
    }
    Ok(records)
}

/// What a scan (or count, or filtered delete) selects.
#[derive(Debug, Clone, Default)]
pub struct ScanQuery {
    /// Only these keys (`key`, repeatable).
    pub keys: Vec<String>,
    /// Only keys starting with one of these (`prefix`, repeatable).
    pub prefixes: Vec<String>,
    /// At most this many records per prefix (`prefixcount`).
    pub prefixcount: Option<usize>,
    /// Written at or after (`startts`, ms).
    pub startts: Option<i64>,
    /// Written before (`endts`, ms).
    pub endts: Option<i64>,
    /// From this key on (`start`).
    pub start: Option<String>,
    /// After this key (`startafter`).
    pub startafter: Option<String>,
    /// At most this many records (`count`).
    pub count: Option<usize>,
    /// Value filters, all of which must match (`filter`).
    pub filters: Vec<Filter>,
}

impl ScanQuery {
    /// Whether the query selects every record (no parameter narrows it).
    pub fn selects_all(&self) -> bool {
        self.keys.is_empty()
            && self.prefixes.is_empty()
            && self.startts.is_none()
            && self.endts.is_none()
            && self.start.is_none()
            && self.startafter.is_none()
            && self.count.is_none()
            && self.filters.is_empty()
    }
}

/// A part of the key space a scan goes through, in key order.
#[derive(Debug, Clone)]
enum KeyRange {
    /// Exact keys (sorted, at most [`PAGE_ROWS`]).
    Keys(Vec<String>),
    /// Keys from the lower bound on; with a prefix, only those starting with it.
    From { prefix: Option<String> },
}

/// The later of two lower bounds `(key, inclusive)`.
fn later_bound(a: Option<(String, bool)>, b: Option<(String, bool)>) -> Option<(String, bool)> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => Some(match a.0.cmp(&b.0) {
            std::cmp::Ordering::Less => b,
            std::cmp::Ordering::Greater => a,
            std::cmp::Ordering::Equal => (a.0, a.1 && b.1),
        }),
    }
}

fn passes_bound(key: &str, bound: &Option<(String, bool)>) -> bool {
    match bound {
        None => true,
        Some((k, true)) => key >= k.as_str(),
        Some((k, false)) => key > k.as_str(),
    }
}

/// A scan in progress: it asks for pages ([`Scanner::request`]), and keeps from each page
/// ([`Scanner::accept`]) the records the query selects, in key order. It holds no data beyond
/// the page at hand, so its caller decides where the pages are read (one storage call each).
#[derive(Debug)]
pub struct Scanner {
    collection: i64,
    min_ts: i64,
    max_ts: i64,
    lower: Option<(String, bool)>,
    ranges: VecDeque<KeyRange>,
    /// Where the current `From` range continues (`None`: not started).
    cursor: Option<Option<(String, bool)>>,
    taken_in_range: usize,
    prefixcount: Option<usize>,
    count: Option<usize>,
    filters: Vec<Filter>,
    /// Records selected so far.
    pub selected: usize,
    /// Records examined so far (before the value filters).
    pub scanned: usize,
    done: bool,
}

impl Scanner {
    /// A scan of collection `collection` (of type `kind`) at time `now`.
    pub fn new(collection: i64, kind: CollectionType, now: i64, q: ScanQuery) -> Scanner {
        let lower = later_bound(q.start.map(|s| (s, true)), q.startafter.map(|s| (s, false)));
        let mut prefixes = q.prefixes;
        prefixes.sort();
        prefixes.dedup();
        // A prefix that extends another listed prefix selects nothing more.
        let prefixes: Vec<String> = prefixes
            .iter()
            .filter(|p| {
                !prefixes
                    .iter()
                    .any(|o| o != *p && p.starts_with(o.as_str()))
            })
            .cloned()
            .collect();
        let mut ranges = VecDeque::new();
        if !q.keys.is_empty() {
            let mut keys: Vec<String> = q
                .keys
                .into_iter()
                .filter(|k| passes_bound(k, &lower))
                .filter(|k| prefixes.is_empty() || prefixes.iter().any(|p| k.starts_with(p)))
                .collect();
            keys.sort();
            keys.dedup();
            for chunk in keys.chunks(PAGE_ROWS) {
                ranges.push_back(KeyRange::Keys(chunk.to_vec()));
            }
        } else if !prefixes.is_empty() {
            for p in prefixes {
                ranges.push_back(KeyRange::From { prefix: Some(p) });
            }
        } else {
            ranges.push_back(KeyRange::From { prefix: None });
        }
        let min_ts = kind.visible_since(now).max(q.startts.unwrap_or(i64::MIN));
        Scanner {
            collection,
            min_ts,
            max_ts: q.endts.unwrap_or(i64::MAX),
            lower,
            done: ranges.is_empty() || q.count == Some(0),
            ranges,
            cursor: None,
            taken_in_range: 0,
            // With exact keys, `prefixcount` does not apply.
            prefixcount: q.prefixcount,
            count: q.count,
            filters: q.filters,
            selected: 0,
            scanned: 0,
        }
    }

    /// The next page to read, or `None` when the scan is over.
    pub fn request(&mut self) -> Option<PageRequest> {
        if self.done {
            return None;
        }
        let range = self.ranges.front()?;
        let (keys, from) = match range {
            KeyRange::Keys(keys) => (Some(keys.clone()), None),
            KeyRange::From { prefix } => {
                let from = self
                    .cursor
                    .get_or_insert_with(|| {
                        later_bound(prefix.clone().map(|p| (p, true)), self.lower.clone())
                    })
                    .clone();
                (None, from)
            }
        };
        Some(PageRequest {
            collection: self.collection,
            keys,
            from,
            min_ts: self.min_ts,
            max_ts: self.max_ts,
            limit: PAGE_ROWS,
        })
    }

    /// Takes the page read for the last request; returns the records selected from it.
    pub fn accept(&mut self, rows: Vec<StoredRecord>) -> Vec<StoredRecord> {
        let mut out = Vec::new();
        let Some(range) = self.ranges.front().cloned() else {
            self.done = true;
            return out;
        };
        let full = rows.len() >= PAGE_ROWS;
        let (prefix, per_range_limit) = match &range {
            KeyRange::Keys(_) => (None, None),
            KeyRange::From { prefix } => (prefix.clone(), prefix.as_ref().and(self.prefixcount)),
        };
        // A page of exact keys ends its range; a key range ends on a short page.
        let mut range_over = matches!(range, KeyRange::Keys(_)) || !full;
        for row in rows {
            if let Some(p) = &prefix
                && !row.key.starts_with(p.as_str())
            {
                range_over = true;
                break;
            }
            self.cursor = Some(Some((row.key.clone(), false)));
            self.scanned += 1;
            let keep = self.filters.is_empty() || {
                let value: Value = serde_json::from_str(&row.value).unwrap_or(Value::Null);
                self.filters.iter().all(|f| f.matches(&value))
            };
            if !keep {
                continue;
            }
            out.push(row);
            self.selected += 1;
            self.taken_in_range += 1;
            if self.count.is_some_and(|c| self.selected >= c) {
                self.done = true;
                break;
            }
            if per_range_limit.is_some_and(|l| self.taken_in_range >= l) {
                range_over = true;
                break;
            }
        }
        if range_over {
            self.ranges.pop_front();
            self.cursor = None;
            self.taken_in_range = 0;
        }
        if self.ranges.is_empty() {
            self.done = true;
        }
        out
    }
}

/// Writes a record as one JSON object: `_key` and `_ts` when asked, then its fields (none
/// with `nodata`). The stored value is spliced in, not parsed again.
pub fn render_record(
    out: &mut Vec<u8>,
    r: &StoredRecord,
    with_key: bool,
    with_ts: bool,
    nodata: bool,
) {
    out.push(b'{');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
    };
    if with_key {
        sep(out);
        out.extend_from_slice(b"\"_key\":");
        out.extend(serde_json::to_vec(&r.key).unwrap_or_default());
    }
    if with_ts {
        sep(out);
        out.extend_from_slice(format!("\"_ts\":{}", r.ts).as_bytes());
    }
    if !nodata {
        let inner = r
            .value
            .trim()
            .strip_prefix('{')
            .and_then(|v| v.strip_suffix('}'))
            .unwrap_or("")
            .trim();
        if !inner.is_empty() {
            sep(out);
            out.extend_from_slice(inner.as_bytes());
        }
    }
    out.push(b'}');
}

/// A record as a JSON value, with the same fields as [`render_record`] (for msgpack).
fn record_value(r: &StoredRecord, with_key: bool, with_ts: bool, nodata: bool) -> Value {
    let mut m = Map::new();
    if with_key {
        m.insert("_key".into(), r.key.clone().into());
    }
    if with_ts {
        m.insert("_ts".into(), r.ts.into());
    }
    if !nodata && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&r.value) {
        m.extend(fields);
    }
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// HTTP: request parsing shared with the frontier endpoints.

/// The query parameters of a request.
pub(super) fn query_params(raw: &Option<String>) -> Params {
    raw.as_deref()
        .map(|q| parse_urlencoded(q.as_bytes()))
        .unwrap_or_default()
}

pub(super) fn param_text(params: &Params, key: &str) -> Result<Option<String>, HubError> {
    params
        .text(key)
        .map_err(|e| HubError::bad_request(e.message))
}

pub(super) fn param_list(params: &Params, key: &str) -> Result<Vec<String>, HubError> {
    params
        .all(key)
        .map_err(|e| HubError::bad_request(e.message))
}

/// A non-negative integer parameter.
pub(super) fn param_count(params: &Params, key: &str) -> Result<Option<u64>, HubError> {
    param_text(params, key)?
        .map(|t| {
            t.trim()
                .parse::<u64>()
                .map_err(|_| HubError::bad_request(format!("invalid {key}: {t}")))
        })
        .transpose()
}

fn param_ms(params: &Params, key: &str) -> Result<Option<i64>, HubError> {
    param_text(params, key)?
        .map(|t| {
            t.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(|v| v as i64)
                .ok_or_else(|| HubError::bad_request(format!("invalid {key}: {t}")))
        })
        .transpose()
}

fn param_flag(params: &Params, key: &str) -> Result<bool, HubError> {
    Ok(param_text(params, key)?
        .is_some_and(|v| !matches!(v.as_str(), "" | "0" | "false" | "False")))
}

/// The Scrapyd project named by a project id of the path.
pub(super) async fn project_of(state: &AppState, p: &str) -> Result<String, HubError> {
    Ok(super::project(state, p).await?.0)
}

/// The collection of a `<p>/<t>/<n>` path.
async fn collection_of(
    state: &AppState,
    p: &str,
    t: &str,
    n: &str,
) -> Result<CollectionRef, HubError> {
    let kind = CollectionType::parse(t)
        .ok_or_else(|| HubError::bad_request(format!("invalid collection type: {t}")))?;
    if !valid_name(n) {
        return Err(HubError::bad_request(format!(
            "invalid collection name: {n:?} (letters, digits and _ only)"
        )));
    }
    Ok(CollectionRef {
        project: project_of(state, p).await?,
        kind,
        name: n.to_owned(),
    })
}

/// A scanner over the records of `c` that `query` selects; `None` when the collection does not
/// exist (it is empty).
async fn scanner_of(
    state: &AppState,
    c: &CollectionRef,
    query: ScanQuery,
) -> Result<Option<Scanner>, HubError> {
    let lookup = c.clone();
    let id = state.storage.collection_id(lookup).await?;
    Ok(id.map(|id| Scanner::new(id, c.kind, now_ms(), query)))
}

fn scan_query(params: &Params) -> Result<ScanQuery, HubError> {
    let filters = param_list(params, "filter")?
        .iter()
        .map(|f| Filter::parse(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(HubError::bad_request)?;
    Ok(ScanQuery {
        keys: param_list(params, "key")?,
        prefixes: param_list(params, "prefix")?,
        prefixcount: param_count(params, "prefixcount")?.map(|c| c as usize),
        startts: param_ms(params, "startts")?,
        endts: param_ms(params, "endts")?,
        start: param_text(params, "start")?,
        startafter: param_text(params, "startafter")?,
        count: param_count(params, "count")?.map(|c| c as usize),
        filters,
    })
}

/// The next records a scan selects, reading pages (one storage read each) until one selects
/// something; `None` when the scan is over.
async fn next_selected(
    state: &AppState,
    scanner: &mut Scanner,
) -> Result<Option<Vec<StoredRecord>>, HubError> {
    while let Some(req) = scanner.request() {
        let rows = state.storage.collection_page(req).await?;
        let selected = scanner.accept(rows);
        if !selected.is_empty() {
            return Ok(Some(selected));
        }
    }
    Ok(None)
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/storage/collections/{p}/list", get(list))
        .route("/storage/collections/{p}/delete", post(drop_by_name))
        .route("/storage/collections/{p}/rename", post(rename))
        .route(
            "/storage/collections/{p}/{t}/{n}",
            get(scan).post(write).delete(delete_matching),
        )
        .route("/storage/collections/{p}/{t}/{n}/count", get(count))
        .route(
            "/storage/collections/{p}/{t}/{n}/deleted",
            post(delete_keys),
        )
        .route(
            "/storage/collections/{p}/{t}/{n}/{k}",
            get(get_record).delete(delete_record),
        )
        .route("/storage/collections/{p}/{t}/{n}/{k}/value", get(get_value))
}

/// `GET collections/<p>/list`: `{"type":…,"name":…}` lines.
async fn list(State(state): State<AppState>, Path(p): Path<String>) -> HubResult {
    let project = project_of(&state, &p).await?;
    let rows = state.storage.collection_list(&project).await?;
    let out: Vec<Value> = rows
        .into_iter()
        .map(|(t, n)| json!({"type": t, "name": n}))
        .collect();
    Ok(wire::lines(&out, false))
}

/// `POST collections/<p>/<t>/<n>`: upserts the records of a JSON-lines body (all or none).
async fn write(
    State(state): State<AppState>,
    Path((p, t, n)): Path<(String, String, String)>,
    headers: HeaderMap,
    super::wire::RequestBody(body): super::wire::RequestBody,
) -> HubResult {
    let c = collection_of(&state, &p, &t, &n).await?;
    let records = parse_records(&decode_body(&headers, &body)?)?;
    if records.is_empty() {
        return Ok(wire::empty());
    }
    let now = now_ms();
    state.storage.collection_upsert(c, records, now).await?;
    Ok(wire::empty())
}

/// `GET collections/<p>/<t>/<n>/<k>`: the value without `_key` (msgpack when asked).
async fn get_record(
    State(state): State<AppState>,
    Path((p, t, n, k)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> HubResult {
    let c = collection_of(&state, &p, &t, &n).await?;
    let key = k.clone();
    let record = state.storage.collection_get(c, key, now_ms()).await?;
    let record = record.ok_or_else(|| HubError::not_found(format!("key {k} not found")))?;
    if wire::wants_msgpack(&headers) {
        return Ok(wire::lines(
            &[record_value(&record, false, false, false)],
            true,
        ));
    }
    let mut out = Vec::with_capacity(record.value.len() + 1);
    render_record(&mut out, &record, false, false, false);
    out.push(b'\n');
    Ok(wire::with_type(Body::from(out), false))
}

/// `GET collections/<p>/<t>/<n>/<k>/value`: the record's `value` field, raw (a string as its
/// text, any other JSON value as JSON); 404 when the key or its `value` field is missing.
async fn get_value(
    State(state): State<AppState>,
    Path((p, t, n, k)): Path<(String, String, String, String)>,
) -> HubResult {
    let c = collection_of(&state, &p, &t, &n).await?;
    let key = k.clone();
    let record = state.storage.collection_get(c, key, now_ms()).await?;
    let record = record.ok_or_else(|| HubError::not_found(format!("key {k} not found")))?;
    let value: Value = serde_json::from_str(&record.value).map_err(HubError::internal)?;
    let body = match value.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => {
            return Err(HubError::not_found(format!("key {k} has no value field")));
        }
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        body,
    )
        .into_response())
}

/// `DELETE collections/<p>/<t>/<n>/<k>`.
async fn delete_record(
    State(state): State<AppState>,
    Path((p, t, n, k)): Path<(String, String, String, String)>,
) -> HubResult {
    let c = collection_of(&state, &p, &t, &n).await?;
    state.storage.collection_delete_keys(c, vec![k]).await?;
    Ok(wire::empty())
}

/// `POST collections/<p>/<t>/<n>/deleted`: deletes the keys of a JSON-lines body (strings, or
/// arrays of strings), in one transaction.
async fn delete_keys(
    State(state): State<AppState>,
    Path((p, t, n)): Path<(String, String, String)>,
    headers: HeaderMap,
    super::wire::RequestBody(body): super::wire::RequestBody,
) -> HubResult {
    let c = collection_of(&state, &p, &t, &n).await?;
    let mut keys = Vec::new();
    for v in json_lines(&decode_body(&headers, &body)?)? {
        match v {
            Value::String(k) => keys.push(k),
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(k) => keys.push(k),
                        other => {
                            return Err(HubError::bad_request(format!(
                                "Error parsing data, a key must be a string: {other}"
                            )));
                        }
                    }
                }
            }
            other => {
                return Err(HubError::bad_request(format!(
                    "Error parsing data, a key must be a string: {other}"
                )));
            }
        }
    }
    state.storage.collection_delete_keys(c, keys).await?;
    Ok(wire::empty())
}

/// `DELETE collections/<p>/<t>/<n>`: deletes the records the scan parameters select (all of
/// them without parameters), page by page.
async fn delete_matching(
    State(state): State<AppState>,
    Path((p, t, n)): Path<(String, String, String)>,
    q: RawQuery,
) -> HubResult {
    let c = collection_of(&state, &p, &t, &n).await?;
    let query = scan_query(&query_params(&q.0))?;
    let Some(mut scanner) = scanner_of(&state, &c, query).await? else {
        return Ok(wire::empty());
    };
    while let Some(records) = next_selected(&state, &mut scanner).await? {
        let keys: Vec<String> = records.into_iter().map(|r| r.key).collect();
        let c = c.clone();
        state.storage.collection_delete_keys(c, keys).await?;
    }
    Ok(wire::empty())
}

/// `GET collections/<p>/<t>/<n>/count`: `{"count":N,"scanned":N}` with the scan's filters.
async fn count(
    State(state): State<AppState>,
    Path((p, t, n)): Path<(String, String, String)>,
    q: RawQuery,
) -> HubResult {
    let c = collection_of(&state, &p, &t, &n).await?;
    let query = scan_query(&query_params(&q.0))?;
    let Some(mut scanner) = scanner_of(&state, &c, query).await? else {
        return Ok(wire::one(&json!({"count": 0, "scanned": 0})));
    };
    while next_selected(&state, &mut scanner).await?.is_some() {}
    Ok(wire::one(
        &json!({"count": scanner.selected, "scanned": scanner.scanned}),
    ))
}

/// `GET collections/<p>/<t>/<n>`: the selected records, by key, streamed as JSON lines (as
/// msgpack objects when the client asks for them). `meta` adds `_key` and/or `_ts`; `nodata`
/// leaves the fields out. A collection that does not exist is empty.
async fn scan(
    State(state): State<AppState>,
    Path((p, t, n)): Path<(String, String, String)>,
    q: RawQuery,
    headers: HeaderMap,
) -> HubResult {
    let c = collection_of(&state, &p, &t, &n).await?;
    let params = query_params(&q.0);
    let query = scan_query(&params)?;
    let meta = param_list(&params, "meta")?;
    let with_key = meta.iter().any(|m| m == "_key");
    let with_ts = meta.iter().any(|m| m == "_ts");
    let nodata = param_flag(&params, "nodata")?;
    let msgpack = wire::wants_msgpack(&headers);
    let Some(scanner) = scanner_of(&state, &c, query).await? else {
        return Ok(wire::with_type(Body::empty(), msgpack));
    };
    let pages = ScanPages {
        state,
        scanner,
        with_key,
        with_ts,
        nodata,
        msgpack,
    };
    Ok(wire::with_type(
        wire::paged_body(pages, "a collection scan"),
        msgpack,
    ))
}

/// A scan's selected records, page by page, rendered as JSON lines or msgpack.
struct ScanPages {
    state: AppState,
    scanner: Scanner,
    with_key: bool,
    with_ts: bool,
    nodata: bool,
    msgpack: bool,
}

impl wire::Pages for ScanPages {
    async fn next_page(&mut self) -> Result<Option<Vec<u8>>, HubError> {
        let Some(records) = next_selected(&self.state, &mut self.scanner).await? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for r in &records {
            if self.msgpack {
                let value = record_value(r, self.with_key, self.with_ts, self.nodata);
                out.extend(wire::msgpack(&value));
            } else {
                render_record(&mut out, r, self.with_key, self.with_ts, self.nodata);
                out.push(b'\n');
            }
        }
        Ok(Some(out))
    }
}

/// `POST collections/<p>/delete?name=<n>`: deletes the collections of that name, all types;
/// answers 202 `{"status":"success","deleted":"<n>"}`.
async fn drop_by_name(
    State(state): State<AppState>,
    Path(p): Path<String>,
    q: RawQuery,
) -> HubResult {
    let project = project_of(&state, &p).await?;
    let params = query_params(&q.0);
    let name = param_text(&params, "name")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| HubError::bad_request("missing name"))?;
    let dropped = name.clone();
    state.storage.collection_drop(&project, &dropped).await?;
    let mut r = wire::one(&json!({"status": "success", "deleted": name}));
    *r.status_mut() = StatusCode::ACCEPTED;
    Ok(r)
}

/// `POST collections/<p>/rename?name=<n>&new_name=<m>`: renames the collections of that name,
/// all types; 404 when there is none, 400 when the new name is invalid or taken.
async fn rename(State(state): State<AppState>, Path(p): Path<String>, q: RawQuery) -> HubResult {
    let project = project_of(&state, &p).await?;
    let params = query_params(&q.0);
    let name = param_text(&params, "name")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| HubError::bad_request("missing name"))?;
    let new_name = param_text(&params, "new_name")?
        .ok_or_else(|| HubError::bad_request("missing new_name"))?;
    if !valid_name(&new_name) {
        return Err(HubError::bad_request(format!(
            "invalid collection name: {new_name:?} (letters, digits and _ only)"
        )));
    }
    let (from, to) = (name.clone(), new_name.clone());
    let outcome = state
        .storage
        .collection_rename(&project, &from, &to)
        .await?;
    match outcome {
        RenameOutcome::Renamed => Ok(wire::one(
            &json!({"status": "success", "renamed": name, "new_name": new_name}),
        )),
        RenameOutcome::NotFound => Err(HubError::not_found(format!("collection {name} not found"))),
        RenameOutcome::Taken => Err(HubError::bad_request(format!(
            "a collection named {new_name} exists"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DbsDir;
    use crate::storage::TestDb as Db;
    use crate::storage::model::CACHE_RETENTION_MS;

    fn col(kind: CollectionType, name: &str) -> CollectionRef {
        CollectionRef {
            project: "p".into(),
            kind,
            name: name.into(),
        }
    }

    fn rec(key: &str, value: Value) -> NewRecord {
        NewRecord {
            key: key.into(),
            value: value.to_string(),
        }
    }

    /// Runs a whole scan synchronously and returns the selected keys and the scanner.
    fn scan_keys(db: &mut Db, c: &CollectionRef, now: i64, q: ScanQuery) -> (Vec<String>, Scanner) {
        let id = db.collection_id(c).unwrap().unwrap();
        let mut s = Scanner::new(id, c.kind, now, q);
        let mut keys = Vec::new();
        while let Some(req) = s.request() {
            let rows = db.collection_page(&req).unwrap();
            keys.extend(s.accept(rows).into_iter().map(|r| r.key));
        }
        (keys, s)
    }

    #[test]
    fn records_need_a_string_key_and_fit_in_a_mebibyte() {
        let ok = parse_records(b"{\"_key\":\"a\",\"v\":1}\n\n{\"_key\":\"b\"}\n").unwrap();
        assert_eq!(ok, vec![rec("a", json!({"v": 1})), rec("b", json!({}))]);
        let e = parse_records(b"{\"_key\":\"a\"}\n{\"foo\":42}").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            e.message,
            "Error parsing data, missing value for _key field"
        );
        for bad in [&b"{\"_key\":[]}"[..], b"{\"_key\":\"\"}", b"[1]", b"{nope"] {
            assert_eq!(
                parse_records(bad).unwrap_err().status,
                StatusCode::BAD_REQUEST
            );
        }
        let big = format!("{{\"_key\":\"k\",\"v\":\"{}\"}}", "x".repeat(MAX_VALUE));
        assert_eq!(
            parse_records(big.as_bytes()).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn scans_are_sorted_by_key_and_honour_prefix_prefixcount_keys_and_bounds() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        let c = col(CollectionType::Store, "c");
        // More than a page, written out of order.
        let mut records: Vec<NewRecord> = (0..1200)
            .rev()
            .map(|i| rec(&format!("k{i:04}"), json!({"i": i})))
            .collect();
        records.push(rec("a", json!({"i": -1})));
        db.collection_upsert(&c, &records, 1000).unwrap();
        let (all, s) = scan_keys(&mut db, &c, 1000, ScanQuery::default());
        assert_eq!(all.len(), 1201);
        assert_eq!(all[0], "a");
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(s.scanned, 1201);

        let q = ScanQuery {
            prefixes: vec!["k01".into(), "k000".into(), "k0".into()],
            prefixcount: Some(3),
            ..ScanQuery::default()
        };
        // "k01" and "k000" extend "k0": only "k0" is scanned, three records.
        assert_eq!(
            scan_keys(&mut db, &c, 1000, q).0,
            ["k0000", "k0001", "k0002"]
        );

        let q = ScanQuery {
            prefixes: vec!["k11".into(), "a".into()],
            prefixcount: Some(2),
            ..ScanQuery::default()
        };
        assert_eq!(scan_keys(&mut db, &c, 1000, q).0, ["a", "k1100", "k1101"]);

        let q = ScanQuery {
            prefixes: vec!["k1".into()],
            ..ScanQuery::default()
        };
        assert_eq!(scan_keys(&mut db, &c, 1000, q).0.len(), 200);

        let q = ScanQuery {
            keys: vec!["k0005".into(), "nope".into(), "a".into(), "k0005".into()],
            ..ScanQuery::default()
        };
        assert_eq!(scan_keys(&mut db, &c, 1000, q).0, ["a", "k0005"]);

        let q = ScanQuery {
            start: Some("k1198".into()),
            ..ScanQuery::default()
        };
        assert_eq!(scan_keys(&mut db, &c, 1000, q).0, ["k1198", "k1199"]);
        let q = ScanQuery {
            startafter: Some("k1198".into()),
            ..ScanQuery::default()
        };
        assert_eq!(scan_keys(&mut db, &c, 1000, q).0, ["k1199"]);

        let q = ScanQuery {
            count: Some(501),
            filters: vec![Filter::parse(r#"["i", ">=", [600]]"#).unwrap()],
            ..ScanQuery::default()
        };
        let (keys, s) = scan_keys(&mut db, &c, 1000, q);
        assert_eq!(keys.len(), 501);
        assert_eq!(keys[0], "k0600");
        assert!(s.scanned > 501);
    }

    #[test]
    fn insertion_times_bound_scans_and_cached_records_expire() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        let c = col(CollectionType::CachedStore, "c");
        db.collection_upsert(&c, &[rec("old", json!({}))], 1_000)
            .unwrap();
        db.collection_upsert(&c, &[rec("new", json!({}))], 2_000)
            .unwrap();
        let q = |startts, endts| ScanQuery {
            startts,
            endts,
            ..ScanQuery::default()
        };
        assert_eq!(
            scan_keys(&mut db, &c, 3_000, q(Some(1_500), None)).0,
            ["new"]
        );
        assert_eq!(
            scan_keys(&mut db, &c, 3_000, q(None, Some(2_000))).0,
            ["old"]
        );
        // A month later "old" is gone from reads, and the next write purges it.
        let later = 1_000 + CACHE_RETENTION_MS + 1;
        assert_eq!(scan_keys(&mut db, &c, later, q(None, None)).0, ["new"]);
        assert!(db.collection_get(&c, "old", later).unwrap().is_none());
        assert!(db.collection_get(&c, "new", later).unwrap().is_some());
        db.collection_upsert(&c, &[rec("x", json!({}))], later)
            .unwrap();
        assert!(db.collection_get(&c, "old", 1_000).unwrap().is_none());
        // A plain store keeps everything.
        let s = col(CollectionType::Store, "c");
        db.collection_upsert(&s, &[rec("old", json!({}))], 1_000)
            .unwrap();
        assert!(db.collection_get(&s, "old", later).unwrap().is_some());
    }

    #[test]
    fn versioned_stores_keep_three_versions_and_read_the_newest() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        let v = col(CollectionType::VersionedStore, "c");
        for i in 0..5 {
            db.collection_upsert(&v, &[rec("k", json!({"i": i}))], 100 + i)
                .unwrap();
        }
        let current = db.collection_get(&v, "k", 200).unwrap().unwrap();
        assert_eq!((current.ts, current.value.as_str()), (104, r#"{"i":4}"#));
        let older: Vec<String> = db
            .collection_versions(&v, "k")
            .unwrap()
            .into_iter()
            .map(|r| r.value)
            .collect();
        assert_eq!(older, [r#"{"i":3}"#, r#"{"i":2}"#]);
        assert_eq!(scan_keys(&mut db, &v, 200, ScanQuery::default()).0, ["k"]);
        // A plain store keeps no versions; deleting a key deletes its versions.
        let s = col(CollectionType::Store, "c");
        db.collection_upsert(&s, &[rec("k", json!({"i": 0}))], 1)
            .unwrap();
        db.collection_upsert(&s, &[rec("k", json!({"i": 1}))], 2)
            .unwrap();
        assert!(db.collection_versions(&s, "k").unwrap().is_empty());
        assert_eq!(db.collection_delete_keys(&v, &["k".into()]).unwrap(), 1);
        assert!(db.collection_versions(&v, "k").unwrap().is_empty());
        assert!(db.collection_get(&v, "k", 200).unwrap().is_none());
    }

    #[test]
    fn drop_and_rename_act_on_every_type_of_a_name() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        for kind in [CollectionType::Store, CollectionType::VersionedCachedStore] {
            db.collection_upsert(&col(kind, "a"), &[rec("k", json!({}))], 1)
                .unwrap();
        }
        db.collection_upsert(&col(CollectionType::Store, "b"), &[rec("k", json!({}))], 1)
            .unwrap();
        let names = |db: &mut Db| db.collection_list("p").unwrap();
        assert_eq!(
            names(&mut db),
            [
                ("s".into(), "a".into()),
                ("vcs".into(), "a".into()),
                ("s".into(), "b".into())
            ]
        );
        assert_eq!(
            db.collection_rename("p", "a", "b").unwrap(),
            RenameOutcome::Taken
        );
        assert_eq!(
            db.collection_rename("p", "z", "y").unwrap(),
            RenameOutcome::NotFound
        );
        assert_eq!(
            db.collection_rename("p", "a", "c").unwrap(),
            RenameOutcome::Renamed
        );
        assert!(
            db.collection_get(&col(CollectionType::Store, "c"), "k", 1)
                .unwrap()
                .is_some()
        );
        assert_eq!(db.collection_drop("p", "c").unwrap(), 2);
        assert_eq!(names(&mut db), [("s".into(), "b".into())]);
        assert!(
            db.collection_get(&col(CollectionType::Store, "c"), "k", 1)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn records_render_with_meta_fields_first() {
        let r = StoredRecord {
            key: "k\"1".into(),
            ts: 7,
            value: r#"{"a":1}"#.into(),
        };
        let render = |k, t, n| {
            let mut out = Vec::new();
            render_record(&mut out, &r, k, t, n);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(render(false, false, false), r#"{"a":1}"#);
        assert_eq!(
            render(true, true, false),
            r#"{"_key":"k\"1","_ts":7,"a":1}"#
        );
        assert_eq!(render(true, false, true), r#"{"_key":"k\"1"}"#);
        let empty = StoredRecord {
            value: "{}".into(),
            ..r
        };
        let mut out = Vec::new();
        render_record(&mut out, &empty, true, false, false);
        assert_eq!(out, br#"{"_key":"k\"1"}"#);
    }
}
