//! Collections and frontier slots on PostgreSQL (the rules: [`crate::cloud::collections`] and
//! [`crate::cloud::frontier`]). A collection or slot is created by its first write with
//! `ON CONFLICT DO NOTHING`, so two nodes creating it at once agree on one id.
//!
//! PostgreSQL's `text` cannot hold NUL, which a record key, a fingerprint or a frontier or slot
//! name may (SQLite stores them as given): these are stored through [`stored`] and read back
//! through [`unstored`], a code that keeps their byte order, so scans page in the same order.

use super::tx::{PgTx, Result};
use crate::storage::model::{
    Batch, CollectionRef, NewRecord, NewRequest, PURGE_INTERVAL_MS, PageRequest, SlotRef,
    StoredRecord, plan_batches,
};
#[cfg(test)]
use crate::storage::rows::versions_of;
use crate::storage::rows::{CollectionRows, FrontierRows, push_version};
use std::borrow::Cow;
use tokio_postgres::Row;

/// Text as stored: NUL becomes `\x01\x01` and `\x01` becomes `\x01\x02`. The code is
/// prefix-free and follows the byte order (`\x01\x01` < `\x01\x02` < every other byte), so
/// stored texts compare (`COLLATE "C"`) as the texts themselves do.
fn stored(text: &str) -> Cow<'_, str> {
    if !text.contains(['\0', '\x01']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        match c {
            '\0' => out.push_str("\x01\x01"),
            '\x01' => out.push_str("\x01\x02"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The text a [`stored`] text was made from.
fn unstored(text: String) -> String {
    if !text.contains('\x01') {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\x01' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\x01') => out.push('\0'),
            Some('\x02') => out.push('\x01'),
            // Not written by `stored`: kept as it is.
            Some(other) => {
                out.push(c);
                out.push(other);
            }
            None => out.push(c),
        }
    }
    out
}

fn record_of(r: &Row) -> StoredRecord {
    StoredRecord {
        key: unstored(r.get(0)),
        ts: r.get(1),
        value: r.get(2),
    }
}

/// A slot's project, frontier and slot name as stored.
fn slot_columns(s: &SlotRef) -> (&str, Cow<'_, str>, Cow<'_, str>) {
    (&s.project, stored(&s.frontier), stored(&s.slot))
}

impl PgTx<'_> {
    /// The id of a collection, created if `create`.
    fn collection(&self, c: &CollectionRef, create: Option<i64>) -> Result<Option<i64>> {
        let find = "SELECT id FROM cloud_collection WHERE project = $1 AND name = $2 AND type = $3";
        let kind = c.kind.code();
        if let Some(r) = self.opt(find, &[&c.project, &c.name, &kind])? {
            return Ok(Some(r.get(0)));
        }
        let Some(now) = create else {
            return Ok(None);
        };
        self.exec(
            "INSERT INTO cloud_collection (project, name, type, id, purged)
             VALUES ($1, $2, $3, nextval('cloud_collection_ids'), $4) ON CONFLICT DO NOTHING",
            &[&c.project, &c.name, &kind, &now],
        )?;
        Ok(self
            .opt(find, &[&c.project, &c.name, &kind])?
            .map(|r| r.get(0)))
    }

    /// The id of a slot, created if `create`.
    fn slot(&self, s: &SlotRef, create: bool) -> Result<Option<i64>> {
        let find =
            "SELECT id FROM cloud_frontier_slot WHERE project = $1 AND frontier = $2 AND slot = $3";
        let (project, frontier, name) = slot_columns(s);
        let (frontier, name) = (frontier.as_ref(), name.as_ref());
        if let Some(r) = self.opt(find, &[&project, &frontier, &name])? {
            return Ok(Some(r.get(0)));
        }
        if !create {
            return Ok(None);
        }
        self.exec(
            "INSERT INTO cloud_frontier_slot (project, frontier, slot, id)
             VALUES ($1, $2, $3, nextval('cloud_frontier_slot_ids')) ON CONFLICT DO NOTHING",
            &[&project, &frontier, &name],
        )?;
        Ok(self
            .opt(find, &[&project, &frontier, &name])?
            .map(|r| r.get(0)))
    }
}

