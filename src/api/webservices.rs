//! Scrapyd's eleven webservices. Each handler parses its parameters in Scrapyd's order, calls
//! the egg store, the job store or the launcher, and returns the endpoint's keys.

use super::params::Params;
use crate::AppState;
use crate::error::{ApiError, ApiResult, Reply};
use crate::launcher::parse_signal;
use crate::listing::ending_keys;
use crate::names;
use crate::storage::model::{JobState, JobsSnapshot, PendingJob, now_micros};
use axum::extract::State;
use serde_json::Value;

/// Parameters that `schedule.json` consumes; every other one is a spider argument.
const SCHEDULE_PARAMS: [&str; 6] = [
    "project", "spider", "_version", "jobid", "priority", "setting",
];
/// Spider-argument names that would collide with the queued message's own keys.
const RESERVED_ARGS: [&str; 3] = ["_job", "settings", "name"];

fn known_project(state: &AppState, project: &str) -> Result<(), ApiError> {
    if state.eggs.is_known(project) {
        Ok(())
    } else {
        Err(ApiError::project_not_found(project))
    }
}

/// Python's `repr()` of a bytes value, for Scrapyd's `priority` message.
fn py_bytes_repr(bytes: &[u8]) -> String {
    let mut out = String::from("b'");
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('\'');
    out
}

/// Parses `priority` as Python's `float()` would (surrounding spaces, `inf`, exponents).
fn parse_priority(raw: &[u8]) -> Result<f64, ApiError> {
    let bad = || {
        ApiError::invalid(
            "priority",
            format!("could not convert string to float: {}", py_bytes_repr(raw)),
        )
    };
    let text = std::str::from_utf8(raw).map_err(|_| bad())?.trim();
    let cleaned = if text.contains('_') {
        // Python accepts single underscores between digits.
        let ok = text.split('_').all(|part| {
            !part.is_empty() && part.chars().last().is_some_and(|c| c.is_ascii_digit())
        });
        if !ok {
            return Err(bad());
        }
        text.replace('_', "")
    } else {
        text.to_owned()
    };
    let value: f64 = cleaned.parse().map_err(|_| bad())?;
    if value.is_nan() {
        return Err(ApiError::invalid("priority", "nan cannot order jobs"));
    }
    Ok(value)
}

/// Longest spider argument or setting value accepted (Linux limits one argument to 128 KiB).
pub const MAX_ARG_LEN: usize = 64 * 1024;
/// Largest total of spider arguments and settings (the whole command line is limited too).
pub const MAX_ARGS_TOTAL: usize = 1024 * 1024;

