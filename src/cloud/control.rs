//! Stopping, cancelling and deleting jobs of the Scrapy Cloud APIs: one path for the storage
//! API (`jobq/<p>/cancel`, `jobq/<p>/update`, `DELETE jobs/<key>`) and the old dash API
//! (`jobs/stop.json`, `jobs/delete.json`). A job that scrapyd-rs runs is stopped the way
//! `cancel.json` stops it (the queue, or the launcher's signal); a job that only the registry
//! knows is its runner's.

use super::jobdata::job_dir;
use super::registry::{CloudJob, JobKey, JobQuery, is_external};
use crate::AppState;
use crate::store::StoreError;
use nix::sys::signal::Signal;
use serde_json::Map;

/// Stops a job: a pending one leaves its queue, a running one is signalled; a pending job
/// that only the registry knows is marked finished (`cancelled`), a running one is left to its
/// runner (it sees `cancelled_by`), as on Scrapy Cloud. Returns whether it was pending or
/// running.
pub async fn stop(state: &AppState, job: &CloudJob, signal: Signal) -> Result<bool, StoreError> {
    if !matches!(job.state.as_str(), "pending" | "running") {
        return Ok(false);
    }
    if is_external(job) {
        if job.state == "running" {
            return Ok(true);
        }
        let (p, key) = (job.project.clone(), job.key);
        state
            .store
            .call(move |db| {
                if let Some(mut j) = db.cloud_job(&p, key)? {
                    let mut extra = Map::new();
                    extra.insert("close_reason".into(), "cancelled".into());
                    db.transition(&mut j, "finished", "api", extra)?;
                }
                Ok(())
            })
            .await?;
        return Ok(true);
    }
    if job.state == "pending" {
        let (p, j) = (job.project.clone(), job.job.clone());
        let removed = state
            .store
            .call(move |db| db.remove_pending(&p, &j))
            .await?;
        Ok(removed > 0)
    } else {
        Ok(state.launcher.cancel(&job.project, &job.job, signal).await > 0)
    }
}

/// Cancels these jobs (SIGINT for a running one, then `cancel_timeout`), marking each
/// `cancelled_by`; returns how many were pending or running.
pub async fn cancel(
    state: &AppState,
    project: &str,
    jobs: &[CloudJob],
) -> Result<usize, StoreError> {
    let mut n = 0;
    for job in jobs {
        if stop(state, job, Signal::SIGINT).await? {
            n += 1;
            let (p, key) = (project.to_owned(), job.key);
            state
                .store
                .call(move |db| {
                    db.edit_cloud_meta(&p, key, |meta| {
                        meta.insert("cancelled_by".into(), "api".into());
                    })
                })
                .await?;
        }
    }
    Ok(n)
}

/// The jobs of `project` with these keys (those that exist).
pub async fn jobs_by_key(
    state: &AppState,
    project: &str,
    keys: Vec<JobKey>,
) -> Result<Vec<CloudJob>, StoreError> {
    let p = project.to_owned();
    let query = JobQuery {
        keys,
        ..JobQuery::default()
    };
    let (_, jobs) = state
        .store
        .read(move |db| db.cloud_jobs(&p, &query))
        .await?;
    Ok(jobs)
}

/// Cancels up to `count` active jobs of `project` (an admin's bulk cancel): pending ones
/// first, then running ones, newest first in each; returns how many.
pub async fn cancel_newest(
    state: &AppState,
    project: &str,
    count: usize,
) -> Result<usize, StoreError> {
    let mut chosen = Vec::new();
    if count == 0 {
        return Ok(0);
    }
    for s in ["pending", "running"] {
        let p = project.to_owned();
        let query = JobQuery {
            states: vec![s.to_owned()],
            count: Some(count - chosen.len()),
            ..JobQuery::default()
        };
        let (_, jobs) = state
            .store
            .read(move |db| db.cloud_jobs(&p, &query))
            .await?;
        chosen.extend(jobs);
        if chosen.len() >= count {
            break;
        }
    }
    cancel(state, project, &chosen).await
}

/// Deletes a job: stops it at once (SIGKILL), removes its registry row and its data.
pub async fn delete(state: &AppState, job: &CloudJob) -> Result<(), StoreError> {
    stop(state, job, Signal::SIGKILL).await?;
    let (project, key) = (job.project.clone(), job.key);
    state
        .store
        .call(move |db| db.purge_cloud_job(&project, key))
        .await?;
    let dir = job_dir(&state.config.jobdata_dir, key.project, key.spider, key.n);
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    Ok(())
}
