//! Request parameters the way Scrapyd reads them: the query string, and for POST a urlencoded or
//! multipart body; a body key replaces the query key of the same name; a repeated key keeps its
//! values in order (most parameters use the first, `setting` uses all). Values stay bytes until a
//! handler asks for text, so invalid UTF-8 is reported with the parameter's name.

use crate::error::ApiError;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{Method, header};

/// Most distinct parameters accepted in one request.
pub const MAX_PARAMS: usize = 1000;

/// The merged parameters of one request, keys in first-seen order.
#[derive(Debug, Default, Clone)]
pub struct Params {
    entries: Vec<(String, Vec<Vec<u8>>)>,
}

impl Params {
    /// Builds parameters from decoded pairs (later pairs of a key append to its values).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Params {
        let mut p = Params::default();
        for (k, v) in pairs {
            p.push(String::from_utf8_lossy(&k).into_owned(), v);
        }
        p
    }

    fn push(&mut self, key: String, value: Vec<u8>) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) => values.push(value),
            None => self.entries.push((key, vec![value])),
        }
    }

    /// `dict.update`: every key of `other` replaces this one's values (keeping its position).
    pub fn update(&mut self, other: Params) {
        for (key, values) in other.entries {
            match self.entries.iter_mut().find(|(k, _)| *k == key) {
                Some((_, slot)) => *slot = values,
                None => self.entries.push((key, values)),
            }
        }
    }

    /// The first raw value of `key`.
    pub fn bytes(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.first())
            .map(Vec::as_slice)
    }

    /// The first value of `key` as text; invalid UTF-8 is an error naming the parameter.
    pub fn text(&self, key: &str) -> Result<Option<String>, ApiError> {
        self.bytes(key).map(|b| decode(key, b)).transpose()
    }

    /// Like [`Params::text`], but the parameter must be present.
    pub fn required(&self, key: &str) -> Result<String, ApiError> {
        self.text(key)?.ok_or_else(|| ApiError::missing(key))
    }

    /// Every value of `key`, as text.
    pub fn all(&self, key: &str) -> Result<Vec<String>, ApiError> {
        match self.entries.iter().find(|(k, _)| k == key) {
            Some((_, values)) => values.iter().map(|v| decode(key, v)).collect(),
            None => Ok(Vec::new()),
        }
    }

    /// Every raw value of `key` (a repeated file part).
    pub fn all_bytes(&self, key: &str) -> Vec<&[u8]> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.iter().map(Vec::as_slice).collect())
            .unwrap_or_default()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// How many distinct keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Decodes a value as UTF-8, with Python's wording when it is not.
fn decode(key: &str, bytes: &[u8]) -> Result<String, ApiError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => {
            let pos = e.valid_up_to();
            let byte = bytes[pos];
            let reason = match e.error_len() {
                None => "unexpected end of data",
                Some(_) if (0xc2..=0xf4).contains(&byte) => "invalid continuation byte",
                Some(_) => "invalid start byte",
            };
            Err(ApiError::invalid(
                key,
                format!("'utf-8' codec can't decode byte 0x{byte:02x} in position {pos}: {reason}"),
            ))
        }
    }
}

/// Percent-decodes one component of `application/x-www-form-urlencoded` data (`+` is a space;
/// a `%` not followed by two hex digits stays as it is, as in Python).
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    decode_percent(input, true)
}

/// Percent-decodes a URL path segment (`+` stays a `+`).
pub fn percent_decode_path(input: &[u8]) -> Vec<u8> {
    decode_percent(input, false)
}

fn decode_percent(input: &[u8], plus_is_space: bool) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Parses urlencoded data as Twisted does: `&` or `;` separated, blank values kept, fields
/// without `=` dropped.
pub fn parse_urlencoded(data: &[u8]) -> Params {
    Params::from_pairs(data.split(|b| *b == b'&' || *b == b';').filter_map(|pair| {
        let eq = pair.iter().position(|b| *b == b'=')?;
        Some((percent_decode(&pair[..eq]), percent_decode(&pair[eq + 1..])))
    }))
}

impl FromRequest<crate::AppState> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &crate::AppState) -> Result<Self, Self::Rejection> {
        let params = Self::read(req, state).await?;
        if params.len() > MAX_PARAMS {
            return Err(ApiError::new(format!(
                "too many parameters: {} (at most {MAX_PARAMS})",
                params.len()
            )));
        }
        Ok(params)
    }
}

