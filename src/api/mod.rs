//! The HTTP layer: the router with Scrapyd's webservices (`*.json`) and web pages, the envelope
//! that turns handler answers into Scrapyd's JSON, CORS and OPTIONS, wrong-method answers, and
//! basic authentication over the whole site.

pub mod auth;
pub mod params;
pub mod webservices;

use crate::AppState;
use crate::config::{Config, Service};
use crate::error::{ApiError, Envelope, Field};
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use http_body::{Frame, SizeHint};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Whether a service is POST-only (else GET-only), as in Scrapyd 1.6.
pub fn is_post(service: Service) -> bool {
    matches!(
        service,
        Service::AddVersion
            | Service::Schedule
            | Service::Cancel
            | Service::DelVersion
            | Service::DelProject
    )
}

fn allowed(service: Service) -> &'static str {
    if is_post(service) {
        "OPTIONS, HEAD, POST"
    } else {
        "OPTIONS, HEAD, GET"
    }
}

fn service_route(service: Service, max_upload_size: usize) -> MethodRouter<AppState> {
    use webservices as ws;
    let route = match service {
        Service::DaemonStatus => get(ws::daemonstatus),
        Service::ListProjects => get(ws::listprojects),
        Service::ListVersions => get(ws::listversions),
        Service::ListSpiders => get(ws::listspiders),
        Service::ListJobs => get(ws::listjobs),
        Service::Status => get(ws::status),
        Service::AddVersion => post(ws::addversion),
        Service::Schedule => post(ws::schedule),
        Service::Cancel => post(ws::cancel),
        Service::DelVersion => post(ws::delversion),
        Service::DelProject => post(ws::delproject),
        Service::ListNodes => get(ws::listnodes),
    };
    let methods = allowed(service);
    let expected = if is_post(service) {
        "HEAD, OPTIONS, POST"
    } else {
        "HEAD, OPTIONS, GET"
    };
    let route = route
        .options(move || async move {
            let mut r = StatusCode::NO_CONTENT.into_response();
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(methods));
            r
        })
        .fallback(move || async move { ApiError::unsupported_method(expected).into_response() });
    if is_post(service) {
        // Only POST services read a body (GET parameters come from the query string).
        route.layer(DefaultBodyLimit::max(max_upload_size))
    } else {
        route
    }
}

/// Adds Scrapyd's CORS headers to every answer of a webservice (Scrapyd 1.6 sends them on all
/// of them, errors and OPTIONS included).
fn add_cors(headers: &mut HeaderMap, methods: &'static str) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("X-Requested-With"),
    );
}

/// Renders an [`Envelope`] answer as Scrapyd's JSON: the endpoint's keys, `"status"`, then
/// `"node_name"`, Python-style, ending with a newline. Other answers pass unchanged.
fn render_envelope(mut response: Response, node_name_json: &[u8]) -> Response {
    let Some(envelope) = response.extensions_mut().remove::<Envelope>() else {
        return response;
    };
    let (fields, status) = match envelope {
        Envelope::Ok(mut fields) => {
            fields.push(("status".into(), Field::Value("ok".into())));
            (fields, StatusCode::OK)
        }
        Envelope::Error(message, status) => (
            vec![
                ("status".into(), Field::Value("error".into())),
                ("message".into(), Field::Value(message.into())),
            ],
            status,
        ),
    };
    // Small values are written into one buffer; a large pre-rendered one (a cached listing)
    // is sent as its own chunk, without a copy.
    let mut chunks = Vec::new();
    let mut body = Vec::with_capacity(256);
    body.push(b'{');
    for (key, value) in fields {
        crate::pyjson::push(&mut body, key.as_ref());
        body.extend_from_slice(b": ");
        match value {
            Field::Value(v) => crate::pyjson::push(&mut body, &v),
            Field::Json(parts) => {
                for part in parts {
                    if part.len() < 64 * 1024 {
                        body.extend_from_slice(&part);
                    } else {
                        chunks.push(Bytes::from(std::mem::take(&mut body)));
                        chunks.push(part);
                    }
                }
            }
        }
        body.extend_from_slice(b", ");
    }
    body.extend_from_slice(b"\"node_name\": ");
    body.extend_from_slice(node_name_json);
    body.extend_from_slice(b"}\n");
    chunks.push(Bytes::from(body));
    let length: usize = chunks.iter().map(Bytes::len).sum();
    let (mut parts, _) = response.into_parts();
    parts.status = status;
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let body = if chunks.len() == 1 {
        Body::from(chunks.remove(0))
    } else {
        Body::new(Chunks(chunks.into()))
    };
    Response::from_parts(parts, body)
}

/// A body sent as a sequence of chunks.
struct Chunks(VecDeque<Bytes>);

impl HttpBody for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}

/// The whole site as one service, in front of the router: basic authentication first, then
/// the route's answer, rendered by [`render_envelope`], with CORS headers on webservices.
///
/// It wraps the router rather than being one of its layers: a router layer is applied to every
/// route, and cloned with it on every request.
#[derive(Clone)]
pub struct Site {
    router: Router,
    config: Arc<Config>,
    /// On a cluster: the egg store, brought up to date with the database before each request.
    shared_eggs: Option<Arc<crate::eggs::EggStore>>,
    /// The node name as a JSON string, written into every answer.
    node_name_json: Bytes,
}

impl Site {
    /// The CORS methods of `path` when it is a webservice.
    fn webservice_methods(&self, path: &str) -> Option<&'static str> {
        let name = path.strip_prefix('/')?;
        self.config
            .services
            .iter()
            .find(|(p, _)| p == name)
            .map(|(_, service)| allowed(*service))
    }
}

impl tower::Service<Request> for Site {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if !auth::allows(&self.config, &req) {
            return Box::pin(std::future::ready(Ok(auth::unauthorized())));
        }
        let cors = self.webservice_methods(req.uri().path());
        let node_name_json = self.node_name_json.clone();
        let shared_eggs = self.shared_eggs.clone();
        let mut router = self.router.clone();
        Box::pin(async move {
            // Another node's upload or deletion is seen by every request after it.
            let answer = match shared_eggs {
                Some(eggs) => match eggs.sync().await {
                    Ok(()) => router.call(req).await?,
                    Err(e) => e.into_response(),
                },
                None => router.call(req).await?,
            };
            let mut response = render_envelope(answer, &node_name_json);
            if let Some(methods) = cors {
                add_cors(response.headers_mut(), methods);
            }
            Ok(response)
        })
    }
}

/// The whole application: webservices, pages, logs and items, auth.
pub fn site(state: AppState) -> Site {
    let mut api = Router::new();
    for (path, service) in &state.config.services {
        api = api.route(
            &format!("/{path}"),
            service_route(*service, state.config.max_upload_size),
        );
    }
    let router = api
        .merge(crate::cloud::routes(&state))
        .merge(crate::web::routes(&state))
        .fallback(crate::web::not_found);
    Site {
        config: state.config.clone(),
        shared_eggs: state.storage.is_shared().then(|| state.eggs.clone()),
        node_name_json: crate::pyjson::to_vec(&state.config.node_name).into(),
        router: router.with_state(state),
    }
}
