//! The dash API under `/api/`: what `ScrapinghubClient(dash_endpoint=…)` and `shub` call.
//! Form-encoded requests, `{"status": …}` answers (rendered by the Scrapyd envelope, so they
//! also carry `node_name`).

use super::registry::{JobKey, JobQuery, apply_tags, tags_of};
use crate::AppState;
use crate::api::params::Params;
use crate::error::{ApiError, ApiResult, Reply};
use crate::queue::PendingJob;
use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Map, Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/scrapyd/listprojects.json", get(listprojects))
        .route("/api/spiders/list.json", get(spiders_list))
        .route("/api/run.json", post(run))
        .route("/api/schedule.json", post(run))
        .route("/api/jobs/update.json", post(jobs_update))
        .route(
            "/api/scrapyd/addversion.json",
            post(addversion).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v2/users/me", get(users_me))
        .route("/api/v2/projects/{p}/spiders/{s}", get(spider_object))
        .route("/api/v2/projects/{p}/spiders/{s}/tags", patch(spider_tags))
}

/// The Scrapyd project behind a `project` parameter (a Scrapy Cloud project id).
async fn project_param(state: &AppState, params: &Params) -> Result<(String, i64), ApiError> {
    let raw = params.required("project")?;
    let id = super::registry::parse_id(&raw)
        .ok_or_else(|| ApiError::new(format!("invalid value for project: {raw}")))?;
    let name = super::project_name(state, &raw)
        .await
        .ok_or_else(|| ApiError::project_not_found(&raw))?;
    Ok((name, id))
}

/// `scrapyd/listprojects.json`: the numeric ids of every project.
async fn listprojects(State(state): State<AppState>) -> ApiResult {
    let projects = state.eggs.projects();
    let ids = state
        .store
        .call(move |db| {
            projects
                .iter()
                .map(|p| db.project_id(p))
                .collect::<Result<Vec<i64>, _>>()
        })
        .await?;
    Ok(Reply::empty().with("projects", ids))
}

/// `spiders/list.json?project=`: the spiders of the project's newest version, then the
/// spiders only the registry knows (an external runner's; `version` null).
async fn spiders_list(State(state): State<AppState>, params: Params) -> ApiResult {
    let (project, _) = project_param(&state, &params).await?;
    let spiders = state.eggs.spiders(&project, None).await?;
    let version = state.eggs.versions(&project)?.last().cloned();
    let names: Vec<String> = spiders.to_vec();
    let p = project.clone();
    let listed = state
        .store
        .call(move |db| {
            let mut listed = Vec::new();
            for s in &names {
                db.spider_id(&p, s, true)?;
                listed.push((s.clone(), true, db.spider_tags(&p, s)?));
            }
            for s in db.registry_spiders(&p)? {
                if !names.contains(&s) {
                    let tags = db.spider_tags(&p, &s)?;
                    listed.push((s, false, tags));
                }
            }
            Ok(listed)
        })
        .await?;
    let list: Vec<Value> = listed
        .into_iter()
        .map(|(s, deployed, tags)| {
            let v = if deployed { version.clone() } else { None };
            json!({"id": s, "tags": tags, "type": "manual", "version": v})
        })
        .collect();
    Ok(Reply::empty().with("spiders", list))
}

/// A JSON-object parameter (`job_settings`, `meta`, `environment`).
fn object_param(params: &Params, key: &str) -> Result<Map<String, Value>, ApiError> {
    match params.text(key)? {
        None => Ok(Map::new()),
        Some(t) if t.trim().is_empty() => Ok(Map::new()),
        Some(t) => match serde_json::from_str::<Value>(&t) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(Value::Null) => Ok(Map::new()),
            _ => Err(ApiError::invalid(key, "expected a JSON object")),
        },
    }
}

/// Parameters of `run.json` that are not spider arguments.
const RUN_PARAMS: [&str; 10] = [
    "project",
    "spider",
    "units",
    "priority",
    "add_tag",
    "job_settings",
    "meta",
    "environment",
    "cmd_args",
    "apikey",
];

