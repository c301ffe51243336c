//! Per-project spider queues: pending jobs in `{dbs_dir}/{project}.db`, in Scrapyd's own table
//! (`spider_queue(id, priority, message)`, the message being Scrapyd's JSON), so a Scrapyd
//! folder's pending jobs carry over. We add a `created` column (microseconds since the epoch) so
//! the launcher can order jobs across projects: highest priority first, then oldest first.

use crate::cloud::registry::JobKey;
use crate::store::{Db, StoreError};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

/// A job waiting in a spider queue.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingJob {
    pub project: String,
    pub spider: String,
    pub job: String,
    pub priority: f64,
    /// `_version` as given at schedule time.
    pub version: Option<String>,
    /// `setting=K=V` pairs, in request order.
    pub settings: Vec<(String, String)>,
    /// Spider arguments, in request order.
    pub args: Vec<(String, String)>,
    /// When it was scheduled (µs since the epoch); 0 for jobs queued by Scrapyd.
    pub created: i64,
}

impl PendingJob {
    /// A job of `spider` in `project` as a plain `schedule.json` queues it: priority 0, the
    /// project's latest version, no settings or arguments, scheduled now.
    pub fn new(project: &str, spider: &str, job: &str) -> PendingJob {
        PendingJob {
            project: project.into(),
            spider: spider.into(),
            job: job.into(),
            priority: 0.0,
            version: None,
            settings: Vec::new(),
            args: Vec::new(),
            created: crate::jobs::now_micros(),
        }
    }

    /// Scrapyd's queued message: `{"settings": {…}, "_job": id, <args…>, ["_version": v,] "name": spider}`.
    pub fn message(&self) -> Vec<u8> {
        let mut m = Map::new();
        m.insert(
            "settings".into(),
            Value::Object(pairs_to_map(&self.settings)),
        );
        m.insert("_job".into(), Value::String(self.job.clone()));
        for (k, v) in &self.args {
            m.entry(k.clone())
                .or_insert_with(|| Value::String(v.clone()));
        }
        if let Some(v) = &self.version {
            m.insert("_version".into(), Value::String(v.clone()));
        }
        m.insert("name".into(), Value::String(self.spider.clone()));
        crate::pyjson::to_vec(&Value::Object(m))
    }

    /// Reads a queued message back.
    pub fn from_message(
        project: &str,
        priority: f64,
        created: i64,
        message: &[u8],
    ) -> Option<PendingJob> {
        let Value::Object(m) = serde_json::from_slice(message).ok()? else {
            return None;
        };
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut job = PendingJob {
            project: project.to_owned(),
            spider: String::new(),
            job: String::new(),
            priority,
            version: None,
            settings: Vec::new(),
            args: Vec::new(),
            created,
        };
        for (k, v) in m {
            match k.as_str() {
                "name" => job.spider = text(&v),
                "_job" => job.job = text(&v),
                "_version" => job.version = Some(text(&v)),
                "settings" => {
                    if let Value::Object(s) = v {
                        job.settings = s.iter().map(|(k, v)| (k.clone(), text(v))).collect();
                    }
                }
                _ => job.args.push((k, text(&v))),
            }
        }
        (!job.spider.is_empty()).then_some(job)
    }
}

/// Pairs as a JSON object (first value of a repeated key wins).
pub fn pairs_to_map(pairs: &[(String, String)]) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.entry(k.clone())
            .or_insert_with(|| Value::String(v.clone()));
    }
    m
}

