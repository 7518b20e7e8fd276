use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::json;
use tower::{ServiceBuilder, ServiceExt};

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Request, Response};
use http_body::{Body, Frame};
use serde_json::Value;
use tower_layer::Layer;

use super::layer::McpPolicyLayer;
use super::rules::{MAX_TOOL_NAME_CHARS, ToolPolicy, display_name};
use crate::mcp::buffer::RequestBody;
use crate::mcp::sse::Scan;
use crate::principal::AuthMethod;
use crate::principal::{McpCall, Principal};
use crate::reject::{Reason, Rejection};

/// A body sent in the given chunks; `Pending` after them when `endless`.
struct Chunks {
    chunks: VecDeque<Bytes>,
    endless: bool,
}

impl Chunks {
    fn of<I: IntoIterator<Item = T>, T: Into<Bytes>>(chunks: I) -> Self {
        Self {
            chunks: chunks.into_iter().map(Into::into).collect(),
            endless: false,
        }
    }

    fn endless(first: &'static str) -> Self {
        Self {
            chunks: VecDeque::from([Bytes::from_static(first.as_bytes())]),
            endless: true,
        }
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.chunks.pop_front() {
            Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            None if self.endless => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

/// What the inner service saw.
#[derive(Clone, Default)]
struct Probe {
    calls: Arc<AtomicUsize>,
    call: Arc<Mutex<Option<McpCall>>>,
    policy: Arc<Mutex<Option<ToolPolicy>>>,
    body: Arc<Mutex<Option<Bytes>>>,
}

/// What the inner service answers: a content type and body chunks.
#[derive(Clone)]
struct Answer {
    content_type: &'static str,
    chunks: Vec<&'static str>,
    extra: Option<(&'static str, &'static str)>,
}

impl Answer {
    fn json(body: &'static str) -> Self {
        Self {
            content_type: "application/json",
            chunks: vec![body],
            extra: None,
        }
    }

    fn sse(chunks: Vec<&'static str>) -> Self {
        Self {
            content_type: "text/event-stream",
            chunks,
            extra: None,
        }
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    rejection: Option<Rejection>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

async fn run_with<B>(layer: McpPolicyLayer, request: Request<B>, answer: Answer) -> (Reply, Probe)
where
    B: Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    let probe = Probe::default();
    let p = probe.clone();
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service_fn(move |request: Request<RequestBody<B>>| {
                let p = p.clone();
                let answer = answer.clone();
                async move {
                    p.calls.fetch_add(1, Ordering::SeqCst);
                    *p.call.lock().unwrap() = request.extensions().get::<McpCall>().cloned();
                    *p.policy.lock().unwrap() = request.extensions().get::<ToolPolicy>().cloned();
                    if request.method() == Method::POST {
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        *p.body.lock().unwrap() = Some(body);
                    }
                    let length: usize = answer.chunks.iter().map(|c| c.len()).sum();
                    let mut response = Response::new(Chunks::of(answer.chunks));
                    let headers = response.headers_mut();
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static(answer.content_type));
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
                    if let Some((name, value)) = answer.extra {
                        headers.insert(name, HeaderValue::from_static(value));
                    }
                    Ok::<_, Infallible>(response)
                }
            });
    let response = service.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let reply = Reply {
        status: parts.status,
        headers: parts.headers,
        body,
        rejection: parts.extensions.get::<Rejection>().cloned(),
    };
    (reply, probe)
}

async fn run(layer: McpPolicyLayer, request: Request<Chunks>, answer: Answer) -> (Reply, Probe) {
    run_with(layer, request, answer).await
}

fn policy() -> ToolPolicy {
    ToolPolicy::new()
        .require("echo", ["tools:echo"])
        .require("add", ["tools:add", "math"])
}

fn caller(scopes: &[&str]) -> Principal {
    Principal::builder("bob", AuthMethod::ApiKey)
        .scopes(scopes.iter().copied())
        .key_id("key-1")
        .build()
}

fn post(body: impl Into<Bytes>, principal: Option<Principal>) -> Request<Chunks> {
    let mut request = Request::post("/mcp")
        .header(CONTENT_TYPE, "application/json")
        .body(Chunks::of([body.into()]))
        .unwrap();
    if let Some(principal) = principal {
        request.extensions_mut().insert(principal);
    }
    request
}

fn call(id: u32, tool: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}})
}

