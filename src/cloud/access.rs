//! Who may call what in the Scrapy Cloud API.
//!
//! A request is authenticated once, by [`authorize`] (the middleware in front of `/api/` and
//! `/storage/`), into a [`Caller`]:
//! - [`Caller::Anyone`]: no credentials are configured at all (no API keys, no
//!   `username`/`password`): local use, every project;
//! - [`Caller::Key`]: a configured API key, with the projects it may read or change
//!   ([`crate::config::ApiKey`]);
//! - [`Caller::Job`]: a job's own credentials (its key `p/s/n` and the token its runner got):
//!   the job's own data and metadata, and its project's collections and frontiers, as
//!   Scrapy Cloud's job tokens; nothing else (no other job, no scheduling, no dash).
//!
//! The storage API names its project in the path, so [`authorize`] checks it there, before any
//! handler runs. Dash requests name it in a `project` parameter (query or form body): their
//! handlers check it when they resolve it ([`super::dash`]'s `project_param`), with the
//! [`Caller`] the middleware left in the request. Cross-project answers (`listprojects.json`,
//! `projects/jobsummaries`, `activity/projects`) show only what the caller may read.
//!
//! A refusal changes nothing and answers as Zyte does: 401 `Unauthorized` on storage, 403
//! `Authentication failed` on dash. The log line names the key by where it is configured,
//! never by the key itself.

use super::{DASH_PREFIX, STORAGE_PREFIX, wire};
use crate::AppState;
use crate::api::auth::constant_time_eq;
use crate::config::{ApiKey, ProjectRight};
use crate::storage::model::JobKey;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Who calls the Scrapy Cloud API.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No credentials are configured: every project, read-write.
    Anyone,
    /// A configured API key.
    Key(ApiKey),
    /// A job's own credentials.
    Job(JobKey),
}

impl Caller {
    /// What the caller may do with a whole project (`name` when it exists, its id when it has
    /// one). A job's credentials have no right over a whole project.
    pub fn right(&self, name: Option<&str>, id: Option<i64>) -> Option<ProjectRight> {
        match self {
            Caller::Anyone => Some(ProjectRight::Write),
            Caller::Key(key) => key.right(name, id),
            Caller::Job(_) => None,
        }
    }

    /// Whether the caller may read the project.
    pub fn reads(&self, name: &str, id: i64) -> bool {
        self.right(Some(name), Some(id)).is_some()
    }

    /// Whether `listprojects.json` shows the project to the caller.
    pub fn lists(&self, name: &str, id: i64) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::Key(key) => key.lists(name, id),
            Caller::Job(_) => false,
        }
    }

    /// Whether the caller may make the calls only admins may make.
    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Key(key) if key.is_admin())
    }

    /// The caller for a log line (never the key itself).
    pub fn describe(&self) -> String {
        match self {
            Caller::Anyone => "an open API".to_owned(),
            Caller::Key(key) => format!("the key of {}", key.origin),
            Caller::Job(job) => format!("job {job}'s credentials"),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, Response> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| refusal(true))
    }
}

/// The credentials of a request: the basic-auth user name and password, or the `apikey`
/// query parameter (with no password).
fn credentials(req: &Request) -> Option<(String, String)> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION)
        && let Some((user, password)) = crate::api::auth::decode_basic(value.as_bytes())
    {
        return Some((
            String::from_utf8_lossy(&user).into_owned(),
            String::from_utf8_lossy(&password).into_owned(),
        ));
    }
    let query = req.uri().query()?;
    crate::api::params::parse_urlencoded(query.as_bytes())
        .text("apikey")
        .ok()
        .flatten()
        .map(|k| (k, String::new()))
}

/// The configured key equal to `given` (compared in constant time).
fn known_key<'a>(keys: &'a [ApiKey], given: &str) -> Option<&'a ApiKey> {
    keys.iter()
        .find(|k| constant_time_eq(k.key.as_bytes(), given.as_bytes()))
}

/// The job whose own credentials `user:password` are (`p/s/n` and its runner's token), while
/// it runs: a job's token opens nothing once the job has ended.
async fn job_of_credentials(state: &AppState, user: &str, password: &str) -> Option<JobKey> {
    let key = JobKey::parse(user)?;
    if password.is_empty() {
        return None;
    }
    let known = state.eggs.projects();
    let token = state.storage.job_token(key, known).await.ok().flatten()?;
    constant_time_eq(token.as_bytes(), password.as_bytes()).then_some(key)
}

/// Who the request with these credentials comes from; `None`: credentials that open nothing.
async fn authenticate(
    state: &AppState,
    credentials: Option<(String, String)>,
    dash: bool,
) -> Option<Caller> {
    let config = &state.config;
    if config.api_keys.is_empty() && !config.auth_enabled() {
        return Some(Caller::Anyone);
    }
    let (user, password) = credentials?;
    if let Some(key) = known_key(&config.api_keys, &user) {
        return Some(Caller::Key(key.clone()));
    }
    if dash {
        return None;
    }
    job_of_credentials(state, &user, &password)
        .await
        .map(Caller::Job)
}

