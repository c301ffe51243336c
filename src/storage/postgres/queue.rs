//! The one shared queue (`spider_queue`, every project's pending jobs with Scrapyd's message)
//! and the job rows (`jobs`, from a node's claim to the job's end), on PostgreSQL.

use super::tx::{LOCK_ADMISSION, PgTx, Result};
use crate::storage::StorageError;
use crate::storage::model::{
    Ended, Ending, FinishedChange, FinishedJob, FinishedUpdate, JobRecord, JobState, PendingJob,
};
use crate::storage::rows::{JobRows, QueueRows, json_pairs, pairs_json};
use tokio_postgres::Row;

/// The queue entry of a row (`project, priority, created, message`); `None` if unreadable.
fn pending_of(r: &Row) -> Option<PendingJob> {
    let project: String = r.get(0);
    let message: String = r.get(3);
    PendingJob::from_message(&project, r.get(1), r.get(2), message.as_bytes())
}

impl QueueRows for PgTx<'_> {
    fn queue_insert(&mut self, job: &PendingJob) -> Result<()> {
        let message = String::from_utf8_lossy(&job.message()).into_owned();
        self.exec(
            "INSERT INTO spider_queue (project, priority, message, created, job)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &job.project,
                &job.priority,
                &message,
                &job.created,
                &job.job,
            ],
        )?;
        self.jobs_changed = true;
        Ok(())
    }

    /// `FOR UPDATE SKIP LOCKED`: an entry another node is taking is passed over, never
    /// taken twice.
    fn queue_take_next(&mut self, projects: &[String]) -> Result<Option<PendingJob>> {
        loop {
            let Some(row) = self.opt(
                "DELETE FROM spider_queue WHERE id = (
                     SELECT id FROM spider_queue WHERE project = ANY($1)
                     ORDER BY priority DESC, created, id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING project, priority, created, message, id",
                &[&projects],
            )?
            else {
                return Ok(None);
            };
            self.jobs_changed = true;
            match pending_of(&row) {
                Some(job) => return Ok(Some(job)),
                None => {
                    let (project, id): (String, i64) = (row.get(0), row.get(4));
                    tracing::warn!(project = %project, id, "dropped an unreadable queue entry");
                }
            }
        }
    }

    fn queue_remove(&mut self, project: &str, job: &str) -> Result<usize> {
        let n = self.exec(
            "DELETE FROM spider_queue WHERE project = $1 AND job = $2",
            &[&project, &job],
        )?;
        self.jobs_changed |= n > 0;
        Ok(n as usize)
    }

    fn queue_clear(&mut self, project: &str) -> Result<(usize, Vec<String>)> {
        let rows = self.query(
            "DELETE FROM spider_queue WHERE project = $1 RETURNING job",
            &[&project],
        )?;
        self.jobs_changed |= !rows.is_empty();
        Ok((rows.len(), rows.iter().map(|r| r.get(0)).collect()))
    }

    fn pending(&mut self, projects: &[String]) -> Result<Vec<PendingJob>> {
        // Each project's jobs in start order, the projects in the order asked.
        let rows = self.query(
            "SELECT q.project, q.priority, q.created, q.message
             FROM spider_queue q JOIN unnest($1::text[]) WITH ORDINALITY AS p(name, i)
               ON q.project = p.name
             ORDER BY p.i, q.priority DESC, q.created, q.id",
            &[&projects],
        )?;
        Ok(rows.iter().filter_map(pending_of).collect())
    }

    fn pending_count(&mut self, projects: &[String]) -> Result<usize> {
        let n: i64 = self
            .one(
                "SELECT count(*) FROM spider_queue WHERE project = ANY($1)",
                &[&projects],
            )?
            .get(0);
        Ok(n as usize)
    }

    fn is_pending(&mut self, project: &str, job: &str) -> Result<bool> {
        Ok(self
            .opt(
                "SELECT 1 FROM spider_queue WHERE project = $1 AND job = $2 LIMIT 1",
                &[&project, &job],
            )?
            .is_some())
    }

    fn lock_admission(&mut self, project: &str) -> Result<()> {
        self.lock(LOCK_ADMISSION, project)
    }
}