impl Params {
    async fn read(req: Request, state: &crate::AppState) -> Result<Self, ApiError> {
        let max_body = state.config.max_upload_size;
        let mut params = parse_urlencoded(req.uri().query().unwrap_or("").as_bytes());
        if req.method() != Method::POST {
            return Ok(params);
        }
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        // A body announced too large is read and dropped before the answer: a client still
        // sending would otherwise see its connection reset instead of the error.
        let announced = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        if announced.is_some_and(|n| n > max_body) {
            drain(req.into_body(), max_body).await;
            return Err(too_large(max_body));
        }
        if content_type.starts_with("application/x-www-form-urlencoded") {
            let body = read_body(req, max_body).await.map_err(|e| match e {
                BodyError::TooLarge => too_large(max_body),
                BodyError::Broken(e) => ApiError::new(format!("cannot read the request body: {e}")),
            })?;
            params.update(parse_urlencoded(&body));
        } else if content_type.starts_with("multipart/form-data") {
            let mut multipart = Multipart::from_request(req, state)
                .await
                .map_err(|e| ApiError::new(format!("invalid multipart body: {}", e.body_text())))?;
            let mut body = Params::default();
            let mut total = 0usize;
            while let Some(field) = multipart
                .next_field()
                .await
                .map_err(|e| multipart_error(&e.body_text(), max_body))?
            {
                let name = field.name().unwrap_or_default().to_owned();
                let data = field
                    .bytes()
                    .await
                    .map_err(|e| multipart_error(&e.body_text(), max_body))?;
                total += data.len();
                if total > max_body {
                    return Err(too_large(max_body));
                }
                body.push(name, data.to_vec());
            }
            params.update(body);
        }
        Ok(params)
    }
}

/// How many bytes beyond a limit are read and dropped from a body that is too large (beyond
/// that, the connection is closed on the client).
const DRAIN_SLACK: usize = 64 * 1024 * 1024;

/// Reads and drops a body that is over `limit` (at most [`DRAIN_SLACK`] bytes more).
pub async fn drain(mut body: axum::body::Body, limit: usize) {
    use axum::body::HttpBody;
    let mut read = 0usize;
    while read < limit.saturating_add(DRAIN_SLACK) {
        match std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the limit (the rest was read and dropped).
    TooLarge,
    /// The connection failed while reading.
    Broken(String),
}

/// Reads a request body of at most `max` bytes; a longer one (announced or found) is drained
/// and refused, so that the client gets the error rather than a reset connection.
pub async fn read_body(req: Request, max: usize) -> Result<Vec<u8>, BodyError> {
    use axum::body::HttpBody;
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let mut body = req.into_body();
    if announced.is_some_and(|n| n > max) {
        drain(body, max).await;
        return Err(BodyError::TooLarge);
    }
    let mut out = Vec::new();
    loop {
        match std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
            None => return Ok(out),
            Some(Err(e)) => return Err(BodyError::Broken(e.to_string())),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    out.extend_from_slice(data);
                    if out.len() > max {
                        drain(body, max).await;
                        return Err(BodyError::TooLarge);
                    }
                }
            }
        }
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(format!(
        "request body is too large (max_upload_size = {max} bytes)"
    ))
}

fn multipart_error(text: &str, max: usize) -> ApiError {
    if text.contains("limit") || text.contains("too large") {
        too_large(max)
    } else {
        ApiError::new(format!("invalid multipart body: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_python() {
        assert_eq!(percent_decode(b"a+b%20c%zz%4"), b"a b c%zz%4");
        assert_eq!(percent_decode(b"%C3%B1"), "ñ".as_bytes());
        assert_eq!(percent_decode(b"%"), b"%");
        assert_eq!(percent_decode(b"%4"), b"%4");
        assert_eq!(percent_decode(b"x%41"), b"xA");
    }

    #[test]
    fn fields_without_equals_are_dropped_like_twisted() {
        let p = parse_urlencoded(b"project=p&flag&;x=");
        assert_eq!(p.keys().collect::<Vec<_>>(), ["project", "x"]);
        assert_eq!(percent_decode_path(b"a+b%2B"), b"a+b+");
    }

    #[test]
    fn body_replaces_query_and_first_value_wins() {
        let mut p = parse_urlencoded(b"project=q&setting=A=1&setting=B=2&arg=1&arg=2");
        p.update(parse_urlencoded(b"project=b&extra="));
        assert_eq!(p.text("project").unwrap().as_deref(), Some("b"));
        assert_eq!(p.all("setting").unwrap(), ["A=1", "B=2"]);
        assert_eq!(p.text("arg").unwrap().as_deref(), Some("1"));
        assert_eq!(p.text("extra").unwrap().as_deref(), Some(""));
        assert_eq!(
            p.keys().collect::<Vec<_>>(),
            ["project", "setting", "arg", "extra"]
        );
    }

    #[test]
    fn invalid_utf8_names_the_parameter() {
        let p = parse_urlencoded(b"project=%C3");
        assert_eq!(
            p.required("project").unwrap_err().message,
            "project is invalid: 'utf-8' codec can't decode byte 0xc3 in position 0: unexpected end of data"
        );
        let p = parse_urlencoded(b"project=%C3%28");
        assert!(
            p.required("project")
                .unwrap_err()
                .message
                .ends_with("invalid continuation byte")
        );
        let p = parse_urlencoded(b"project=%FF");
        assert!(
            p.required("project")
                .unwrap_err()
                .message
                .ends_with("invalid start byte")
        );
        assert_eq!(
            parse_urlencoded(b"")
                .required("project")
                .unwrap_err()
                .message,
            "'project' parameter is required"
        );
    }
}
