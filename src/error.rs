//! The one error type of the webservices. Scrapyd answers every API error with HTTP 200 and
//! `{"status": "error", "message": …, "node_name": …}`; handlers return [`ApiError`] and the
//! envelope layer in [`crate::api`] renders it with the node name.

use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// What a webservice answered, before the envelope layer adds `status` and `node_name`.
#[derive(Debug, Clone)]
pub enum Envelope {
    /// The endpoint's own keys, in order.
    Ok(Vec<(Key, Field)>),
    /// An error message, and the HTTP status (Scrapyd's are all 200).
    Error(String, axum::http::StatusCode),
}

/// The name of one key of an answer: most are fixed names, some come from a map.
pub type Key = std::borrow::Cow<'static, str>;

/// The value of one key of an answer.
#[derive(Debug, Clone)]
pub enum Field {
    /// A value, written as Python's `json.dumps` would.
    Value(Value),
    /// A value already written that way (a cached listing), in parts sent in order.
    Json(Vec<axum::body::Bytes>),
}

/// A successful webservice answer: the endpoint's keys, in order.
#[derive(Debug, Default)]
pub struct Reply(pub Vec<(Key, Field)>);

impl Reply {
    /// An answer with no keys of its own (`{"status": "ok", "node_name": …}`).
    pub fn empty() -> Self {
        Reply(Vec::new())
    }

    /// Appends a key.
    pub fn with(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.0.push((key.into(), Field::Value(value.into())));
        self
    }

    /// Appends a key whose value is already Python-style JSON, in parts.
    pub fn with_json(mut self, key: &'static str, json: Vec<axum::body::Bytes>) -> Self {
        self.0.push((key.into(), Field::Json(json)));
        self
    }

    /// Appends every key of `map`.
    pub fn extend(mut self, map: Map<String, Value>) -> Self {
        self.0
            .extend(map.into_iter().map(|(k, v)| (k.into(), Field::Value(v))));
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = Response::default();
        response.extensions_mut().insert(Envelope::Ok(self.0));
        response
    }
}

/// An error answered to an API client. The message is what Scrapyd would say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The text of the `message` key.
    pub message: String,
    /// The HTTP status: 200 as Scrapyd, but for a refused API key (403, as Zyte's dash).
    pub status: axum::http::StatusCode,
}

impl ApiError {
    /// Any message.
    pub fn new(message: impl Into<String>) -> Self {
        ApiError {
            message: message.into(),
            status: axum::http::StatusCode::OK,
        }
    }

    /// A request whose API key does not reach what it asks for: 403 `Authentication failed`,
    /// Zyte's dash answer (the client raises `Unauthorized`).
    pub fn refused() -> Self {
        ApiError {
            message: "Authentication failed".into(),
            status: axum::http::StatusCode::FORBIDDEN,
        }
    }

    /// `'<name>' parameter is required`.
    pub fn missing(name: &str) -> Self {
        Self::new(format!("'{name}' parameter is required"))
    }

    /// `<name> is invalid: <reason>`.
    pub fn invalid(name: &str, reason: impl std::fmt::Display) -> Self {
        Self::new(format!("{name} is invalid: {reason}"))
    }

    /// `project '<p>' not found`.
    pub fn project_not_found(project: &str) -> Self {
        Self::new(format!("project '{project}' not found"))
    }

    /// `version '<v>' not found`.
    pub fn version_not_found(version: &str) -> Self {
        Self::new(format!("version '{version}' not found"))
    }

    /// `spider '<s>' not found`.
    pub fn spider_not_found(spider: &str) -> Self {
        Self::new(format!("spider '{spider}' not found"))
    }

    /// `DirectoryTraversalError: <name>`: a name that would escape or alias a folder.
    pub fn traversal(name: &str) -> Self {
        Self::new(format!("DirectoryTraversalError: {name}"))
    }

    /// `UnsupportedMethod: Expected one of [b'HEAD', b'OPTIONS', b'GET']`.
    pub fn unsupported_method(allowed: &str) -> Self {
        let list = allowed
            .split(", ")
            .map(|m| format!("b'{m}'"))
            .collect::<Vec<_>>()
            .join(", ");
        Self::new(format!("UnsupportedMethod: Expected one of [{list}]"))
    }

    /// An internal failure, logged here once, answered as `<Kind>: <detail>` like Scrapyd.
    pub fn internal(kind: &str, detail: impl std::fmt::Display) -> Self {
        let message = format!("{kind}: {detail}");
        tracing::error!(target: "scrapyd_rs::api", "{message}");
        Self::new(message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = Response::default();
        response
            .extensions_mut()
            .insert(Envelope::Error(self.message, self.status));
        response
    }
}

/// The result type of every webservice handler.
pub type ApiResult = Result<Reply, ApiError>;

/// A storage failure as Scrapyd's envelope shows it (`DatabaseError: …`).
impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        ApiError::internal("DatabaseError", e)
    }
}
