//! The JSON-RPC peek (the syntax check that finds the top-level `id`) and
//! the tool-policy extraction of `McpPolicyLayer`.
//!
//! Invariants: the peek accepts exactly the texts `serde_json` accepts
//! (below its nesting limit; numbers beyond `f64` and lone surrogate
//! escapes refused by both); a reported `id` is a JSON scalar that occurs
//! in the body and is the body's top-level `id`; the policy layer never
//! lets a call of a tool the caller lacks scopes for reach the service,
//! refuses it with 403, and never reports a tool (`McpCall`) that no
//! `tools/call` message in the body names.
#![no_main]

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;
use tower_warden_fuzz::{Inner, Seen, block_on, caller, collect, layer, policy};

fn messages(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    }
}

fn called_tools(value: &Value) -> Vec<&str> {
    messages(value)
        .into_iter()
        .filter(|m| m.get("method").and_then(Value::as_str) == Some("tools/call"))
        .filter_map(|m| m.get("params")?.get("name")?.as_str())
        .collect()
}

fn nesting(data: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for &b in data {
        match b {
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fuzz_target!(|data: &[u8]| {
    // The peek.
    let peek = tower_warden::__fuzz::json_peek(data);
    let parsed = serde_json::from_slice::<Value>(data).ok();
    let comparable = nesting(data) < 100;
    if comparable {
        assert_eq!(
            peek.is_some(),
            parsed.is_some(),
            "peek disagrees with serde_json"
        );
    }
    if let Some(Some(id)) = &peek {
        let text = std::str::from_utf8(data).unwrap();
        assert!(text.contains(id.as_str()), "id {id:?} is not in the body");
        let id_value: Value = serde_json::from_str(id).expect("the id is JSON");
        assert!(
            matches!(id_value, Value::String(_) | Value::Number(_) | Value::Null),
            "id {id:?} is not a scalar"
        );
        if let Some(parsed) = &parsed {
            assert!(parsed.get("id").is_some(), "no top-level id in the body");
        }
    }

    // The policy layer.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let inner = Inner {
        seen: seen.clone(),
        content_type: "application/json",
        chunks: Arc::new(Mutex::new(vec![Bytes::from_static(b"{}")])),
    };
    let mut service = layer().layer(inner);
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/mcp")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::copy_from_slice(data)))
        .unwrap();
    request.extensions_mut().insert(caller());
    let response = block_on(service.call(request)).unwrap();
    let status = response.status();
    let _ = collect(response.into_body());
    let seen = seen.lock().unwrap();

    let principal = caller();
    let policy = policy();
    let tools = parsed.as_ref().map(called_tools).unwrap_or_default();
    let denied = tools.iter().any(|tool| !policy.allows(&principal, tool));
    if denied {
        assert!(!seen.called, "a denied tool reached the service: {tools:?}");
        assert_eq!(status, StatusCode::FORBIDDEN);
    } else {
        assert!(seen.called, "refused ({status}) without a denied tool");
    }
    if let Some(call) = &seen.call
        && let Some(tool) = call.tool()
    {
        assert!(
            tools.contains(&tool),
            "reported tool {tool:?} is not called in the body"
        );
    }
});