/// `run.json`: schedules a job (the same queue and launcher as `schedule.json`).
async fn run(State(state): State<AppState>, headers: HeaderMap, params: Params) -> ApiResult {
    let (project, _) = project_param(&state, &params).await?;
    let spider = params.required("spider")?;
    let spiders = state.eggs.spiders(&project, None).await?;
    crate::names::check(&spider)?;
    let priority: i64 = match params.text("priority")? {
        None => 2,
        Some(p) => p
            .trim()
            .parse()
            .ok()
            .filter(|p| (0..=4).contains(p))
            .ok_or_else(|| ApiError::invalid("priority", "expected an integer from 0 to 4"))?,
    };
    let units: i64 = match params.text("units")? {
        None => 1,
        Some(u) => u
            .trim()
            .parse()
            .ok()
            .filter(|u| (1..=100).contains(u))
            .ok_or_else(|| ApiError::invalid("units", "expected a positive integer"))?,
    };
    let job_settings = object_param(&params, "job_settings")?;
    let meta = object_param(&params, "meta")?;
    let environment = object_param(&params, "environment")?;
    let mut args = Vec::new();
    for key in params.keys().filter(|k| !RUN_PARAMS.contains(k)) {
        args.push((key.to_owned(), params.required(key)?));
    }
    let settings: Vec<(String, String)> = job_settings
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    let mut extra = meta;
    if let Ok(Some(v)) = state.eggs.resolve(&project, None) {
        extra.insert("version".into(), v.into());
    }
    extra.insert("priority".into(), priority.into());
    extra.insert("units".into(), units.into());
    extra.insert("tags".into(), params.all("add_tag")?.into());
    extra.insert("scheduled_by".into(), "api".into());
    if !job_settings.is_empty() {
        extra.insert("job_settings".into(), Value::Object(job_settings));
    }
    if !environment.is_empty() {
        extra.insert("environment".into(), Value::Object(environment));
    }
    if let Some(c) = params.text("cmd_args")? {
        extra.insert("cmd_args".into(), c.into());
    }
    if !args.is_empty() {
        extra.insert(
            "spider_args".into(),
            Value::Object(crate::queue::pairs_to_map(&args)),
        );
    }
    if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        extra.insert("api_url".into(), format!("http://{host}/api/").into());
        extra.insert("portia_url".into(), format!("http://{host}/").into());
    }
    // Scrapy Cloud refuses a second active job with the same spider and arguments.
    let spider_args = Value::Object(crate::queue::pairs_to_map(&args));
    let (p, s) = (project.clone(), spider.clone());
    let duplicate = state
        .store
        .read(move |db| {
            let Some(spider_id) = db.spider_id(&p, &s, false)? else {
                return Ok(false);
            };
            let query = JobQuery {
                states: vec!["pending".into(), "running".into()],
                spider_id: Some(spider_id),
                ..JobQuery::default()
            };
            Ok(db.cloud_jobs(&p, &query)?.iter().any(|j| {
                j.meta
                    .get("spider_args")
                    .cloned()
                    .unwrap_or_else(|| json!({}))
                    == spider_args
            }))
        })
        .await?
        .1;
    if duplicate {
        return Err(ApiError::new(format!("{spider} already scheduled")));
    }
    // A spider of no deployed egg but known to the registry (an external runner's), or a job
    // asked for in a given state, is registered without being queued here.
    let wanted_state = match extra.get("state") {
        None => None,
        Some(Value::String(s)) if super::registry::STATES.contains(&s.as_str()) => Some(s.clone()),
        Some(other) => return Err(ApiError::invalid("meta", format!("invalid state {other}"))),
    };
    extra.remove("state");
    if !spiders.contains(&spider) || wanted_state.is_some() {
        let (p, s) = (project.clone(), spider.clone());
        let known = spiders.contains(&spider);
        let key = state
            .store
            .call(move |db| {
                if !known && db.spider_id(&p, &s, false)?.is_none() {
                    return Ok(None);
                }
                db.register_external(&p, &s, &extra, wanted_state.as_deref())
                    .map(Some)
            })
            .await?
            .ok_or_else(|| ApiError::spider_not_found(&spider))?;
        return Ok(Reply::empty().with("jobid", key.to_string()));
    }
    let job = PendingJob {
        project: project.clone(),
        spider,
        job: crate::new_job_id(),
        priority: priority as f64,
        version: None,
        settings,
        args,
        created: crate::jobs::now_micros(),
    };
    let held = state.eggs.hold_projects().await;
    if !state.eggs.is_known(&project) {
        return Err(ApiError::project_not_found(&project));
    }
    let key = state.store.enqueue(job, extra).await?;
    drop(held);
    state.launcher.wake();
    let key =
        key.ok_or_else(|| ApiError::internal("DatabaseError", "the job was queued without a key"))?;
    Ok(Reply::empty().with("jobid", key.to_string()))
}

