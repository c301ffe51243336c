//! The Scrapy Cloud registry, written once over [`Rows`] for both backends: identities and
//! job metadata kept beside the Scrapyd job rows, in the same transactions.
//! - every project has a numeric id (a project named by a number keeps that number; others get
//!   ids from [`FIRST_ALLOCATED_PROJECT_ID`] up);
//! - every spider of a project has a numeric id (1, 2, … in order of first sight), and a job
//!   counter: jobs are keyed `project/spider/n`;
//! - every job, whichever API scheduled it, has a row with its state and its metadata object.
//!
//! The queue and job rows of the Scrapyd side stay what they were; the registry follows their
//! [`JobEvent`]s (queued → `pending`, started → `running`, ended → `finished`), which the job
//! lifecycle ([`super::lifecycle`]) reports in the transaction of the change.

use super::StorageError;
#[cfg(doc)]
use super::model::FIRST_ALLOCATED_PROJECT_ID;
use super::model::{
    CloudJob, Ending, JobKey, JobQuery, PendingJob, RegistryLaunch, Uniqueness, apply_tags,
    close_reason, now_micros, now_ms, pairs_to_map, string_pairs, tags_of,
};
use super::rows::Rows;
use serde_json::{Map, Value, json};

type Result<T> = std::result::Result<T, StorageError>;

