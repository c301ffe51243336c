//! HTTP basic authentication over the whole site, enabled when both `username` and `password`
//! are set (realm `Scrapyd`, 401 body `Unauthorized`, as Scrapyd). Credentials are compared in
//! constant time.

use crate::config::Config;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The user name and password of an `Authorization: Basic …` header value (the password is
/// everything after the first `:`).
pub fn decode_basic(header_value: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let text = String::from_utf8_lossy(header_value);
    let mut parts = text.trim().splitn(2, ' ');
    let scheme = parts.next().unwrap_or("");
    let encoded = parts.next().unwrap_or("").trim();
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    match decoded.iter().position(|b| *b == b':') {
        Some(colon) => Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec())),
        None => Some((decoded, Vec::new())),
    }
}

/// Whether an `Authorization` header value carries these credentials.
pub fn credentials_match(header_value: &[u8], username: &str, password: &str) -> bool {
    let Some((user, pass)) = decode_basic(header_value) else {
        return false;
    };
    // Without a `:` the password is empty, which Scrapyd's never is (auth needs both set).
    let user_ok = constant_time_eq(&user, username.as_bytes());
    let pass_ok = constant_time_eq(&pass, password.as_bytes());
    user_ok & pass_ok
}

/// Whether a request may go on: authentication is off, it is for the Scrapy Cloud API (which
/// checks its own API keys), or it carries the configured credentials.
pub fn allows(config: &Config, req: &Request) -> bool {
    !config.auth_enabled()
        || crate::cloud::is_cloud_path(req.uri().path())
        || req
            .headers()
            .get(header::AUTHORIZATION)
            .is_some_and(|v| credentials_match(v.as_bytes(), &config.username, &config.password))
}

/// Scrapyd's answer to a request without the credentials.
pub fn unauthorized() -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    let h = r.headers_mut();
    h.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("basic realm=\"Scrapyd\""),
    );
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user_pass: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
        .into_bytes()
    }

    #[test]
    fn checks_credentials() {
        assert!(credentials_match(&header("bob:hunter2"), "bob", "hunter2"));
        assert!(credentials_match(&header("bob:a:b"), "bob", "a:b"));
        assert!(credentials_match(
            b"basic Ym9iOmh1bnRlcjI=",
            "bob",
            "hunter2"
        ));
        assert!(!credentials_match(&header("bob:hunter3"), "bob", "hunter2"));
        assert!(!credentials_match(
            &header("bob:hunter22"),
            "bob",
            "hunter2"
        ));
        assert!(!credentials_match(&header("bobhunter2"), "bob", "hunter2"));
        assert!(!credentials_match(b"Bearer x", "bob", "hunter2"));
        assert!(!credentials_match(b"Basic !!!", "bob", "hunter2"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b""));
    }
}
