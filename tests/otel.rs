//! OpenTelemetry traces of the reference server, exported over OTLP/HTTP
//! to a receiver on 127.0.0.1 that decodes them: one trace links the
//! caller's span, the gateway's request span with each layer's decision,
//! the tool call, the upstream call, and the upstream's own request span;
//! a refused request says which layer refused it and why.
//!
//! One test in this binary: the exporter is installed process-wide.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::settings::Settings;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use http::{Method, StatusCode};
use mcp_support::{Server, open_session, send};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_warden::otel::OtelConfig;
use tracing_subscriber::layer::SubscriberExt as _;

const GATEWAY_SECRET: &str = "gateway-test-secret-of-at-least-32-bytes!";
const UPSTREAM_SECRET: &str = "upstream-test-secret-of-at-least-32-bytes";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const VERSION: &str = "2025-06-18";
/// The trace a client names in `_meta` only (SEP-414).
const META_TRACE: &str = "5b8efff798038103d269b633813fc60c";
const META_SPAN: &str = "eee19b7ec3c1b174";

/// Every span the receiver decoded.
type Received = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) on 127.0.0.1.
async fn receiver() -> (String, Received) {
    async fn export(State(received): State<Received>, body: Bytes) -> (StatusCode, Vec<u8>) {
        let Ok(request) = ExportTraceServiceRequest::decode(body) else {
            return (StatusCode::BAD_REQUEST, Vec::new());
        };
        let spans = request
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        received.lock().unwrap().extend(spans);
        (
            StatusCode::OK,
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
    }
    let received = Received::default();
    let router = Router::new()
        .route("/v1/traces", post(export))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}"), received)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span's attributes as text.
fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// The `layer` of each event named `name` in `span`.
fn decisions(span: &Span, name: &str) -> Vec<String> {
    span.events
        .iter()
        .filter(|e| e.name == name)
        .filter_map(|e| {
            e.attributes
                .iter()
                .find(|kv| kv.key == "layer")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    any_value::Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
        })
        .collect()
}

fn token(secret: &str, subject: &str, namespace: &str, scope: &str) -> String {
    mcp_support::sign_hs256(
        secret,
        json!({"sub": subject, "namespace": namespace, "scope": scope}),
    )
}

async fn start(secret: &str, vars: &[(&str, &str)]) -> Server {
    let mut all = vec![
        ("MCP_JWT_SECRET", secret),
        ("MCP_DATABASE_URL", "sqlite::memory:"),
        ("MCP_RATE_LIMIT_ENABLED", "false"),
    ];
    all.extend_from_slice(vars);
    let config = Settings::from_vars(all).unwrap();
    let shutdown = CancellationToken::new();
    Server::serve(app::router(&config, &shutdown).await.unwrap(), shutdown).await
}

/// One line per span: name, kind, trace, id, parent.
fn describe<'a>(spans: impl IntoIterator<Item = &'a Span>) -> String {
    spans
        .into_iter()
        .map(|s| {
            format!(
                "\n  {} kind={} trace={} id={} parent={}",
                s.name,
                s.kind,
                hex(&s.trace_id),
                hex(&s.span_id),
                hex(&s.parent_span_id)
            )
        })
        .collect()
}

