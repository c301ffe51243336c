//! The Scrapy Cloud registry's rows, a project's activity log and its settings, on PostgreSQL.
//! Ids are given under an advisory lock (two nodes seeing a new project or spider at once
//! agree on one id); a spider's job numbers come from its row's counter.

use super::tx::{LOCK_IDS, PgTx, Result};
use crate::storage::model::{
    ACTIVITY_TO_KEEP, CloudJob, Event, FIRST_ALLOCATED_PROJECT_ID, JobKey, now_ms, parse_id,
};
use crate::storage::rows::{ActivityRows, RegistryRows, new_project_settings};
use serde_json::{Map, Value};
use std::sync::atomic::Ordering;
use tokio_postgres::Row;
use tokio_postgres::types::Json;

/// Events written between two trims of a log.
const TRIM_EVERY: u64 = 1_000;

const JOB_COLUMNS: &str = "project, spider_id, n, spider, job, state, ts, meta";

fn job_of(project_id: i64, r: &Row) -> CloudJob {
    let meta: Value = r.get(7);
    CloudJob {
        key: JobKey {
            project: project_id,
            spider: r.get(1),
            n: r.get(2),
        },
        project: r.get(0),
        spider: r.get(3),
        job: r.get(4),
        state: r.get(5),
        ts: r.get(6),
        meta: match meta {
            Value::Object(m) => m,
            _ => Map::new(),
        },
    }
}

