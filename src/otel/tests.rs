use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::layer::SubscriberExt as _;

use super::*;
use crate::reject::{Reason, Rejection};

const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// Keeps every exported span.
#[derive(Clone, Debug, Default)]
struct Kept(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Kept {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

/// Runs `f` under a subscriber that exports through [`Tracing::layer`]
/// at once, and returns the finished spans.
fn traced(f: impl FnOnce()) -> Vec<SpanData> {
    let kept = Kept::default();
    let tracing = Tracing::from_provider(
        SdkTracerProvider::builder()
            .with_simple_exporter(kept.clone())
            .build(),
    );
    let subscriber = tracing_subscriber::registry().with(tracing.layer());
    tracing::subscriber::with_default(subscriber, f);
    tracing.shutdown().unwrap();
    kept.0.lock().unwrap().clone()
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn text(span: &SpanData, key: &str) -> Option<String> {
    attribute(span, key).map(Value::to_string)
}

fn request(traceparent: Option<&str>) -> Request<()> {
    let mut builder = Request::builder()
        .method("POST")
        .uri("/mcp")
        .header("x-request-id", "req-7");
    if let Some(parent) = traceparent {
        builder = builder.header("traceparent", parent);
    }
    builder.body(()).unwrap()
}

#[test]
fn tracing_is_off_unless_an_endpoint_is_set() {
    assert_eq!(OtelConfig::from_vars::<_, &str, &str>([]).unwrap(), None);
    assert_eq!(
        OtelConfig::from_vars([
            ("OTEL_SERVICE_NAME", "mcp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", " ")
        ])
        .unwrap(),
        None
    );
    for off in [
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_TRACES_EXPORTER", "none"),
    ] {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            off,
        ];
        assert_eq!(OtelConfig::from_vars(vars).unwrap(), None, "{off:?}");
    }
}

#[test]
fn the_endpoint_is_the_traces_url_or_the_base_url_with_its_path() {
    let base = OtelConfig::from_vars([("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")])
        .unwrap()
        .unwrap();
    assert_eq!(base.endpoint(), "http://collector:4318/v1/traces");
    assert_eq!(base.timeout(), DEFAULT_TIMEOUT);

    let traces = OtelConfig::from_vars([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "https://traces.example.com/in",
        ),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "250"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_SDK_DISABLED", "false"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(traces.endpoint(), "https://traces.example.com/in");
    assert_eq!(traces.timeout(), Duration::from_millis(250));
}

#[test]
fn what_cannot_be_honoured_is_an_error_naming_the_variable() {
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
    let cases = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_SDK_DISABLED", "yes"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0"),
    ];
    for (name, value) in cases {
        let error = OtelConfig::from_vars([endpoint, (name, value)]).unwrap_err();
        assert_eq!(error.setting(), name, "{name}={value}");
    }
    for (name, value) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not a url"),
    ] {
        let error = OtelConfig::from_vars([(name, value)]).unwrap_err();
        assert_eq!(error.setting(), name, "{name}={value}");
    }
}

#[test]
fn debug_output_hides_credentials_in_the_endpoint() {
    let config = OtelConfig::from_vars([(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "https://user:hunter2@traces.example.com/v1/traces",
    )])
    .unwrap()
    .unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("traces.example.com"), "{debug}");
}

#[test]
fn the_request_span_continues_the_callers_trace_and_says_who_refused() {
    let spans = traced(|| {
        let span = request_span(&request(Some(PARENT)));
        span.in_scope(|| crate::telemetry::admitted("ip_filter"));
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response
            .extensions_mut()
            .insert(Rejection::new(Reason::InvalidCredentials));
        record_response(&span, &response);
    });
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap()
    );
    assert_eq!(
        span.parent_span_id,
        SpanId::from_hex("b7ad6b7169203331").unwrap()
    );
    assert!(span.parent_span_is_remote);
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(span.name, "POST");
    assert_eq!(text(span, "url.path").as_deref(), Some("/mcp"));
    assert_eq!(text(span, "request_id").as_deref(), Some("req-7"));
    assert_eq!(
        text(span, "tower_warden.decision").as_deref(),
        Some("refused")
    );
    assert_eq!(text(span, "tower_warden.layer").as_deref(), Some("auth"));
    assert_eq!(
        text(span, "tower_warden.reason").as_deref(),
        Some("invalid_credentials")
    );
    assert_eq!(
        attribute(span, "http.response.status_code"),
        Some(&Value::I64(401))
    );
    assert_eq!(attribute(span, "error.type"), None);
    let events: Vec<_> = span.events.iter().collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].name, "admitted");
    assert!(
        events[0]
            .attributes
            .contains(&KeyValue::new("layer", "ip_filter"))
    );
}

