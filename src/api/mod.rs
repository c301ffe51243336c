//! The HTTP layer: the router with Scrapyd's webservices (`*.json`) and web pages, the envelope
//! that turns handler answers into Scrapyd's JSON, CORS and OPTIONS, wrong-method answers, and
//! basic authentication over the whole site.

pub mod auth;
pub mod params;
pub mod webservices;

use crate::AppState;
use crate::config::Service;
use crate::error::{ApiError, Envelope, Field};
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use http_body::{Frame, SizeHint};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
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

fn service_route(service: Service) -> MethodRouter<AppState> {
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
    };
    let methods = allowed(service);
    let expected = if is_post(service) {
        "HEAD, OPTIONS, POST"
    } else {
        "HEAD, OPTIONS, GET"
    };
    route
        .options(move || async move {
            let mut r = StatusCode::NO_CONTENT.into_response();
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(methods));
            r
        })
        .fallback(move || async move { ApiError::unsupported_method(expected).into_response() })
        .layer(middleware::map_response(
            move |mut r: Response| async move {
                let h = r.headers_mut();
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static(methods),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    HeaderValue::from_static("X-Requested-With"),
                );
                r
            },
        ))
}

/// Renders [`Envelope`] answers as Scrapyd's JSON: the endpoint's keys, `"status"`, then
/// `"node_name"`, Python-style, ending with a newline.
async fn render_envelope(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let Some(envelope) = response.extensions_mut().remove::<Envelope>() else {
        return response;
    };
    let mut fields = match envelope {
        Envelope::Ok(mut fields) => {
            fields.push(("status".into(), Field::Value("ok".into())));
            fields
        }
        Envelope::Error(message) => vec![
            ("status".into(), Field::Value("error".into())),
            ("message".into(), Field::Value(message.into())),
        ],
    };
    fields.push((
        "node_name".into(),
        Field::Value(state.config.node_name.clone().into()),
    ));
    // Small values are written into one buffer; a large pre-rendered one (a cached listing)
    // is sent as its own chunk, without a copy.
    let mut chunks = Vec::new();
    let mut body = Vec::with_capacity(256);
    body.push(b'{');
    for (i, (key, value)) in fields.into_iter().enumerate() {
        if i > 0 {
            body.extend_from_slice(b", ");
        }
        crate::pyjson::push(&mut body, key.as_str());
        body.extend_from_slice(b": ");
        match value {
            Field::Value(v) => crate::pyjson::push(&mut body, &v),
            Field::Json(json) if json.len() < 64 * 1024 => body.extend_from_slice(&json),
            Field::Json(json) => {
                chunks.push(Bytes::from(std::mem::take(&mut body)));
                chunks.push(json);
            }
        }
    }
    body.extend_from_slice(b"}\n");
    chunks.push(Bytes::from(body));
    let length: usize = chunks.iter().map(Bytes::len).sum();
    let (mut parts, _) = response.into_parts();
    parts.status = StatusCode::OK;
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

/// The whole application: webservices, pages, logs and items, auth.
pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    for (path, service) in &state.config.services {
        api = api.route(&format!("/{path}"), service_route(*service));
    }
    let api = api.layer(DefaultBodyLimit::max(state.config.max_upload_size));
    let app = api
        .merge(crate::cloud::routes(&state))
        .merge(crate::web::routes(&state))
        .fallback(crate::web::not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            render_envelope,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_auth,
        ));
    app.with_state(state)
}
