//! A project's activity log and its settings object in `jobs.db`.

use super::{Db, JOBS_DB};
use crate::storage::StorageError;
use crate::storage::model::{ACTIVITY_TO_KEEP, Event, now_ms};
use crate::storage::rows::{ActivityRows, new_project_settings};
use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value};

/// Events written between two trims of the log.
const TRIM_EVERY: u64 = 1_000;

impl ActivityRows for Db {
    /// Appends events to a project's log (then keeps the newest [`ACTIVITY_TO_KEEP`]).
    fn add_activity(
        &mut self,
        project: &str,
        events: &[Map<String, Value>],
    ) -> Result<(), StorageError> {
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

    /// The newest events of `projects` (all of them merged, newest first), at most `count`.
    fn activity(&mut self, projects: &[String], count: usize) -> Result<Vec<Event>, StorageError> {
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
    fn project_settings(&mut self, project: &str) -> Result<Map<String, Value>, StorageError> {
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
    fn set_project_settings(
        &mut self,
        project: &str,
        settings: &Map<String, Value>,
    ) -> Result<(), StorageError> {
        self.conn(JOBS_DB)?.execute(
            "INSERT INTO cloud_project_settings (project, settings) VALUES (?1, ?2)
             ON CONFLICT (project) DO UPDATE SET settings = excluded.settings",
            params![project, Value::Object(settings.clone()).to_string()],
        )?;
        Ok(())
    }
}
