//! Jobs made through the Scrapy Cloud APIs — `run.json` (and its `schedule.json` alias) on
//! dash, `jobq/<p>/push` on storage — take one path. A job for a spider of the project's
//! deployed egg goes to the Scrapyd queue, and the launcher runs it as it runs a
//! `schedule.json` job (its priority, arguments and settings); any other job — a spider that no
//! deployed egg has, or a job asked for in a given state — is only registered, for a runner
//! outside scrapyd-rs (`jobq/<p>/startjob`).

use super::registry::STATES;
use crate::AppState;
use crate::error::ApiError;
use crate::scheduler::{JobRequest, ScheduleError};
use crate::storage::StorageError;
use crate::storage::model::{Admission, JobKey, Uniqueness, pairs_to_map};
use serde_json::{Map, Value};

/// A job to make.
#[derive(Debug, Clone)]
pub struct Submission {
    pub project: String,
    pub spider: String,
    /// Scrapy Cloud's priority, 0 (lowest) to 4 (highest); the Scrapyd queue's priority too.
    pub priority: i64,
    /// Spider arguments (`-a`), in order.
    pub args: Vec<(String, String)>,
    /// Scrapy settings (`-s`), in order.
    pub settings: Vec<(String, String)>,
    /// Metadata of the job's registry entry (tags, units, the caller's own keys, …).
    pub meta: Map<String, Value>,
    /// A state to register the job in directly (`meta={"state": …}`, a push's `state`); a
    /// job asked for `pending` of a deployed spider still runs here.
    pub state: Option<String>,
    pub unique: Uniqueness,
    /// Whether a spider that neither a deployed egg nor the registry knows gets an id (a push
    /// may name any spider; `run.json` may not).
    pub new_spiders: bool,
}

/// How a job was made.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// Queued for the launcher.
    Queued(JobKey),
    /// Registered for another runner; `auth` is its token when it was made `running`.
    Registered { key: JobKey, auth: Option<Value> },
}

impl Submitted {
    pub fn key(&self) -> JobKey {
        match self {
            Submitted::Queued(key) | Submitted::Registered { key, .. } => *key,
        }
    }
}

/// Why a job was not made (nothing was stored).
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// An active job of the spider has the same arguments.
    #[error("{0} already scheduled")]
    SameArguments(String),
    /// An active job has the same `unique` value.
    #[error("Active job exists with key {0}")]
    SameUnique(JobKey),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A state value asked for, checked.
pub fn requested_state(value: Option<Value>) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if STATES.contains(&s.as_str()) => Ok(Some(s)),
        Some(other) => Err(format!("invalid state {other}")),
    }
}

/// Makes the job (see the module docs): a job that runs here takes the one scheduling path,
/// whose duplicate check and insertion are one transaction, so two identical requests at once
/// make one job.
pub async fn submit(state: &AppState, mut s: Submission) -> Result<Submitted, SubmitError> {
    crate::names::check(&s.spider)?;
    let deployed = state
        .eggs
        .spiders(&s.project, None)
        .await
        .map(|list| list.contains(&s.spider))
        .unwrap_or(false);
    if !s.args.is_empty() {
        s.meta
            .insert("spider_args".into(), Value::Object(pairs_to_map(&s.args)));
    }
    s.meta.insert("priority".into(), s.priority.into());
    let runs_here = deployed && s.state.as_deref().is_none_or(|st| st == "pending");
    if !runs_here {
        return register(state, s, deployed).await;
    }
    let request = JobRequest {
        project: s.project,
        spider: s.spider.clone(),
        priority: s.priority as f64,
        settings: s.settings,
        args: s.args,
        meta: s.meta,
        unique: s.unique.clone(),
        ..JobRequest::default()
    };
    match state.scheduler.schedule(request).await {
        Ok(scheduled) => Ok(Submitted::Queued(scheduled.key)),
        Err(ScheduleError::Duplicate(existing)) => {
            Err(duplicate_error(&s.unique, &s.spider, existing))
        }
        Err(ScheduleError::Refused(e)) => Err(e.into()),
        Err(ScheduleError::Storage(e)) => Err(e.into()),
    }
}

/// How a duplicate of `existing` is refused.
fn duplicate_error(unique: &Uniqueness, spider: &str, existing: JobKey) -> SubmitError {
    match unique {
        Uniqueness::Value(_) => SubmitError::SameUnique(existing),
        _ => SubmitError::SameArguments(spider.to_owned()),
    }
}

/// Registers a job for another runner (a spider no deployed egg has, or a given state).
async fn register(
    state: &AppState,
    s: Submission,
    deployed: bool,
) -> Result<Submitted, SubmitError> {
    let Submission {
        project,
        spider,
        mut meta,
        state: wanted,
        new_spiders,
        unique,
        ..
    } = s;
    meta.remove("state");
    let name = spider.clone();
    let may_add = new_spiders || deployed;
    let made = state
        .storage
        .register_external(&project, &spider, meta, wanted, may_add, unique.clone())
        .await?;
    match made {
        Admission::Admitted((key, auth)) => Ok(Submitted::Registered { key, auth }),
        Admission::Duplicate(existing) => Err(duplicate_error(&unique, &name, existing)),
        Admission::UnknownSpider => Err(ApiError::spider_not_found(&name).into()),
    }
}