/// Waits (up to 10 s) for `want` to find its spans among those received.
async fn wait_for<T>(
    traces: &tower_warden::otel::Tracing,
    received: &Received,
    want: impl Fn(&[Span]) -> Option<T>,
) -> T {
    for _ in 0..100 {
        tokio::task::block_in_place(|| traces.force_flush()).unwrap();
        if let Some(found) = want(&received.lock().unwrap()) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the spans never came; received: {}",
        describe(received.lock().unwrap().iter())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_tool_call_is_one_trace_from_the_caller_to_the_upstream() {
    let (collector, received) = receiver().await;
    let config = OtelConfig::from_vars([("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str())])
        .unwrap()
        .expect("an endpoint is set");
    let traces = config.install().unwrap();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(traces.layer()))
        .unwrap();

    let upstream = start(UPSTREAM_SECRET, &[]).await;
    // The policy reads the JSON-RPC message, so the request span names
    // the method and tool.
    let gateway = start(
        GATEWAY_SECRET,
        &[("MCP_TOOL_SCOPES", r#"{"up.add": ["math"]}"#)],
    )
    .await;
    let alice = format!(
        "Bearer {}",
        token(GATEWAY_SECRET, "alice", "acme", "math gateway:connections")
    );
    let credential = token(UPSTREAM_SECRET, "gateway", "default", "*");
    let created = send(
        Method::POST,
        &format!("http://{}/api/v1/mcp/connections", gateway.addr),
        &[
            ("authorization", &alice),
            ("content-type", "application/json"),
        ],
        json!({"server_name": "up", "url": upstream.url(), "timeout": 5, "credential": credential})
            .to_string(),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);

    // The caller's trace context on the call.
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let headers = [("authorization", alice.as_str())];
    let session = open_session(&gateway.url(), &headers, VERSION).await;
    let call = json!({
        "jsonrpc": "2.0", "id": 42, "method": "tools/call",
        "params": {"name": "up.add", "arguments": {"a": 2, "b": 3}}
    });
    let reply = mcp_support::post(
        &gateway.url(),
        &[
            ("authorization", &alice),
            ("mcp-session-id", &session),
            ("mcp-protocol-version", VERSION),
            ("traceparent", &traceparent),
        ],
        &call.to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.message()["result"]["content"][0]["text"], "5");

    // A call whose trace context is in `_meta` alone.
    let in_meta = json!({
        "jsonrpc": "2.0", "id": 43, "method": "tools/call",
        "params": {
            "name": "up.add", "arguments": {"a": 1, "b": 1},
            "_meta": {"traceparent": format!("00-{META_TRACE}-{META_SPAN}-01")}
        }
    });
    let reply = mcp_support::post(
        &gateway.url(),
        &[
            ("authorization", &alice),
            ("mcp-session-id", &session),
            ("mcp-protocol-version", VERSION),
        ],
        &in_meta.to_string(),
    )
    .await;
    assert_eq!(reply.message()["result"]["content"][0]["text"], "2");

    // A refusal, in a trace of its own caller.
    let refused_parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let refused = mcp_support::post(
        &gateway.url(),
        &[("traceparent", refused_parent)],
        &call.to_string(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let trace = hex_to_bytes(TRACE);
    let spans = wait_for(&traces, &received, |spans| {
        let in_trace: Vec<Span> = spans
            .iter()
            .filter(|s| s.trace_id == trace)
            .cloned()
            .collect();
        // Two request spans (gateway, upstream) and both tool calls.
        let requests = in_trace
            .iter()
            .filter(|s| s.kind == SpanKind::Server as i32)
            .count();
        let tools = in_trace
            .iter()
            .filter(|s| s.name == "tools/call add")
            .count();
        let refusal = spans
            .iter()
            .any(|s| hex(&s.trace_id) == "0af7651916cd43dd8448eb211c80319c");
        let meta = spans
            .iter()
            .filter(|s| hex(&s.trace_id) == META_TRACE)
            .count();
        (requests >= 2 && tools >= 1 && refusal && meta >= 4).then_some(spans.to_vec())
    })
    .await;
    let in_trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace).collect();
    let by_id = |id: &[u8]| in_trace.iter().find(|s| s.span_id == id).copied();

    // The gateway's request span: a child of the caller's span.
    let request = in_trace
        .iter()
        .find(|s| s.name == "tools/call up.add" && s.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| {
            panic!(
                "no request span named after the call: {}",
                describe(in_trace.iter().copied())
            )
        });
    assert_eq!(hex(&request.parent_span_id), CALLER_SPAN);
    assert_eq!(request.kind, SpanKind::Server as i32);
    let attrs = attributes(request);
    assert_eq!(attrs["enduser.id"], "alice");
    assert_eq!(attrs["mcp.method.name"], "tools/call");
    assert_eq!(attrs["gen_ai.tool.name"], "up.add");
    assert_eq!(attrs["jsonrpc.request.id"], "42");
    assert_eq!(attrs["tower_warden.decision"], "admitted");
    assert_eq!(attrs["http.response.status_code"], "200");
    // No credential anywhere in the span.
    let everything = format!("{request:?}");
    assert!(!everything.contains(alice.trim_start_matches("Bearer ")));
    // Each layer's decision, in order.
    assert_eq!(
        decisions(request, "admitted"),
        ["client_ip", "ip_filter", "mcp_origin", "auth", "mcp_policy"]
    );

    // The tool call, run by the session's task: a child of the request.
    let tool = in_trace
        .iter()
        .find(|s| s.name == "tools/call up.add" && s.span_id != request.span_id)
        .unwrap_or_else(|| {
            panic!(
                "no gateway's tool call span: {}",
                describe(in_trace.iter().copied())
            )
        });
    assert_eq!(tool.parent_span_id, request.span_id);

    // The upstream call: a client span under the tool call.
    let upstream_call = in_trace
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32 && s.name == "tools/call add")
        .unwrap_or_else(|| {
            panic!(
                "no upstream call span: {}",
                describe(in_trace.iter().copied())
            )
        });
    assert_eq!(upstream_call.parent_span_id, tool.span_id);

    // The upstream's own request span continues the trace from the
    // gateway's upstream call (the `traceparent` it sent), authenticated as
    // the gateway's credential.
    let upstream_request = in_trace
        .iter()
        .find(|s| {
            s.kind == SpanKind::Server as i32
                && s.parent_span_id == upstream_call.span_id
                && s.span_id != request.span_id
        })
        .unwrap_or_else(|| {
            panic!(
                "no upstream's request span: {}",
                describe(in_trace.iter().copied())
            )
        });
    assert_eq!(attributes(upstream_request)["enduser.id"], "gateway");
    // ...and the upstream ran the tool under it.
    let upstream_tool = in_trace
        .iter()
        .find(|s| s.name == "tools/call add" && s.kind != SpanKind::Client as i32)
        .unwrap_or_else(|| {
            panic!(
                "no upstream's tool call span: {}",
                describe(in_trace.iter().copied())
            )
        });
    assert_eq!(upstream_tool.parent_span_id, upstream_request.span_id);
    assert!(by_id(&upstream_tool.parent_span_id).is_some());

    // `_meta.traceparent`: the tool call continues the client's MCP-level
    // trace, linked to the HTTP request's span (a trace of its own), and
    // the upstream continues it too.
    let meta_tool = spans
        .iter()
        .find(|s| hex(&s.trace_id) == META_TRACE && s.name == "tools/call up.add")
        .unwrap_or_else(|| panic!("no tool span in the _meta trace: {}", describe(&spans)));
    assert_eq!(hex(&meta_tool.parent_span_id), META_SPAN);
    let meta_request = spans
        .iter()
        .find(|s| {
            s.kind == SpanKind::Server as i32
                && s.name == "tools/call up.add"
                && attributes(s).get("jsonrpc.request.id").map(String::as_str) == Some("43")
        })
        .expect("the request span of the _meta call");
    assert_ne!(hex(&meta_request.trace_id), META_TRACE);
    assert!(
        meta_tool
            .links
            .iter()
            .any(|l| l.trace_id == meta_request.trace_id && l.span_id == meta_request.span_id),
        "the tool span links the request span"
    );
    let meta_upstream = spans
        .iter()
        .find(|s| hex(&s.trace_id) == META_TRACE && s.kind == SpanKind::Client as i32)
        .expect("the upstream call in the _meta trace");
    assert_eq!(meta_upstream.parent_span_id, meta_tool.span_id);

    // The refusal: which layer, which reason.
    let refusal = spans
        .iter()
        .find(|s| hex(&s.trace_id) == "0af7651916cd43dd8448eb211c80319c")
        .unwrap();
    assert_eq!(hex(&refusal.parent_span_id), "b7ad6b7169203331");
    let attrs = attributes(refusal);
    assert_eq!(attrs["tower_warden.decision"], "refused");
    assert_eq!(attrs["tower_warden.layer"], "auth");
    assert_eq!(attrs["tower_warden.reason"], "unauthenticated");
    assert_eq!(attrs["http.response.status_code"], "401");
    assert!(!attrs.contains_key("enduser.id"));
    assert_eq!(decisions(refusal, "refused"), ["auth"]);

    // MCP_TRACE_INCOMING=link: a caller's unsampled traceparent can
    // neither hide its refusal nor place it in the caller's trace.
    let guarded = start(UPSTREAM_SECRET, &[("MCP_TRACE_INCOMING", "link")]).await;
    let hiding = "00-1bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b8-00";
    let refused = mcp_support::post(
        &guarded.url(),
        &[("traceparent", hiding)],
        &call.to_string(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let linked = wait_for(&traces, &received, |spans| {
        spans
            .iter()
            .find(|s| {
                s.links
                    .iter()
                    .any(|l| hex(&l.trace_id) == "1bf92f3577b34da6a3ce929d0e0e4737")
            })
            .cloned()
    })
    .await;
    assert_ne!(hex(&linked.trace_id), "1bf92f3577b34da6a3ce929d0e0e4737");
    assert!(linked.parent_span_id.is_empty());
    assert_eq!(hex(&linked.links[0].span_id), "00f067aa0ba902b8");
    assert_eq!(
        attributes(&linked)["tower_warden.reason"],
        "unauthenticated"
    );

    guarded.stop().await;
    gateway.stop().await;
    upstream.stop().await;
    tokio::task::spawn_blocking(move || traces.shutdown())
        .await
        .unwrap()
        .unwrap();
}

fn hex_to_bytes(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
