use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};

use super::body::MAX_MESSAGE_BYTES;
use super::layer::JsonRpcErrorsLayer;
use super::service::JsonRpcErrors;
use crate::mcp::buffer::{RequestBody, is_json_media_type};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};

/// An inner service that echoes the body it got, or answers with the
/// status and plain text named by the `x-answer` header.
async fn inner(
    request: Request<RequestBody<Full<Bytes>>>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if let Some(answer) = request.headers().get("x-answer") {
        let answer = String::from_utf8_lossy(answer.as_bytes()).into_owned();
        let (status, text) = answer.split_once(' ').unwrap();
        let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
        *response.status_mut() = status.parse().unwrap();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(text.len()));
        return Ok(response);
    }
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let mut response = Response::new(Full::new(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

async fn call(
    layer: JsonRpcErrorsLayer,
    request: Request<Full<Bytes>>,
) -> (StatusCode, HeaderMap, serde_json::Value) {
    let service = ServiceBuilder::new().layer(layer).service_fn(inner);
    let response = service.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
    (parts.status, parts.headers, value)
}

fn post(_body: &str) -> http::request::Builder {
    Request::post("/mcp").header(CONTENT_TYPE, "application/json; charset=utf-8")
}

#[tokio::test]
async fn malformed_json_is_a_parse_error() {
    for body in ["", "{", "not json", "{\"jsonrpc\":\"2.0\",}"] {
        let request = post(body).body(Full::new(Bytes::from(body))).unwrap();
        let (status, headers, value) = call(JsonRpcErrorsLayer::new(), request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(value["jsonrpc"], "2.0");
        assert_eq!(value["id"], serde_json::Value::Null);
        assert_eq!(value["error"]["code"], -32700);
    }
}

#[tokio::test]
async fn numbers_beyond_f64_are_a_parse_error_before_the_inner_service() {
    // Valid JSON grammar that `serde_json` (and so the service) cannot
    // read: answered here, never passed on (the inner service echoes).
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"n":1e400}}"#,
        r#"{"jsonrpc":"2.0","id":11111E711,"method":"ping"}"#,
        // The same for a lone surrogate escape.
        r#"{"jsonrpc":"2.0","id":"\ud9dd&","method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"\udc00":1}}"#,
    ] {
        let request = post(body).body(Full::new(Bytes::from(body))).unwrap();
        let (status, _, value) = call(JsonRpcErrorsLayer::new(), request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(value["error"]["code"], -32700, "{body}");
        assert_eq!(value["id"], serde_json::Value::Null, "{body}");
        assert!(
            value.get("method").is_none(),
            "reached the service: {value}"
        );
    }
}

#[tokio::test]
async fn well_formed_bodies_reach_the_inner_service() {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let request = post(body).body(Full::new(Bytes::from(body))).unwrap();
    let (status, _, value) = call(JsonRpcErrorsLayer::new(), request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(value["method"], "ping");
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_the_inner_service() {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let request = post(body).body(Full::new(Bytes::from(body))).unwrap();
    let (status, _, value) = call(JsonRpcErrorsLayer::new().max_body_bytes(8), request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(value["error"]["code"], -32000);
}

#[tokio::test]
async fn plain_text_errors_become_json_rpc_errors() {
    for (answer, status, code) in [
        ("400 Bad Request: Session ID is required", 400, -32600),
        ("404 Not Found: Session not found", 404, -32001),
        ("405 Method Not Allowed", 405, -32000),
        ("406 Not Acceptable: \"both\"", 406, -32000),
        ("500 secret internals", 500, -32603),
    ] {
        let request = Request::get("/mcp")
            .header("x-answer", answer)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (got, headers, value) = call(JsonRpcErrorsLayer::new(), request).await;
        assert_eq!(got.as_u16(), status, "{answer}");
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert!(headers.get(CONTENT_LENGTH).is_none());
        assert_eq!(value["error"]["code"], code, "{answer}");
        let message = value["error"]["message"].as_str().unwrap();
        if status == 500 {
            assert_eq!(message, "Internal error");
        } else {
            assert_eq!(message, answer.split_once(' ').unwrap().1);
        }
    }
}

#[tokio::test]
async fn undecodable_json_messages_are_invalid_requests_with_their_id() {
    let body = r#"{"jsonrpc":"2.0","id":"abc","nonsense":true}"#;
    let request = post(body)
        .header("x-answer", "415 fail to deserialize")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (status, _, value) = call(JsonRpcErrorsLayer::new(), request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(value["id"], "abc");
    assert_eq!(value["error"]["code"], -32600);
    assert_eq!(
        value["error"]["message"],
        "Invalid Request: fail to deserialize"
    );
}

#[tokio::test]
async fn wrong_media_type_stays_415_with_a_json_body() {
    let request = Request::post("/mcp")
        .header(CONTENT_TYPE, "text/plain")
        .header("x-answer", "415 Unsupported Media Type")
        .body(Full::new(Bytes::from("{")))
        .unwrap();
    let (status, _, value) = call(JsonRpcErrorsLayer::new(), request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(value["error"]["code"], -32000);
}

#[tokio::test]
async fn long_and_empty_messages_are_bounded() {
    let long = format!("400 {}", "é".repeat(2000));
    let request = Request::get("/mcp")
        .header(
            "x-answer",
            HeaderValue::from_bytes(long.as_bytes()).unwrap(),
        )
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (_, _, value) = call(JsonRpcErrorsLayer::new(), request).await;
    let message = value["error"]["message"].as_str().unwrap();
    assert!(message.len() <= MAX_MESSAGE_BYTES + 3);
    let request = Request::get("/mcp")
        .header("x-answer", "409 ")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (_, _, value) = call(JsonRpcErrorsLayer::new(), request).await;
    assert_eq!(value["error"]["message"], "Conflict");
}

#[test]
fn json_media_types() {
    let headers = |ct: &str| {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    };
    assert!(is_json_media_type(&headers("application/json")));
    assert!(is_json_media_type(&headers(
        "Application/JSON; charset=utf-8"
    )));
    assert!(is_json_media_type(&headers("application/problem+json")));
    assert!(!is_json_media_type(&headers("text/event-stream")));
    assert!(!is_json_media_type(&headers("application/jsonx")));
    assert!(!is_json_media_type(&headers("+json")));
    assert!(!is_json_media_type(&HeaderMap::new()));
}

#[tokio::test]
async fn the_service_constructor_makes_the_same_layer() {
    let request = post("{").body(Full::new(Bytes::from("{"))).unwrap();
    let (status, _, value) = call(JsonRpcErrors::layer(), request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(value["error"]["code"], -32700);
    let request = post("{}").body(Full::new(Bytes::from("{}"))).unwrap();
    let (status, _, value) = call(JsonRpcErrors::layer(), request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(value, serde_json::json!({}));
}
