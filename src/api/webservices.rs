//! Scrapyd's eleven webservices. Each handler parses its parameters in Scrapyd's order, calls
//! the egg store, the job store or the launcher, and returns the endpoint's keys.

use super::params::Params;
use crate::AppState;
use crate::error::{ApiError, ApiResult, Reply};
use crate::launcher::parse_signal;
use crate::listing::ending_keys;
use crate::scheduler::JobRequest;
use crate::storage::model::{JobState, JobsSnapshot};
use axum::extract::State;
use serde_json::Value;

/// Parameters that `schedule.json` consumes; every other one is a spider argument.
const SCHEDULE_PARAMS: [&str; 6] = [
    "project", "spider", "_version", "jobid", "priority", "setting",
];
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

/// `listnodes.json` (scrapyd-rs's own): the nodes of the cluster, with whether each beats,
/// its running crawls and `max_proc`; on SQLite, this node alone.
pub async fn listnodes(State(state): State<AppState>) -> ApiResult {
    use crate::storage::model::{format_time, now_micros};
    let config = &state.config;
    let nodes = match state.storage.nodes(config.node_timeout).await? {
        Some(nodes) => nodes
            .into_iter()
            .map(|n| {
                serde_json::json!({
                    "name": n.name, "url": n.url, "alive": n.alive, "running": n.running,
                    "max_proc": n.max_proc, "started": n.started, "heartbeat": n.heartbeat,
                })
            })
            .collect(),
        None => {
            let running = state
                .listing
                .counts(&state.storage, state.eggs.projects())
                .await?
                .running;
            vec![serde_json::json!({
                "name": config.node_name, "url": config.node_url, "alive": true,
                "running": running, "max_proc": config.capacity(),
                "started": format_time(state.started), "heartbeat": format_time(now_micros()),
            })]
        }
    };
    Ok(Reply::empty().with("nodes", nodes))
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
    let job = params.text("jobid")?;
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
        args.push((key.to_owned(), params.required(key)?));
    }
    let request = JobRequest {
        project,
        spider,
        version,
        job,
        priority,
        settings,
        args,
        ..JobRequest::default()
    };
    let scheduled = state.scheduler.schedule(request).await?;
    Ok(Reply::empty().with("jobid", scheduled.job))
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
    state
        .eggs
        .delete_version(&project, &version, &changes)
        .await?;
    forget_project_if_gone(&state, &project).await?;
    Ok(Reply::empty())
}

/// `delproject.json`.
pub async fn delproject(State(state): State<AppState>, params: Params) -> ApiResult {
    let project = params.required("project")?;
    let changes = state.eggs.lock_changes().await;
    state.eggs.delete_project(&project, &changes).await?;
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
