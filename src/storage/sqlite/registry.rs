//! The Scrapy Cloud registry's rows in `jobs.db` ([`RegistryRows`]): `cloud_projects`,
//! `cloud_spiders` (with each spider's job counter and tags) and `cloud_jobs`. What they mean
//! is written once, for both backends, in [`crate::storage::registry`].

use super::{Db, JOBS_DB};
use crate::storage::StorageError;
use crate::storage::model::{CloudJob, FIRST_ALLOCATED_PROJECT_ID, JobKey, parse_id};
use crate::storage::rows::RegistryRows;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

/// Project and spider ids already read (ids never change once given).
#[derive(Debug, Default)]
pub struct IdCache {
    projects: std::collections::HashMap<String, i64>,
    spiders: std::collections::HashMap<(String, String), i64>,
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
}

impl RegistryRows for Db {
    fn project_id(&mut self, name: &str) -> Result<i64, StorageError> {
        if let Some(&id) = self.cloud_ids.projects.get(name) {
            return Ok(id);
        }
        let id = self.project_id_uncached(name)?;
        self.cloud_ids.projects.insert(name.to_owned(), id);
        Ok(id)
    }

    fn project_named(&mut self, id: i64) -> Result<Option<String>, StorageError> {
        Ok(self
            .registry()?
            .query_row("SELECT name FROM cloud_projects WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn spider_id(
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

    fn registry_spiders(&mut self, project: &str) -> Result<Vec<String>, StorageError> {
        let conn = self.registry()?;
        let mut stmt =
            conn.prepare_cached("SELECT name FROM cloud_spiders WHERE project = ?1 ORDER BY id")?;
        let names = stmt
            .query_map([project], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(names)
    }

    fn spider_name(&mut self, project: &str, id: i64) -> Result<Option<String>, StorageError> {
        Ok(self
            .registry()?
            .query_row(
                "SELECT name FROM cloud_spiders WHERE project = ?1 AND id = ?2",
                params![project, id],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn spider_tags(&mut self, project: &str, spider: &str) -> Result<Vec<String>, StorageError> {
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

    fn set_spider_tags(
        &mut self,
        project: &str,
        spider: &str,
        tags: &[String],
    ) -> Result<(), StorageError> {
        self.registry()?.execute(
            "UPDATE cloud_spiders SET tags = ?3 WHERE project = ?1 AND name = ?2",
            params![project, spider, Value::from(tags.to_vec()).to_string()],
        )?;
        Ok(())
    }

    fn next_job_number(&mut self, project: &str, spider_id: i64) -> Result<i64, StorageError> {
        Ok(self
            .registry()?
            .prepare_cached(
                "UPDATE cloud_spiders SET next_job = next_job + 1 WHERE project = ?1 AND id = ?2
                 RETURNING next_job - 1",
            )?
            .query_row(params![project, spider_id], |r| r.get(0))?)
    }

    fn insert_cloud_job(&mut self, job: &CloudJob) -> Result<(), StorageError> {
        self.registry()?
            .prepare_cached(&format!(
                "INSERT INTO cloud_jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                job.project,
                job.key.spider,
                job.key.n,
                job.spider,
                job.job,
                job.state,
                job.ts,
                Value::Object(job.meta.clone()).to_string()
            ])?;
        Ok(())
    }

    fn cloud_job_of(&mut self, project: &str, job: &str) -> Result<Option<CloudJob>, StorageError> {
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

    fn cloud_job(&mut self, project: &str, key: JobKey) -> Result<Option<CloudJob>, StorageError> {
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

    fn save_cloud_job(&mut self, job: &CloudJob) -> Result<(), StorageError> {
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

    fn visit_cloud_jobs(
        &mut self,
        project: &str,
        states: &[String],
        spider_id: Option<i64>,
        (startts, endts): (Option<i64>, Option<i64>),
        visit: &mut dyn FnMut(CloudJob) -> bool,
    ) -> Result<(), StorageError> {
        let project_id = self.project_id(project)?;
        let mut sql = format!("SELECT {JOB_COLUMNS} FROM cloud_jobs WHERE project = ?1");
        let mut args: Vec<rusqlite::types::Value> = vec![project.to_owned().into()];
        if !states.is_empty() {
            let marks: Vec<String> = states
                .iter()
                .map(|s| {
                    args.push(s.clone().into());
                    format!("?{}", args.len())
                })
                .collect();
            sql.push_str(&format!(" AND state IN ({})", marks.join(", ")));
        }
        if let Some(s) = spider_id {
            args.push(s.into());
            sql.push_str(&format!(" AND spider_id = ?{}", args.len()));
        }
        if let Some(t) = startts {
            args.push(t.into());
            sql.push_str(&format!(" AND ts >= ?{}", args.len()));
        }
        if let Some(t) = endts {
            args.push(t.into());
            sql.push_str(&format!(" AND ts < ?{}", args.len()));
        }
        sql.push_str(" ORDER BY ts DESC, spider_id DESC, n DESC");
        let conn = self.registry()?;
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
            row_to_job(project_id, r)
        })?;
        for row in rows {
            if !visit(row?) {
                break;
            }
        }
        Ok(())
    }

    fn cloud_jobs_beyond(
        &mut self,
        project: &str,
        spider_id: i64,
        keep: usize,
    ) -> Result<Vec<i64>, StorageError> {
        Ok(self
            .registry()?
            .prepare_cached(
                "SELECT n FROM cloud_jobs WHERE project = ?1 AND spider_id = ?2
                 AND state IN ('finished', 'deleted') ORDER BY ts DESC, n DESC LIMIT -1 OFFSET ?3",
            )?
            .query_map(params![project, spider_id, keep as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    fn delete_cloud_job(&mut self, project: &str, key: JobKey) -> Result<usize, StorageError> {
        Ok(self.registry()?.execute(
            "DELETE FROM cloud_jobs WHERE project = ?1 AND spider_id = ?2 AND n = ?3",
            params![project, key.spider, key.n],
        )?)
    }
}
