//! The scan planner of collections: a scan's parameters (`key`, `prefix`, `prefixcount`,
//! `start`, `startafter`, `startts`, `endts`, `count`, `filter`) become a [`ScanQuery`], which a
//! [`Scanner`] turns into key ranges read page by page, keeping the records the query selects.

use super::{param_count, param_ms};
use crate::AppState;
use crate::api::params::Params;
use crate::cloud::jobdata::Filter;
use crate::cloud::wire::HubError;
use crate::cloud::wire::{param_list, param_text};
use crate::storage::model::now_ms;
use crate::storage::model::{CollectionRef, CollectionType, PageRequest, StoredRecord};
use serde_json::Value;
use std::collections::VecDeque;

/// Rows read per storage call during a scan, a count or a filtered delete.
pub const PAGE_ROWS: usize = 500;

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

/// A scanner over the records of `c` that `query` selects; `None` when the collection does not
/// exist (it is empty).
pub(super) async fn scanner_of(
    state: &AppState,
    c: &CollectionRef,
    query: ScanQuery,
) -> Result<Option<Scanner>, HubError> {
    let lookup = c.clone();
    let id = state.storage.collection_id(lookup).await?;
    Ok(id.map(|id| Scanner::new(id, c.kind, now_ms(), query)))
}

pub(super) fn scan_query(params: &Params) -> Result<ScanQuery, HubError> {
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
pub(super) async fn next_selected(
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

#[cfg(test)]
mod tests {
    use super::super::tests::{col, rec};
    use super::*;
    use crate::config::DbsDir;
    use crate::storage::TestDb as Db;
    use crate::storage::model::{CACHE_RETENTION_MS, NewRecord};
    #[allow(unused_imports)]
    use crate::storage::test_prelude::*;
    use serde_json::json;

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
}