/// What happened to a job, for the registry to follow (in the same transaction).
pub enum JobEvent<'a> {
    /// Queued (`extra`: metadata from `run.json` or `push`).
    Enqueued(&'a PendingJob, &'a Map<String, Value>),
    /// Taken off its queue to run.
    Started(&'a PendingJob),
    /// Put back in its queue by recovery (it never got a process).
    Requeued(&'a PendingJob),
    /// Removed from its queue before it ran (`by`: who).
    Removed {
        project: &'a str,
        job: &'a str,
        by: &'a str,
    },
    /// Its crawl ended.
    Finished {
        project: &'a str,
        job: &'a str,
        ending: &'a Ending,
    },
}

/// The time field and user field a transition to `state` sets.
fn transition_fields(state: &str) -> Option<(&'static str, &'static str)> {
    Some(match state {
        "pending" => ("pending_time", "scheduled_by"),
        "running" => ("running_time", "started_by"),
        "finished" => ("finished_time", "completed_by"),
        "deleted" => ("deleted_time", "deleted_by"),
        _ => return None,
    })
}

/// Scrapyd priorities are any float; Scrapy Cloud's are 0–4.
fn cloud_priority(priority: f64) -> i64 {
    if priority.is_finite() {
        priority.round().clamp(0.0, 4.0) as i64
    } else if priority > 0.0 {
        4
    } else {
        0
    }
}

/// A job token (returned to the runner that takes a job).
fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The registry's operations, for any backend's transaction.
pub trait Registry: Rows {
    /// The project with this id, among `known` projects (registering them as needed).
    fn project_by_id(&mut self, id: i64, known: &[String]) -> Result<Option<String>> {
        if let Some(n) = self.project_named(id)? {
            return Ok(known.contains(&n).then_some(n));
        }
        for p in known {
            if self.project_id(p)? == id {
                return Ok(Some(p.clone()));
            }
        }
        Ok(None)
    }

    /// Adds and removes tags of a spider; returns its tags.
    fn update_spider_tags(
        &mut self,
        project: &str,
        spider: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<Vec<String>> {
        self.spider_id(project, spider, true)?;
        let mut tags = self.spider_tags(project, spider)?;
        apply_tags(&mut tags, add, remove);
        self.set_spider_tags(project, spider, &tags)?;
        Ok(tags)
    }

    /// Gives a newly queued job its key and metadata (state `pending`). `extra` holds what
    /// `run.json` adds (tags, units, meta keys, environment, …).
    fn register_job(&mut self, job: &PendingJob, extra: &Map<String, Value>) -> Result<JobKey> {
        let project_id = self.project_id(&job.project)?;
        let spider_id = self
            .spider_id(&job.project, &job.spider, true)?
            .unwrap_or(0);
        let n = self.next_job_number(&job.project, spider_id)?;
        let now = if job.created > 0 {
            job.created / 1000
        } else {
            now_ms()
        };
        let mut meta = Map::new();
        meta.insert("project".into(), project_id.into());
        meta.insert("spider".into(), job.spider.clone().into());
        meta.insert("spider_type".into(), "manual".into());
        meta.insert("state".into(), "pending".into());
        meta.insert("pending_time".into(), now.into());
        meta.insert("scheduled_by".into(), "scrapyd".into());
        meta.insert("priority".into(), cloud_priority(job.priority).into());
        meta.insert("units".into(), 1.into());
        meta.insert("tags".into(), json!([]));
        meta.insert("scrapyd_job".into(), job.job.clone().into());
        if let Some(v) = &job.version {
            meta.insert("version".into(), v.clone().into());
        }
        if !job.args.is_empty() {
            meta.insert("spider_args".into(), Value::Object(pairs_to_map(&job.args)));
        }
        if !job.settings.is_empty() {
            meta.insert(
                "job_settings".into(),
                Value::Object(pairs_to_map(&job.settings)),
            );
        }
        for (k, v) in extra {
            meta.insert(k.clone(), v.clone());
        }
        let scheduled_by = meta
            .get("scheduled_by")
            .and_then(Value::as_str)
            .unwrap_or("scrapyd")
            .to_owned();
        let key = JobKey {
            project: project_id,
            spider: spider_id,
            n,
        };
        self.insert_cloud_job(&CloudJob {
            key,
            project: job.project.clone(),
            spider: job.spider.clone(),
            job: job.job.clone(),
            state: "pending".into(),
            ts: now,
            meta,
        })?;
        self.job_activity(&job.project, &key.to_string(), "scheduled", &scheduled_by);
        Ok(key)
    }

    /// Records a job event (`job:<what>`) by `user` in its project's activity log (a failure
    /// is logged: the job's change stands).
    fn job_activity(&mut self, project: &str, key: &str, what: &str, user: &str) {
        let mut e = Map::new();
        e.insert("event".into(), format!("job:{what}").into());
        e.insert("job".into(), key.into());
        e.insert("user".into(), user.into());
        if let Err(err) = self.add_activity(project, &[e]) {
            tracing::warn!("cannot record activity: {err}");
        }
    }

    /// Moves a job to `state`, setting its time and user fields and `extra` metadata.
    fn transition(
        &mut self,
        job: &mut CloudJob,
        state: &str,
        by: &str,
        extra: Map<String, Value>,
    ) -> Result<()> {
        let now = now_ms();
        job.state = state.to_owned();
        job.ts = now;
        job.meta.insert("state".into(), state.into());
        if let Some((time, user)) = transition_fields(state) {
            job.meta.insert(time.into(), now.into());
            job.meta.insert(user.into(), by.into());
        }
        job.meta.extend(extra);
        self.save_cloud_job(job)?;
        let what = match state {
            "running" => Some("started"),
            "finished"
                if job.meta.get("close_reason").and_then(Value::as_str) == Some("cancelled") =>
            {
                Some("cancelled")
            }
            "finished" => Some("completed"),
            "deleted" => Some("deleted"),
            _ => None,
        };
        if let Some(what) = what {
            let project = job.project.clone();
            self.job_activity(&project, &job.key.to_string(), what, by);
        }
        Ok(())
    }

    /// Follows a Scrapyd job into `state` (registering it first if it has no row yet).
    fn follow_job(
        &mut self,
        pending: &PendingJob,
        state: &str,
        extra: Map<String, Value>,
    ) -> Result<()> {
        let job = match self.cloud_job_of(&pending.project, &pending.job)? {
            Some(j) if j.state != "finished" && j.state != "deleted" => Some(j),
            _ if state == "pending" => None,
            _ => {
                self.register_job(pending, &Map::new())?;
                self.cloud_job_of(&pending.project, &pending.job)?
            }
        };
        if let Some(mut job) = job {
            self.transition(&mut job, state, "jobrunner", extra)?;
        }
        Ok(())
    }

    /// Follows a job event, in the transaction of the change; gives the job's key when the
    /// event registered it. A failure here never undoes that change (the job has moved): it is
    /// logged, and the row is made good on the next transition.
    fn follow(&mut self, event: JobEvent<'_>) -> Option<JobKey> {
        let (what, result) = match event {
            JobEvent::Enqueued(job, extra) => {
                return self
                    .register_job(job, extra)
                    .map_err(|e| tracing::warn!("job registry: cannot register a queued job: {e}"))
                    .ok();
            }
            JobEvent::Started(job) => ("a start", self.follow_job(job, "running", Map::new())),
            JobEvent::Requeued(job) => ("a requeue", self.follow_job(job, "pending", Map::new())),
            JobEvent::Removed { project, job, by } => {
                ("a cancel", self.follow_removed(project, job, by))
            }
            JobEvent::Finished {
                project,
                job,
                ending,
            } => ("an end", self.follow_finished(project, job, ending)),
        };
        if let Err(e) = result {
            tracing::warn!("job registry: cannot record {what}: {e}");
        }
        None
    }

    /// A pending job was cancelled (or its project deleted).
    fn follow_removed(&mut self, project: &str, job: &str, by: &str) -> Result<()> {
        if let Some(mut j) = self.cloud_job_of(project, job)?
            && j.state == "pending"
        {
            let mut extra = Map::new();
            extra.insert("close_reason".into(), "cancelled".into());
            extra.insert("cancelled_by".into(), by.into());
            self.transition(&mut j, "finished", by, extra)?;
        }
        Ok(())
    }

    /// A job's crawl ended.
    fn follow_finished(&mut self, project: &str, job: &str, ending: &Ending) -> Result<()> {
        if let Some(mut j) = self.cloud_job_of(project, job)?
            && j.state != "finished"
            && j.state != "deleted"
        {
            let mut extra = Map::new();
            extra.insert("close_reason".into(), close_reason(ending).into());
            extra.insert("outcome".into(), ending.outcome.as_str().into());
            if let Some(stats) = ending
                .stats
                .as_deref()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
            {
                extra.insert("scrapystats".into(), stats);
            }
            self.transition(&mut j, "finished", "jobrunner", extra)?;
        }
        Ok(())
    }

    /// What the registry adds to the launch of a Scrapyd job: its key and the environment
    /// `run.json` gave it (`None` when it has no row).
    fn launch_environment(&mut self, project: &str, job: &str) -> Option<RegistryLaunch> {
        let j = self.cloud_job_of(project, job).ok()??;
        let environment = match j.meta.get("environment") {
            Some(Value::Object(map)) => string_pairs(map),
            _ => Vec::new(),
        };
        Some(RegistryLaunch {
            key: j.key,
            environment,
        })
    }

    /// The key of an active (pending or running) job of `project` that a job of `spider` with
    /// this metadata would duplicate.
    fn find_duplicate(
        &mut self,
        project: &str,
        spider: &str,
        unique: &Uniqueness,
        meta: &Map<String, Value>,
    ) -> Result<Option<JobKey>> {
        let mut query = JobQuery {
            states: vec!["pending".into(), "running".into()],
            ..JobQuery::default()
        };
        let no_args = json!({});
        let args = meta.get("spider_args").unwrap_or(&no_args);
        let same = |j: &CloudJob| match unique {
            Uniqueness::None => false,
            Uniqueness::Value(v) => j.meta.get("unique") == Some(v),
            Uniqueness::SameArguments => j.meta.get("spider_args").unwrap_or(&no_args) == args,
        };
        match unique {
            Uniqueness::None => return Ok(None),
            Uniqueness::Value(_) => {}
            Uniqueness::SameArguments => match self.spider_id(project, spider, false)? {
                Some(id) => query.spider_id = Some(id),
                None => return Ok(None),
            },
        }
        Ok(self
            .cloud_jobs(project, &query)?
            .into_iter()
            .find(|j| same(j))
            .map(|j| j.key))
    }

    /// Jobs of `project` matching a query, newest first (by `ts`).
    fn cloud_jobs(&mut self, project: &str, query: &JobQuery) -> Result<Vec<CloudJob>> {
        let spider_id = match &query.spider {
            Some(name) => Some(self.spider_id(project, name, false)?.unwrap_or(-1)),
            None => query.spider_id,
        };
        let mut out = Vec::new();
        let mut skipped = 0;
        self.visit_cloud_jobs(
            project,
            &query.states,
            spider_id,
            (query.startts, query.endts),
            &mut |job| {
                if !query.keys.is_empty() && !query.keys.contains(&job.key) {
                    return true;
                }
                let tags = tags_of(&job.meta);
                if !query.has_tag.is_empty() && !query.has_tag.iter().any(|t| tags.contains(t)) {
                    return true;
                }
                if query.lacks_tag.iter().any(|t| tags.contains(t)) {
                    return true;
                }
                if skipped < query.skip {
                    skipped += 1;
                    return true;
                }
                // `stop`: the listing ends before that job.
                if query.stop == Some(job.key) || query.count.is_some_and(|c| out.len() >= c) {
                    return false;
                }
                out.push(job);
                true
            },
        )?;
        Ok(out)
    }

    /// Applies the retention (`jobdata_to_keep`): removes the registry rows of a spider's
    /// finished (and deleted) jobs beyond the newest `keep`, and returns their keys (their data
    /// folders are the caller's to remove). `keep = 0` keeps everything.
    fn prune_cloud_jobs(
        &mut self,
        project: &str,
        spider: &str,
        keep: usize,
    ) -> Result<Vec<JobKey>> {
        if keep == 0 {
            return Ok(Vec::new());
        }
        let Some(spider_id) = self.spider_id(project, spider, false)? else {
            return Ok(Vec::new());
        };
        let project_id = self.project_id(project)?;
        let mut removed = Vec::new();
        for n in self.cloud_jobs_beyond(project, spider_id, keep)? {
            let key = JobKey {
                project: project_id,
                spider: spider_id,
                n,
            };
            self.delete_cloud_job(project, key)?;
            removed.push(key);
        }
        Ok(removed)
    }

    /// Registers a job that a runner outside scrapyd-rs will take (see `jobq/<p>/push`),
    /// without queueing it; `state` may move it on at once.
    fn register_external(
        &mut self,
        project: &str,
        spider: &str,
        extra: &Map<String, Value>,
        state: Option<&str>,
    ) -> Result<JobKey> {
        let priority = extra.get("priority").and_then(Value::as_f64).unwrap_or(2.0);
        let pending = PendingJob {
            project: project.to_owned(),
            spider: spider.to_owned(),
            job: crate::new_job_id(),
            priority,
            version: None,
            settings: vec![],
            args: vec![],
            created: now_micros(),
        };
        let mut extra = extra.clone();
        extra.insert("external".into(), true.into());
        let key = self.register_job(&pending, &extra)?;
        if let Some(s) = state.filter(|s| *s != "pending")
            && let Some(mut job) = self.cloud_job(project, key)?
        {
            let mut fields = Map::new();
            if s == "running" {
                fields.insert("auth".into(), new_token().into());
            }
            self.transition(&mut job, s, "api", fields)?;
        }
        Ok(key)
    }

    /// Takes the next pending external job (highest priority, then oldest) and marks it
    /// running; `params` are stored in its metadata.
    fn start_external(
        &mut self,
        project: &str,
        params: Map<String, Value>,
    ) -> Result<Option<CloudJob>> {
        // Two runners asking at once (through two nodes) get two jobs, never the same one.
        self.lock_admission(project)?;
        let query = JobQuery {
            states: vec!["pending".into()],
            ..JobQuery::default()
        };
        let mut candidates: Vec<CloudJob> = self
            .cloud_jobs(project, &query)?
            .into_iter()
            .filter(|j| j.meta.get("external") == Some(&Value::Bool(true)))
            .collect();
        candidates.sort_by(|a, b| {
            let p = |j: &CloudJob| j.meta.get("priority").and_then(Value::as_i64).unwrap_or(2);
            p(b).cmp(&p(a))
                .then(a.ts.cmp(&b.ts))
                .then(a.key.n.cmp(&b.key.n))
        });
        let Some(mut job) = candidates.into_iter().next() else {
            return Ok(None);
        };
        let mut fields = params;
        fields.insert("auth".into(), new_token().into());
        self.transition(&mut job, "running", "jobrunner", fields)?;
        Ok(Some(job))
    }
}

impl<T: Rows + ?Sized> Registry for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DbsDir;
    use crate::storage::TestDb as Db;
    use crate::storage::lifecycle::Lifecycle;
    use crate::storage::model::*;
    use crate::storage::rows::*;

    fn pending(project: &str, spider: &str, job: &str) -> PendingJob {
        PendingJob {
            args: vec![("a".into(), "1".into())],
            created: 1_000_000,
            ..PendingJob::new(project, spider, job)
        }
    }

    #[test]
    fn numeric_projects_keep_their_number_and_others_get_allocated_ids() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        assert_eq!(db.project_id("123").unwrap(), 123);
        assert_eq!(db.project_id("books").unwrap(), FIRST_ALLOCATED_PROJECT_ID);
        assert_eq!(
            db.project_id("news").unwrap(),
            FIRST_ALLOCATED_PROJECT_ID + 1
        );
        assert_eq!(db.project_id("books").unwrap(), FIRST_ALLOCATED_PROJECT_ID);
        // Not numbers as Scrapy Cloud writes them: allocated.
        assert_eq!(
            db.project_id("0123").unwrap(),
            FIRST_ALLOCATED_PROJECT_ID + 2
        );
        let known = vec!["123".to_string(), "books".to_string()];
        assert_eq!(
            db.project_by_id(123, &known).unwrap().as_deref(),
            Some("123")
        );
        // A registered project that is gone is not found.
        assert_eq!(
            db.project_by_id(FIRST_ALLOCATED_PROJECT_ID + 1, &known)
                .unwrap(),
            None
        );
    }

    #[test]
    fn jobs_get_per_spider_keys_and_follow_the_scrapyd_side() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        for (spider, job) in [("a", "j1"), ("b", "j2"), ("a", "j3")] {
            // Queueing registers the job.
            db.enqueue(&pending("7", spider, job), &Map::new()).unwrap();
        }
        let j3 = db.cloud_job_of("7", "j3").unwrap().unwrap();
        assert_eq!(j3.key.to_string(), "7/1/2");
        assert_eq!(j3.meta["spider_args"], json!({"a": "1"}));
        assert_eq!(
            db.cloud_job_of("7", "j2").unwrap().unwrap().key.to_string(),
            "7/2/1"
        );
        // Started in queue order (priority, then FIFO), ended: the registry follows.
        let r = db.start_next(&["7".into()], 2_000_000).unwrap().unwrap();
        assert_eq!(
            db.cloud_job_of("7", &r.job).unwrap().unwrap().state,
            "running"
        );
        let ending = Ending {
            end_time: 3_000_000,
            exit_code: Some(0),
            signal: None,
            outcome: Outcome::Finished,
            reason: None,
            finish_reason: Some("closespider_itemcount".into()),
            stats: Some(r#"{"item_scraped_count": 3}"#.into()),
        };
        db.finish(r.id, &ending, 100).unwrap();
        let done = db.cloud_job_of("7", &r.job).unwrap().unwrap();
        assert_eq!(done.state, "finished");
        assert_eq!(done.meta["close_reason"], "closespider_itemcount");
        assert_eq!(done.meta["scrapystats"]["item_scraped_count"], 3);
        // A cancelled pending job is finished as cancelled.
        db.remove_pending("7", "j2").unwrap();
        let j2 = db.cloud_job_of("7", "j2").unwrap().unwrap();
        assert_eq!(
            (j2.state.as_str(), &j2.meta["close_reason"]),
            ("finished", &json!("cancelled"))
        );
        let events: Vec<String> = db
            .activity(&["7".into()], 100)
            .unwrap()
            .into_iter()
            .map(|e| e.event["event"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(
            events,
            [
                "job:cancelled",
                "job:completed",
                "job:started",
                "job:scheduled",
                "job:scheduled",
                "job:scheduled"
            ]
        );
    }

    #[test]
    fn retention_keeps_the_newest_finished_jobs_of_a_spider() {
        let mut db = Db::new_for_tests(DbsDir::Memory);
        let mut keys = Vec::new();
        for i in 0..5 {
            let key = db
                .register_external("p", "s", &Map::new(), Some("finished"))
                .unwrap();
            let mut job = db.cloud_job("p", key).unwrap().unwrap();
            job.ts = i;
            db.save_cloud_job(&job).unwrap();
            keys.push(key);
        }
        let pending = db.register_external("p", "s", &Map::new(), None).unwrap();
        let mut removed = db.prune_cloud_jobs("p", "s", 2).unwrap();
        removed.sort_by_key(|k| k.n);
        assert_eq!(removed, keys[..3]);
        assert!(db.cloud_job("p", keys[4]).unwrap().is_some());
        assert!(db.cloud_job("p", pending).unwrap().is_some());
        assert!(db.prune_cloud_jobs("p", "s", 0).unwrap().is_empty());
    }
}