#[test]
fn an_admitted_mcp_call_names_the_span_after_its_method_and_tool() {
    let spans = traced(|| {
        let span = request_span(&request(None));
        span.in_scope(|| {
            crate::telemetry::subject("alice");
            crate::telemetry::mcp_message("tools/call", Some("add"), Some(&serde_json::json!(7)));
        });
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::BAD_GATEWAY;
        record_response(&span, &response);
    });
    let span = &spans[0];
    // No traceparent: a trace of its own.
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert_eq!(span.name, "tools/call add");
    assert_eq!(text(span, "enduser.id").as_deref(), Some("alice"));
    assert_eq!(text(span, "mcp.method.name").as_deref(), Some("tools/call"));
    assert_eq!(text(span, "gen_ai.tool.name").as_deref(), Some("add"));
    assert_eq!(text(span, "jsonrpc.request.id").as_deref(), Some("7"));
    assert_eq!(
        text(span, "tower_warden.decision").as_deref(),
        Some("admitted")
    );
    assert_eq!(text(span, "error.type").as_deref(), Some("502"));
}

#[test]
fn long_or_invalid_caller_text_does_not_reach_the_span_unbounded() {
    let long = "x".repeat(10_000);
    let spans = traced(|| {
        let mut request = request(Some("00-not-a-trace-01"));
        *request.uri_mut() = format!("/{long}").parse().unwrap();
        request
            .headers_mut()
            .insert("x-request-id", long.parse().unwrap());
        let span = request_span(&request);
        span.in_scope(|| {
            crate::telemetry::mcp_message("tools/call", Some(&long), Some(&serde_json::json!(long)))
        });
    });
    let span = &spans[0];
    assert_eq!(
        span.parent_span_id,
        SpanId::INVALID,
        "an invalid parent is ignored"
    );
    assert_eq!(text(span, "gen_ai.tool.name").map(|t| t.len()), Some(128));
    assert_eq!(text(span, "jsonrpc.request.id").map(|t| t.len()), Some(128));
    assert_eq!(text(span, "url.path").map(|t| t.len()), Some(128));
    assert_eq!(text(span, "request_id").map(|t| t.len()), Some(128));
}

#[test]
fn the_trace_context_goes_out_and_comes_back_in_through_meta() {
    let mut carried = None;
    let spans = traced(|| {
        let outer = request_span(&request(Some(PARENT)));
        let call = outer.in_scope(|| tracing::info_span!("upstream call"));
        carried = TraceContext::of(&call);
        let mut headers = HeaderMap::new();
        inject(&call, &mut headers);
        assert_eq!(
            headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()),
            carried.as_ref().map(|c| c.traceparent.as_str())
        );
        drop(call);

        // Another process reads it from `_meta`.
        let remote = tracing::info_span!("remote tool");
        assert!(set_parent(&remote, carried.as_ref().unwrap()));
        assert!(!set_parent(
            &tracing::info_span!("x"),
            &TraceContext::new("garbage", None)
        ));
    });
    let carried = carried.unwrap();
    assert_eq!(carried.tracestate, None);
    let call = spans.iter().find(|s| s.name == "upstream call").unwrap();
    let remote = spans.iter().find(|s| s.name == "remote tool").unwrap();
    assert_eq!(
        carried.traceparent,
        format!(
            "00-{}-{}-01",
            call.span_context.trace_id(),
            call.span_context.span_id()
        )
    );
    assert_eq!(remote.span_context.trace_id(), call.span_context.trace_id());
    assert_eq!(remote.parent_span_id, call.span_context.span_id());
}

