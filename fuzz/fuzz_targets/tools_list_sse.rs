//! The `tools/list` answer rewrite of `McpPolicyLayer` (SSE and JSON), over
//! arbitrary answers cut into arbitrary chunks.
//!
//! Invariants: never a panic; the answer to the caller's `tools/list`
//! (the first message carrying its id) lists only tools the caller may
//! call; an answer to no `tools/list` of the request is passed through
//! byte for byte.
#![no_main]

use std::sync::{Arc, Mutex};

use arbitrary::Arbitrary;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;
use tower_warden_fuzz::{Inner, Seen, block_on, caller, collect, layer, policy};

#[derive(Arbitrary, Debug)]
struct Input {
    sse: bool,
    /// The request's id: a number, or a string.
    id: u8,
    string_id: bool,
    /// A `tools/list` request, or a `ping` (nothing to filter).
    list: bool,
    /// Where the answer is cut into chunks.
    cuts: Vec<u16>,
    answer: Vec<u8>,
}

/// The events of an SSE stream: their joined `data` values.
fn events(stream: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(stream)
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    text.split("\n\n")
        .map(|event| {
            let data: Vec<&str> = event
                .split('\n')
                .filter_map(|line| {
                    if line == "data" {
                        Some("")
                    } else {
                        line.strip_prefix("data:")
                            .map(|v| v.strip_prefix(' ').unwrap_or(v))
                    }
                })
                .collect();
            data.join("\n").into_bytes()
        })
        .filter(|data| !data.is_empty())
        .collect()
}

fuzz_target!(|input: Input| {
    let id = if input.string_id {
        Value::String(format!("r{}", input.id))
    } else {
        Value::from(input.id)
    };
    let method = if input.list { "tools/list" } else { "ping" };
    let request_body = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method});

    let mut chunks = Vec::new();
    let mut cuts: Vec<usize> = input
        .cuts
        .iter()
        .map(|&c| usize::from(c) % (input.answer.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut start = 0;
    for cut in cuts.into_iter().chain([input.answer.len()]) {
        if cut > start {
            chunks.push(Bytes::copy_from_slice(&input.answer[start..cut]));
            start = cut;
        }
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let inner = Inner {
        seen,
        content_type: if input.sse {
            "text/event-stream"
        } else {
            "application/json"
        },
        chunks: Arc::new(Mutex::new(chunks)),
    };
    let mut service = layer().layer(inner);
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/mcp")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(request_body.to_string())))
        .unwrap();
    request.extensions_mut().insert(caller());
    let response = block_on(service.call(request)).unwrap();
    let out = collect(response.into_body());

    if !input.list {
        assert_eq!(
            &out[..],
            &input.answer[..],
            "an answer to no tools/list was changed"
        );
        return;
    }
    let principal = caller();
    let policy = policy();
    let messages: Vec<Value> = if input.sse {
        events(&out)
            .iter()
            .filter_map(|data| serde_json::from_slice::<Value>(data).ok())
            .collect()
    } else {
        serde_json::from_slice::<Value>(&out)
            .ok()
            .into_iter()
            .collect()
    };
    let answer = messages
        .iter()
        .flat_map(|m| match m {
            Value::Array(items) => items.iter().collect::<Vec<_>>(),
            single => vec![single],
        })
        .find(|m| m.get("id") == Some(&id));
    if let Some(tools) = answer
        .and_then(|m| m.get("result"))
        .and_then(|r| r.get("tools"))
        .and_then(Value::as_array)
    {
        for tool in tools {
            let name = tool.get("name").and_then(Value::as_str);
            assert!(
                name.is_some_and(|name| policy.allows(&principal, name)),
                "the caller sees {tool} in {out:?}"
            );
        }
    }
});
