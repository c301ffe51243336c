//! The dash API under `/api/`: what `ScrapinghubClient(dash_endpoint=…)` and `shub` call.
//! Form-encoded requests, `{"status": …}` answers (rendered by the Scrapyd envelope, so they
//! also carry `node_name`).

use super::access::Caller;
use super::submit::{Submission, SubmitError, submit};
use crate::AppState;
use crate::api::params::Params;
use crate::config::ProjectRight;
use crate::error::{ApiError, ApiResult, Reply};
use crate::storage::model::Uniqueness;
use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Map, Value, json};

pub fn routes(max_upload_size: usize) -> Router<AppState> {
    Router::new()
        .route("/api/scrapyd/listprojects.json", get(listprojects))
        .route("/api/spiders/list.json", get(spiders_list))
        .route("/api/run.json", post(run))
        .route("/api/schedule.json", post(run))
        .route(
            "/api/scrapyd/addversion.json",
            post(addversion).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v2/users/me", get(users_me))
        .route("/api/v2/projects/{p}/spiders/{s}", get(spider_object))
        .route("/api/v2/projects/{p}/spiders/{s}/tags", patch(spider_tags))
        .merge(super::legacy::routes())
        .layer(DefaultBodyLimit::max(max_upload_size))
}

/// The Scrapyd project behind a `project` parameter (a Scrapy Cloud project id), if the
/// caller has the `need` right over it (else 403 `Authentication failed`, checked before
/// whether it exists).
pub(super) async fn project_param(
    state: &AppState,
    caller: &Caller,
    params: &Params,
    need: ProjectRight,
) -> Result<(String, i64), ApiError> {
    let raw = params.required("project")?;
    let id = crate::storage::model::parse_id(&raw)
        .ok_or_else(|| ApiError::new(format!("invalid value for project: {raw}")))?;
    let name = super::project_name(state, &raw).await;
    let right = caller.right(name.as_deref(), Some(id));
    if let Some(reason) = super::access::shortfall(right, need == ProjectRight::Write) {
        tracing::warn!(
            "Scrapy Cloud API: refused: {} {reason} project {raw}",
            caller.describe()
        );
        return Err(ApiError::refused());
    }
    let name = name.ok_or_else(|| ApiError::project_not_found(&raw))?;
    Ok((name, id))
}

/// `scrapyd/listprojects.json`: the numeric ids of the projects the caller belongs to.
async fn listprojects(State(state): State<AppState>, caller: Caller) -> ApiResult {
    let projects = state.eggs.projects();
    let ids = state.storage.project_ids(projects.clone()).await?;
    let ids: Vec<i64> = projects
        .iter()
        .zip(ids)
        .filter(|(p, id)| caller.lists(p, *id))
        .map(|(_, id)| id)
        .collect();
    Ok(Reply::empty().with("projects", ids))
}

/// `spiders/list.json?project=`: the spiders of the project's newest version, then the
/// spiders only the registry knows (an external runner's; `version` null).
async fn spiders_list(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult {
    let (project, _) = project_param(&state, &caller, &params, ProjectRight::Read).await?;
    let spiders = state.eggs.spiders(&project, None).await?;
    let version = state.eggs.versions(&project)?.last().cloned();
    let names: Vec<String> = spiders.to_vec();
    let p = project.clone();
    let listed = state.storage.spider_listing(&p, names).await?;
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

/// A Scrapy Cloud priority (0–4) given as text.
pub(super) fn parse_priority(text: &str) -> Result<i64, String> {
    text.trim()
        .parse()
        .ok()
        .filter(|p| (0..=4).contains(p))
        .ok_or_else(|| "expected an integer from 0 to 4".to_owned())
}

/// The job a `run.json` request asks for.
fn run_submission(
    project: String,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Submission, ApiError> {
    let spider = params.required("spider")?;
    let priority = match params.text("priority")? {
        None => 2,
        Some(p) => parse_priority(&p).map_err(|e| ApiError::invalid("priority", e))?,
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
    let job_settings = object_param(params, "job_settings")?;
    let mut meta = object_param(params, "meta")?;
    let environment = object_param(params, "environment")?;
    let mut args = Vec::new();
    for key in params.keys().filter(|k| !RUN_PARAMS.contains(k)) {
        args.push((key.to_owned(), params.required(key)?));
    }
    let wanted = super::submit::requested_state(meta.remove("state"))
        .map_err(|e| ApiError::invalid("meta", e))?;
    super::registry::drop_reserved(&mut meta);
    meta.insert("units".into(), units.into());
    meta.insert("tags".into(), params.all("add_tag")?.into());
    meta.insert("scheduled_by".into(), "api".into());
    let settings = crate::storage::model::string_pairs(&job_settings);
    if !job_settings.is_empty() {
        meta.insert("job_settings".into(), Value::Object(job_settings));
    }
    if !environment.is_empty() {
        meta.insert("environment".into(), Value::Object(environment));
    }
    if let Some(c) = params.text("cmd_args")? {
        meta.insert("cmd_args".into(), c.into());
    }
    if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        meta.insert("api_url".into(), format!("http://{host}/api/").into());
        meta.insert("portia_url".into(), format!("http://{host}/").into());
    }
    Ok(Submission {
        project,
        spider,
        priority,
        args,
        settings,
        meta,
        state: wanted,
        // Scrapy Cloud refuses a second active job with the same spider and arguments.
        unique: Uniqueness::SameArguments,
        new_spiders: false,
    })
}

/// `run.json`: schedules a job (the same queue and launcher as `schedule.json`).
async fn run(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Params,
) -> ApiResult {
    let (project, _) = project_param(&state, &caller, &params, ProjectRight::Write).await?;
    let submission = run_submission(project, &headers, &params)?;
    let submitted = submit(&state, submission).await?;
    Ok(Reply::empty().with("jobid", submitted.key().to_string()))
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Api(e) => e,
            SubmitError::Storage(e) => e.into(),
            other => ApiError::new(other.to_string()),
        }
    }
}

/// `scrapyd/addversion.json` (`shub deploy`): Scrapyd's `addversion.json` for the project of
/// that Scrapy Cloud id (a new project is named by the id), with the dependency eggs that come
/// with it (`eggs`, stored as the project's extra eggs). `requirements` and `stack` are
/// ignored.
async fn addversion(State(state): State<AppState>, caller: Caller, params: Params) -> ApiResult {
    let project = deploy_target(&state, &caller, &params).await?;
    let version = params.required("version")?;
    let egg = params
        .bytes("egg")
        .ok_or_else(|| ApiError::missing("egg"))?;
    // shub sends the project's dependency eggs (`eggs:` in scrapinghub.yml) with it.
    let mut identities = Vec::new();
    for data in params.all_bytes("eggs") {
        let (name, version) = crate::eggs::egg_identity(data).ok_or_else(|| {
            ApiError::invalid("eggs", "an egg without EGG-INFO/PKG-INFO (Name, Version)")
        })?;
        identities.push((name, version, data));
    }
    let extra: Vec<crate::eggs::NewExtraEgg<'_>> = identities
        .iter()
        .map(|(name, version, data)| crate::eggs::NewExtraEgg {
            name,
            version,
            data,
        })
        .collect();
    crate::api::webservices::store_version(&state, project, version, egg, &extra).await
}

/// The project a deploy goes to: the one with this Scrapy Cloud id, or a new project named by
/// the id; the caller must be allowed to change it.
pub(super) async fn deploy_target(
    state: &AppState,
    caller: &Caller,
    params: &Params,
) -> Result<String, ApiError> {
    let raw = params.required("project")?;
    let id = crate::storage::model::parse_id(&raw)
        .ok_or_else(|| ApiError::new(format!("invalid value for project: {raw}")))?;
    let name = super::project_name(state, &raw).await;
    if caller
        .right(Some(name.as_deref().unwrap_or(&raw)), Some(id))
        .is_none_or(|r| r < ProjectRight::Write)
    {
        tracing::warn!(
            "Scrapy Cloud API: refused: {} may not deploy to project {raw}",
            caller.describe()
        );
        return Err(ApiError::refused());
    }
    if name.is_none() && id >= crate::storage::model::FIRST_ALLOCATED_PROJECT_ID {
        return Err(ApiError::new(format!(
            "project '{raw}' not found: ids from {} up are given to projects named by words; \
             a new project's id must be below that (it becomes the project's name)",
            crate::storage::model::FIRST_ALLOCATED_PROJECT_ID
        )));
    }
    Ok(name.unwrap_or(raw))
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
    let project_id = crate::storage::model::parse_id(p).ok_or_else(not_found)?;
    let spider_id = crate::storage::model::parse_id(s).ok_or_else(not_found)?;
    let pn = project.clone();
    let name = state
        .storage
        .spider_name(&pn, spider_id)
        .await
        .ok()
        .flatten()
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
    match state.storage.spider_tags(&pn, &sn).await {
        Ok(tags) => {
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
        .storage
        .update_spider_tags(&pn, &sn, add, remove)
        .await
    {
        Ok(tags) => {
            Json(spider_json(&project, project_id, spider_id, &name, &tags)).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