#[test]
fn a_tool_call_continues_its_request_or_the_other_trace_its_message_names() {
    let request = TraceContext::new(PARENT, None);
    let same_trace = TraceContext::new(
        "00-0af7651916cd43dd8448eb211c80319c-1111111111111111-01",
        None,
    );
    let other = TraceContext::new(
        "00-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174-01",
        None,
    );
    let long = "t".repeat(500);
    let spans = traced(|| {
        drop(tool_span("alone", Some(&request), None));
        drop(tool_span("same", Some(&request), Some(&same_trace)));
        drop(tool_span("other", Some(&request), Some(&other)));
        drop(tool_span(&long, None, None));
    });
    let named = |tool: &str| {
        spans
            .iter()
            .find(|s| text(s, "gen_ai.tool.name").as_deref() == Some(tool))
            .unwrap()
    };
    let caller = SpanId::from_hex("b7ad6b7169203331").unwrap();
    // The request's context alone, or a message in the same trace: a
    // child of the request.
    for tool in ["alone", "same"] {
        let span = named(tool);
        assert_eq!(span.parent_span_id, caller, "{tool}");
        assert_eq!(span.name, format!("tools/call {tool}"));
        assert!(span.links.is_empty(), "{tool}");
    }
    // A message naming another trace: its child, the request linked.
    let span = named("other");
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex("5b8efff798038103d269b633813fc60c").unwrap()
    );
    assert_eq!(
        span.parent_span_id,
        SpanId::from_hex("eee19b7ec3c1b174").unwrap()
    );
    let links: Vec<_> = span.links.iter().collect();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].span_context.span_id(), caller);
    // Neither: a trace of its own; the caller's name bounded.
    let span = named(&long[..128]);
    assert_eq!(span.parent_span_id, SpanId::INVALID);
}

#[test]
fn without_a_subscriber_nothing_is_traced_and_nothing_fails() {
    let span = request_span(&request(Some(PARENT)));
    assert_eq!(TraceContext::of(&span), None);
    let mut headers = HeaderMap::new();
    inject(&span, &mut headers);
    assert!(headers.is_empty());
    assert!(!set_parent(&span, &TraceContext::new(PARENT, None)));
    record_response(&span, &Response::new(()));
}

#[test]
fn attack_a_caller_cannot_turn_tracing_off_or_pick_the_trace_when_its_context_is_linked() {
    // The caller's span, with the sampled flag off.
    let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

    // Continued, the caller's flag decides (parent-based sampling):
    // nothing of the request is recorded.
    let spans = traced(|| drop(request_span(&request(Some(unsampled)))));
    assert!(spans.is_empty(), "{spans:?}");

    // Linked: a trace of this process's own, recorded, the caller's span
    // kept as a link.
    let spans = traced(|| drop(Incoming::Link.request_span(&request(Some(unsampled)))));
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    let caller = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
    assert_ne!(span.span_context.trace_id(), caller);
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    let links: Vec<_> = span.links.iter().collect();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].span_context.trace_id(), caller);
    assert_eq!(
        links[0].span_context.span_id(),
        SpanId::from_hex("b7ad6b7169203331").unwrap()
    );

    // Without a caller's context, both start a trace.
    let spans = traced(|| drop(Incoming::Link.request_span(&request(None))));
    assert_eq!(spans.len(), 1);
    assert!(spans[0].links.is_empty());
}

#[test]
fn incoming_reads_its_two_names_and_refuses_others() {
    for incoming in [Incoming::Continue, Incoming::Link] {
        assert_eq!(incoming.as_str().parse::<Incoming>(), Ok(incoming));
    }
    assert_eq!(" LINK ".parse::<Incoming>(), Ok(Incoming::Link));
    assert_eq!(Incoming::default(), Incoming::Continue);
    for bad in ["", "follow", "true"] {
        assert!(bad.parse::<Incoming>().is_err(), "{bad:?}");
    }
}
