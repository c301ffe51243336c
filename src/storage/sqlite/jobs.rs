//! Job records in `{dbs_dir}/jobs.db`: a row per job from the moment the launcher takes it off a
//! queue (`running`) to its end (`finished`, with end time, exit status and outcome). Only the
//! launcher writes these rows; the API reads them. The newest `finished_to_keep` finished jobs
//! are kept. Times are microseconds since the epoch, shown as Python's `str(datetime)` in local
//! time, as Scrapyd shows them.

use super::Db;
use crate::storage::StorageError;
use crate::storage::model::{
    Ended, Ending, FinishedChange, FinishedJob, FinishedUpdate, JobRecord, JobState, PendingJob,
};
use crate::storage::rows::{JobRows, json_pairs, pairs_json};
use rusqlite::{OptionalExtension, params};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many changes [`FinishedLog`] keeps; a reader further behind reads everything again.
const FINISHED_LOG_CAPACITY: usize = 4096;

/// The recent changes to the finished jobs, numbered by a version that changes with each of
/// them, so that a reader holding a listing of version `v` can bring it up to date from the
/// changes after `v` instead of reading the whole history again ([`crate::listing`]).
///
/// Kept in memory by the store's owner thread ([`Db::finish`] is the only code that changes
/// finished rows): a new daemon starts at version 0 with no changes, and its readers start by
/// reading everything.
pub struct FinishedLog {
    /// The current version, readable from any thread.
    version: Arc<AtomicU64>,
    /// The version before the oldest change kept.
    first: u64,
    changes: VecDeque<FinishedChange>,
}

impl Default for FinishedLog {
    fn default() -> Self {
        FinishedLog {
            version: Arc::new(AtomicU64::new(0)),
            first: 0,
            changes: VecDeque::new(),
        }
    }
}

impl FinishedLog {
    /// The current version.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The version, shared with readers outside the owner thread.
    pub fn shared_version(&self) -> Arc<AtomicU64> {
        self.version.clone()
    }

    pub(super) fn record(&mut self, change: FinishedChange) {
        self.changes.push_back(change);
        if self.changes.len() > FINISHED_LOG_CAPACITY {
            self.changes.pop_front();
            self.first += 1;
        }
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The finished rows changed in a way not recorded: every reader reads everything again.
    pub(super) fn reset(&mut self) {
        self.changes.clear();
        self.first = self.version.fetch_add(1, Ordering::Release) + 1;
    }

    /// The changes after version `v`, in order, or `None` when they are no longer all kept.
    pub fn since(&self, v: u64) -> Option<Vec<FinishedChange>> {
        let current = self.version();
        if v < self.first || v > current {
            return None;
        }
        Some(
            self.changes
                .iter()
                .skip((v - self.first) as usize)
                .copied()
                .collect(),
        )
    }
}

const COLUMNS: &str = "id, project, spider, job, version, settings, args, priority, state, pid, start_time, \
                       end_time, exit_code, signal, outcome, reason, finish_reason, proc_start";

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    let state: String = r.get(8)?;
    Ok(JobRecord {
        id: r.get(0)?,
        project: r.get(1)?,
        spider: r.get(2)?,
        job: r.get(3)?,
        version: r.get(4)?,
        settings: json_pairs(&r.get::<_, String>(5)?),
        args: json_pairs(&r.get::<_, String>(6)?),
        priority: r.get(7)?,
        state: JobState::of_row(&state),
        pid: r.get::<_, Option<i64>>(9)?.map(|p| p as u32),
        start_time: r.get(10)?,
        end_time: r.get(11)?,
        exit_code: r.get(12)?,
        signal: r.get(13)?,
        outcome: r.get(14)?,
        reason: r.get(15)?,
        finish_reason: r.get(16)?,
        proc_start: r.get(17)?,
        node: None,
    })
}

/// The columns [`finished_job`] reads.
const BRIEF_COLUMNS: &str =
    "id, project, spider, job, start_time, end_time, outcome, exit_code, signal, finish_reason";

