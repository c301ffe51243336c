//! Per-project spider queues: pending jobs in `{dbs_dir}/{project}.db`, in Scrapyd's own table
//! (`spider_queue(id, priority, message)`, the message being Scrapyd's JSON), so a Scrapyd
//! folder's pending jobs carry over. We add a `created` column (microseconds since the epoch) so
//! the launcher can order jobs across projects: highest priority first, then oldest first.

use super::{CommitOrder, Db};
use crate::storage::StorageError;
use crate::storage::lifecycle::Lifecycle;
use crate::storage::model::{Admission, JobKey, NewJob, PendingJob};
use crate::storage::rows::QueueRows;
use rusqlite::{Connection, OptionalExtension, params};

fn row_to_job(project: &str, row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<PendingJob>> {
    let priority: f64 = row.get("priority")?;
    let created: i64 = row.get("created")?;
    let message: Vec<u8> = match row.get_ref("message")? {
        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => t.to_vec(),
        _ => Vec::new(),
    };
    Ok(PendingJob::from_message(
        project, priority, created, &message,
    ))
}

fn insert(conn: &Connection, job: &PendingJob) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO spider_queue (priority, message, created, job) VALUES (?1, ?2, ?3, ?4)",
        params![job.priority, job.message(), job.created, job.job],
    )
}

impl Db {
    /// Admits several jobs in one write scope (one commit per file); one result per job, in
    /// order, and a job is stored exactly when its result is `Ok(Admitted)`. A job sees the
    /// jobs admitted before it in the group, so two duplicates in one group make one job.
    /// When the group's commit fails, each job is tried alone, so one bad file fails only its
    /// own jobs.
    pub fn enqueue_group(
        &mut self,
        jobs: &[Box<NewJob>],
    ) -> Vec<Result<Admission<JobKey>, StorageError>> {
        let together = self.write(CommitOrder::QueuesFirst, |db| {
            jobs.iter()
                .map(|job| db.admit(job))
                .collect::<Result<Vec<_>, _>>()
        });
        match together {
            Ok(admitted) => admitted.into_iter().map(Ok).collect(),
            Err(_) if jobs.len() > 1 => jobs
                .iter()
                .map(|job| self.write(CommitOrder::QueuesFirst, |db| db.admit(job)))
                .collect(),
            Err(e) => vec![Err(e)],
        }
    }

