//! Stopping, cancelling and deleting jobs of the Scrapy Cloud APIs: one path for the storage
//! API (`jobq/<p>/cancel`, `jobq/<p>/update`, `DELETE jobs/<key>`) and the old dash API
//! (`jobs/stop.json`, `jobs/delete.json`). A job that scrapyd-rs runs is stopped the way
//! `cancel.json` stops it (the queue, or the launcher's signal); a job that only the registry
//! knows is its runner's.

use super::jobdata::job_dir;
use super::registry::is_external;
use crate::AppState;
use crate::storage::StorageError;
use crate::storage::model::{CloudJob, JobKey, JobQuery};
use nix::sys::signal::Signal;
use serde_json::{Map, Value};

/// Stops a job: a pending one leaves its queue, a running one is signalled; a pending job
/// that only the registry knows is marked finished (`cancelled`), a running one is left to its
/// runner (it sees `cancelled_by`), as on Scrapy Cloud. Returns whether it was pending or
/// running.
pub async fn stop(state: &AppState, job: &CloudJob, signal: Signal) -> Result<bool, StorageError> {
    // An ended job is left alone (its Scrapyd job id may have been given to a new job since).
    if !matches!(job.state.as_str(), "pending" | "running") {
        return Ok(false);
    }
    if is_external(job) {
        if job.state == "running" {
            return Ok(true);
        }
        let (p, key) = (job.project.clone(), job.key);
        state
            .storage
            .transition_cloud_job(&p, key, Some("finished".into()), "api", {
                let mut extra = Map::new();
                extra.insert("close_reason".into(), "cancelled".into());
                extra
            })
            .await?;
        return Ok(true);
    }
    // The Scrapyd side decides, as `cancel.json` does: the registry's state follows it and may
    // lag (a job that has just started is still `pending` there).
    let (p, j) = (job.project.clone(), job.job.clone());
    let removed = state.storage.cancel_pending(&p, &j).await?;
    if removed > 0 {
        return Ok(true);
    }
    Ok(state.launcher.cancel(&job.project, &job.job, signal).await > 0)
}

/// Cancels these jobs (SIGINT for a running one, then `cancel_timeout`), marking each
/// `cancelled_by`; returns how many were pending or running.
pub async fn cancel(
    state: &AppState,
    project: &str,
    jobs: &[CloudJob],
) -> Result<usize, StorageError> {
    let mut n = 0;
    for job in jobs {
        if stop(state, job, Signal::SIGINT).await? {
            n += 1;
            let (p, key) = (project.to_owned(), job.key);
            state
                .storage
                .edit_cloud_meta(&p, vec![key], |meta| {
                    meta.insert("cancelled_by".into(), "api".into());
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
) -> Result<Vec<CloudJob>, StorageError> {
    let query = JobQuery {
        keys,
        ..JobQuery::default()
    };
    jobs_matching(state, project, query).await
}

/// The jobs of `project` that `query` selects, newest first.
pub async fn jobs_matching(
    state: &AppState,
    project: &str,
    query: JobQuery,
) -> Result<Vec<CloudJob>, StorageError> {
    let p = project.to_owned();
    let jobs = state.storage.cloud_jobs(&p, query).await?;
    Ok(jobs)
}

/// Whether these jobs may be moved to `state`. A client may move an external runner's job
/// anywhere (it reports for that runner), but a job scrapyd-rs runs only to an end (which
/// stops its crawl): its state follows the crawl, never back or forth.
pub fn check_transition(jobs: &[CloudJob], state: &str) -> Result<(), String> {
    let moved_back = matches!(state, "pending" | "running");
    match jobs
        .iter()
        .find(|j| moved_back && !is_external(j) && j.state != state)
    {
        Some(job) => Err(format!(
            "job {} runs here: its state follows its crawl (only finished or deleted may be set)",
            job.key
        )),
        None => Ok(()),
    }
}

/// Moves a job to `state` (stopping its crawl first when it ends a job scrapyd-rs runs) and
/// merges `fields` into its metadata; a job that finishes makes room under the retention
/// (`jobdata_to_keep`).
pub async fn update(
    state: &AppState,
    job: &CloudJob,
    new_state: Option<&str>,
    fields: Map<String, Value>,
) -> Result<(), StorageError> {
    let ends = matches!(new_state, Some("finished" | "deleted"));
    if ends && new_state != Some(job.state.as_str()) && !is_external(job) {
        stop(state, job, Signal::SIGINT).await?;
    }
    let (p, key, s) = (job.project.clone(), job.key, new_state.map(str::to_owned));
    state
        .storage
        .transition_cloud_job(&p, key, s, "api", fields)
        .await?;
    if new_state == Some("finished") {
        let (p, spider, keep) = (
            job.project.clone(),
            job.spider.clone(),
            state.config.jobdata_to_keep,
        );
        let pruned = state.storage.prune_cloud_jobs(&p, &spider, keep).await?;
        super::jobdata::remove_job_data(&state.config.jobdata_dir, pruned);
    }
    Ok(())
}

/// Cancels up to `count` active jobs of `project` (an admin's bulk cancel): pending ones
/// first, then running ones, newest first in each; returns how many.
pub async fn cancel_newest(
    state: &AppState,
    project: &str,
    count: usize,
) -> Result<usize, StorageError> {
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
        let jobs = state.storage.cloud_jobs(&p, query).await?;
        chosen.extend(jobs);
        if chosen.len() >= count {
            break;
        }
    }
    cancel(state, project, &chosen).await
}

/// Deletes a job: stops it at once (SIGKILL), removes its registry row and its data.
pub async fn delete(state: &AppState, job: &CloudJob) -> Result<(), StorageError> {
    stop(state, job, Signal::SIGKILL).await?;
    let (project, key) = (job.project.clone(), job.key);
    state.storage.purge_cloud_job(&project, key).await?;
    let dir = job_dir(&state.config.jobdata_dir, key.project, key.spider, key.n);
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    Ok(())
}
