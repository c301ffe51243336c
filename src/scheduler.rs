//! The one path that makes a job. `schedule.json`, the Scrapy Cloud API's `run.json` and
//! `jobq/<p>/push` (and, later, periodic jobs) describe the job they want as a [`JobRequest`];
//! [`Scheduler::schedule`] checks it against the deployed eggs (project, version, spider, names,
//! argument sizes), then queues it in one storage transaction that also makes its registry
//! entry and refuses a duplicate of an active job, and wakes the launcher.
//!
//! It knows nothing of HTTP: its errors are [`ScheduleError`], which the API maps once.

use crate::eggs::EggStore;
use crate::error::ApiError;
use crate::launcher::LauncherHandle;
use crate::names;
use crate::storage::model::{Admission, JobKey, NewJob, PendingJob, Uniqueness, now_micros};
use crate::storage::{Storage, StorageError};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Longest spider argument or setting value accepted (Linux limits one argument to 128 KiB).
pub const MAX_ARG_LEN: usize = 64 * 1024;
/// Largest total of spider arguments and settings (the whole command line is limited too).
pub const MAX_ARGS_TOTAL: usize = 1024 * 1024;
/// Spider-argument names that would collide with the queued message's own keys.
pub const RESERVED_ARGS: [&str; 3] = ["_job", "settings", "name"];

/// A job to make.
#[derive(Debug, Clone, Default)]
pub struct JobRequest {
    pub project: String,
    pub spider: String,
    /// The egg version to run; `None` runs the newest one at start.
    pub version: Option<String>,
    /// The job id; `None` makes a new one.
    pub job: Option<String>,
    /// Higher runs first.
    pub priority: f64,
    /// Scrapy settings (`-s`), in order.
    pub settings: Vec<(String, String)>,
    /// Spider arguments (`-a`), in order.
    pub args: Vec<(String, String)>,
    /// Metadata its registry entry starts with (the version that will run is added).
    pub meta: Map<String, Value>,
    /// The active jobs it must not duplicate.
    pub unique: Uniqueness,
}

/// A job that was queued.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    pub job: String,
    pub key: JobKey,
}