/// What a request is about, as far as its path tells.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    /// Anyone may call it (`system/ts`).
    Public,
    /// Several projects at once; the handler shows only what the caller may read.
    Projects,
    /// One project's resource (`resource` is the path's first segment: `jobq`, `collections`…).
    Project {
        id: &'a str,
        resource: &'a str,
        write: bool,
    },
    /// One job's data or metadata (`purge`: `DELETE jobs/<key>`, which removes the job).
    Job {
        key: JobKey,
        write: bool,
        purge: bool,
    },
    /// Nothing the path names (a dash call whose handler checks its `project`, or a path no
    /// route serves).
    Other,
}

/// Storage resources whose second path segment is a project id.
const PROJECT_RESOURCES: [&str; 11] = [
    "ids",
    "jobq",
    "jobs",
    "items",
    "logs",
    "requests",
    "samples",
    "spiders",
    "collections",
    "hcf",
    "activity",
];

/// Storage resources whose path may name one job (`<resource>/p/s/n[/…]`).
const JOB_RESOURCES: [&str; 5] = ["jobs", "items", "logs", "requests", "samples"];

/// Whether a request changes something: any method but GET, HEAD and OPTIONS, and a spider
/// id read that asks for one to be given (`ids/<p>/spider/<name>?create=1`).
fn writes(method: &Method, resource: &str, query: Option<&str>) -> bool {
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return true;
    }
    resource == "ids"
        && query.is_some_and(|q| {
            crate::api::params::parse_urlencoded(q.as_bytes())
                .text("create")
                .ok()
                .flatten()
                .is_some_and(|c| !matches!(c.as_str(), "" | "0" | "false" | "False"))
        })
}

/// What a storage path is about.
fn storage_target<'a>(path: &'a str, method: &Method, query: Option<&str>) -> Target<'a> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["system", "ts"] => Target::Public,
        ["projects", "jobsummaries"] | ["activity", "projects"] => Target::Projects,
        ["projects", id, ..] => Target::Project {
            id,
            resource: "projects",
            write: writes(method, "projects", query),
        },
        [resource, id, rest @ ..] if PROJECT_RESOURCES.contains(resource) => {
            let write = writes(method, resource, query);
            if JOB_RESOURCES.contains(resource)
                && rest.len() >= 2
                && let Some(key) = JobKey::parse(&format!("{id}/{}/{}", rest[0], rest[1]))
            {
                let purge = *resource == "jobs" && rest.len() == 2 && *method == Method::DELETE;
                return Target::Job { key, write, purge };
            }
            Target::Project {
                id,
                resource,
                write,
            }
        }
        _ => Target::Other,
    }
}

/// What a dash path is about (most dash calls name their project in a parameter).
fn dash_target<'a>(path: &'a str, method: &Method) -> Target<'a> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["v2", "projects", id, ..] => Target::Project {
            id,
            resource: "v2",
            write: !matches!(*method, Method::GET | Method::HEAD),
        },
        _ => Target::Other,
    }
}

/// The right a caller has over the project of a path (`id` as written in it).
async fn right_over(state: &AppState, caller: &Caller, id: &str) -> Option<ProjectRight> {
    let parsed = crate::storage::model::parse_id(id);
    let key = match caller {
        Caller::Key(key) => key,
        other => return other.right(None, parsed),
    };
    if let Some(right) = key.reaches_every_project() {
        return Some(right);
    }
    let name = match parsed {
        Some(id) => super::project_name(state, &id.to_string()).await,
        None => None,
    };
    key.right(name.as_deref(), parsed)
}

/// Why a right falls short of what a request needs (for the log line), or `None` when it
/// does not.
pub fn shortfall(right: Option<ProjectRight>, write: bool) -> Option<&'static str> {
    match right {
        Some(ProjectRight::Write) => None,
        Some(ProjectRight::Read) if !write => None,
        Some(ProjectRight::Read) => Some("may only read"),
        None => Some("does not reach"),
    }
}

/// Why `caller` may not make a request about `target`, or `None` when it may.
async fn refused_because(
    state: &AppState,
    caller: &Caller,
    target: &Target<'_>,
) -> Option<&'static str> {
    let reaches = |yes: bool| (!yes).then_some("does not reach");
    match (caller, target) {
        (_, Target::Public) => None,
        // A job reaches its own data and metadata, and its project's collections and frontiers.
        // (It may not remove its job.)
        (Caller::Job(own), Target::Job { key, purge, .. }) => reaches(key == own && !purge),
        (Caller::Job(own), Target::Project { id, resource, .. }) => reaches(
            matches!(*resource, "collections" | "hcf")
                && crate::storage::model::parse_id(id) == Some(own.project),
        ),
        (Caller::Job(_), Target::Projects | Target::Other) => Some("does not reach"),
        (_, Target::Projects | Target::Other) => None,
        (_, Target::Job { key, write, .. }) => shortfall(
            right_over(state, caller, &key.project.to_string()).await,
            *write,
        ),
        (_, Target::Project { id, write, .. }) => {
            shortfall(right_over(state, caller, id).await, *write)
        }
    }
}