async fn call_tool(tool: &str, principal: Option<Principal>) -> (Reply, Probe) {
    let request = post(call(1, tool).to_string(), principal);
    run(McpPolicyLayer::new(policy()), request, Answer::json("{}")).await
}

#[test]
fn policy_from_json_takes_arrays_strings_and_a_default() {
    let policy = ToolPolicy::try_from_json(
        r#"{"echo":["tools:echo"],"add":" tools:add  math ","open":[],"*":"tools:admin"}"#,
    )
    .unwrap();
    let scopes = |tool| policy.required_scopes(tool).collect::<Vec<_>>();
    assert_eq!(scopes("echo"), ["tools:echo"]);
    assert_eq!(scopes("add"), ["tools:add", "math"]);
    assert!(scopes("open").is_empty());
    assert_eq!(scopes("reset"), ["tools:admin"]);
    assert_eq!(
        policy,
        ToolPolicy::new()
            .require("echo", ["tools:echo"])
            .require("add", ["tools:add", "math"])
            .require("open", Vec::<String>::new())
            .default_scopes(["tools:admin"])
    );
    assert!(format!("{policy:?}").contains("tools:admin"));
}

#[test]
fn policy_from_json_names_the_variable_on_bad_input() {
    for text in [
        "",
        "not json",
        "[]",
        r#""echo""#,
        r#"{"echo":1}"#,
        r#"{"echo":[1]}"#,
        r#"{"echo":{"a":"b"}}"#,
        r#"{"":["x"]}"#,
        r#"{"echo":["has space"]}"#,
        r#"{"echo":["quo\"te"]}"#,
        r#"{"echo":[""]}"#,
    ] {
        let error = ToolPolicy::try_from_json(text).unwrap_err();
        assert_eq!(error.setting(), "MCP_TOOL_SCOPES", "{text}");
        assert!(error.to_string().starts_with("invalid MCP_TOOL_SCOPES: "));
    }
}

#[test]
fn policy_honours_granted_wildcards() {
    let policy = policy().default_scopes(["tools:other"]);
    assert!(policy.allows(&caller(&["tools:echo"]), "echo"));
    assert!(policy.allows(&caller(&["tools:*"]), "echo"));
    assert!(policy.allows(&caller(&["*"]), "add"));
    assert!(policy.allows(&Principal::anonymous(), "anything"));
    assert_eq!(policy.missing(&caller(&["tools:*"]), "add"), ["math"]);
    assert_eq!(policy.missing(&caller(&[]), "unlisted"), ["tools:other"]);
    assert!(ToolPolicy::new().allows(&caller(&[]), "anything"));
}

#[tokio::test]
async fn calls_are_allowed_with_exact_wildcard_and_star_scopes() {
    for scopes in [&["tools:echo"][..], &["tools:*"], &["*"]] {
        let (reply, probe) = call_tool("echo", Some(caller(scopes))).await;
        assert_eq!(reply.status, StatusCode::OK, "{scopes:?}");
        assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
    }
    let (reply, _) = call_tool("add", Some(Principal::anonymous())).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn missing_scopes_are_refused_with_a_challenge() {
    let (reply, probe) = call_tool("add", Some(caller(&["tools:echo", "math"]))).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 0, "inner not called");
    assert_eq!(
        reply.headers[WWW_AUTHENTICATE],
        r#"Bearer error="insufficient_scope", error_description="tool `add` requires a scope the caller was not granted: tools:add", scope="tools:add""#
    );
    assert_eq!(reply.headers[CONTENT_TYPE], "application/problem+json");
    let problem = reply.json();
    assert_eq!(problem["code"], "insufficient_scope");
    assert_eq!(problem["status"], 403);
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("`add`") && detail.contains("tools:add"),
        "{detail}"
    );
    assert_eq!(reply.rejection.unwrap().reason(), Reason::InsufficientScope);

    let (reply, _) = call_tool("add", Some(caller(&[]))).await;
    assert_eq!(
        reply.headers[WWW_AUTHENTICATE],
        r#"Bearer error="insufficient_scope", error_description="tool `add` requires scopes the caller was not granted: tools:add math", scope="tools:add math""#
    );
}