/// `jobs/update.json`: adds and removes tags of one job (`job=`) or a spider's jobs.
async fn jobs_update(State(state): State<AppState>, params: Params) -> ApiResult {
    let (project, project_id) = project_param(&state, &params).await?;
    let add = params.all("add_tag")?;
    let remove = params.all("remove_tag")?;
    if add.is_empty() && remove.is_empty() {
        return Err(ApiError::new("No update modifiers provided"));
    }
    let mut keys = Vec::new();
    for k in params.all("job")? {
        let key = JobKey::parse(&k)
            .filter(|key| key.project == project_id)
            .ok_or_else(|| ApiError::invalid("job", format!("not a job of this project: {k}")))?;
        keys.push(key);
    }
    let spider = params.text("spider")?;
    if keys.is_empty() && spider.is_none() {
        return Err(ApiError::new("a job or a spider is required"));
    }
    let count = state
        .store
        .call(move |db| {
            let mut query = JobQuery {
                states: vec!["pending".into(), "running".into(), "finished".into()],
                keys,
                ..JobQuery::default()
            };
            if let Some(s) = &spider {
                match db.spider_id(&project, s, false)? {
                    Some(id) => query.spider_id = Some(id),
                    None => return Ok(0),
                }
            }
            let mut n = 0;
            for mut job in db.cloud_jobs(&project, &query)? {
                let mut tags = tags_of(&job.meta);
                apply_tags(&mut tags, &add, &remove);
                job.meta.insert("tags".into(), tags.into());
                db.save_cloud_job(&job)?;
                n += 1;
            }
            Ok(n)
        })
        .await?;
    Ok(Reply::empty().with("count", count))
}

/// `scrapyd/addversion.json` (`shub deploy`): Scrapyd's `addversion.json`; the project is the
/// Scrapy Cloud id (a project of that name). `eggs`, `requirements` and `stack` are ignored.
async fn addversion(state: State<AppState>, params: Params) -> ApiResult {
    crate::api::webservices::addversion(state, params).await
}

/// `v2/users/me` (`shub login` checks the key with it).
async fn users_me() -> Response {
    Json(json!({"id": 1, "username": "scrapyd-rs", "email": null})).into_response()
}

/// The project and spider names of a `v2` spider path.
async fn v2_spider(
    state: &AppState,
    p: &str,
    s: &str,
) -> Result<(String, i64, i64, String), Response> {
    let not_found =
        || (StatusCode::NOT_FOUND, Json(json!({"detail": "Not found."}))).into_response();
    let project = super::project_name(state, p).await.ok_or_else(not_found)?;
    let project_id = super::registry::parse_id(p).ok_or_else(not_found)?;
    let spider_id = super::registry::parse_id(s).ok_or_else(not_found)?;
    let pn = project.clone();
    let name = state
        .store
        .read(move |db| db.spider_name(&pn, spider_id))
        .await
        .ok()
        .and_then(|(_, n)| n)
        .ok_or_else(not_found)?;
    Ok((project, project_id, spider_id, name))
}

fn spider_json(
    project: &str,
    project_id: i64,
    spider_id: i64,
    name: &str,
    tags: &[String],
) -> Value {
    json!({
        "id": spider_id, "jobq_id": spider_id, "name": name, "tags": tags, "type": "manual",
        "project": {"id": project_id, "name": project},
        "archived": false, "deleted": false,
    })
}

/// `GET v2/projects/<p>/spiders/<s>`: the spider object (the client reads its `tags`).
async fn spider_object(
    State(state): State<AppState>,
    Path((p, s)): Path<(String, String)>,
) -> Response {
    let (project, project_id, spider_id, name) = match v2_spider(&state, &p, &s).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (pn, sn) = (project.clone(), name.clone());
    match state.store.read(move |db| db.spider_tags(&pn, &sn)).await {
        Ok((_, tags)) => {
            Json(spider_json(&project, project_id, spider_id, &name, &tags)).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `PATCH v2/projects/<p>/spiders/<s>/tags` with `{"add": […], "remove": […]}`.
async fn spider_tags(
    State(state): State<AppState>,
    Path((p, s)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let (project, project_id, spider_id, name) = match v2_spider(&state, &p, &s).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let list = |key: &str| -> Vec<String> {
        body.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (add, remove) = (list("add"), list("remove"));
    if add.is_empty() && remove.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"non_field_errors": ["At least one of \"add\" or \"remove\" arguments must not be empty"]})),
        )
            .into_response();
    }
    let (pn, sn) = (project.clone(), name.clone());
    match state
        .store
        .call(move |db| db.update_spider_tags(&pn, &sn, &add, &remove))
        .await
    {
        Ok(tags) => {
            Json(spider_json(&project, project_id, spider_id, &name, &tags)).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
