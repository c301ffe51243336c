//! On a cluster, a job's log and items files and its Scrapy Cloud data stay on the disk of the
//! node that ran it; any other node serves them by forwarding the request there (`node_url`),
//! with the client's own credentials (the nodes of a cluster share `username` and `password`). A forwarded request
//! is marked, and never forwarded again. When the owner does not answer, the answer says which
//! node holds the file.

use crate::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// The header that marks a request one node forwarded to another (its value: the sender).
pub const FORWARDED_BY: &str = "x-scrapyd-rs-forwarded-by";

/// How long the owner gets to connect and to start answering.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// The project and job a `/logs/` or `/items/` file path names (`/{mount}/{p}/{s}/{job}.{ext}`).
fn job_of(mount: &str, path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix(mount)?.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [project, _spider, file] = parts.as_slice() else {
        return None;
    };
    let job = [".log.gz", ".log", ".jl"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    let decode =
        |s: &str| String::from_utf8(crate::api::params::percent_decode_path(s.as_bytes())).ok();
    Some((decode(project)?, decode(job)?))
}

/// The owner's answer for a `/logs/` or `/items/` file this node does not have, or the
/// request back when no other node ran its job (the caller answers as for any missing file).
pub async fn forward(state: &AppState, mount: &str, req: Request) -> Result<Response, Request> {
    let Some((project, job)) = job_of(mount, req.uri().path()) else {
        return Err(req);
    };
    match to_job_owner(state, &project, &job, req.uri(), req.headers()).await {
        Some(response) => Ok(response),
        None => Err(req),
    }
}

/// On a cluster: the answer of the node that ran `job` of `project` to this request (its path,
/// query and credentials), or `None` when that is this node or no node (or the request was
/// itself forwarded).
pub async fn to_job_owner(
    state: &AppState,
    project: &str,
    job: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<Response> {
    if !state.storage.is_shared() || headers.contains_key(FORWARDED_BY) {
        return None;
    }
    let owner = match state
        .storage
        .job_node(project, job, state.config.node_timeout)
        .await
    {
        Ok(Some(owner)) if owner.name != state.config.node_name => owner,
        Ok(_) => return None,
        Err(e) => {
            return Some(unavailable(&format!(
                "cannot find the node of job {job}: {e}"
            )));
        }
    };
    if !owner.alive {
        return Some(unavailable(&format!(
            "the data of job {job} is on node {}, which is not answering (declared dead)",
            owner.name
        )));
    }
    Some(
        match tokio::time::timeout(FORWARD_TIMEOUT, send(state, &owner.url, uri, headers)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => unavailable(&format!(
                "the data of job {job} is on node {} ({}), which did not answer: {e}",
                owner.name, owner.url
            )),
            Err(_) => unavailable(&format!(
                "the data of job {job} is on node {} ({}), which did not answer in {} s",
                owner.name,
                owner.url,
                FORWARD_TIMEOUT.as_secs()
            )),
        },
    )
}

/// Sends a GET of `uri` (its path and query, with the `Range`, `Accept`, `Accept-Encoding` and
/// credentials of `headers`) to the node at `base`.
async fn send(
    state: &AppState,
    base: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, String> {
    let base: Uri = base.parse().map_err(|e| format!("node_url {base}: {e}"))?;
    if base.scheme_str() != Some("http") {
        return Err(format!("node_url {base}: only http:// is forwarded to"));
    }
    let authority = base.authority().ok_or("node_url has no host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let prefix = base.path().trim_end_matches('/');
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut forwarded = axum::http::Request::get(format!("{prefix}{target}"))
        .header(header::HOST, authority.as_str())
        .header(
            FORWARDED_BY,
            HeaderValue::from_str(&state.config.node_name)
                .unwrap_or(HeaderValue::from_static("node")),
        );
    for name in [
        header::AUTHORIZATION,
        header::RANGE,
        header::ACCEPT_ENCODING,
    ] {
        if let Some(v) = headers.get(&name) {
            forwarded = forwarded.header(name, v);
        }
    }
    let forwarded = forwarded.body(Body::empty()).map_err(|e| e.to_string())?;
    let response = sender
        .send_request(forwarded)
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.map(Body::new))
}

fn unavailable(message: &str) -> Response {
    tracing::warn!("{message}");
    (StatusCode::SERVICE_UNAVAILABLE, format!("{message}\n")).into_response()
}