fn finished_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<FinishedJob> {
    let start_time: i64 = r.get(4)?;
    Ok(FinishedJob {
        id: r.get(0)?,
        project: r.get(1)?,
        spider: r.get(2)?,
        job: r.get(3)?,
        start_time,
        end_time: r.get::<_, Option<i64>>(5)?.unwrap_or(start_time),
        ending: Ended {
            outcome: r.get(6)?,
            exit_code: r.get(7)?,
            signal: r.get(8)?,
            finish_reason: r.get(9)?,
            node: None,
        },
    })
}

impl Db {
    /// The current version of the finished jobs.
    pub fn finished_version_now(&self) -> u64 {
        self.finished_log.version()
    }

    /// The finished jobs among these row ids (those still kept), in no particular order.
    fn finished_by_ids(&mut self, ids: &[i64]) -> Result<Vec<FinishedJob>, StorageError> {
        let conn = self.jobs()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {BRIEF_COLUMNS} FROM jobs WHERE state = 'finished' AND id = ?1"
        ))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(job) = stmt.query_row([id], finished_job).optional()? {
                out.push(job);
            }
        }
        Ok(out)
    }
}

impl JobRows for Db {
    fn insert_running(&mut self, p: &PendingJob, now: i64) -> Result<JobRecord, StorageError> {
        let conn = self.jobs()?;
        conn.execute(
            "INSERT INTO jobs (project, spider, job, version, settings, args, priority, state, start_time)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8)",
            params![p.project, p.spider, p.job, p.version, pairs_json(&p.settings), pairs_json(&p.args), p.priority, now],
        )?;
        Ok(JobRecord::running(conn.last_insert_rowid(), p, now))
    }

    fn set_pid(&mut self, id: i64, pid: u32, proc_start: Option<&str>) -> Result<(), StorageError> {
        self.jobs()?.execute(
            "UPDATE jobs SET pid = ?2, proc_start = ?3 WHERE id = ?1",
            params![id, pid, proc_start],
        )?;
        Ok(())
    }

