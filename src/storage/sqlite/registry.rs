//! Scrapy Cloud identities and job metadata, kept in `jobs.db` beside the Scrapyd job rows (so
//! the store stays their one owner):
//! - every project has a numeric id (a project named by a number keeps that number; others get
//!   ids from [`FIRST_ALLOCATED_PROJECT_ID`] up);
//! - every spider of a project has a numeric id (1, 2, … in order of first sight), and a job
//!   counter: jobs are keyed `project/spider/n`;
//! - every job, whichever API scheduled it, has a row with its state and its metadata object.
//!
//! The queue and job rows of the Scrapyd side stay what they were; the registry follows their
//! [`JobEvent`]s (queued → `pending`, started → `running`, ended → `finished`).

use super::{Db, JOBS_DB, JobEvent};
use crate::storage::StorageError;
use crate::storage::model::{
    CloudJob, Ending, FIRST_ALLOCATED_PROJECT_ID, JobKey, JobQuery, PendingJob, RegistryLaunch,
    Uniqueness, apply_tags, close_reason, now_micros, now_ms, pairs_to_map, parse_id, string_pairs,
    tags_of,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};

/// Project and spider ids already read (ids never change once given).
#[derive(Debug, Default)]
pub struct IdCache {
    projects: std::collections::HashMap<String, i64>,
    spiders: std::collections::HashMap<(String, String), i64>,
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

fn row_to_job(project_id: i64, r: &rusqlite::Row<'_>) -> rusqlite::Result<CloudJob> {
    let meta: String = r.get(7)?;
    Ok(CloudJob {
        key: JobKey {
            project: project_id,
            spider: r.get(1)?,
            n: r.get(2)?,
        },
        project: r.get(0)?,
        spider: r.get(3)?,
        job: r.get(4)?,
        state: r.get(5)?,
        ts: r.get(6)?,
        meta: serde_json::from_str(&meta).unwrap_or_default(),
    })
}

const JOB_COLUMNS: &str = "project, spider_id, n, spider, job, state, ts, meta";

impl Db {
    fn registry(&mut self) -> Result<&Connection, StorageError> {
        self.conn(JOBS_DB)
    }

    /// The numeric id of a project, given on first use.
    pub fn project_id(&mut self, name: &str) -> Result<i64, StorageError> {
        if let Some(&id) = self.cloud_ids.projects.get(name) {
            return Ok(id);
        }
        let id = self.project_id_uncached(name)?;
        self.cloud_ids.projects.insert(name.to_owned(), id);
        Ok(id)
    }

