//! How collection records are answered: one JSON object per record (`_key` and `_ts` when
//! asked, the stored value spliced in), or a msgpack object, and a scan's records page by page.

use super::scan::{Scanner, next_selected};
use crate::AppState;
use crate::cloud::wire::{self, HubError};
use crate::storage::model::StoredRecord;
use serde_json::{Map, Value};

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
pub(super) fn record_value(r: &StoredRecord, with_key: bool, with_ts: bool, nodata: bool) -> Value {
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

/// A scan's selected records, page by page, rendered as JSON lines or msgpack.
pub(super) struct ScanPages {
    pub(super) state: AppState,
    pub(super) scanner: Scanner,
    pub(super) with_key: bool,
    pub(super) with_ts: bool,
    pub(super) nodata: bool,
    pub(super) msgpack: bool,
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

#[cfg(test)]
mod tests {
    use super::*;

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
