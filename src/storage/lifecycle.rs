//! The job lifecycle, written once over [`Rows`] for both backends: queued → running →
//! finished (or removed before it ran), each step one transaction that also reports its
//! [`JobEvent`] to the registry ([`Registry::follow`]).

use super::StorageError;
use super::model::{Admission, Ending, JobKey, JobRecord, JobState, NewJob, Orphan, PendingJob};
use super::registry::{JobEvent, Registry};
use super::rows::Rows;
use serde_json::{Map, Value};

type Result<T> = std::result::Result<T, StorageError>;

/// The lifecycle's operations, for any backend's transaction.
pub trait Lifecycle: Rows {
    /// Queues a job and registers it (its key and metadata, with `extra` from `run.json`);
    /// returns its key (`None` if the registry could not take it: it catches up when the job
    /// starts).
    fn enqueue(&mut self, job: &PendingJob, extra: &Map<String, Value>) -> Result<Option<JobKey>> {
        self.queue_insert(job)?;
        Ok(self.follow(JobEvent::Enqueued(job, extra)))
    }

    /// Puts back in its queue a job that was taken off it but never got a process (recovery):
    /// the registry's row of it goes back to `pending`.
    fn requeue(&mut self, job: &PendingJob) -> Result<()> {
        self.queue_insert(job)?;
        self.follow(JobEvent::Requeued(job));
        Ok(())
    }

    /// Queues a job unless an active job of its project is one it must not duplicate (then
    /// nothing is written); the job has its registry key from the moment it is queued.
    fn admit(&mut self, new: &NewJob) -> Result<Admission<JobKey>> {
        let NewJob { job, meta, unique } = new;
        self.lock_admission(&job.project)?;
        if let Some(existing) = self.find_duplicate(&job.project, &job.spider, unique, meta)? {
            return Ok(Admission::Duplicate(existing));
        }
        let key = self.enqueue(job, meta)?.ok_or_else(|| {
            StorageError::Internal("the job registry could not take the job".into())
        })?;
        Ok(Admission::Admitted(key))
    }

    /// Removes every pending entry of `project` with this job id; returns how many.
    fn remove_pending(&mut self, project: &str, job: &str) -> Result<usize> {
        let n = self.queue_remove(project, job)?;
        if n > 0 {
            self.follow(JobEvent::Removed {
                project,
                job,
                by: "scrapyd",
            });
        }
        Ok(n)
    }

    /// Removes every pending job of `project`; returns how many.
    fn clear_pending(&mut self, project: &str) -> Result<usize> {
        let (n, jobs) = self.queue_clear(project)?;
        for job in &jobs {
            self.follow(JobEvent::Removed {
                project,
                job,
                by: "scrapyd",
            });
        }
        Ok(n)
    }

    /// Takes the next pending job off the queues and records it as running, in one step, so no
    /// reader ever sees it in neither state.
    fn start_next(&mut self, projects: &[String], now: i64) -> Result<Option<JobRecord>> {
        let Some(job) = self.queue_take_next(projects)? else {
            return Ok(None);
        };
        let record = self.insert_running(&job, now)?;
        self.follow(JobEvent::Started(&job));
        Ok(Some(record))
    }

    /// Records a job's end, then keeps only the newest `keep` finished jobs.
    fn finish(&mut self, id: i64, ending: &Ending, keep: usize) -> Result<()> {
        if let Some((project, job)) = self.record_end(id, ending, keep)? {
            self.follow(JobEvent::Finished {
                project: &project,
                job: &job,
                ending,
            });
        }
        Ok(())
    }

    /// The state of a job id, Scrapyd's precedence: finished, then running, then pending (in
    /// `project`, or in any of `projects`).
    fn job_state(
        &mut self,
        project: Option<&str>,
        job: &str,
        projects: &[String],
    ) -> Result<Option<JobState>> {
        if let Some(state) = self.job_row_state(project, job)? {
            return Ok(Some(state));
        }
        let scope: Vec<String> = match project {
            Some(p) => vec![p.to_owned()],
            None => projects.to_vec(),
        };
        for p in &scope {
            if self.is_pending(p, job)? {
                return Ok(Some(JobState::Pending));
            }
        }
        Ok(None)
    }

    /// After a restart: jobs still recorded as running on this node were left behind by the
    /// previous daemon. For a job without a recorded pid, `find_orphan` tells whether its crawl
    /// was spawned all the same (the daemon died before it recorded the pid): one still
    /// running gets its pid, and is returned with those that have one, for the launcher to
    /// re-adopt or to finish; so is one that ended (the launcher reads its result file). A job
    /// that never got a process goes back to its queue (or is dropped if it is still there).
    fn recover(
        &mut self,
        find_orphan: &dyn Fn(&JobRecord) -> Option<Orphan>,
    ) -> Result<Vec<JobRecord>> {
        let mut started = Vec::new();
        for mut r in self.running_here()? {
            if r.pid.is_some() {
                started.push(r);
                continue;
            }
            match find_orphan(&r) {
                Some(Orphan::Running { pid, identity }) => {
                    self.set_pid(r.id, pid, Some(&identity))?;
                    (r.pid, r.proc_start) = (Some(pid), Some(identity));
                    started.push(r);
                    continue;
                }
                Some(Orphan::Ended) => {
                    started.push(r);
                    continue;
                }
                None => tracing::warn!(
                    "job {} of project {} was taken off its queue but never started: queued again",
                    r.job,
                    r.project
                ),
            }
            let pending = PendingJob {
                project: r.project.clone(),
                spider: r.spider.clone(),
                job: r.job.clone(),
                priority: r.priority,
                version: r.version.clone(),
                settings: r.settings.clone(),
                args: r.args.clone(),
                created: r.start_time,
            };
            if self.is_pending(&r.project, &r.job)? {
                // Still queued too (a crash between the two commits of its start).
                self.follow(JobEvent::Requeued(&pending));
            } else {
                self.requeue(&pending)?;
            }
            self.delete_job(r.id)?;
        }
        Ok(started)
    }
}

impl<T: Rows + ?Sized> Lifecycle for T {}
