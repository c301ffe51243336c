//! The storage API's wire forms: request bodies (JSON lines, optionally gzip-encoded), answers
//! (JSON lines, or a concatenation of msgpack objects when the client asks for it), and errors
//! with the HTTP status codes the `scrapinghub` client maps to its exceptions.

use crate::api::params::{Params, parse_urlencoded};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::io::Read;

/// The parameters of a request's query string (none when it has none).
pub fn query_params(raw: &Option<String>) -> Params {
    raw.as_deref()
        .map(|q| parse_urlencoded(q.as_bytes()))
        .unwrap_or_default()
}

/// A text parameter; a value that is not text is a 400.
pub fn param_text(params: &Params, key: &str) -> Result<Option<String>, HubError> {
    params
        .text(key)
        .map_err(|e| HubError::bad_request(e.message))
}

/// Every value of a repeated parameter; a value that is not text is a 400.
pub fn param_list(params: &Params, key: &str) -> Result<Vec<String>, HubError> {
    params
        .all(key)
        .map_err(|e| HubError::bad_request(e.message))
}

/// Largest request body accepted by the storage API once decoded.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// Largest single value (a collection record, an item): Scrapy Cloud's 1 MiB.
pub const MAX_VALUE: usize = 1024 * 1024;

/// An error of the storage API.
#[derive(Debug)]
pub struct HubError {
    pub status: StatusCode,
    pub message: String,
}

impl HubError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HubError {
            status,
            message: message.into(),
        }
    }

    /// 400: the client's `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: the client's `NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 413: the client's `ValueTooLarge`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// 500: the client's `ServerError`.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!("storage API: {e}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

/// A storage failure as the storage API answers it: 404, 409, 503, or 500.
impl From<crate::storage::StorageError> for HubError {
    fn from(e: crate::storage::StorageError) -> Self {
        use crate::storage::StorageError::*;
        match &e {
            NotFound(_) => HubError::new(StatusCode::NOT_FOUND, e.to_string()),
            Conflict(_) => HubError::new(StatusCode::CONFLICT, e.to_string()),
            Unavailable(_) => {
                tracing::error!("storage API: {e}");
                HubError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            Internal(_) => HubError::internal(e),
        }
    }
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        let reason = self.status.canonical_reason().unwrap_or("Error");
        let body = json!({"error": reason, "message": self.message}).to_string() + "\n";
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

/// The result of a storage handler.
pub type HubResult = Result<Response, HubError>;

/// A storage API request body, at most [`MAX_BODY`] bytes as sent; a longer one is refused
/// with the 413 of the storage API (`ValueTooLarge` in the client), after it was read.
pub struct RequestBody(pub Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RequestBody {
    type Rejection = HubError;

    async fn from_request(req: axum::extract::Request, _: &S) -> Result<Self, HubError> {
        use crate::api::params::{BodyError, read_body};
        match read_body(req, MAX_BODY).await {
            Ok(body) => Ok(RequestBody(Bytes::from(body))),
            Err(BodyError::TooLarge) => Err(HubError::too_large(format!(
                "request body too large: at most {MAX_BODY} bytes"
            ))),
            Err(BodyError::Broken(e)) => Err(HubError::bad_request(format!(
                "cannot read the request body: {e}"
            ))),
        }
    }
}

/// The request body, decoded (`Content-Encoding: gzip` is undone), at most [`MAX_BODY`].
pub fn decode_body(headers: &HeaderMap, body: &Bytes) -> Result<Vec<u8>, HubError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(body.to_vec()),
        "gzip" | "x-gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(MAX_BODY as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| HubError::bad_request(format!("invalid gzip body: {e}")))?;
            if out.len() > MAX_BODY {
                return Err(HubError::too_large("request body too large"));
            }
            Ok(out)
        }
        other => Err(HubError::bad_request(format!(
            "unsupported Content-Encoding: {other}"
        ))),
    }
}