/// Why a job was not made (nothing was stored).
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The request names something that does not exist or may not be used (a project,
    /// version or spider not deployed, an unsafe name, a reserved or oversized argument).
    #[error(transparent)]
    Refused(#[from] ApiError),
    /// An active job is one this one must not duplicate.
    #[error("an active job {0} is the same")]
    Duplicate(JobKey),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> ApiError {
        match e {
            ScheduleError::Refused(e) => e,
            ScheduleError::Storage(e) => e.into(),
            ScheduleError::Duplicate(key) => ApiError::new(format!("{key} is already active")),
        }
    }
}

/// Makes jobs: cheap to clone, shared by everything that schedules.
#[derive(Clone)]
pub struct Scheduler {
    eggs: Arc<EggStore>,
    storage: Storage,
    launcher: LauncherHandle,
}

impl Scheduler {
    pub fn new(eggs: Arc<EggStore>, storage: Storage, launcher: LauncherHandle) -> Scheduler {
        Scheduler {
            eggs,
            storage,
            launcher,
        }
    }

    /// Checks the request, queues the job and wakes the launcher (see the module docs).
    pub async fn schedule(&self, request: JobRequest) -> Result<Scheduled, ScheduleError> {
        let JobRequest {
            project,
            spider,
            version,
            job,
            priority,
            settings,
            args,
            mut meta,
            unique,
        } = request;
        check_arguments(&settings, &args)?;
        self.known_project(&project)?;
        if let Some(v) = &version {
            names::check(v)?;
            if self.eggs.resolve(&project, Some(v))?.is_none() {
                return Err(ApiError::version_not_found(v).into());
            }
        }
        if !self
            .eggs
            .spiders(&project, version.as_deref())
            .await?
            .contains(&spider)
        {
            return Err(ApiError::spider_not_found(&spider).into());
        }
        names::check(&spider)?;
        let job = match job {
            Some(j) => {
                names::check(&j)?;
                j
            }
            None => crate::new_job_id(),
        };
        if priority.is_nan() {
            return Err(ApiError::invalid("priority", "nan cannot order jobs").into());
        }
        let pending = PendingJob {
            project,
            spider,
            job: job.clone(),
            priority,
            version,
            settings,
            args,
            created: now_micros(),
        };
        // While the projects are held, a deletion of the project cannot slip between the check
        // and the enqueue (its pending jobs would outlive it). Schedules share the hold, so
        // their enqueues reach the storage together and are committed as a group.
        let held = self.eggs.hold_projects().await;
        self.known_project(&pending.project)?;
        // The registry names the version that will run (the newest, unless pinned).
        if pending.version.is_none()
            && !meta.contains_key("version")
            && let Ok(Some(v)) = self.eggs.resolve(&pending.project, None)
        {
            meta.insert("version".into(), v.into());
        }
        tracing::debug!(project = %pending.project, spider = %pending.spider, job = %job, "scheduled");
        let admitted = self
            .storage
            .enqueue(NewJob {
                job: pending,
                meta,
                unique,
            })
            .await?;
        drop(held);
        match admitted {
            Admission::Admitted(key) => {
                self.launcher.wake();
                Ok(Scheduled { job, key })
            }
            Admission::Duplicate(existing) => Err(ScheduleError::Duplicate(existing)),
            Admission::UnknownSpider => Err(StorageError::Internal(
                "an enqueue was answered as a registration".into(),
            )
            .into()),
        }
    }

    fn known_project(&self, project: &str) -> Result<(), ApiError> {
        if self.eggs.is_known(project) {
            Ok(())
        } else {
            Err(ApiError::project_not_found(project))
        }
    }
}

/// Refuses arguments the queued message or the crawl's command line could not carry (Scrapyd
/// accepted oversized ones and the launch failed later with "Argument list too long").
pub fn check_arguments(
    settings: &[(String, String)],
    args: &[(String, String)],
) -> Result<(), ApiError> {
    if let Some((key, _)) = args
        .iter()
        .find(|(k, _)| RESERVED_ARGS.contains(&k.as_str()))
    {
        return Err(ApiError::new(format!(
            "'{key}' is reserved and cannot be a spider argument"
        )));
    }
    let mut total = 0;
    for (kind, pairs) in [("setting", settings), ("spider argument", args)] {
        for (k, v) in pairs {
            let len = k.len() + v.len() + 1;
            if len > MAX_ARG_LEN {
                return Err(ApiError::new(format!(
                    "{kind} '{k}' is too long: {len} bytes (at most {MAX_ARG_LEN})"
                )));
            }
            total += len;
        }
    }
    if total > MAX_ARGS_TOTAL {
        return Err(ApiError::new(format!(
            "spider arguments and settings are too long: {total} bytes (at most {MAX_ARGS_TOTAL})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn arguments_that_would_collide_with_the_message_or_overflow_the_command_line_are_refused() {
        assert!(check_arguments(&pairs(&[("A", "1")]), &pairs(&[("a", "1")])).is_ok());
        for reserved in RESERVED_ARGS {
            let e = check_arguments(&[], &pairs(&[("a", "1"), (reserved, "x")])).unwrap_err();
            assert_eq!(
                e.message,
                format!("'{reserved}' is reserved and cannot be a spider argument")
            );
        }
        // A setting named like a reserved argument is only a setting.
        assert!(check_arguments(&pairs(&[("name", "x")]), &[]).is_ok());
        let long = "x".repeat(MAX_ARG_LEN);
        let e = check_arguments(&pairs(&[("S", &long)]), &[]).unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "setting 'S' is too long: {} bytes (at most {MAX_ARG_LEN})",
                MAX_ARG_LEN + 2
            )
        );
        let just = "x".repeat(MAX_ARG_LEN - 2);
        assert!(check_arguments(&[], &pairs(&[("a", &just)])).is_ok());
        let many: Vec<(String, String)> = (0..17)
            .map(|i| (format!("a{i:02}"), "x".repeat(MAX_ARG_LEN - 4)))
            .collect();
        let e = check_arguments(&[], &many).unwrap_err();
        assert!(
            e.message
                .starts_with("spider arguments and settings are too long: "),
            "{}",
            e.message
        );
    }
}
