//! Collections in `jobs.db`: `cloud_collection` (one row per project, type and name, with its id
//! and last purge time: created by the first write, removed by a drop) and
//! `cloud_collection_record` (by collection id and key: the current value, its write time `ts`
//! in ms, and the older versions of the versioned types). The rules (types, expiry, versions)
//! are described in [`crate::cloud::collections`].

use super::{Db, JOBS_DB};
use crate::storage::StorageError;
use crate::storage::model::{
    CollectionRef, NewRecord, PURGE_INTERVAL_MS, PageRequest, StoredRecord,
};
#[cfg(test)]
use crate::storage::rows::versions_of;
use crate::storage::rows::{CollectionRows, push_version};
use rusqlite::{Connection, OptionalExtension, params};

const RECORD_COLUMNS: &str = "key, ts, value";

fn record_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
    Ok(StoredRecord {
        key: r.get(0)?,
        ts: r.get(1)?,
        value: r.get(2)?,
    })
}

fn collection_id(conn: &Connection, c: &CollectionRef) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT id FROM cloud_collection WHERE project = ?1 AND name = ?2 AND type = ?3",
    )?
    .query_row(params![c.project, c.name, c.kind.code()], |r| r.get(0))
    .optional()
}

impl CollectionRows for Db {
    /// The collections of a project that exist (were written and not deleted since), as
    /// `(type, name)`, by name then type.
    fn collection_list(&mut self, project: &str) -> Result<Vec<(String, String)>, StorageError> {
        let conn = self.conn(JOBS_DB)?;
        let mut stmt = conn.prepare_cached(
            "SELECT type, name FROM cloud_collection WHERE project = ?1 ORDER BY name, type",
        )?;
        let rows = stmt
            .query_map([project], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The id of a collection, if it exists.
    fn collection_id(&mut self, c: &CollectionRef) -> Result<Option<i64>, StorageError> {
        Ok(collection_id(self.conn(JOBS_DB)?, c)?)
    }

    /// Writes records (one transaction: all or none), creating the collection if needed.
    fn collection_upsert(
        &mut self,
        c: &CollectionRef,
        records: &[NewRecord],
        now: i64,
    ) -> Result<(), StorageError> {
        let conn = self.conn(JOBS_DB)?;
        let tx = conn;
        let id = match collection_id(tx, c)? {
            Some(id) => id,
            None => {
                let id: i64 = tx.query_row(
                    "SELECT coalesce(max(id), 0) + 1 FROM cloud_collection",
                    [],
                    |r| r.get(0),
                )?;
                tx.execute(
                    "INSERT INTO cloud_collection (project, name, type, id, purged)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![c.project, c.name, c.kind.code(), id, now],
                )?;
                id
            }
        };
        if c.kind.cached() {
            let purged = tx
                .prepare_cached(
                    "UPDATE cloud_collection SET purged = ?4
                     WHERE project = ?1 AND name = ?2 AND type = ?3 AND purged <= ?4 - ?5",
                )?
                .execute(params![
                    c.project,
                    c.name,
                    c.kind.code(),
                    now,
                    PURGE_INTERVAL_MS
                ])?;
            if purged > 0 {
                tx.execute(
                    "DELETE FROM cloud_collection_record WHERE collection = ?1 AND ts < ?2",
                    params![id, c.kind.visible_since(now)],
                )?;
            }
        }
        for r in records {
            let older = if c.kind.versioned() {
                let previous = tx
                    .prepare_cached(
                        "SELECT ts, value, older FROM cloud_collection_record
                         WHERE collection = ?1 AND key = ?2",
                    )?
                    .query_row(params![id, r.key], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, Option<String>>(2)?,
                        ))
                    })
                    .optional()?;
                previous.map(|(ts, value, older)| push_version(older.as_deref(), ts, &value))
            } else {
                None
            };
            tx.prepare_cached(
                "INSERT INTO cloud_collection_record (collection, key, ts, value, older)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (collection, key)
                 DO UPDATE SET ts = excluded.ts, value = excluded.value, older = excluded.older",
            )?
            .execute(params![id, r.key, now, r.value, older])?;
        }
        Ok(())
    }

    /// The current record of a key, if it exists (and, for cached types, has not expired).
    fn collection_get(
        &mut self,
        c: &CollectionRef,
        key: &str,
        now: i64,
    ) -> Result<Option<StoredRecord>, StorageError> {
        let conn = self.conn(JOBS_DB)?;
        let Some(id) = collection_id(conn, c)? else {
            return Ok(None);
        };
        Ok(conn
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM cloud_collection_record
                 WHERE collection = ?1 AND key = ?2 AND ts >= ?3"
            ))?
            .query_row(params![id, key, c.kind.visible_since(now)], record_of)
            .optional()?)
    }

    #[cfg(test)]
    fn collection_versions(
        &mut self,
        c: &CollectionRef,
        key: &str,
    ) -> Result<Vec<StoredRecord>, StorageError> {
        let conn = self.conn(JOBS_DB)?;
        let Some(id) = collection_id(conn, c)? else {
            return Ok(Vec::new());
        };
        let older: Option<Option<String>> = conn
            .prepare_cached(
                "SELECT older FROM cloud_collection_record WHERE collection = ?1 AND key = ?2",
            )?
            .query_row(params![id, key], |r| r.get(0))
            .optional()?;
        Ok(versions_of(older.flatten().as_deref(), key))
    }

    /// Deletes keys (all their versions), in one transaction; returns how many existed.
    fn collection_delete_keys(
        &mut self,
        c: &CollectionRef,
        keys: &[String],
    ) -> Result<usize, StorageError> {
        let conn = self.conn(JOBS_DB)?;
        let Some(id) = collection_id(conn, c)? else {
            return Ok(0);
        };
        let tx = conn;
        let mut deleted = 0;
        for k in keys {
            deleted += tx
                .prepare_cached(
                    "DELETE FROM cloud_collection_record WHERE collection = ?1 AND key = ?2",
                )?
                .execute(params![id, k])?;
        }
        Ok(deleted)
    }

    /// Deletes every collection of the project with this name, whatever its type (Scrapy
    /// Cloud's `delete?name=`); returns how many collections there were.
    fn collection_drop(&mut self, project: &str, name: &str) -> Result<usize, StorageError> {
        let conn = self.conn(JOBS_DB)?;
        let tx = conn;
        let ids: Vec<i64> = tx
            .prepare_cached("SELECT id FROM cloud_collection WHERE project = ?1 AND name = ?2")?
            .query_map(params![project, name], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for &id in &ids {
            tx.execute(
                "DELETE FROM cloud_collection_record WHERE collection = ?1",
                [id],
            )?;
        }
        tx.execute(
            "DELETE FROM cloud_collection WHERE project = ?1 AND name = ?2",
            params![project, name],
        )?;
        Ok(ids.len())
    }

    /// Renames every collection of the project with this name, whatever its type.
    fn collection_name_exists(&mut self, project: &str, name: &str) -> Result<bool, StorageError> {
        Ok(self
            .conn(JOBS_DB)?
            .prepare_cached("SELECT 1 FROM cloud_collection WHERE project = ?1 AND name = ?2")?
            .exists(params![project, name])?)
    }

    fn collection_set_name(
        &mut self,
        project: &str,
        from: &str,
        to: &str,
    ) -> Result<(), StorageError> {
        self.conn(JOBS_DB)?.execute(
            "UPDATE cloud_collection SET name = ?3 WHERE project = ?1 AND name = ?2",
            params![project, from, to],
        )?;
        Ok(())
    }

    /// One page of records, by key.
    fn collection_page(&mut self, req: &PageRequest) -> Result<Vec<StoredRecord>, StorageError> {
        let conn = self.conn(JOBS_DB)?;
        let mut out = Vec::new();
        if let Some(keys) = &req.keys {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM cloud_collection_record
                 WHERE collection = ?1 AND key = ?2 AND ts >= ?3 AND ts < ?4"
            ))?;
            for k in keys.iter().take(req.limit) {
                if let Some(r) = stmt
                    .query_row(
                        params![req.collection, k, req.min_ts, req.max_ts],
                        record_of,
                    )
                    .optional()?
                {
                    out.push(r);
                }
            }
            return Ok(out);
        }
        let (from, inclusive) = match &req.from {
            Some((k, inclusive)) => (k.as_str(), *inclusive),
            None => ("", true),
        };
        let op = if inclusive { ">=" } else { ">" };
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM cloud_collection_record
             WHERE collection = ?1 AND key {op} ?2 AND ts >= ?3 AND ts < ?4
             ORDER BY key LIMIT ?5"
        ))?;
        let rows = stmt.query_map(
            params![
                req.collection,
                from,
                req.min_ts,
                req.max_ts,
                req.limit as i64
            ],
            record_of,
        )?;
        for r in rows {
            out.push(r?);
        }
        Ok(out)
    }
}
