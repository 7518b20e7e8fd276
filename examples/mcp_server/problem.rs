//! The reference server's problem answers (RFC 9457
//! `application/problem+json`), rendered by `tower_warden::reject` like
//! every refusal of the perimeter.
//!
//! A refusal the perimeter also knows (`circuit_open`,
//! `namespace_forbidden`, ...) is a [`Rejection`] rendered as is. The
//! server's own codes (`not_found`, `upstream_timeout`, `request_timeout`,
//! ...) are not [`Reason`]s: they are rendered the same way, then the
//! document's `type` and `code` members name the server's code.

use std::borrow::Cow;

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use http::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use tower_warden::reject::{Reason, Rejection, problem_response};

/// The problem answer for `rejection`, exactly as the perimeter's layers
/// render it.
#[must_use]
pub fn rejected(rejection: &Rejection) -> Response {
    problem_response(rejection).map(Body::from)
}

/// A problem answer with `status`, the machine `code` and a human `detail`
/// (never a secret, never an upstream's own text).
#[must_use]
pub fn problem(
    status: StatusCode,
    code: &'static str,
    detail: impl Into<Cow<'static, str>>,
) -> Response {
    Problem::new(status, code, detail).into_response()
}

/// A problem answer being built: [`problem`] with extra headers.
#[derive(Clone, Debug)]
pub struct Problem {
    rejection: Rejection,
    /// The server's own code, when it is not a [`Reason`].
    code: Option<&'static str>,
}

impl Problem {
    /// A problem with `status`, the machine `code` and a human `detail`.
    #[must_use]
    pub fn new(
        status: StatusCode,
        code: &'static str,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        let known = Reason::ALL.into_iter().find(|reason| reason.code() == code);
        // The server's own codes ride on a reason whose code is then
        // replaced; the reason itself is never shown.
        let rejection = Rejection::new(known.unwrap_or(Reason::InvalidCredentials))
            .with_status(status)
            .with_detail(detail);
        Self {
            rejection,
            code: if known.is_some() { None } else { Some(code) },
        }
    }

    /// Adds a header (for example `Retry-After`).
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.rejection = self.rejection.with_header(name, value);
        self
    }

    /// The response.
    #[must_use]
    pub fn into_response(self) -> Response {
        let Some(code) = self.code else {
            return rejected(&self.rejection);
        };
        let (mut parts, body) = problem_response(&self.rejection).into_parts();
        let mut document: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&body).unwrap_or_default();
        document.insert(
            "type".to_owned(),
            format!("urn:tower-warden:problem:{code}").into(),
        );
        document.insert("code".to_owned(), code.into());
        let body = serde_json::Value::Object(document).to_string();
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        Response::from_parts(parts, Body::from(body))
    }
}

#[cfg(test)]
mod tests {
    use http::header::{CONTENT_TYPE, RETRY_AFTER};

    use super::*;

    async fn parts(response: Response) -> (http::response::Parts, serde_json::Value, usize) {
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap();
        (parts, value, bytes.len())
    }

    #[tokio::test]
    async fn a_server_code_is_named_in_type_and_code() {
        let response = Problem::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", "slow")
            .with_header(RETRY_AFTER, HeaderValue::from_static("3"))
            .into_response();
        let (parts, body, len) = parts(response).await;
        assert_eq!(parts.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(parts.headers[CONTENT_TYPE], "application/problem+json");
        assert_eq!(parts.headers[CONTENT_LENGTH], len.to_string().as_str());
        assert_eq!(parts.headers[RETRY_AFTER], "3");
        assert_eq!(
            body,
            serde_json::json!({
                "type": "urn:tower-warden:problem:upstream_timeout",
                "title": "Gateway Timeout",
                "status": 504,
                "detail": "slow",
                "code": "upstream_timeout",
            })
        );
    }

    #[tokio::test]
    async fn a_reason_code_is_the_perimeters_answer_byte_for_byte() {
        let response = problem(StatusCode::FORBIDDEN, "namespace_forbidden", "no");
        let expected = problem_response(
            &Rejection::new(Reason::NamespaceForbidden)
                .with_status(StatusCode::FORBIDDEN)
                .with_detail("no"),
        );
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        assert_eq!(parts.status, expected.status());
        assert_eq!(parts.headers, *expected.headers());
        assert_eq!(bytes, expected.body());
    }
}
