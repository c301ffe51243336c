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
//!
//! This file holds the routes, their handlers and the request parsing they share with the
//! frontier endpoints; the scan planner is in `scan`, the rendering of records in `render`.

mod render;
mod scan;

pub use render::render_record;
pub use scan::{PAGE_ROWS, ScanQuery, Scanner};

use super::wire::{
    self, HubError, HubResult, MAX_VALUE, decode_body, json_lines, param_list, param_text,
    query_params,
};
use crate::AppState;
use crate::api::params::Params;
use crate::storage::model::now_ms;
use crate::storage::model::{CollectionRef, CollectionType, NewRecord, RenameOutcome};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use render::{ScanPages, record_value};
use scan::{next_selected, scan_query, scanner_of};
use serde_json::{Value, json};

/// The message of a record over [`MAX_VALUE`] (Scrapy Cloud's wording).
const TOO_LARGE: &str = "Error parsing data, Serialized value too large - max 1048576 bytes";

/// Whether a collection name is valid: `^\w+$`, as the client checks.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// The records of a JSON-lines body: JSON objects with a non-empty string `_key`, each at most
/// [`MAX_VALUE`]; one bad line fails the whole body.
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

// ---------------------------------------------------------------------------------------------
// HTTP: request parsing shared with the frontier endpoints.

/// The query parameters of a request.
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

pub(super) fn param_ms(params: &Params, key: &str) -> Result<Option<i64>, HubError> {
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
    wire::RequestBody(body): wire::RequestBody,
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
    wire::RequestBody(body): wire::RequestBody,
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
    #[allow(unused_imports)]
    use crate::storage::test_prelude::*;

    pub(super) fn col(kind: CollectionType, name: &str) -> CollectionRef {
        CollectionRef {
            project: "p".into(),
            kind,
            name: name.into(),
        }
    }

    pub(super) fn rec(key: &str, value: Value) -> NewRecord {
        NewRecord {
            key: key.into(),
            value: value.to_string(),
        }
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
}