impl CollectionRows for PgTx<'_> {
    fn collection_list(&mut self, project: &str) -> Result<Vec<(String, String)>> {
        Ok(self
            .query(
                "SELECT type, name FROM cloud_collection WHERE project = $1
                 ORDER BY name COLLATE \"C\", type COLLATE \"C\"",
                &[&project],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn collection_id(&mut self, c: &CollectionRef) -> Result<Option<i64>> {
        self.collection(c, None)
    }

    fn collection_upsert(
        &mut self,
        c: &CollectionRef,
        records: &[NewRecord],
        now: i64,
    ) -> Result<()> {
        let id = self.collection(c, Some(now))?.ok_or_else(|| {
            crate::storage::StorageError::Internal("collection not created".into())
        })?;
        if c.kind.cached() {
            let kind = c.kind.code();
            let purged = self.exec(
                // Typed: `$4 - $5` alone is `unknown - unknown`, which PostgreSQL refuses.
                "UPDATE cloud_collection SET purged = $4::bigint
                 WHERE project = $1 AND name = $2 AND type = $3
                   AND purged <= $4::bigint - $5::bigint",
                &[&c.project, &c.name, &kind, &now, &PURGE_INTERVAL_MS],
            )?;
            if purged > 0 {
                let since = c.kind.visible_since(now);
                self.exec(
                    "DELETE FROM cloud_collection_record WHERE collection = $1 AND ts < $2",
                    &[&id, &since],
                )?;
            }
        }
        for r in records {
            let key = stored(&r.key);
            let key = key.as_ref();
            let older = if c.kind.versioned() {
                self.opt(
                    "SELECT ts, value, older FROM cloud_collection_record
                     WHERE collection = $1 AND key = $2 FOR UPDATE",
                    &[&id, &key],
                )?
                .map(|row| {
                    let older: Option<String> = row.get(2);
                    push_version(older.as_deref(), row.get(0), row.get(1))
                })
            } else {
                None
            };
            self.exec(
                "INSERT INTO cloud_collection_record (collection, key, ts, value, older)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (collection, key)
                 DO UPDATE SET ts = excluded.ts, value = excluded.value, older = excluded.older",
                &[&id, &key, &now, &r.value, &older],
            )?;
        }
        Ok(())
    }

    fn collection_get(
        &mut self,
        c: &CollectionRef,
        key: &str,
        now: i64,
    ) -> Result<Option<StoredRecord>> {
        let Some(id) = self.collection(c, None)? else {
            return Ok(None);
        };
        let since = c.kind.visible_since(now);
        let key = stored(key);
        let key = key.as_ref();
        Ok(self
            .opt(
                "SELECT key, ts, value FROM cloud_collection_record
                 WHERE collection = $1 AND key = $2 AND ts >= $3",
                &[&id, &key, &since],
            )?
            .as_ref()
            .map(record_of))
    }

    #[cfg(test)]
    fn collection_versions(&mut self, c: &CollectionRef, key: &str) -> Result<Vec<StoredRecord>> {
        let Some(id) = self.collection(c, None)? else {
            return Ok(Vec::new());
        };
        let stored_key = stored(key);
        let stored_key = stored_key.as_ref();
        let older: Option<String> = self
            .opt(
                "SELECT older FROM cloud_collection_record WHERE collection = $1 AND key = $2",
                &[&id, &stored_key],
            )?
            .and_then(|r| r.get(0));
        Ok(versions_of(older.as_deref(), key))
    }

    fn collection_delete_keys(&mut self, c: &CollectionRef, keys: &[String]) -> Result<usize> {
        let Some(id) = self.collection(c, None)? else {
            return Ok(0);
        };
        let keys: Vec<Cow<'_, str>> = keys.iter().map(|k| stored(k)).collect();
        let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
        let n = self.exec(
            "DELETE FROM cloud_collection_record WHERE collection = $1 AND key = ANY($2)",
            &[&id, &keys],
        )?;
        Ok(n as usize)
    }

    fn collection_drop(&mut self, project: &str, name: &str) -> Result<usize> {
        let ids = self.query(
            "DELETE FROM cloud_collection WHERE project = $1 AND name = $2 RETURNING id",
            &[&project, &name],
        )?;
        let ids: Vec<i64> = ids.iter().map(|r| r.get(0)).collect();
        self.exec(
            "DELETE FROM cloud_collection_record WHERE collection = ANY($1)",
            &[&ids],
        )?;
        Ok(ids.len())
    }

    fn collection_name_exists(&mut self, project: &str, name: &str) -> Result<bool> {
        Ok(self
            .opt(
                "SELECT 1 FROM cloud_collection WHERE project = $1 AND name = $2 LIMIT 1",
                &[&project, &name],
            )?
            .is_some())
    }

    fn collection_set_name(&mut self, project: &str, from: &str, to: &str) -> Result<()> {
        self.exec(
            "UPDATE cloud_collection SET name = $3 WHERE project = $1 AND name = $2",
            &[&project, &from, &to],
        )?;
        Ok(())
    }

    fn collection_page(&mut self, req: &PageRequest) -> Result<Vec<StoredRecord>> {
        if let Some(keys) = &req.keys {
            let mut out = Vec::new();
            for k in keys.iter().take(req.limit) {
                let k = stored(k);
                let k = k.as_ref();
                if let Some(r) = self.opt(
                    "SELECT key, ts, value FROM cloud_collection_record
                     WHERE collection = $1 AND key = $2 AND ts >= $3 AND ts < $4",
                    &[&req.collection, &k, &req.min_ts, &req.max_ts],
                )? {
                    out.push(record_of(&r));
                }
            }
            return Ok(out);
        }
        let (from, inclusive) = match &req.from {
            Some((k, inclusive)) => (k.as_str(), *inclusive),
            None => ("", true),
        };
        let op = if inclusive { ">=" } else { ">" };
        let from = stored(from);
        let from = from.as_ref();
        let limit = req.limit as i64;
        Ok(self
            .query(
                &format!(
                    "SELECT key, ts, value FROM cloud_collection_record
                     WHERE collection = $1 AND key {op} $2 AND ts >= $3 AND ts < $4
                     ORDER BY key LIMIT $5"
                ),
                &[&req.collection, &from, &req.min_ts, &req.max_ts, &limit],
            )?
            .iter()
            .map(record_of)
            .collect())
    }
}

impl FrontierRows for PgTx<'_> {
    fn frontier_add(&mut self, s: &SlotRef, requests: &[NewRequest]) -> Result<usize> {
        let slot = self
            .slot(s, true)?
            .ok_or_else(|| crate::storage::StorageError::Internal("slot not created".into()))?;
        let mut new = Vec::new();
        for r in requests {
            let fp = stored(&r.fp);
            let fp = fp.as_ref();
            let inserted = self.exec(
                "INSERT INTO cloud_frontier_fingerprint (slot, fp, fdata) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&slot, &fp, &r.fdata],
            )?;
            if inserted > 0 {
                new.push(r.clone());
            }
        }
        let newcount = new.len();
        let planned = plan_batches(new);
        let batches = planned.len() as i64;
        let first: i64 = self
            .one(
                "UPDATE cloud_frontier_slot SET next_batch = next_batch + $2 WHERE id = $1
                 RETURNING next_batch - $2",
                &[&slot, &batches],
            )?
            .get(0);
        for (i, (priority, batch)) in planned.iter().enumerate() {
            let id = first + i as i64;
            for (n, r) in batch.iter().enumerate() {
                let n = n as i64;
                let fp = stored(&r.fp);
                let fp = fp.as_ref();
                self.exec(
                    "INSERT INTO cloud_frontier_request (slot, priority, batch, n, fp, qdata)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&slot, priority, &id, &n, &fp, &r.qdata],
                )?;
            }
        }
        Ok(newcount)
    }

    fn frontier_names(&mut self, project: &str) -> Result<Vec<String>> {
        Ok(self
            .query(
                "SELECT DISTINCT frontier COLLATE \"C\" FROM cloud_frontier_slot WHERE project = $1
                 ORDER BY 1",
                &[&project],
            )?
            .iter()
            .map(|r| unstored(r.get(0)))
            .collect())
    }

    fn frontier_slots(&mut self, project: &str, frontier: &str) -> Result<Vec<String>> {
        let frontier = stored(frontier);
        let frontier = frontier.as_ref();
        Ok(self
            .query(
                "SELECT slot FROM cloud_frontier_slot WHERE project = $1 AND frontier = $2
                 ORDER BY slot COLLATE \"C\"",
                &[&project, &frontier],
            )?
            .iter()
            .map(|r| unstored(r.get(0)))
            .collect())
    }

    fn frontier_slot_id(&mut self, s: &SlotRef) -> Result<Option<i64>> {
        self.slot(s, false)
    }

    fn frontier_batches(
        &mut self,
        slot: i64,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> Result<Vec<Batch>> {
        let (priority, batch) = after.unwrap_or((-1, -1));
        let limit = limit as i64;
        let heads = self.query(
            "SELECT DISTINCT priority, batch FROM cloud_frontier_request
             WHERE slot = $1 AND (priority, batch) > ($2, $3)
             ORDER BY priority, batch LIMIT $4",
            &[&slot, &priority, &batch, &limit],
        )?;
        let mut out = Vec::with_capacity(heads.len());
        for head in heads {
            let (priority, id): (i64, i64) = (head.get(0), head.get(1));
            let requests = self
                .query(
                    "SELECT fp, qdata FROM cloud_frontier_request
                     WHERE slot = $1 AND priority = $2 AND batch = $3 ORDER BY n",
                    &[&slot, &priority, &id],
                )?
                .iter()
                .map(|r| (unstored(r.get(0)), r.get(1)))
                .collect();
            out.push(Batch {
                id,
                priority,
                requests,
            });
        }
        Ok(out)
    }

    fn frontier_delete_batches(&mut self, s: &SlotRef, ids: &[(i64, i64)]) -> Result<usize> {
        let Some(slot) = self.slot(s, false)? else {
            return Ok(0);
        };
        let mut deleted = 0;
        for (priority, batch) in ids {
            let n = self.exec(
                "DELETE FROM cloud_frontier_request WHERE slot = $1 AND priority = $2 AND batch = $3",
                &[&slot, priority, batch],
            )?;
            if n > 0 {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    fn frontier_fingerprints(
        &mut self,
        slot: i64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<String>)>> {
        let (from, op) = match after {
            Some(a) => (stored(a), ">"),
            None => (Cow::Borrowed(""), ">="),
        };
        let from = from.as_ref();
        let limit = limit as i64;
        Ok(self
            .query(
                &format!(
                    "SELECT fp, fdata FROM cloud_frontier_fingerprint
                     WHERE slot = $1 AND fp {op} $2 ORDER BY fp LIMIT $3"
                ),
                &[&slot, &from, &limit],
            )?
            .iter()
            .map(|r| (unstored(r.get(0)), r.get(1)))
            .collect())
    }

    fn frontier_delete_slot(&mut self, s: &SlotRef) -> Result<()> {
        let Some(slot) = self.slot(s, false)? else {
            return Ok(());
        };
        self.exec(
            "DELETE FROM cloud_frontier_request WHERE slot = $1",
            &[&slot],
        )?;
        self.exec(
            "DELETE FROM cloud_frontier_fingerprint WHERE slot = $1",
            &[&slot],
        )?;
        self.exec("DELETE FROM cloud_frontier_slot WHERE id = $1", &[&slot])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{stored, unstored};

    #[test]
    fn stored_text_keeps_nul_and_the_byte_order() {
        let texts = [
            "", "\0", "\0\0", "\0a", "\x01", "\x01\0", "\x01\x01", "\x02", "a", "a\0", "a\0b",
            "a\x01", "a\x02", "ab", "é", "\x01\x02",
        ];
        for t in texts {
            assert_eq!(unstored(stored(t).into_owned()), t, "{t:?}");
            assert!(!stored(t).contains('\0'), "{t:?}");
        }
        let mut by_text = texts.to_vec();
        by_text.sort();
        let mut by_stored = texts.to_vec();
        by_stored.sort_by_key(|t| stored(t).into_owned());
        assert_eq!(by_stored, by_text);
        assert_eq!(stored("plain"), "plain");
    }
}