#[tokio::test]
async fn a_request_without_a_principal_has_no_scopes() {
    let (reply, probe) = call_tool("echo", None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
    assert_eq!(reply.json()["code"], "insufficient_scope");
}

#[tokio::test]
async fn unlisted_tools_are_open_unless_a_default_is_set() {
    let (reply, probe) = call_tool("whoami", Some(caller(&[]))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);

    let layer = McpPolicyLayer::new(policy().default_scopes(["tools:rest"]));
    let request = post(call(1, "whoami").to_string(), Some(caller(&["tools:echo"])));
    let (reply, _) = run(layer, request, Answer::json("{}")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.headers[WWW_AUTHENTICATE],
        r#"Bearer error="insufficient_scope", error_description="tool `whoami` requires a scope the caller was not granted: tools:rest", scope="tools:rest""#
    );
}

#[tokio::test]
async fn one_forbidden_call_refuses_a_batch() {
    let batch = json!([
        {"jsonrpc":"2.0","method":"notifications/initialized"},
        call(1, "echo"),
        call(2, "add"),
    ]);
    let request = post(batch.to_string(), Some(caller(&["tools:echo"])));
    let (reply, probe) = run(McpPolicyLayer::new(policy()), request, Answer::json("[]")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
    assert_eq!(
        reply.headers[WWW_AUTHENTICATE],
        r#"Bearer error="insufficient_scope", error_description="tool `add` requires scopes the caller was not granted: tools:add math", scope="tools:add math""#
    );

    let batch = json!([call(1, "echo"), {"jsonrpc":"2.0","id":2,"method":"ping"}]);
    let request = post(batch.to_string(), Some(caller(&["tools:echo"])));
    let (reply, probe) = run(McpPolicyLayer::new(policy()), request, Answer::json("[]")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let call = probe.call.lock().unwrap().clone().unwrap();
    assert_eq!((call.method(), call.tool()), ("tools/call", Some("echo")));
}

#[tokio::test]
async fn the_inner_service_sees_the_call_the_policy_and_the_same_body() {
    let body = call(7, "echo").to_string();
    let request = post(body.clone(), Some(caller(&["tools:echo"])));
    let (reply, probe) = run(McpPolicyLayer::new(policy()), request, Answer::json("{}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "{}");
    assert_eq!(
        probe.call.lock().unwrap().clone(),
        Some(McpCall::new("tools/call", Some("echo".into())).with_id("7"))
    );
    assert_eq!(probe.policy.lock().unwrap().clone(), Some(policy()));
    assert_eq!(probe.body.lock().unwrap().clone().unwrap(), body);

    let request = post(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, None);
    let (_, probe) = run(McpPolicyLayer::new(policy()), request, Answer::json("{}")).await;
    assert_eq!(
        probe.call.lock().unwrap().clone(),
        Some(McpCall::new("ping", None).with_id("1"))
    );
}

#[tokio::test]
async fn other_requests_stream_through_unbuffered() {
    // An endless body: a layer that buffered it would never answer.
    let requests = [
        Request::get("/mcp")
            .header(CONTENT_TYPE, "application/json")
            .body(Chunks::endless("{"))
            .unwrap(),
        Request::post("/mcp")
            .header(CONTENT_TYPE, "text/plain")
            .body(Chunks::endless("{"))
            .unwrap(),
        Request::post("/mcp").body(Chunks::endless("{")).unwrap(),
    ];
    for request in requests {
        let probe = Probe::default();
        let p = probe.clone();
        let service = McpPolicyLayer::new(policy()).layer(tower::service_fn(
            move |request: Request<RequestBody<Chunks>>| {
                p.calls.fetch_add(1, Ordering::SeqCst);
                *p.call.lock().unwrap() = request.extensions().get::<McpCall>().cloned();
                async { Ok::<_, Infallible>(Response::new(Chunks::of(["ok"]))) }
            },
        ));
        let response = tokio::time::timeout(Duration::from_secs(5), service.oneshot(request))
            .await
            .expect("answered without reading the body")
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
        assert!(probe.call.lock().unwrap().is_none());
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let layer = || McpPolicyLayer::new(policy()).max_body_bytes(16);
    let body = call(1, "echo").to_string();
    // Known length (size hint) and streamed chunks without one.
    let known = post(body.clone(), Some(caller(&["*"])));
    let streamed = Request::post("/mcp")
        .header(CONTENT_TYPE, "application/json")
        .body(Chunks::of(
            body.as_bytes()
                .chunks(10)
                .map(Bytes::copy_from_slice)
                .collect::<Vec<_>>(),
        ))
        .unwrap();
    for request in [known, streamed] {
        let (reply, probe) = run(layer(), request, Answer::json("{}")).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(reply.json()["code"], "payload_too_large");
        assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn malformed_json_is_passed_through_untouched() {
    for body in ["{\"jsonrpc\":", "not json", "", "[1,]"] {
        let request = post(body, None);
        let (reply, probe) = run(McpPolicyLayer::new(policy()), request, Answer::json("{}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{body}");
        assert_eq!(probe.body.lock().unwrap().clone().unwrap(), body);
        assert!(probe.call.lock().unwrap().is_none());
    }
}

const TOOLS: &str = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo","inputSchema":{}},{"name":"add","inputSchema":{}},{"name":"whoami","inputSchema":{}}]}}"#;

fn names(message: &Value) -> Vec<&str> {
    message["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect()
}

fn list(id: u32, principal: Option<Principal>) -> Request<Chunks> {
    post(
        json!({"jsonrpc":"2.0","id":id,"method":"tools/list"}).to_string(),
        principal,
    )
}

#[tokio::test]
async fn tools_list_json_answers_show_only_callable_tools() {
    let (reply, _) = run(
        McpPolicyLayer::new(policy()),
        list(3, Some(caller(&["tools:echo"]))),
        Answer::json(TOOLS),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers.get(CONTENT_LENGTH).is_none());
    let message = reply.json();
    assert_eq!(names(&message), ["echo", "whoami"]);
    assert_eq!(message["id"], 3);

    let (reply, _) = run(
        McpPolicyLayer::new(policy()),
        list(3, Some(caller(&["*"]))),
        Answer::json(TOOLS),
    )
    .await;
    assert_eq!(reply.body, TOOLS, "nothing removed: the bytes are kept");

    // A tool without a name cannot be checked, so it is never shown.
    let nameless = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo"},{"title":"?"}]}}"#;
    let (reply, _) = run(
        McpPolicyLayer::new(policy()),
        list(3, Some(caller(&["*"]))),
        Answer::json(nameless),
    )
    .await;
    assert_eq!(names(&reply.json()), ["echo"]);
}

#[tokio::test]
async fn answers_for_another_id_are_left_alone() {
    let (reply, _) = run(
        McpPolicyLayer::new(policy()),
        list(4, Some(caller(&[]))),
        Answer::json(TOOLS),
    )
    .await;
    assert_eq!(reply.body, TOOLS);

    let events = ["data: ", TOOLS, "\n\n"].concat().leak();
    let (reply, _) = run(
        McpPolicyLayer::new(policy()),
        list(4, Some(caller(&[]))),
        Answer::sse(vec![events]),
    )
    .await;
    assert_eq!(reply.body, *events);
}

#[tokio::test]
async fn tools_list_event_streams_keep_every_other_event_byte_for_byte() {
    let priming = "id: 0\r\nretry: 3000\r\ndata:\r\n\r\n";
    let progress = ": keep-alive\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\n";
    let progress_end = "data: \"params\":{}}\n\n";
    let after = "data: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n\n";
    let target = ["id: 7\ndata: ", TOOLS, "\n\n"].concat().leak();
    // The answer arrives split mid-line, and a CRLF split between chunks.
    let (head, tail) = target.split_at(20);
    let chunks = vec![
        &priming[..priming.len() - 1],
        &priming[priming.len() - 1..],
        progress,
        progress_end,
        head,
        tail,
        after,
    ];
    let (reply, _) = run(
        McpPolicyLayer::new(policy()),
        list(3, Some(caller(&["tools:echo"]))),
        Answer::sse(chunks),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[CONTENT_TYPE], "text/event-stream");
    assert!(reply.headers.get(CONTENT_LENGTH).is_none());
    let text = std::str::from_utf8(&reply.body).unwrap();
    let prefix = [priming, progress, progress_end].concat();
    assert!(text.starts_with(&prefix), "{text}");
    assert!(text.ends_with(after), "{text}");
    let rewritten = &text[prefix.len()..text.len() - after.len()];
    let data = rewritten
        .strip_prefix("id: 7\ndata: ")
        .and_then(|rest| rest.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("{rewritten:?}"));
    let message: Value = serde_json::from_str(data).unwrap();
    assert_eq!(names(&message), ["echo", "whoami"]);
}

#[tokio::test]
async fn an_unterminated_last_event_is_filtered_too() {
    let events = ["data: ", TOOLS].concat().leak();
    let (reply, _) = run(
        McpPolicyLayer::new(policy()),
        list(3, None),
        Answer::sse(vec![events]),
    )
    .await;
    let text = std::str::from_utf8(&reply.body).unwrap();
    let message: Value =
        serde_json::from_str(text.strip_prefix("data: ").unwrap().trim_end()).unwrap();
    assert_eq!(names(&message), ["whoami"]);
}

#[tokio::test]
async fn lists_too_large_to_filter_fail_closed() {
    let layer = || McpPolicyLayer::new(policy()).max_response_bytes(64);
    let (reply, _) = run(layer(), list(3, Some(caller(&[]))), Answer::json(TOOLS)).await;
    let error = reply.json();
    assert_eq!(error["id"], 3);
    assert_eq!(error["error"]["code"], -32603);
    assert!(!reply.body.windows(4).any(|w| w == b"echo"));

    let events = ["data: ", TOOLS, "\n\n"].concat().leak();
    let (reply, _) = run(
        layer(),
        list(3, Some(caller(&[]))),
        Answer::sse(vec!["data: {}\n\n", events]),
    )
    .await;
    let text = std::str::from_utf8(&reply.body).unwrap();
    let error = text
        .strip_prefix("data: {}\n\ndata: ")
        .and_then(|rest| rest.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("{text}"));
    let error: Value = serde_json::from_str(error).unwrap();
    assert_eq!(error["error"]["code"], -32603);
    assert_eq!(error["id"], 3);
}

#[tokio::test]
async fn compressed_lists_fail_closed() {
    let mut answer = Answer::json(TOOLS);
    answer.extra = Some(("content-encoding", "gzip"));
    let (reply, _) = run(
        McpPolicyLayer::new(policy()),
        list(3, Some(caller(&[]))),
        answer,
    )
    .await;
    assert!(reply.headers.get(CONTENT_ENCODING).is_none());
    assert_eq!(reply.json()["error"]["code"], -32603);
}

#[tokio::test]
async fn answers_to_other_methods_are_not_touched() {
    let request = post(call(3, "echo").to_string(), Some(caller(&["*"])));
    let (reply, _) = run(McpPolicyLayer::new(policy()), request, Answer::json(TOOLS)).await;
    assert_eq!(reply.body, TOOLS);
    assert_eq!(
        reply.headers[CONTENT_LENGTH],
        TOOLS.len().to_string().as_str()
    );
}

#[test]
fn events_end_at_a_blank_line_whatever_the_line_endings() {
    for (text, end) in [
        ("data: a\n\nrest", Some(9)),
        ("data: a\r\n\r\nrest", Some(11)),
        ("data: a\r\rrest", Some(9)),
        ("\n", Some(1)),
        ("data: a\r\n\r", None),
        ("data: a\n", None),
    ] {
        assert_eq!(
            Scan::default().complete_event(text.as_bytes()),
            end,
            "{text:?}"
        );
    }
    let mut scan = Scan::default();
    assert_eq!(scan.complete_event(b"data: a\r"), None);
    assert_eq!(scan.complete_event(b"data: a\r\n"), None);
    assert_eq!(scan.complete_event(b"data: a\r\n\n"), Some(10));
}

#[test]
fn tool_names_in_details_are_bounded_and_printable() {
    let name = format!("a\nb{}", "x".repeat(100));
    let shown = display_name(&name);
    assert!(shown.starts_with("a\u{fffd}b"));
    assert_eq!(shown.chars().count(), MAX_TOOL_NAME_CHARS + 1);
}