impl RegistryRows for PgTx<'_> {
    fn project_id(&mut self, name: &str) -> Result<i64> {
        let find = "SELECT id FROM cloud_projects WHERE name = $1";
        if let Some(r) = self.opt(find, &[&name])? {
            return Ok(r.get(0));
        }
        self.lock(LOCK_IDS, "")?;
        if let Some(r) = self.opt(find, &[&name])? {
            return Ok(r.get(0));
        }
        let own = parse_id(name).filter(|&n| n < FIRST_ALLOCATED_PROJECT_ID);
        let taken = |id: i64| -> Result<bool> {
            Ok(self
                .opt("SELECT 1 FROM cloud_projects WHERE id = $1", &[&id])?
                .is_some())
        };
        let id = match own {
            Some(n) if !taken(n)? => n,
            _ => {
                let max: Option<i64> = self
                    .one(
                        "SELECT max(id) FROM cloud_projects WHERE id >= $1",
                        &[&FIRST_ALLOCATED_PROJECT_ID],
                    )?
                    .get(0);
                max.map_or(FIRST_ALLOCATED_PROJECT_ID, |m| m + 1)
            }
        };
        self.exec(
            "INSERT INTO cloud_projects (name, id) VALUES ($1, $2)",
            &[&name, &id],
        )?;
        Ok(id)
    }

    fn project_named(&mut self, id: i64) -> Result<Option<String>> {
        Ok(self
            .opt("SELECT name FROM cloud_projects WHERE id = $1", &[&id])?
            .map(|r| r.get(0)))
    }

    fn spider_id(&mut self, project: &str, spider: &str, create: bool) -> Result<Option<i64>> {
        let find = "SELECT id FROM cloud_spiders WHERE project = $1 AND name = $2";
        if let Some(r) = self.opt(find, &[&project, &spider])? {
            return Ok(Some(r.get(0)));
        }
        if !create {
            return Ok(None);
        }
        self.lock(LOCK_IDS, project)?;
        if let Some(r) = self.opt(find, &[&project, &spider])? {
            return Ok(Some(r.get(0)));
        }
        let next: i64 = self
            .one(
                "INSERT INTO cloud_spiders (project, name, id)
                 SELECT $1, $2, coalesce(max(id), 0) + 1 FROM cloud_spiders WHERE project = $1
                 RETURNING id",
                &[&project, &spider],
            )?
            .get(0);
        Ok(Some(next))
    }

    fn registry_spiders(&mut self, project: &str) -> Result<Vec<String>> {
        Ok(self
            .query(
                "SELECT name FROM cloud_spiders WHERE project = $1 ORDER BY id",
                &[&project],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn spider_name(&mut self, project: &str, id: i64) -> Result<Option<String>> {
        Ok(self
            .opt(
                "SELECT name FROM cloud_spiders WHERE project = $1 AND id = $2",
                &[&project, &id],
            )?
            .map(|r| r.get(0)))
    }

    fn spider_tags(&mut self, project: &str, spider: &str) -> Result<Vec<String>> {
        let tags: Option<Value> = self
            .opt(
                "SELECT tags FROM cloud_spiders WHERE project = $1 AND name = $2",
                &[&project, &spider],
            )?
            .map(|r| r.get(0));
        Ok(tags
            .and_then(|t| serde_json::from_value(t).ok())
            .unwrap_or_default())
    }

    fn set_spider_tags(&mut self, project: &str, spider: &str, tags: &[String]) -> Result<()> {
        self.exec(
            "UPDATE cloud_spiders SET tags = $3 WHERE project = $1 AND name = $2",
            &[&project, &spider, &Json(tags)],
        )?;
        Ok(())
    }

    fn next_job_number(&mut self, project: &str, spider_id: i64) -> Result<i64> {
        Ok(self
            .one(
                "UPDATE cloud_spiders SET next_job = next_job + 1 WHERE project = $1 AND id = $2
                 RETURNING next_job - 1",
                &[&project, &spider_id],
            )?
            .get(0))
    }

    fn insert_cloud_job(&mut self, job: &CloudJob) -> Result<()> {
        self.exec(
            &format!(
                "INSERT INTO cloud_jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                &job.project,
                &job.key.spider,
                &job.key.n,
                &job.spider,
                &job.job,
                &job.state,
                &job.ts,
                &Json(&job.meta),
            ],
        )?;
        Ok(())
    }

    fn cloud_job_of(&mut self, project: &str, job: &str) -> Result<Option<CloudJob>> {
        let project_id = self.project_id(project)?;
        Ok(self
            .opt(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM cloud_jobs WHERE project = $1 AND job = $2
                     ORDER BY ts DESC, n DESC LIMIT 1"
                ),
                &[&project, &job],
            )?
            .map(|r| job_of(project_id, &r)))
    }

    fn cloud_job(&mut self, project: &str, key: JobKey) -> Result<Option<CloudJob>> {
        Ok(self
            .opt(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM cloud_jobs
                     WHERE project = $1 AND spider_id = $2 AND n = $3"
                ),
                &[&project, &key.spider, &key.n],
            )?
            .map(|r| job_of(key.project, &r)))
    }

    fn save_cloud_job(&mut self, job: &CloudJob) -> Result<()> {
        self.exec(
            "UPDATE cloud_jobs SET state = $4, ts = $5, meta = $6
             WHERE project = $1 AND spider_id = $2 AND n = $3",
            &[
                &job.project,
                &job.key.spider,
                &job.key.n,
                &job.state,
                &job.ts,
                &Json(&job.meta),
            ],
        )?;
        Ok(())
    }

    fn visit_cloud_jobs(
        &mut self,
        project: &str,
        states: &[String],
        spider_id: Option<i64>,
        (startts, endts): (Option<i64>, Option<i64>),
        visit: &mut dyn FnMut(CloudJob) -> bool,
    ) -> Result<()> {
        let project_id = self.project_id(project)?;
        self.visit(
            &format!(
                "SELECT {JOB_COLUMNS} FROM cloud_jobs
                 WHERE project = $1 AND (cardinality($2::text[]) = 0 OR state = ANY($2))
                   AND ($3::bigint IS NULL OR spider_id = $3)
                   AND ($4::bigint IS NULL OR ts >= $4) AND ($5::bigint IS NULL OR ts < $5)
                 ORDER BY ts DESC, spider_id DESC, n DESC"
            ),
            &[&project, &states, &spider_id, &startts, &endts],
            &mut |r| visit(job_of(project_id, r)),
        )
    }

    fn cloud_jobs_beyond(
        &mut self,
        project: &str,
        spider_id: i64,
        keep: usize,
    ) -> Result<Vec<i64>> {
        let keep = keep as i64;
        Ok(self
            .query(
                "SELECT n FROM cloud_jobs WHERE project = $1 AND spider_id = $2
                 AND state IN ('finished', 'deleted') ORDER BY ts DESC, n DESC OFFSET $3",
                &[&project, &spider_id, &keep],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn delete_cloud_job(&mut self, project: &str, key: JobKey) -> Result<usize> {
        Ok(self.exec(
            "DELETE FROM cloud_jobs WHERE project = $1 AND spider_id = $2 AND n = $3",
            &[&project, &key.spider, &key.n],
        )? as usize)
    }
}

impl ActivityRows for PgTx<'_> {
    fn add_activity(&mut self, project: &str, events: &[Map<String, Value>]) -> Result<()> {
        let now = now_ms();
        for e in events {
            self.exec(
                "INSERT INTO cloud_activity (project, ts, event) VALUES ($1, $2, $3)",
                &[&project, &now, &Json(e)],
            )?;
        }
        // Trimming walks the project's log: done once per [`TRIM_EVERY`] events, not per event.
        let written = self
            .activity_writes
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        if written / TRIM_EVERY != (written + events.len() as u64) / TRIM_EVERY {
            self.exec(
                "DELETE FROM cloud_activity WHERE project = $1 AND id <=
                   (SELECT id FROM cloud_activity WHERE project = $1
                    ORDER BY id DESC LIMIT 1 OFFSET $2)",
                &[&project, &ACTIVITY_TO_KEEP],
            )?;
        }
        Ok(())
    }

    fn activity(&mut self, projects: &[String], count: usize) -> Result<Vec<Event>> {
        let count = count as i64;
        let rows = self.query(
            "SELECT project, ts, event FROM cloud_activity WHERE project = ANY($1)
             ORDER BY id DESC LIMIT $2",
            &[&projects, &count],
        )?;
        Ok(rows
            .iter()
            .map(|r| Event {
                project: r.get(0),
                ts: r.get(1),
                event: match r.get::<_, Value>(2) {
                    Value::Object(m) => m,
                    _ => Map::new(),
                },
            })
            .collect())
    }

    fn project_settings(&mut self, project: &str) -> Result<Map<String, Value>> {
        let settings: Option<Value> = self
            .opt(
                "SELECT settings FROM cloud_project_settings WHERE project = $1",
                &[&project],
            )?
            .map(|r| r.get(0));
        Ok(match settings {
            Some(Value::Object(m)) => m,
            Some(_) => Map::new(),
            None => new_project_settings(),
        })
    }

    fn set_project_settings(&mut self, project: &str, settings: &Map<String, Value>) -> Result<()> {
        self.exec(
            "INSERT INTO cloud_project_settings (project, settings) VALUES ($1, $2)
             ON CONFLICT (project) DO UPDATE SET settings = excluded.settings",
            &[&project, &Json(settings)],
        )?;
        Ok(())
    }
}