    fn project_id_uncached(&mut self, name: &str) -> Result<i64, StorageError> {
        let conn = self.registry()?;
        if let Some(id) = conn
            .query_row(
                "SELECT id FROM cloud_projects WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?
        {
            return Ok(id);
        }
        let own = parse_id(name).filter(|&n| n < FIRST_ALLOCATED_PROJECT_ID);
        let taken = |id: i64| -> Result<bool, StorageError> {
            Ok(conn
                .prepare_cached("SELECT 1 FROM cloud_projects WHERE id = ?1")?
                .exists([id])?)
        };
        let id = match own {
            Some(n) if !taken(n)? => n,
            _ => {
                let max: Option<i64> = conn.query_row(
                    "SELECT max(id) FROM cloud_projects WHERE id >= ?1",
                    [FIRST_ALLOCATED_PROJECT_ID],
                    |r| r.get(0),
                )?;
                max.map_or(FIRST_ALLOCATED_PROJECT_ID, |m| m + 1)
            }
        };
        conn.execute(
            "INSERT INTO cloud_projects (name, id) VALUES (?1, ?2)",
            params![name, id],
        )?;
        Ok(id)
    }

    /// The project with this id, among `known` projects (registering them as needed).
    pub fn project_by_id(
        &mut self,
        id: i64,
        known: &[String],
    ) -> Result<Option<String>, StorageError> {
        let name: Option<String> = self
            .registry()?
            .query_row("SELECT name FROM cloud_projects WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(n) = name {
            return Ok(known.contains(&n).then_some(n));
        }
        for p in known {
            if self.project_id(p)? == id {
                return Ok(Some(p.clone()));
            }
        }
        Ok(None)
    }

    /// The id of a spider of `project`; with `create`, given on first use.
    pub fn spider_id(
        &mut self,
        project: &str,
        spider: &str,
        create: bool,
    ) -> Result<Option<i64>, StorageError> {
        let cache_key = (project.to_owned(), spider.to_owned());
        if let Some(&id) = self.cloud_ids.spiders.get(&cache_key) {
            return Ok(Some(id));
        }
        let id = self.spider_id_uncached(project, spider, create)?;
        if let Some(id) = id {
            self.cloud_ids.spiders.insert(cache_key, id);
        }
        Ok(id)
    }

    fn spider_id_uncached(
        &mut self,
        project: &str,
        spider: &str,
        create: bool,
    ) -> Result<Option<i64>, StorageError> {
        let conn = self.registry()?;
        let id: Option<i64> = conn
            .query_row(
                "SELECT id FROM cloud_spiders WHERE project = ?1 AND name = ?2",
                params![project, spider],
                |r| r.get(0),
            )
            .optional()?;
        if id.is_some() || !create {
            return Ok(id);
        }
        let next: i64 = conn.query_row(
            "SELECT coalesce(max(id), 0) + 1 FROM cloud_spiders WHERE project = ?1",
            [project],
            |r| r.get(0),
        )?;
        conn.execute(
            "INSERT INTO cloud_spiders (project, name, id) VALUES (?1, ?2, ?3)",
            params![project, spider, next],
        )?;
        Ok(Some(next))
    }

    /// The spiders the registry knows for `project`, by id.
    pub fn registry_spiders(&mut self, project: &str) -> Result<Vec<String>, StorageError> {
        let conn = self.registry()?;
        let mut stmt =
            conn.prepare_cached("SELECT name FROM cloud_spiders WHERE project = ?1 ORDER BY id")?;
        let names = stmt
            .query_map([project], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(names)
    }

    /// The name of spider `id` of `project`.
    pub fn spider_name(&mut self, project: &str, id: i64) -> Result<Option<String>, StorageError> {
        Ok(self
            .registry()?
            .query_row(
                "SELECT name FROM cloud_spiders WHERE project = ?1 AND id = ?2",
                params![project, id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// A spider's tags.
    pub fn spider_tags(
        &mut self,
        project: &str,
        spider: &str,
    ) -> Result<Vec<String>, StorageError> {
        let tags: Option<String> = self
            .registry()?
            .query_row(
                "SELECT tags FROM cloud_spiders WHERE project = ?1 AND name = ?2",
                params![project, spider],
                |r| r.get(0),
            )
            .optional()?;
        Ok(tags
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    /// Adds and removes tags of a spider; returns its tags.
    pub fn update_spider_tags(
        &mut self,
        project: &str,
        spider: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<Vec<String>, StorageError> {
        self.spider_id(project, spider, true)?;
        let mut tags = self.spider_tags(project, spider)?;
        apply_tags(&mut tags, add, remove);
        self.registry()?.execute(
            "UPDATE cloud_spiders SET tags = ?3 WHERE project = ?1 AND name = ?2",
            params![project, spider, Value::from(tags.clone()).to_string()],
        )?;
        Ok(tags)
    }

    /// Gives a newly queued job its key and metadata (state `pending`). `extra` holds what
    /// `run.json` adds (tags, units, meta keys, environment, …).
    pub fn register_job(
        &mut self,
        job: &PendingJob,
        extra: &Map<String, Value>,
    ) -> Result<JobKey, StorageError> {
        let project_id = self.project_id(&job.project)?;
        let spider_id = self
            .spider_id(&job.project, &job.spider, true)?
            .unwrap_or(0);
        let conn = self.registry()?;
        let n: i64 = conn
            .prepare_cached(
                "UPDATE cloud_spiders SET next_job = next_job + 1 WHERE project = ?1 AND id = ?2
                 RETURNING next_job - 1",
            )?
            .query_row(params![job.project, spider_id], |r| r.get(0))?;
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
        conn.prepare_cached(&format!(
            "INSERT INTO cloud_jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7)"
        ))?
        .execute(params![
            job.project,
            spider_id,
            n,
            job.spider,
            job.job,
            now,
            Value::Object(meta).to_string()
        ])?;
        let key = JobKey {
            project: project_id,
            spider: spider_id,
            n,
        };
        self.job_activity(&job.project, &key.to_string(), "scheduled", &scheduled_by);
        Ok(key)
    }

    /// The newest registry row of a Scrapyd job.
    pub fn cloud_job_of(
        &mut self,
        project: &str,
        job: &str,
    ) -> Result<Option<CloudJob>, StorageError> {
        let project_id = self.project_id(project)?;
        let conn = self.registry()?;
        Ok(conn
            .query_row(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM cloud_jobs WHERE project = ?1 AND job = ?2
                     ORDER BY ts DESC, n DESC LIMIT 1"
                ),
                params![project, job],
                |r| row_to_job(project_id, r),
            )
            .optional()?)
    }

    /// A job by key.
    pub fn cloud_job(
        &mut self,
        project: &str,
        key: JobKey,
    ) -> Result<Option<CloudJob>, StorageError> {
        let conn = self.registry()?;
        Ok(conn
            .query_row(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM cloud_jobs WHERE project = ?1 AND spider_id = ?2 AND n = ?3"
                ),
                params![project, key.spider, key.n],
                |r| row_to_job(key.project, r),
            )
            .optional()?)
    }

    /// Writes a job's state, ts and metadata.
    pub fn save_cloud_job(&mut self, job: &CloudJob) -> Result<(), StorageError> {
        self.registry()?
            .prepare_cached(
                "UPDATE cloud_jobs SET state = ?4, ts = ?5, meta = ?6
                 WHERE project = ?1 AND spider_id = ?2 AND n = ?3",
            )?
            .execute(params![
                job.project,
                job.key.spider,
                job.key.n,
                job.state,
                job.ts,
                Value::Object(job.meta.clone()).to_string()
            ])?;
        Ok(())
    }

    /// Changes a job's metadata in place (nothing when the job is gone).
    pub fn edit_cloud_meta(
        &mut self,
        project: &str,
        key: JobKey,
        edit: impl FnOnce(&mut Map<String, Value>),
    ) -> Result<(), StorageError> {
        if let Some(mut job) = self.cloud_job(project, key)? {
            edit(&mut job.meta);
            self.save_cloud_job(&job)?;
        }
        Ok(())
    }

    /// Moves a job to `state`, setting its time and user fields and `extra` metadata.
    pub fn transition(
        &mut self,
        job: &mut CloudJob,
        state: &str,
        by: &str,
        extra: Map<String, Value>,
    ) -> Result<(), StorageError> {
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
    pub fn follow_job(
        &mut self,
        pending: &PendingJob,
        state: &str,
        extra: Map<String, Value>,
    ) -> Result<(), StorageError> {
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

    /// What the registry adds to the launch of a Scrapyd job: its key and the environment
    /// `run.json` gave it (`None` when it has no row).
    pub fn launch_environment(&mut self, project: &str, job: &str) -> Option<RegistryLaunch> {
        let j = self.cloud_job_of(project, job).ok()??;
        Some(RegistryLaunch {
            key: j.key,
            environment: self.job_environment(project, job).unwrap_or_default(),
        })
    }

    /// The key of an active (pending or running) job of `project` that a job of `spider` with
    /// this metadata would duplicate.
    pub fn find_duplicate(
        &mut self,
        project: &str,
        spider: &str,
        unique: &Uniqueness,
        meta: &Map<String, Value>,
    ) -> Result<Option<JobKey>, StorageError> {
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

    /// The environment `run.json` gave a job, for its crawl.
    pub fn job_environment(
        &mut self,
        project: &str,
        job: &str,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let Some(j) = self.cloud_job_of(project, job)? else {
            return Ok(Vec::new());
        };
        Ok(match j.meta.get("environment") {
            Some(Value::Object(map)) => string_pairs(map),
            _ => Vec::new(),
        })
    }

    /// Jobs of `project` matching a query, newest first (by `ts`).
    pub fn cloud_jobs(
        &mut self,
        project: &str,
        query: &JobQuery,
    ) -> Result<Vec<CloudJob>, StorageError> {
        let project_id = self.project_id(project)?;
        let mut sql = format!("SELECT {JOB_COLUMNS} FROM cloud_jobs WHERE project = ?1");
        let mut args: Vec<rusqlite::types::Value> = vec![project.to_owned().into()];
        if !query.states.is_empty() {
            let marks: Vec<String> = query
                .states
                .iter()
                .map(|s| {
                    args.push(s.clone().into());
                    format!("?{}", args.len())
                })
                .collect();
            sql.push_str(&format!(" AND state IN ({})", marks.join(", ")));
        }
        let spider_id = match &query.spider {
            Some(name) => Some(self.spider_id(project, name, false)?.unwrap_or(-1)),
            None => query.spider_id,
        };
        let conn = self.registry()?;
        if let Some(s) = spider_id {
            args.push(s.into());
            sql.push_str(&format!(" AND spider_id = ?{}", args.len()));
        }
        if let Some(t) = query.startts {
            args.push(t.into());
            sql.push_str(&format!(" AND ts >= ?{}", args.len()));
        }
        if let Some(t) = query.endts {
            args.push(t.into());
            sql.push_str(&format!(" AND ts < ?{}", args.len()));
        }
        sql.push_str(" ORDER BY ts DESC, spider_id DESC, n DESC");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
            row_to_job(project_id, r)
        })?;
        let mut out = Vec::new();
        let mut skipped = 0;
        for row in rows {
            let job = row?;
            if !query.keys.is_empty() && !query.keys.contains(&job.key) {
                continue;
            }
            let tags = tags_of(&job.meta);
            if !query.has_tag.is_empty() && !query.has_tag.iter().any(|t| tags.contains(t)) {
                continue;
            }
            if query.lacks_tag.iter().any(|t| tags.contains(t)) {
                continue;
            }
            if skipped < query.skip {
                skipped += 1;
                continue;
            }
            // `stop`: the listing ends before that job.
            if query.stop == Some(job.key) || query.count.is_some_and(|c| out.len() >= c) {
                break;
            }
            out.push(job);
        }
        Ok(out)
    }

    /// Applies the retention (`jobdata_to_keep`): removes the registry rows of a spider's
    /// finished (and deleted) jobs beyond the newest `keep`, and returns their keys (their data
    /// folders are the caller's to remove). `keep = 0` keeps everything.
    pub fn prune_cloud_jobs(
        &mut self,
        project: &str,
        spider: &str,
        keep: usize,
    ) -> Result<Vec<JobKey>, StorageError> {
        if keep == 0 {
            return Ok(Vec::new());
        }
        let Some(spider_id) = self.spider_id(project, spider, false)? else {
            return Ok(Vec::new());
        };
        let project_id = self.project_id(project)?;
        let conn = self.registry()?;
        let old: Vec<i64> = conn
            .prepare_cached(
                "SELECT n FROM cloud_jobs WHERE project = ?1 AND spider_id = ?2
                 AND state IN ('finished', 'deleted') ORDER BY ts DESC, n DESC LIMIT -1 OFFSET ?3",
            )?
            .query_map(params![project, spider_id, keep as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut delete = conn.prepare_cached(
            "DELETE FROM cloud_jobs WHERE project = ?1 AND spider_id = ?2 AND n = ?3",
        )?;
        for n in &old {
            delete.execute(params![project, spider_id, n])?;
        }
        Ok(old
            .into_iter()
            .map(|n| JobKey {
                project: project_id,
                spider: spider_id,
                n,
            })
            .collect())
    }

    /// Removes a job's registry row (its data files are the caller's).
    pub fn purge_cloud_job(&mut self, project: &str, key: JobKey) -> Result<usize, StorageError> {
        Ok(self.registry()?.execute(
            "DELETE FROM cloud_jobs WHERE project = ?1 AND spider_id = ?2 AND n = ?3",
            params![project, key.spider, key.n],
        )?)
    }
}

/// Filters of `jobq/<p>/list` and `count`.
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

/// The registry following the Scrapyd side ([`JobEvent`]s, written in the transaction of the
/// change they follow). A failure here never undoes that change (the job has moved): it is
/// logged, and the row is made good on the next transition.
impl Db {
    pub(super) fn follow(&mut self, event: JobEvent<'_>) -> Option<JobKey> {
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
    fn follow_removed(&mut self, project: &str, job: &str, by: &str) -> Result<(), StorageError> {
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
    fn follow_finished(
        &mut self,
        project: &str,
        job: &str,
        ending: &Ending,
    ) -> Result<(), StorageError> {
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
}

/// Jobs that only the registry knows: pushed through `jobq/<p>/push` (or run for a spider that
/// the deployed eggs do not have), for a runner outside scrapyd-rs to take with
/// `jobq/<p>/startjob` and report through the storage API. scrapyd-rs's launcher never starts
/// them, and Scrapyd's endpoints do not list them.
impl Db {
    /// Registers a job without queueing it; `state` may move it on at once.
    pub fn register_external(
        &mut self,
        project: &str,
        spider: &str,
        extra: &Map<String, Value>,
        state: Option<&str>,
    ) -> Result<JobKey, StorageError> {
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
    pub fn start_external(
        &mut self,
        project: &str,
        params: Map<String, Value>,
    ) -> Result<Option<CloudJob>, StorageError> {
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

/// A job token (returned to the runner that takes a job).
fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DbsDir;
    use crate::storage::model::*;

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