    fn job_spider(&mut self, id: i64) -> Result<Option<(String, String)>, StorageError> {
        Ok(self
            .jobs()?
            .query_row(
                "SELECT project, spider FROM jobs WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// The pruning touches only the rows it removes (a long history costs no more).
    fn record_end(
        &mut self,
        id: i64,
        ending: &Ending,
        keep: usize,
    ) -> Result<Option<(String, String)>, StorageError> {
        let before = self.finished_count()?;
        let who: Option<(String, String)> = self
            .jobs()?
            .query_row("SELECT project, job FROM jobs WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let conn = self.jobs()?;
        let changed = conn.execute(
            "UPDATE jobs SET state = 'finished', end_time = ?2, exit_code = ?3, signal = ?4, outcome = ?5, reason = ?6,
             finish_reason = ?7, stats = ?8 WHERE id = ?1 AND state = 'running'",
            params![
                id,
                ending.end_time,
                ending.exit_code,
                ending.signal,
                ending.outcome.as_str(),
                ending.reason,
                ending.finish_reason,
                ending.stats
            ],
        )?;
        let count = before + changed;
        let excess = count.saturating_sub(keep);
        let mut pruned = Vec::new();
        if excess > 0 {
            let mut stmt = conn.prepare(
                "DELETE FROM jobs WHERE id IN
                   (SELECT id FROM jobs WHERE state = 'finished' ORDER BY end_time, id LIMIT ?1)
                 RETURNING id",
            )?;
            pruned = stmt
                .query_map([excess as i64], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
        }
        // Recorded in the finished log when the write scope commits (forgotten, and the
        // count read again, when it does not).
        if changed > 0 {
            self.finished_pending.push(FinishedChange::Added(id));
        }
        self.finished_pending
            .extend(pruned.into_iter().map(FinishedChange::Removed));
        self.finished_count = Some(count - excess);
        Ok(if changed > 0 { who } else { None })
    }

    fn delete_job(&mut self, id: i64) -> Result<(), StorageError> {
        self.jobs()?
            .execute("DELETE FROM jobs WHERE id = ?1", [id])?;
        Ok(())
    }

    fn running(&mut self) -> Result<Vec<JobRecord>, StorageError> {
        let conn = self.jobs()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = 'running' ORDER BY id"
        ))?;
        let rows = stmt
            .query_map([], row_to_record)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// One node: every running job is this node's.
    fn running_here(&mut self) -> Result<Vec<JobRecord>, StorageError> {
        self.running()
    }

    fn running_count(&mut self) -> Result<usize, StorageError> {
        let n: i64 = self.jobs()?.query_row(
            "SELECT count(*) FROM jobs WHERE state = 'running'",
            [],
            |r| r.get(0),
        )?;
        Ok(n as usize)
    }

    fn finished(&mut self, project: Option<&str>) -> Result<Vec<JobRecord>, StorageError> {
        let conn = self.jobs()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = 'finished' AND (?1 IS NULL OR project = ?1)
             ORDER BY end_time DESC, id DESC"
        ))?;
        let rows = stmt
            .query_map([project], row_to_record)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Counted once, then kept up to date by `record_end`.
    fn finished_count(&mut self) -> Result<usize, StorageError> {
        if let Some(n) = self.finished_count {
            return Ok(n);
        }
        let n: i64 = self.jobs()?.query_row(
            "SELECT count(*) FROM jobs WHERE state = 'finished'",
            [],
            |r| r.get(0),
        )?;
        self.finished_count = Some(n as usize);
        Ok(n as usize)
    }

    fn finished_newest(
        &mut self,
        project: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<FinishedJob>, StorageError> {
        let conn = self.jobs()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {BRIEF_COLUMNS} FROM jobs WHERE state = 'finished' AND (?1 IS NULL OR project = ?1)
             ORDER BY end_time DESC, id DESC LIMIT ?2"
        ))?;
        let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let rows = stmt
            .query_map(params![project, limit], finished_job)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn finished_record(
        &mut self,
        project: Option<&str>,
        job: &str,
    ) -> Result<Option<JobRecord>, StorageError> {
        let conn = self.jobs()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = 'finished' AND job = ?1 AND (?2 IS NULL OR project = ?2)
             ORDER BY end_time DESC, id DESC LIMIT 1"
        ))?;
        Ok(stmt
            .query_row(params![job, project], row_to_record)
            .optional()?)
    }

    fn finished_version(&mut self) -> Result<u64, StorageError> {
        Ok(self.finished_log.version())
    }

    fn finished_update(
        &mut self,
        since: Option<u64>,
        project: Option<&str>,
    ) -> Result<FinishedUpdate, StorageError> {
        let version = self.finished_log.version();
        match since.and_then(|v| self.finished_log.since(v)) {
            Some(changes) => {
                let added = FinishedChange::added(&changes);
                let rows = self.finished_by_ids(&added)?;
                Ok(FinishedUpdate::Changes(version, changes, rows))
            }
            None => Ok(FinishedUpdate::All(
                version,
                self.finished_newest(project, None)?,
            )),
        }
    }

    fn job_row_state(
        &mut self,
        project: Option<&str>,
        job: &str,
    ) -> Result<Option<JobState>, StorageError> {
        let state: Option<String> = self
            .jobs()?
            .query_row(
                "SELECT state FROM jobs WHERE job = ?1 AND (?2 IS NULL OR project = ?2)
                 ORDER BY state = 'finished' DESC LIMIT 1",
                params![job, project],
                |r| r.get(0),
            )
            .optional()?;
        Ok(state.as_deref().map(JobState::of_row))
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

    fn pending(id: &str) -> PendingJob {
        PendingJob {
            project: "p".into(),
            spider: "s".into(),
            job: id.into(),
            priority: 0.0,
            version: None,
            settings: vec![],
            args: vec![("a".into(), "1".into())],
            created: 1,
        }
    }

    fn ending(t: i64) -> Ending {
        Ending {
            end_time: t,
            exit_code: Some(0),
            signal: None,
            outcome: Outcome::Finished,
            reason: None,
            finish_reason: Some("finished".into()),
            stats: None,
        }
    }

    #[test]
    fn keeps_the_newest_finished_jobs() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        let projects = vec!["p".to_string()];
        for (i, id) in ["j1", "j2", "j3"].iter().enumerate() {
            db.enqueue(&pending(id), &Map::new()).unwrap();
            let r = db.start_next(&projects, 10).unwrap().unwrap();
            assert_eq!(r.args, [("a".to_string(), "1".to_string())]);
            db.finish(r.id, &ending(100 + i as i64), 2).unwrap();
        }
        let jobs: Vec<String> = db
            .finished(None)
            .unwrap()
            .into_iter()
            .map(|r| r.job)
            .collect();
        assert_eq!(jobs, ["j3", "j2"]);
        assert_eq!(db.finished_count().unwrap(), 2);
    }

    #[test]
    fn state_precedence_is_finished_running_pending() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        let projects = vec!["p".to_string()];
        db.enqueue(&pending("j"), &Map::new()).unwrap();
        assert_eq!(
            db.job_state(None, "j", &projects).unwrap(),
            Some(JobState::Pending)
        );
        let r = db.start_next(&projects, 1).unwrap().unwrap();
        assert_eq!(
            db.job_state(None, "j", &projects).unwrap(),
            Some(JobState::Running)
        );
        db.enqueue(&pending("j"), &Map::new()).unwrap();
        assert_eq!(
            db.job_state(Some("p"), "j", &projects).unwrap(),
            Some(JobState::Running)
        );
        db.finish(r.id, &ending(2), 10).unwrap();
        assert_eq!(
            db.job_state(None, "j", &projects).unwrap(),
            Some(JobState::Finished)
        );
        assert_eq!(db.job_state(None, "other", &projects).unwrap(), None);
    }