const COLUMNS: &str = "id, project, spider, job, version, settings, args, priority, state, pid, \
                       start_time, end_time, exit_code, signal, outcome, reason, finish_reason, \
                       proc_start, node";

fn record_of(r: &Row) -> JobRecord {
    let state: String = r.get(8);
    JobRecord {
        id: r.get(0),
        project: r.get(1),
        spider: r.get(2),
        job: r.get(3),
        version: r.get(4),
        settings: json_pairs(r.get(5)),
        args: json_pairs(r.get(6)),
        priority: r.get(7),
        state: JobState::of_row(&state),
        pid: r.get::<_, Option<i32>>(9).map(|p| p as u32),
        start_time: r.get(10),
        end_time: r.get(11),
        exit_code: r.get(12),
        signal: r.get(13),
        outcome: r.get(14),
        reason: r.get(15),
        finish_reason: r.get(16),
        proc_start: r.get(17),
        node: r.get(18),
    }
}

const BRIEF_COLUMNS: &str = "id, project, spider, job, start_time, end_time, outcome, exit_code, \
                             signal, finish_reason, node";

fn finished_of(r: &Row) -> FinishedJob {
    let start_time: i64 = r.get(4);
    FinishedJob {
        id: r.get(0),
        project: r.get(1),
        spider: r.get(2),
        job: r.get(3),
        start_time,
        end_time: r.get::<_, Option<i64>>(5).unwrap_or(start_time),
        ending: Ended {
            outcome: r.get(6),
            exit_code: r.get(7),
            signal: r.get(8),
            finish_reason: r.get(9),
            node: r.get(10),
        },
    }
}

/// How many changes to the finished jobs the change feed keeps; a reader further behind
/// reads everything again.
pub(super) const FINISHED_CHANGES_KEPT: i64 = 4096;