/// The JSON values of a JSON-lines body (blank lines skipped).
pub fn json_lines(body: &[u8]) -> Result<Vec<Value>, HubError> {
    body.split(|b| *b == b'\n')
        .map(|l| l.trim_ascii())
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_slice(l).map_err(|e| {
                HubError::bad_request(format!("Error parsing data, line {}: {e}", i + 1))
            })
        })
        .collect()
}

/// Whether the client asked for msgpack.
pub fn wants_msgpack(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/x-msgpack"))
}

/// One value as msgpack (string keys and str-type strings, as the client's unpacker expects).
pub fn msgpack(value: &Value) -> Vec<u8> {
    rmp_serde::to_vec_named(value).unwrap_or_default()
}

/// An answer of JSON lines (or msgpack objects) from values.
pub fn lines(values: &[Value], msgpack_wanted: bool) -> Response {
    let mut body = Vec::new();
    for v in values {
        if msgpack_wanted {
            body.extend(msgpack(v));
        } else {
            body.extend(serde_json::to_vec(v).unwrap_or_default());
            body.push(b'\n');
        }
    }
    with_type(Body::from(body), msgpack_wanted)
}

/// An answer of one JSON value on one line.
pub fn one(value: &Value) -> Response {
    lines(std::slice::from_ref(value), false)
}

/// An empty answer (writes).
pub fn empty() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        "",
    )
        .into_response()
}

/// Sets the content type of a JSON-lines or msgpack answer.
pub fn with_type(body: Body, msgpack_wanted: bool) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if msgpack_wanted {
            "application/x-msgpack"
        } else {
            "application/x-jsonlines; charset=UTF-8"
        }),
    );
    r
}

/// A body produced on a blocking thread (a read of stream files) and sent chunk by chunk as
/// it is produced: `produce` hands chunks to the sink it gets, which returns `false` once the
/// client has gone (then `produce` should stop).
pub fn blocking_body<F>(produce: F) -> Body
where
    F: FnOnce(&mut dyn FnMut(Vec<u8>) -> bool) + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::task::spawn_blocking(move || {
        let mut sink = |chunk: Vec<u8>| tx.blocking_send(Bytes::from(chunk)).is_ok();
        produce(&mut sink);
    });
    Body::new(ChannelBody(rx))
}

/// An answer read from the storage page by page (a collection scan, a frontier queue, its
/// fingerprints): each page is one storage read, so a large answer is never held in memory
/// and the storage serves other work between pages.
pub trait Pages: Send + 'static {
    /// The next chunk of the answer, `None` once it is complete.
    fn next_page(&mut self) -> impl Future<Output = Result<Option<Vec<u8>>, HubError>> + Send;
}

/// A body streamed from `pages`; reading stops when the client goes away. A page that fails
/// ends the body where it is (the status is sent already) and is logged as a failure of
/// `what`.
pub fn paged_body(mut pages: impl Pages, what: &'static str) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        loop {
            match pages.next_page().await {
                Ok(Some(chunk)) => {
                    if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("storage API: {what} failed: {}", e.message);
                    return;
                }
            }
        }
    });
    Body::new(ChannelBody(rx))
}

/// A body fed chunk by chunk from a channel (a stream read produced on a blocking thread).
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl axum::body::HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(http_body::Frame::data(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageError;

    #[test]
    fn storage_failures_answer_the_status_a_client_can_act_on() {
        let status = |e: StorageError| HubError::from(e).status;
        assert_eq!(
            status(StorageError::closed()),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(StorageError::NotFound("job 1/2/3".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(StorageError::Conflict("key".into())),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(StorageError::Internal("x".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        // Scrapyd's envelope names the kind, as for every database failure.
        let api = crate::error::ApiError::from(StorageError::closed());
        assert!(
            api.message.starts_with("DatabaseError: "),
            "{}",
            api.message
        );
    }
}