/// The answer to a refused request: Zyte's, 403 with its JSON on dash, 401 on storage.
pub fn refusal(dash: bool) -> Response {
    if dash {
        (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"status\": \"error\", \"message\": \"Authentication failed\"}\n",
        )
            .into_response()
    } else {
        wire::HubError::new(StatusCode::UNAUTHORIZED, "Unauthorized").into_response()
    }
}

/// Whether the caller may read the project of this id as written in a request.
pub async fn reads_path_project(state: &AppState, caller: &Caller, id: &str) -> bool {
    right_over(state, caller, id).await.is_some()
}

/// The storage API's refusal of a project that a cross-project read names (logged).
pub fn refused_here(caller: &Caller, project: &str) -> wire::HubError {
    tracing::warn!(
        "Scrapy Cloud API: refused: {} does not reach project {project}",
        caller.describe()
    );
    wire::HubError::new(StatusCode::UNAUTHORIZED, "Unauthorized")
}

/// Refuses a request (logged without the key), after reading its body: a client that keeps
/// the connection must find it clean.
pub async fn refuse(req: Request, dash: bool, why: &str) -> Response {
    tracing::warn!(
        method = %req.method(),
        path = %req.uri().path(),
        "Scrapy Cloud API: refused: {why}"
    );
    crate::api::params::drain(req.into_body(), 0).await;
    refusal(dash)
}

/// Middleware: authenticates the request, checks the project its path names, and leaves the
/// [`Caller`] in the request for the handlers.
pub async fn authorize(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let dash = path.starts_with(DASH_PREFIX);
    let target = match (
        path.strip_prefix(STORAGE_PREFIX),
        path.strip_prefix(DASH_PREFIX),
    ) {
        (Some(rest), _) => storage_target(rest, req.method(), req.uri().query()),
        (None, Some(rest)) => dash_target(rest, req.method()),
        (None, None) => Target::Other,
    };
    if target == Target::Public {
        return next.run(req).await;
    }
    let Some(caller) = authenticate(&state, credentials(&req), dash).await else {
        return refuse(req, dash, "unknown API key").await;
    };
    if let Some(reason) = refused_because(&state, &caller, &target).await {
        let why = format!("{} {reason} {path}", caller.describe());
        return refuse(req, dash, &why).await;
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_whether_the_key_may_read() {
        use ProjectRight::{Read, Write};
        assert_eq!(shortfall(Some(Write), true), None);
        assert_eq!(shortfall(Some(Read), false), None);
        assert_eq!(shortfall(Some(Read), true), Some("may only read"));
        assert_eq!(shortfall(None, false), Some("does not reach"));
    }

    #[test]
    fn storage_paths_name_their_project_or_job() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(storage_target("system/ts", &get, None), Target::Public);
        assert_eq!(
            storage_target("projects/jobsummaries", &get, None),
            Target::Projects
        );
        assert_eq!(
            storage_target("activity/projects", &get, None),
            Target::Projects
        );
        assert_eq!(
            storage_target("projects/7/settings", &post, None),
            Target::Project {
                id: "7",
                resource: "projects",
                write: true
            }
        );
        assert_eq!(
            storage_target("items/7/1/2/stats", &get, None),
            Target::Job {
                key: JobKey {
                    project: 7,
                    spider: 1,
                    n: 2
                },
                write: false,
                purge: false
            }
        );
        assert_eq!(
            storage_target("jobq/7/1/2/cancel", &post, None),
            Target::Project {
                id: "7",
                resource: "jobq",
                write: true
            }
        );
        assert_eq!(
            storage_target("items/7/1", &get, None),
            Target::Project {
                id: "7",
                resource: "items",
                write: false
            }
        );
        assert_eq!(
            storage_target("ids/7/spider/s", &get, Some("create=1")),
            Target::Project {
                id: "7",
                resource: "ids",
                write: true
            }
        );
        assert_eq!(
            storage_target("ids/7/spider/s", &get, Some("create=0")),
            Target::Project {
                id: "7",
                resource: "ids",
                write: false
            }
        );
        let job = JobKey {
            project: 7,
            spider: 1,
            n: 2,
        };
        assert_eq!(
            storage_target("jobs/7/1/2", &Method::DELETE, None),
            Target::Job {
                key: job,
                write: true,
                purge: true
            }
        );
        assert_eq!(
            storage_target("jobs/7/1/2/tags", &Method::DELETE, None),
            Target::Job {
                key: job,
                write: true,
                purge: false
            }
        );
        assert_eq!(
            dash_target("v2/projects/7/spiders/1", &Method::HEAD),
            Target::Project {
                id: "7",
                resource: "v2",
                write: false
            }
        );
        assert_eq!(storage_target("nothing/7", &get, None), Target::Other);
        assert_eq!(
            dash_target("v2/projects/7/spiders/1/tags", &Method::PATCH),
            Target::Project {
                id: "7",
                resource: "v2",
                write: true
            }
        );
        assert_eq!(dash_target("run.json", &post), Target::Other);
    }
}
