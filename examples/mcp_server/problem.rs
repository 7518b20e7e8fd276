//! The reference server's problem answers (RFC 9457
//! `application/problem+json`), rendered by `tower_warden::reject` like
//! every refusal of the perimeter: a refusal the perimeter also knows
//! (`circuit_open`, `namespace_forbidden`, ...) is a [`Rejection`]; the
//! server's own codes (`not_found`, `upstream_timeout`, ...) are a
//! [`Problem`].

use std::borrow::Cow;

use axum::body::Body;
use axum::response::Response;
use http::StatusCode;
use tower_warden::reject::{Problem, Rejection, problem_response};

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
    Problem::new(status, code, detail)
        .into_response()
        .map(Body::from)
}