/// Creates the queue table (Scrapyd's schema plus `created`) if needed.
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS spider_queue (id integer PRIMARY KEY, priority real key, message blob);",
    )?;
    for (column, decl) in [("created", "integer NOT NULL DEFAULT 0"), ("job", "text")] {
        let exists: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('spider_queue') WHERE name = ?1")?
            .exists([column])?;
        if !exists {
            conn.execute_batch(&format!(
                "ALTER TABLE spider_queue ADD COLUMN {column} {decl};"
            ))?;
        }
    }
    conn.execute_batch("CREATE INDEX IF NOT EXISTS spider_queue_job ON spider_queue (job);")?;
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS spider_queue_order ON spider_queue (priority DESC, id);",
    )
}

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
    /// Queues a job.
    pub fn enqueue(&mut self, job: &PendingJob) -> Result<(), StoreError> {
        insert(self.conn(&job.project)?, job)?;
        Ok(())
    }

    /// Queues several jobs with one commit per project; one result per job, in order. A job is
    /// stored exactly when its result is `Ok`. Each stored job is then registered (its key and
    /// metadata, with `extra` from `run.json`) in one more transaction; the key is `None` if
    /// that failed (the registry catches up when the job starts).
    pub fn enqueue_group(
        &mut self,
        jobs: &[(Box<PendingJob>, Map<String, Value>)],
    ) -> Vec<Result<Option<JobKey>, StoreError>> {
        let mut results: Vec<Option<Result<(), StoreError>>> = jobs.iter().map(|_| None).collect();
        let mut projects: Vec<&str> = Vec::new();
        for (j, _) in jobs {
            if !projects.contains(&j.project.as_str()) {
                projects.push(&j.project);
            }
        }
        for project in projects {
            let members: Vec<usize> = (0..jobs.len())
                .filter(|&i| jobs[i].0.project == project)
                .collect();
            let failed = |results: &mut Vec<Option<Result<(), StoreError>>>, e: String| {
                for &i in &members {
                    results[i] = Some(Err(StoreError::Commit(e.clone())));
                }
            };
            let conn = match self.conn(project) {
                Ok(c) => c,
                Err(e) => {
                    failed(&mut results, e.to_string());
                    continue;
                }
            };
            if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
                failed(&mut results, e.to_string());
                continue;
            }
            for &i in &members {
                results[i] = Some(
                    insert(conn, &jobs[i].0)
                        .map(|_| ())
                        .map_err(StoreError::from),
                );
            }
            if let Err(e) = conn.execute_batch("COMMIT") {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                failed(&mut results, e.to_string());
            }
        }
        let stored: Vec<usize> = (0..jobs.len())
            .filter(|&i| matches!(results[i], Some(Ok(()))))
            .collect();
        let keys = self.register_group(jobs, &stored);
        results
            .into_iter()
            .enumerate()
            .map(|(i, r)| match r {
                Some(Ok(())) => Ok(keys.get(&i).copied()),
                Some(Err(e)) => Err(e),
                None => Err(StoreError::Closed),
            })
            .collect()
    }

    /// Registers the stored jobs of a group in one transaction.
    fn register_group(
        &mut self,
        jobs: &[(Box<PendingJob>, Map<String, Value>)],
        stored: &[usize],
    ) -> std::collections::HashMap<usize, JobKey> {
        let mut keys = std::collections::HashMap::new();
        if stored.is_empty() {
            return keys;
        }
        let begun = self
            .conn(crate::jobs::JOBS_DB)
            .and_then(|c| Ok(c.execute_batch("BEGIN IMMEDIATE")?));
        if let Err(e) = begun {
            tracing::warn!("job registry: cannot register queued jobs: {e}");
            return keys;
        }
        for &i in stored {
            match self.register_job(&jobs[i].0, &jobs[i].1) {
                Ok(key) => {
                    keys.insert(i, key);
                }
                Err(e) => tracing::warn!("job registry: cannot register a queued job: {e}"),
            }
        }
        let committed = self
            .conn(crate::jobs::JOBS_DB)
            .and_then(|c| Ok(c.execute_batch("COMMIT")?));
        if let Err(e) = committed {
            tracing::warn!("job registry: cannot register queued jobs: {e}");
            // Ids given inside the rolled-back transaction are not ids.
            self.cloud_ids = Default::default();
            if let Ok(c) = self.conn(crate::jobs::JOBS_DB)
                && !c.is_autocommit()
            {
                let _ = c.execute_batch("ROLLBACK");
            }
            keys.clear();
        }
        keys
    }

    /// The pending jobs of `projects`, each project's in start order (priority, then FIFO).
    pub fn pending(&mut self, projects: &[String]) -> Result<Vec<PendingJob>, StoreError> {
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

    /// How many jobs wait in `projects`.
    pub fn pending_count(&mut self, projects: &[String]) -> Result<usize, StoreError> {
        let mut n = 0usize;
        for project in projects {
            let c: i64 =
                self.conn(project)?
                    .query_row("SELECT count(*) FROM spider_queue", [], |r| r.get(0))?;
            n += c as usize;
        }
        Ok(n)
    }

    /// Queue rows of `project` holding this job id. Rows queued by Scrapyd have no `job` column
    /// value and are checked by their message.
    fn rows_of(&mut self, project: &str, job: &str) -> Result<Vec<i64>, StoreError> {
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

    /// Whether `job` is pending in `project`.
    pub fn is_pending(&mut self, project: &str, job: &str) -> Result<bool, StoreError> {
        Ok(!self.rows_of(project, job)?.is_empty())
    }

    /// Removes every pending entry of `project` with this job id; returns how many.
    pub fn remove_pending(&mut self, project: &str, job: &str) -> Result<usize, StoreError> {
        let ids = self.rows_of(project, job)?;
        let conn = self.conn(project)?;
        for id in &ids {
            conn.execute("DELETE FROM spider_queue WHERE id = ?1", [id])?;
        }
        if !ids.is_empty() {
            self.follow_dequeued(project, job, "scrapyd");
        }
        Ok(ids.len())
    }

    /// Removes every pending job of `project`.
    pub fn clear_pending(&mut self, project: &str) -> Result<usize, StoreError> {
        let jobs = self.pending(&[project.to_owned()])?;
        let n = self
            .conn(project)?
            .execute("DELETE FROM spider_queue", [])?;
        for j in jobs {
            self.follow_dequeued(project, &j.job, "scrapyd");
        }
        Ok(n)
    }

    /// The job that should start next among `projects` — highest priority, then oldest (by
    /// schedule time, then queue order) — with its queue row id. Unreadable entries are dropped.
    pub fn peek_next(
        &mut self,
        projects: &[String],
    ) -> Result<Option<(PendingJob, i64)>, StoreError> {
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
    pub fn delete_queued(&mut self, project: &str, id: i64) -> Result<(), StoreError> {
        self.conn(project)?
            .execute("DELETE FROM spider_queue WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Takes the job that should start next off its queue (see [`Db::peek_next`]).
    pub fn pop_next(&mut self, projects: &[String]) -> Result<Option<PendingJob>, StoreError> {
        let Some((job, id)) = self.peek_next(projects)? else {
            return Ok(None);
        };
        self.delete_queued(&job.project, id)?;
        Ok(Some(job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DbsDir;

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
        db.enqueue(&job("a", "j1", 0.0, 1)).unwrap();
        db.enqueue(&job("b", "j2", 1.0, 2)).unwrap();
        db.enqueue(&job("a", "j3", 2.5, 3)).unwrap();
        db.enqueue(&job("b", "j4", -1.0, 4)).unwrap();
        db.enqueue(&job("a", "j5", 1.0, 5)).unwrap();
        let mut order = vec![];
        while let Some(j) = db.pop_next(&projects).unwrap() {
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
        db.enqueue(&job("a", "j1", 0.0, 1)).unwrap();
        db.enqueue(&job("a", "j1", 0.0, 2)).unwrap();
        db.enqueue(&job("a", "j2", 0.0, 3)).unwrap();
        assert_eq!(db.remove_pending("a", "j1").unwrap(), 2);
        assert_eq!(db.pending_count(&["a".into()]).unwrap(), 1);
    }
}
