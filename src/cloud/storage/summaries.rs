//! Job summaries of the storage API: per state (`jobq/<p>/summary`, per spider too), per
//! project (`projects/jobsummaries`, `projects/<p>/jobsummary`) and each spider's last job
//! (`spiders/<p>/lastjobsummary`), with the summary line they share with `jobq` lists.

use super::{number, spider_param};
use crate::AppState;
use crate::cloud::access::Caller;
use crate::cloud::project;
use crate::cloud::registry::{RESERVED_META, shown_field};
use crate::cloud::wire::{HubError, HubResult, lines, one};
use crate::cloud::wire::{param_list, param_text, query_params};
use crate::storage::model::{CloudJob, JobQuery, now_ms};
use axum::extract::{Path, RawQuery, State};
use serde_json::{Map, Value, json};

/// A job summary line: the default fields, or `key`, `state`, `ts`, `elapsed` and the `jobmeta`
/// fields asked for.
pub(super) fn summary(job: &CloudJob, jobmeta: &[String]) -> Value {
    let now = now_ms();
    let mut m = Map::new();
    m.insert("key".into(), job.key.to_string().into());
    m.insert("state".into(), job.state.clone().into());
    m.insert("ts".into(), job.ts.into());
    m.insert("elapsed".into(), (now - job.ts).max(0).into());
    if !jobmeta.is_empty() {
        let asked = jobmeta
            .iter()
            .filter(|f| shown_field(f) && !RESERVED_META.contains(&f.as_str()));
        for f in asked {
            if let Some(v) = job.meta.get(f) {
                m.insert(f.clone(), v.clone());
            }
        }
        return Value::Object(m);
    }
    m.insert("spider".into(), job.spider.clone().into());
    for f in [
        "pending_time",
        "running_time",
        "finished_time",
        "close_reason",
        "version",
    ] {
        if let Some(v) = job.meta.get(f) {
            m.insert(f.into(), v.clone());
        }
    }
    if let Some(Value::Array(tags)) = job.meta.get("tags")
        && !tags.is_empty()
    {
        m.insert("tags".into(), Value::Array(tags.clone()));
    }
    if let Some(Value::Object(stats)) = job.meta.get("scrapystats") {
        let stat = |k: &str| stats.get(k).and_then(Value::as_i64).unwrap_or(0);
        let logs: i64 = stats
            .iter()
            .filter(|(k, _)| k.starts_with("log_count/"))
            .filter_map(|(_, v)| v.as_i64())
            .sum();
        m.insert("items".into(), stat("item_scraped_count").into());
        m.insert("pages".into(), stat("response_received_count").into());
        m.insert("errors".into(), stat("log_count/ERROR").into());
        m.insert("logs".into(), logs.into());
    }
    Value::Object(m)
}

/// Summary lines per state (`pending`, `running`, `finished`), each with its count and up to
/// `count` (5) summaries.
async fn summaries(
    state: &AppState,
    p: &str,
    spider: Option<&str>,
    only: Option<&str>,
    q: &Option<String>,
) -> HubResult {
    let (project, _) = project(state, p).await?;
    let params = query_params(q);
    let count = number(&params, "count")?.unwrap_or(5).clamp(0, 1000) as usize;
    let skip = number(&params, "start")?.unwrap_or(0).max(0) as usize;
    let jobmeta = param_list(&params, "jobmeta")?;
    let spider_id = match spider {
        Some(s) => Some(spider_param(s)?),
        None => None,
    };
    let states: Vec<&str> = match only {
        Some(s) if ["pending", "running", "finished"].contains(&s) => vec![s],
        Some(s) => return Err(HubError::bad_request(format!("invalid state: {s}"))),
        None => vec!["pending", "running", "finished"],
    };
    let states: Vec<String> = states.into_iter().map(str::to_owned).collect();
    let queries: Vec<JobQuery> = states
        .iter()
        .map(|s| JobQuery {
            states: vec![s.clone()],
            spider_id,
            ..JobQuery::default()
        })
        .collect();
    let found = state.storage.cloud_jobs_each(&project, queries).await?;
    let groups: Vec<(String, Vec<CloudJob>)> = states.into_iter().zip(found).collect();
    let out: Vec<Value> = groups
        .iter()
        .map(|(name, jobs)| {
            let list: Vec<Value> = jobs
                .iter()
                .skip(skip)
                .take(count)
                .map(|j| summary(j, &jobmeta))
                .collect();
            json!({"name": name, "count": jobs.len(), "summary": list})
        })
        .collect();
    Ok(lines(&out, false))
}

pub(super) async fn summary_all(
    State(state): State<AppState>,
    Path(p): Path<String>,
    q: RawQuery,
) -> HubResult {
    summaries(&state, &p, None, None, &q.0).await
}