/// Refuses arguments the crawl's command line could not carry (Scrapyd accepted them and the
/// launch failed later with "Argument list too long").
fn check_argument_sizes(
    settings: &[(String, String)],
    args: &[(String, String)],
) -> Result<(), ApiError> {
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

/// `daemonstatus.json`.
pub async fn daemonstatus(State(state): State<AppState>) -> ApiResult {
    let counts = state
        .listing
        .counts(&state.storage, state.eggs.projects())
        .await?;
    Ok(Reply::empty()
        .with("pending", counts.pending)
        .with("running", counts.running)
        .with("finished", counts.finished))
}

/// `addversion.json`.
pub async fn addversion(State(state): State<AppState>, params: Params) -> ApiResult {
    let project = params.required("project")?;
    let version = params.required("version")?;
    let egg = params
        .bytes("egg")
        .ok_or_else(|| ApiError::missing("egg"))?;
    store_version(&state, project, version, egg, &[]).await
}

/// Stores a version (with the extra eggs that come with it) and answers as `addversion.json`.
pub async fn store_version(
    state: &AppState,
    project: String,
    version: String,
    egg: &[u8],
    extra: &[crate::eggs::NewExtraEgg<'_>],
) -> ApiResult {
    let spiders = state.eggs.add(&project, &version, egg, extra).await?;
    tracing::info!(project = %project, version = %version, spiders, extra = extra.len(), "added version");
    state.launcher.wake();
    Ok(Reply::empty()
        .with("project", project)
        .with("version", version)
        .with("spiders", spiders))
}

/// `schedule.json`.
pub async fn schedule(State(state): State<AppState>, params: Params) -> ApiResult {
    let project = params.required("project")?;
    let spider = params.required("spider")?;
    let version = params.text("_version")?;
    let jobid = params.text("jobid")?;
    let priority = params
        .bytes("priority")
        .map(parse_priority)
        .transpose()?
        .unwrap_or(0.0);
    let mut settings = Vec::new();
    for s in params.all("setting")? {
        match s.split_once('=') {
            Some((k, v)) => settings.push((k.to_owned(), v.to_owned())),
            None => {
                return Err(ApiError::invalid(
                    "setting",
                    format!("expected NAME=value, got '{s}'"),
                ));
            }
        }
    }
    let mut args = Vec::new();
    for key in params.keys().filter(|k| !SCHEDULE_PARAMS.contains(k)) {
        if RESERVED_ARGS.contains(&key) {
            return Err(ApiError::new(format!(
                "'{key}' is reserved and cannot be a spider argument"
            )));
        }
        args.push((key.to_owned(), params.required(key)?));
    }
    check_argument_sizes(&settings, &args)?;
    known_project(&state, &project)?;
    if let Some(v) = &version {
        names::check(v)?;
        if state.eggs.resolve(&project, Some(v))?.is_none() {
            return Err(ApiError::version_not_found(v));
        }
    }
    let spiders = state.eggs.spiders(&project, version.as_deref()).await?;
    if !spiders.contains(&spider) {
        return Err(ApiError::spider_not_found(&spider));
    }
    names::check(&spider)?;
    let job = match jobid {
        Some(j) => {
            names::check(&j)?;
            j
        }
        None => crate::new_job_id(),
    };
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
    tracing::debug!(project = %pending.project, spider = %pending.spider, job = %job, "scheduled");
    // While the projects are held: a deletion of the project cannot slip between the check and
    // the enqueue (its pending jobs would outlive it). Schedules share the hold, so their
    // enqueues reach the store together and are committed as a group.
    let held = state.eggs.hold_projects().await;
    known_project(&state, &pending.project)?;
    // The Scrapy Cloud metadata names the version that will run (the newest, unless pinned).
    let mut extra = serde_json::Map::new();
    if pending.version.is_none()
        && let Ok(Some(v)) = state.eggs.resolve(&pending.project, None)
    {
        extra.insert("version".into(), v.into());
    }
    state.storage.enqueue(pending, extra).await?;
    drop(held);
    state.launcher.wake();
    Ok(Reply::empty().with("jobid", job))
}

/// `cancel.json`.
pub async fn cancel(State(state): State<AppState>, params: Params) -> ApiResult {
    let project = params.required("project")?;
    let job = params.required("job")?;
    let signal_text = params.text("signal")?.unwrap_or_else(|| "INT".to_owned());
    known_project(&state, &project)?;
    let signal = parse_signal(&signal_text)
        .ok_or_else(|| ApiError::invalid("signal", format!("unknown signal '{signal_text}'")))?;
    let mut prevstate = Value::Null;
    if state.storage.cancel_pending(&project, &job).await? > 0 {
        prevstate = "pending".into();
    }
    if state.launcher.cancel(&project, &job, signal).await > 0 {
        prevstate = "running".into();
    }
    Ok(Reply::empty().with("prevstate", prevstate))
}

/// `status.json`.
pub async fn status(State(state): State<AppState>, params: Params) -> ApiResult {
    let job = params.required("job")?;
    let project = params.text("project")?;
    if let Some(p) = &project {
        known_project(&state, p)?;
    }
    let projects = state.eggs.projects();
    let (current, finished) = state.storage.job_status(project, job, projects).await?;
    let mut reply = Reply::empty().with("currstate", current.map(JobState::as_str));
    if let Some(r) = finished {
        reply = reply.extend(ending_keys(&r.ended()));
    }
    Ok(reply)
}

/// `listprojects.json`.
pub async fn listprojects(State(state): State<AppState>) -> ApiResult {
    Ok(Reply::empty().with("projects", state.eggs.projects()))
}

/// `listversions.json`.
pub async fn listversions(State(state): State<AppState>, params: Params) -> ApiResult {
    let project = params.required("project")?;
    Ok(Reply::empty().with("versions", state.eggs.versions(&project)?))
}

/// `listspiders.json`.
pub async fn listspiders(State(state): State<AppState>, params: Params) -> ApiResult {
    let project = params.required("project")?;
    let version = params.text("_version")?;
    known_project(&state, &project)?;
    let spiders = state.eggs.spiders(&project, version.as_deref()).await?;
    Ok(Reply::empty().with("spiders", spiders.as_slice()))
}

/// Reads pending, running and finished jobs in one step (optionally for one project).
pub async fn jobs_snapshot(
    state: &AppState,
    project: Option<String>,
) -> Result<JobsSnapshot, ApiError> {
    let projects = match &project {
        Some(p) => vec![p.clone()],
        None => state.eggs.projects(),
    };
    let snapshot = state.storage.snapshot(projects, project).await?;
    Ok(snapshot)
}

/// `listjobs.json`.
pub async fn listjobs(State(state): State<AppState>, params: Params) -> ApiResult {
    let project = params.text("project")?;
    if let Some(p) = &project {
        known_project(&state, p)?;
    }
    let jobs = state
        .listing
        .jobs_json(
            &state.storage,
            &state.config,
            state.eggs.projects(),
            project,
        )
        .await?;
    Ok(Reply::empty()
        .with_json("pending", vec![jobs.pending])
        .with_json("running", vec![jobs.running])
        .with_json("finished", jobs.finished))
}

/// After a project lost its last egg: its pending jobs go too (Scrapyd kept them, and a later
/// project of the same name inherited them).
async fn forget_project_if_gone(state: &AppState, project: &str) -> Result<(), ApiError> {
    if state.eggs.is_known(project) {
        return Ok(());
    }
    let removed = state.storage.clear_pending(project).await?;
    if removed > 0 {
        tracing::info!(project = %project, removed, "removed the pending jobs of a deleted project");
    }
    Ok(())
}

/// `delversion.json`.
pub async fn delversion(State(state): State<AppState>, params: Params) -> ApiResult {
    let project = params.required("project")?;
    let version = params.required("version")?;
    let changes = state.eggs.lock_changes().await;
    state.eggs.delete_version(&project, &version, &changes)?;
    forget_project_if_gone(&state, &project).await?;
    Ok(Reply::empty())
}

/// `delproject.json`.
pub async fn delproject(State(state): State<AppState>, params: Params) -> ApiResult {
    let project = params.required("project")?;
    let changes = state.eggs.lock_changes().await;
    state.eggs.delete_project(&project, &changes)?;
    forget_project_if_gone(&state, &project).await?;
    Ok(Reply::empty())
}

/// Handled at start-up, for [`now_micros`] consumers that need a clock in tests.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_parses_like_python_float() {
        assert_eq!(parse_priority(b" 5 ").unwrap(), 5.0);
        assert_eq!(parse_priority(b"1e3").unwrap(), 1000.0);
        assert_eq!(parse_priority(b"-1").unwrap(), -1.0);
        assert_eq!(parse_priority(b"1_000").unwrap(), 1000.0);
        assert!(parse_priority(b"inf").unwrap().is_infinite());
        assert_eq!(
            parse_priority(b"x").unwrap_err().message,
            "priority is invalid: could not convert string to float: b'x'"
        );
        assert!(parse_priority(b"nan").is_err());
        assert!(parse_priority(b"1__0").is_err());
        assert!(
            parse_priority(b"\xff")
                .unwrap_err()
                .message
                .contains("b'\\xff'")
        );
    }
}