    #[test]
    fn recovery_requeues_unstarted_and_returns_started_jobs() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        let projects = vec!["p".to_string()];
        db.enqueue(&pending("a"), &Map::new()).unwrap();
        db.enqueue(&pending("b"), &Map::new()).unwrap();
        let a = db.start_next(&projects, 1).unwrap().unwrap();
        db.set_pid(a.id, 4242, Some("boot/1")).unwrap();
        let _b = db.start_next(&projects, 1).unwrap().unwrap();
        let started = db.recover(&|_| None).unwrap();
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].job, "a");
        assert_eq!(started[0].proc_start.as_deref(), Some("boot/1"));
        assert_eq!(
            db.running().unwrap().len(),
            1,
            "a stays running until the launcher decides"
        );
        assert_eq!(db.pending(&projects).unwrap()[0].job, "b");
    }

    #[test]
    fn recovery_adopts_a_started_job_whose_process_is_found() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        let projects = vec!["p".to_string()];
        for job in ["a", "b", "c"] {
            db.enqueue(&pending(job), &Map::new()).unwrap();
        }
        // All taken off the queue, none with its pid recorded: `a`'s process is found, `c`
        // left its result file, `b` never started.
        let a = db.start_next(&projects, 1).unwrap().unwrap();
        let _b = db.start_next(&projects, 1).unwrap().unwrap();
        let c = db.start_next(&projects, 1).unwrap().unwrap();
        let started = db
            .recover(&|r: &JobRecord| {
                if r.id == a.id {
                    Some(Orphan::Running {
                        pid: 4242,
                        identity: "boot/7".to_owned(),
                    })
                } else {
                    (r.id == c.id).then_some(Orphan::Ended)
                }
            })
            .unwrap();
        let started: Vec<(&str, Option<u32>)> =
            started.iter().map(|r| (r.job.as_str(), r.pid)).collect();
        assert_eq!(started, [("a", Some(4242)), ("c", None)]);
        let running = db.running().unwrap();
        assert_eq!(
            running.len(),
            2,
            "a and c stay running until the launcher decides"
        );
        assert_eq!(
            (running[0].pid, running[0].proc_start.as_deref()),
            (Some(4242), Some("boot/7"))
        );
        let pending = db.pending(&projects).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].job, "b");
    }

    #[test]
    fn formats_times_like_python() {
        let t = chrono::NaiveDate::from_ymd_opt(2001, 2, 3)
            .unwrap()
            .and_hms_micro_opt(4, 5, 6, 9)
            .unwrap();
        let micros = t
            .and_local_timezone(chrono::Local)
            .unwrap()
            .timestamp_micros();
        assert_eq!(format_time(micros), "2001-02-03 04:05:06.000009");
        assert_eq!(format_time(micros - 9), "2001-02-03 04:05:06");
    }
}