pub(super) async fn summary_state(
    State(state): State<AppState>,
    Path((p, s)): Path<(String, String)>,
    q: RawQuery,
) -> HubResult {
    summaries(&state, &p, None, Some(&s), &q.0).await
}

pub(super) async fn spider_summary_all(
    State(state): State<AppState>,
    Path((p, s)): Path<(String, String)>,
    q: RawQuery,
) -> HubResult {
    summaries(&state, &p, Some(&s), None, &q.0).await
}

pub(super) async fn spider_summary_state(
    State(state): State<AppState>,
    Path((p, s, st)): Path<(String, String, String)>,
    q: RawQuery,
) -> HubResult {
    summaries(&state, &p, Some(&s), Some(&st), &q.0).await
}

/// Pending, running and finished counts of a project.
async fn project_counts(state: &AppState, project: &str) -> Result<Value, HubError> {
    let id = state.storage.project_id(project).await?;
    let queries = ["pending", "running", "finished"]
        .map(|s| JobQuery {
            states: vec![s.into()],
            ..JobQuery::default()
        })
        .to_vec();
    let found = state.storage.cloud_jobs_each(project, queries).await?;
    let counts = (id, found.iter().map(Vec::len).collect::<Vec<_>>());
    let running = state.launcher_running_hint(counts.1[1]);
    Ok(json!({
        "project": counts.0, "pending": counts.1[0], "running": counts.1[1],
        "finished": counts.1[2], "has_capacity": running,
    }))
}

/// `projects/jobsummaries[?state=…]`: the projects the caller may read that have jobs in one
/// of these states (pending or running when none is given), one JSON line.
pub(super) async fn project_summaries(
    State(state): State<AppState>,
    caller: Caller,
    q: RawQuery,
) -> HubResult {
    let mut states = Vec::new();
    for s in param_list(&query_params(&q.0), "state")? {
        if !["pending", "running", "finished"].contains(&s.as_str()) {
            return Err(HubError::bad_request(format!("invalid state: {s}")));
        }
        states.push(s);
    }
    if states.is_empty() {
        states = vec!["pending".into(), "running".into()];
    }
    let mut out = Vec::new();
    for p in state.eggs.projects() {
        let c = project_counts(&state, &p).await?;
        let readable = c["project"].as_i64().is_some_and(|id| caller.reads(&p, id));
        if readable && states.iter().any(|s| c[s.as_str()] != 0) {
            out.push(c);
        }
    }
    Ok(one(&Value::Array(out)))
}

/// `projects/<p>/jobsummary`.
pub(super) async fn project_summary(
    State(state): State<AppState>,
    Path(p): Path<String>,
) -> HubResult {
    let (project, _) = project(&state, &p).await?;
    let mut c = project_counts(&state, &project).await?;
    c["running_units_count"] = c["running"].clone();
    c["pending_units_max"] = Value::Null;
    Ok(one(&c))
}

/// The newest finished job of each spider (or of one).
async fn last_jobs(
    state: &AppState,
    p: &str,
    spider: Option<&str>,
    q: &Option<String>,
) -> HubResult {
    let (project, _) = project(state, p).await?;
    let params = query_params(q);
    let count = number(&params, "count")?.map(|c| c.max(0) as usize);
    let start = param_text(&params, "start")?;
    let startafter = param_text(&params, "startafter")?;
    let spider_id = match spider {
        Some(s) => Some(spider_param(s)?),
        None => None,
    };
    let query = JobQuery {
        states: vec!["finished".into()],
        spider_id,
        ..JobQuery::default()
    };
    let jobs = state.storage.cloud_jobs(&project, query).await?;
    let mut seen = std::collections::HashSet::new();
    let mut last: Vec<&CloudJob> = jobs.iter().filter(|j| seen.insert(j.key.spider)).collect();
    last.sort_by_key(|j| j.key.spider);
    let key_of = |j: &CloudJob| format!("{}/{}", j.key.project, j.key.spider);
    if let Some(s) = start {
        last.retain(|j| key_of(j) >= s);
    }
    if let Some(s) = startafter {
        last.retain(|j| key_of(j) > s);
    }
    let out: Vec<Value> = last
        .into_iter()
        .take(count.unwrap_or(usize::MAX))
        .map(|j| summary(j, &[]))
        .collect();
    Ok(lines(&out, false))
}

pub(super) async fn last_summaries(
    State(state): State<AppState>,
    Path(p): Path<String>,
    q: RawQuery,
) -> HubResult {
    last_jobs(&state, &p, None, &q.0).await
}

pub(super) async fn spider_last_summary(
    State(state): State<AppState>,
    Path((p, s)): Path<(String, String)>,
    q: RawQuery,
) -> HubResult {
    last_jobs(&state, &p, Some(&s), &q.0).await
}

impl AppState {
    /// Whether the daemon can start another job now.
    fn launcher_running_hint(&self, running: usize) -> bool {
        running < self.config.capacity()
    }
}