impl JobRows for PgTx<'_> {
    fn insert_running(&mut self, p: &PendingJob, now: i64) -> Result<JobRecord> {
        // Only while this node holds its registration: a node declared dead (or whose name
        // another process took over) claims nothing, and the claim rolls back.
        let id: i64 = self
            .opt(
                "INSERT INTO jobs (project, spider, job, version, settings, args, priority, state,
                                   node, start_time)
                 SELECT $1, $2, $3, $4, $5, $6, $7, 'running', $8, $9
                 WHERE EXISTS (SELECT 1 FROM nodes
                               WHERE name = $8 AND registration = $10 AND alive)
                 RETURNING id",
                &[
                    &p.project,
                    &p.spider,
                    &p.job,
                    &p.version,
                    &pairs_json(&p.settings),
                    &pairs_json(&p.args),
                    &p.priority,
                    &self.node,
                    &now,
                    &self.registration,
                ],
            )?
            .ok_or_else(|| {
                StorageError::Unavailable(format!(
                    "node {} is not registered (or was declared dead): it claims no job",
                    self.node
                ))
            })?
            .get(0);
        self.jobs_changed = true;
        Ok(JobRecord {
            node: Some(self.node.to_owned()),
            ..JobRecord::running(id, p, now)
        })
    }

    fn set_pid(&mut self, id: i64, pid: u32, proc_start: Option<&str>) -> Result<()> {
        let pid = pid as i32;
        self.exec(
            "UPDATE jobs SET pid = $2, proc_start = $3 WHERE id = $1",
            &[&id, &pid, &proc_start],
        )?;
        self.jobs_changed = true;
        Ok(())
    }

    fn job_spider(&mut self, id: i64) -> Result<Option<(String, String)>> {
        Ok(self
            .opt("SELECT project, spider FROM jobs WHERE id = $1", &[&id])?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn record_end(
        &mut self,
        id: i64,
        ending: &Ending,
        keep: usize,
    ) -> Result<Option<(String, String)>> {
        let who = self.opt(
            "UPDATE jobs SET state = 'finished', end_time = $2, exit_code = $3, signal = $4,
                 outcome = $5, reason = $6, finish_reason = $7, stats = $8
             WHERE id = $1 AND state = 'running' RETURNING project, job",
            &[
                &id,
                &ending.end_time,
                &ending.exit_code,
                &ending.signal,
                &ending.outcome.as_str(),
                &ending.reason,
                &ending.finish_reason,
                &ending.stats,
            ],
        )?;
        let Some(who) = who else {
            return Ok(None);
        };
        self.jobs_changed = true;
        self.finished.push(FinishedChange::Added(id));
        // The retention removes the oldest beyond `keep`, counted by the feed's counter (the
        // row is locked to the end of the transaction, as `publish` locks it anyway).
        let count: i64 = self
            .one(
                "UPDATE change_feed SET finished_count = finished_count + 1 RETURNING finished_count",
                &[],
            )?
            .get(0);
        let excess = count - keep as i64;
        if excess > 0 {
            let pruned = self.query(
                "DELETE FROM jobs WHERE id IN (
                     SELECT id FROM jobs WHERE state = 'finished'
                     ORDER BY end_time, id LIMIT $1)
                 RETURNING id",
                &[&excess],
            )?;
            let n = pruned.len() as i64;
            self.exec(
                "UPDATE change_feed SET finished_count = finished_count - $1",
                &[&n],
            )?;
            self.finished
                .extend(pruned.iter().map(|r| FinishedChange::Removed(r.get(0))));
        }
        Ok(Some((who.get(0), who.get(1))))
    }

    fn delete_job(&mut self, id: i64) -> Result<()> {
        self.exec("DELETE FROM jobs WHERE id = $1", &[&id])?;
        self.jobs_changed = true;
        Ok(())
    }

    fn running(&mut self) -> Result<Vec<JobRecord>> {
        let rows = self.query(
            &format!("SELECT {COLUMNS} FROM jobs WHERE state = 'running' ORDER BY id"),
            &[],
        )?;
        Ok(rows.iter().map(record_of).collect())
    }

    fn running_here(&mut self) -> Result<Vec<JobRecord>> {
        let rows = self.query(
            &format!(
                "SELECT {COLUMNS} FROM jobs WHERE state = 'running' AND node = $1 ORDER BY id"
            ),
            &[&self.node],
        )?;
        Ok(rows.iter().map(record_of).collect())
    }

    /// This node's (what `daemonstatus.json` shows of a node).
    fn running_count(&mut self) -> Result<usize> {
        let n: i64 = self
            .one(
                "SELECT count(*) FROM jobs WHERE state = 'running' AND node = $1",
                &[&self.node],
            )?
            .get(0);
        Ok(n as usize)
    }

    fn finished(&mut self, project: Option<&str>) -> Result<Vec<JobRecord>> {
        let rows = self.query(
            &format!(
                "SELECT {COLUMNS} FROM jobs
                 WHERE state = 'finished' AND ($1::text IS NULL OR project = $1)
                 ORDER BY end_time DESC, id DESC"
            ),
            &[&project],
        )?;
        Ok(rows.iter().map(record_of).collect())
    }

    /// This node's (what `daemonstatus.json` shows of a node).
    fn finished_count(&mut self) -> Result<usize> {
        let n: i64 = self
            .one(
                "SELECT count(*) FROM jobs WHERE state = 'finished' AND node = $1",
                &[&self.node],
            )?
            .get(0);
        Ok(n as usize)
    }

    fn finished_newest(
        &mut self,
        project: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<FinishedJob>> {
        let limit = limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let rows = self.query(
            &format!(
                "SELECT {BRIEF_COLUMNS} FROM jobs
                 WHERE state = 'finished' AND ($1::text IS NULL OR project = $1)
                 ORDER BY end_time DESC, id DESC LIMIT $2"
            ),
            &[&project, &limit],
        )?;
        Ok(rows.iter().map(finished_of).collect())
    }

    fn finished_record(&mut self, project: Option<&str>, job: &str) -> Result<Option<JobRecord>> {
        Ok(self
            .opt(
                &format!(
                    "SELECT {COLUMNS} FROM jobs
                     WHERE state = 'finished' AND job = $1 AND ($2::text IS NULL OR project = $2)
                     ORDER BY end_time DESC, id DESC LIMIT 1"
                ),
                &[&job, &project],
            )?
            .as_ref()
            .map(record_of))
    }

    fn finished_version(&mut self) -> Result<u64> {
        Ok(self.versions()?.1)
    }

    fn finished_update(
        &mut self,
        since: Option<u64>,
        project: Option<&str>,
    ) -> Result<FinishedUpdate> {
        let version = self.versions()?.1;
        if let Some(since) = since.filter(|&v| v <= version) {
            let first: Option<i64> = self
                .one("SELECT min(version) FROM finished_changes", &[])?
                .get(0);
            // Every change after `since` is still kept (or there is none).
            if since == version || first.is_some_and(|f| f as u64 <= since + 1) {
                let since = since as i64;
                let rows = self.query(
                    "SELECT added, removed FROM finished_changes WHERE version > $1
                     ORDER BY version",
                    &[&since],
                )?;
                let changes: Vec<FinishedChange> = rows
                    .iter()
                    .filter_map(|r| match (r.get(0), r.get(1)) {
                        (Some(id), _) => Some(FinishedChange::Added(id)),
                        (None, Some(id)) => Some(FinishedChange::Removed(id)),
                        _ => None,
                    })
                    .collect();
                let added = FinishedChange::added(&changes);
                let rows = self.query(
                    &format!(
                        "SELECT {BRIEF_COLUMNS} FROM jobs WHERE state = 'finished' AND id = ANY($1)"
                    ),
                    &[&added],
                )?;
                let rows = rows.iter().map(finished_of).collect();
                return Ok(FinishedUpdate::Changes(version, changes, rows));
            }
        }
        Ok(FinishedUpdate::All(
            version,
            self.finished_newest(project, None)?,
        ))
    }

    fn job_row_state(&mut self, project: Option<&str>, job: &str) -> Result<Option<JobState>> {
        let state: Option<String> = self
            .opt(
                "SELECT state FROM jobs WHERE job = $1 AND ($2::text IS NULL OR project = $2)
                 ORDER BY state = 'finished' DESC LIMIT 1",
                &[&job, &project],
            )?
            .map(|r| r.get(0));
        Ok(state.as_deref().map(JobState::of_row))
    }
}

impl PgTx<'_> {
    /// The write generation and the finished version, as this transaction sees them.
    pub(super) fn versions(&self) -> Result<(u64, u64)> {
        let r = self.one("SELECT generation, finished_version FROM change_feed", &[])?;
        Ok((r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64))
    }

    /// At commit: when a queue or job row changed, moves the change feed (and numbers the
    /// changes to the finished jobs) in this transaction, and wakes the other nodes. The
    /// feed's one row is locked only from here to the commit, so writers queue for it
    /// briefly, in commit order: a reader that sees version `v` sees every change up to `v`.
    pub(super) fn publish(&mut self) -> Result<Option<(u64, u64)>> {
        if !self.jobs_changed && self.finished.is_empty() {
            return Ok(None);
        }
        let n = self.finished.len() as i64;
        let r = self.one(
            "UPDATE change_feed SET generation = generation + 1,
                 finished_version = finished_version + $1
             RETURNING generation, finished_version",
            &[&n],
        )?;
        let (generation, finished): (i64, i64) = (r.get(0), r.get(1));
        let changes = std::mem::take(&mut self.finished);
        for (i, change) in changes.iter().enumerate() {
            let version = finished - n + 1 + i as i64;
            let (added, removed) = match *change {
                FinishedChange::Added(id) => (Some(id), None),
                FinishedChange::Removed(id) => (None, Some(id)),
            };
            self.exec(
                "INSERT INTO finished_changes (version, added, removed) VALUES ($1, $2, $3)",
                &[&version, &added, &removed],
            )?;
        }
        if n > 0 {
            let oldest = finished - FINISHED_CHANGES_KEPT;
            self.exec(
                "DELETE FROM finished_changes WHERE version <= $1",
                &[&oldest],
            )?;
        }
        let payload = generation.to_string();
        self.query("SELECT pg_notify('scrapyd_changes', $1)", &[&payload])?;
        Ok(Some((generation as u64, finished as u64)))
    }
}