    /// Queue rows of `project` holding this job id. Rows queued by Scrapyd have no `job` column
    /// value and are checked by their message.
    fn rows_of(&mut self, project: &str, job: &str) -> Result<Vec<i64>, StorageError> {
        let conn = self.conn(project)?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, job, message FROM spider_queue WHERE job = ?1 OR job IS NULL",
        )?;
        let mut rows = stmt.query([job])?;
        let mut ids = Vec::new();
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let matches = match row.get::<_, Option<String>>(1)? {
                Some(j) => j == job,
                None => {
                    let message: Vec<u8> = row.get(2).unwrap_or_default();
                    PendingJob::from_message(project, 0.0, 0, &message)
                        .is_some_and(|p| p.job == job)
                }
            };
            if matches {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// The job that should start next among `projects` — highest priority, then oldest (by
    /// schedule time, then queue order) — with its queue row id. Unreadable entries are dropped.
    fn peek_next(
        &mut self,
        projects: &[String],
    ) -> Result<Option<(PendingJob, i64)>, StorageError> {
        loop {
            let mut best: Option<(f64, i64, i64, String)> = None;
            for project in projects {
                let head: Option<(f64, i64, i64)> = self
                    .conn(project)?
                    .query_row(
                        "SELECT priority, created, id FROM spider_queue ORDER BY priority DESC, id LIMIT 1",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?;
                if let Some((priority, created, id)) = head {
                    let better = match &best {
                        None => true,
                        Some((bp, bc, _, _)) => {
                            priority > *bp || (priority == *bp && created < *bc)
                        }
                    };
                    if better {
                        best = Some((priority, created, id, project.clone()));
                    }
                }
            }
            let Some((_, _, id, project)) = best else {
                return Ok(None);
            };
            let row = self
                .conn(&project)?
                .query_row(
                    "SELECT priority, created, message FROM spider_queue WHERE id = ?1",
                    [id],
                    |r| row_to_job(&project, r),
                )
                .optional()?;
            match row.flatten() {
                Some(job) => return Ok(Some((job, id))),
                None => {
                    tracing::warn!(project = %project, id, "dropped an unreadable queue entry");
                    self.delete_queued(&project, id)?;
                }
            }
        }
    }

    /// Deletes one queue row.
    fn delete_queued(&mut self, project: &str, id: i64) -> Result<(), StorageError> {
        self.conn(project)?
            .execute("DELETE FROM spider_queue WHERE id = ?1", [id])?;
        Ok(())
    }
}

impl QueueRows for Db {
    fn queue_insert(&mut self, job: &PendingJob) -> Result<(), StorageError> {
        insert(self.conn(&job.project)?, job)?;
        Ok(())
    }

    fn queue_take_next(&mut self, projects: &[String]) -> Result<Option<PendingJob>, StorageError> {
        let Some((job, id)) = self.peek_next(projects)? else {
            return Ok(None);
        };
        self.delete_queued(&job.project, id)?;
        Ok(Some(job))
    }

    fn queue_remove(&mut self, project: &str, job: &str) -> Result<usize, StorageError> {
        let ids = self.rows_of(project, job)?;
        let conn = self.conn(project)?;
        for id in &ids {
            conn.execute("DELETE FROM spider_queue WHERE id = ?1", [id])?;
        }
        Ok(ids.len())
    }

    fn queue_clear(&mut self, project: &str) -> Result<(usize, Vec<String>), StorageError> {
        let jobs = self.pending(&[project.to_owned()])?;
        let n = self
            .conn(project)?
            .execute("DELETE FROM spider_queue", [])?;
        Ok((n, jobs.into_iter().map(|j| j.job).collect()))
    }

    fn pending(&mut self, projects: &[String]) -> Result<Vec<PendingJob>, StorageError> {
        let mut out = Vec::new();
        for project in projects {
            let conn = self.conn(project)?;
            let mut stmt = conn.prepare_cached(
                "SELECT priority, created, message FROM spider_queue ORDER BY priority DESC, id",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                out.extend(row_to_job(project, row)?);
            }
        }
        Ok(out)
    }

    fn pending_count(&mut self, projects: &[String]) -> Result<usize, StorageError> {
        let mut n = 0usize;
        for project in projects {
            let c: i64 =
                self.conn(project)?
                    .query_row("SELECT count(*) FROM spider_queue", [], |r| r.get(0))?;
            n += c as usize;
        }
        Ok(n)
    }

    fn is_pending(&mut self, project: &str, job: &str) -> Result<bool, StorageError> {
        Ok(!self.rows_of(project, job)?.is_empty())
    }

    /// One thread runs every transaction: nothing to lock.
    fn lock_admission(&mut self, _project: &str) -> Result<(), StorageError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DbsDir;
    use crate::storage::model::*;
    #[allow(unused_imports)]
    use crate::storage::test_prelude::*;
    use serde_json::Map;

    fn job(project: &str, id: &str, priority: f64, created: i64) -> PendingJob {
        PendingJob {
            project: project.into(),
            spider: "s".into(),
            job: id.into(),
            priority,
            version: None,
            settings: vec![],
            args: vec![],
            created,
        }
    }

    #[test]
    fn message_is_scrapyds() {
        let mut j = job("p", "aaa", 5.0, 1);
        j.version = Some("0.1".into());
        j.settings = vec![
            ("DOWNLOAD_DELAY".into(), "2".into()),
            ("TRACK".into(), "Cause = Time".into()),
        ];
        j.args = vec![("arg1".into(), "val1".into())];
        assert_eq!(
            String::from_utf8(j.message()).unwrap(),
            r#"{"settings": {"DOWNLOAD_DELAY": "2", "TRACK": "Cause = Time"}, "_job": "aaa", "arg1": "val1", "_version": "0.1", "name": "s"}"#
        );
        assert_eq!(
            PendingJob::from_message("p", 5.0, 1, &j.message()).unwrap(),
            j
        );
    }

    #[test]
    fn priority_then_fifo_across_projects() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        let projects = vec!["a".to_string(), "b".to_string()];
        db.enqueue(&job("a", "j1", 0.0, 1), &Map::new()).unwrap();
        db.enqueue(&job("b", "j2", 1.0, 2), &Map::new()).unwrap();
        db.enqueue(&job("a", "j3", 2.5, 3), &Map::new()).unwrap();
        db.enqueue(&job("b", "j4", -1.0, 4), &Map::new()).unwrap();
        db.enqueue(&job("a", "j5", 1.0, 5), &Map::new()).unwrap();
        let mut order = vec![];
        while let Some(j) = db.queue_take_next(&projects).unwrap() {
            order.push(j.job);
        }
        assert_eq!(order, ["j3", "j2", "j5", "j1", "j4"]);
    }

    #[test]
    fn rows_queued_by_scrapyd_are_found_by_their_message() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        let message = br#"{"settings": {}, "_job": "old", "name": "s"}"#.to_vec();
        db.conn("a")
            .unwrap()
            .execute(
                "INSERT INTO spider_queue (priority, message) VALUES (0, ?1)",
                [message],
            )
            .unwrap();
        assert!(db.is_pending("a", "old").unwrap());
        assert_eq!(db.remove_pending("a", "old").unwrap(), 1);
        assert!(!db.is_pending("a", "old").unwrap());
    }

    #[test]
    fn remove_takes_every_duplicate() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        db.enqueue(&job("a", "j1", 0.0, 1), &Map::new()).unwrap();
        db.enqueue(&job("a", "j1", 0.0, 2), &Map::new()).unwrap();
        db.enqueue(&job("a", "j2", 0.0, 3), &Map::new()).unwrap();
        assert_eq!(db.remove_pending("a", "j1").unwrap(), 2);
        assert_eq!(db.pending_count(&["a".into()]).unwrap(), 1);
    }
}
