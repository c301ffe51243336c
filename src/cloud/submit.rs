//! Jobs made through the Scrapy Cloud APIs — `run.json` (and its `schedule.json` alias) on
//! dash, `jobq/<p>/push` on storage — take one path. A job for a spider of the project's
//! deployed egg goes to the Scrapyd queue, and the launcher runs it as it runs a
//! `schedule.json` job (its priority, arguments and settings); any other job — a spider that no
//! deployed egg has, or a job asked for in a given state — is only registered, for a runner
//! outside scrapyd-rs (`jobq/<p>/startjob`).

use super::registry::{CloudJob, JobKey, JobQuery, STATES};
use crate::AppState;
use crate::error::ApiError;
use crate::queue::{PendingJob, pairs_to_map};
use crate::store::{Db, StoreError};
use serde_json::{Map, Value, json};

/// What makes a new job the duplicate of an active (pending or running) one.
#[derive(Debug, Clone)]
pub enum Uniqueness {
    /// The same spider with the same arguments (`run.json`, as Scrapy Cloud's dash).
    SameArguments,
    /// The same `unique` metadata value (`jobq/<p>/push`).
    Value(Value),
    /// Nothing.
    None,
}

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
    Store(#[from] StoreError),
}

/// A state value asked for, checked.
pub fn requested_state(value: Option<Value>) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if STATES.contains(&s.as_str()) => Ok(Some(s)),
        Some(other) => Err(format!("invalid state {other}")),
    }
}

/// Makes the job (see the module docs). The duplicate check and the job's insertion are one
/// call on the store's thread, so two identical requests at once make one job.
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
    if !s.meta.contains_key("version")
        && let Ok(Some(v)) = state.eggs.resolve(&s.project, None)
    {
        s.meta.insert("version".into(), v.into());
    }
    let job = PendingJob {
        priority: s.priority as f64,
        settings: s.settings,
        args: s.args,
        ..PendingJob::new(&s.project, &s.spider, &crate::new_job_id())
    };
    let held = state.eggs.hold_projects().await;
    if !state.eggs.is_known(&s.project) {
        return Err(ApiError::project_not_found(&s.project).into());
    }
    let (unique, meta) = (s.unique.clone(), s.meta);
    let queued = state
        .store
        .call(move |db| {
            if let Some(existing) = duplicate(db, &job.project, &job.spider, &unique, &meta)? {
                return Ok(Err(existing));
            }
            db.enqueue(&job)?;
            db.registry_transaction(|db| db.register_job(&job, &meta))
                .map(Ok)
        })
        .await?;
    drop(held);
    let key = queued.map_err(|existing| duplicate_error(&s.unique, &s.spider, existing))?;
    state.launcher.wake();
    Ok(Submitted::Queued(key))
}

/// The key of an active (pending or running) job that a job of `spider` with this metadata
/// would duplicate.
fn duplicate(
    db: &mut Db,
    project: &str,
    spider: &str,
    unique: &Uniqueness,
    meta: &Map<String, Value>,
) -> Result<Option<JobKey>, StoreError> {
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
        Uniqueness::SameArguments => match db.spider_id(project, spider, false)? {
            Some(id) => query.spider_id = Some(id),
            None => return Ok(None),
        },
    }
    Ok(db
        .cloud_jobs(project, &query)?
        .into_iter()
        .find(|j| same(j))
        .map(|j| j.key))
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
    let checked = unique.clone();
    let made = state
        .store
        .call(move |db| {
            db.registry_transaction(|db| {
                if !may_add && db.spider_id(&project, &spider, false)?.is_none() {
                    return Ok(None);
                }
                if let Some(existing) = duplicate(db, &project, &spider, &checked, &meta)? {
                    return Ok(Some(Err(existing)));
                }
                let key = db.register_external(&project, &spider, &meta, wanted.as_deref())?;
                let auth = db
                    .cloud_job(&project, key)?
                    .and_then(|j| j.meta.get("auth").cloned());
                Ok(Some(Ok((key, auth))))
            })
        })
        .await?;
    match made {
        Some(Ok((key, auth))) => Ok(Submitted::Registered { key, auth }),
        Some(Err(existing)) => Err(duplicate_error(&unique, &name, existing)),
        None => Err(ApiError::spider_not_found(&name).into()),
    }
}
