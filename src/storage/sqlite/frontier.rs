//! Frontier slots in `jobs.db`: `cloud_frontier_slot` (one row per project, frontier and slot,
//! with its id and batch counter), `cloud_frontier_fingerprint` (by slot and `fp`) and
//! `cloud_frontier_request` (by slot, priority, batch and position: the queue order). The rules
//! are described in [`crate::cloud::frontier`].

use super::{Db, JOBS_DB};
use crate::storage::StorageError;
use crate::storage::model::{Batch, NewRequest, SlotRef, plan_batches};
use crate::storage::rows::FrontierRows;
use rusqlite::{Connection, OptionalExtension, params};

fn slot_id(conn: &Connection, s: &SlotRef) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT id FROM cloud_frontier_slot WHERE project = ?1 AND frontier = ?2 AND slot = ?3",
    )?
    .query_row(params![s.project, s.frontier, s.slot], |r| r.get(0))
    .optional()
}

impl FrontierRows for Db {
    /// Adds requests to a slot in one transaction: new fingerprints are recorded and their
    /// requests queued; returns how many fingerprints were new.
    fn frontier_add(
        &mut self,
        s: &SlotRef,
        requests: &[NewRequest],
    ) -> Result<usize, StorageError> {
        let conn = self.conn(JOBS_DB)?;
        let tx = conn;
        let slot = match slot_id(tx, s)? {
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
        Ok(newcount)
    }

    /// The frontiers of a project that have slots, by name.
    fn frontier_names(&mut self, project: &str) -> Result<Vec<String>, StorageError> {
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
    fn frontier_slots(
        &mut self,
        project: &str,
        frontier: &str,
    ) -> Result<Vec<String>, StorageError> {
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
    fn frontier_slot_id(&mut self, s: &SlotRef) -> Result<Option<i64>, StorageError> {
        Ok(slot_id(self.conn(JOBS_DB)?, s)?)
    }

    /// Up to `limit` queued batches of a slot after `(priority, id)`, in queue order.
    fn frontier_batches(
        &mut self,
        slot: i64,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> Result<Vec<Batch>, StorageError> {
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
    fn frontier_delete_batches(
        &mut self,
        s: &SlotRef,
        ids: &[(i64, i64)],
    ) -> Result<usize, StorageError> {
        let conn = self.conn(JOBS_DB)?;
        let Some(slot) = slot_id(conn, s)? else {
            return Ok(0);
        };
        let tx = conn;
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
        Ok(deleted)
    }

    /// Up to `limit` fingerprints of a slot after `after`, in order, with their `fdata`.
    fn frontier_fingerprints(
        &mut self,
        slot: i64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<String>)>, StorageError> {
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
    fn frontier_delete_slot(&mut self, s: &SlotRef) -> Result<(), StorageError> {
        let conn = self.conn(JOBS_DB)?;
        let Some(slot) = slot_id(conn, s)? else {
            return Ok(());
        };
        let tx = conn;
        tx.execute("DELETE FROM cloud_frontier_request WHERE slot = ?1", [slot])?;
        tx.execute(
            "DELETE FROM cloud_frontier_fingerprint WHERE slot = ?1",
            [slot],
        )?;
        tx.execute(
            "DELETE FROM cloud_frontier_slot WHERE project = ?1 AND frontier = ?2 AND slot = ?3",
            params![s.project, s.frontier, s.slot],
        )?;
        Ok(())
    }
}
