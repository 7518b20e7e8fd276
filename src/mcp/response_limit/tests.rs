use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tower::{ServiceBuilder, ServiceExt};

use super::{ResponseLimitExceeded, ResponseLimitLayer};
use crate::principal::McpCall;

/// A body fed by the test, chunk by chunk; ends when the sender is dropped.
struct Channel(mpsc::UnboundedReceiver<Bytes>);

impl Body for Channel {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|c| Ok(Frame::data(c))))
    }
}

/// An answer with `content_type` whose body is fed through `rx`.
fn fed(content_type: &'static str, rx: mpsc::UnboundedReceiver<Bytes>) -> Response<Channel> {
    let mut response = Response::new(Channel(rx));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, content_type.parse().unwrap());
    response
}

/// A service answering with `content_type` and the chunks of `chunks`
/// (then ends).
fn answer(
    content_type: &'static str,
    chunks: Vec<&'static [u8]>,
) -> impl Fn(Request<()>) -> std::future::Ready<Result<Response<Channel>, Infallible>> + Clone {
    move |_| {
        let (tx, rx) = mpsc::unbounded_channel();
        for chunk in &chunks {
            tx.send(Bytes::from_static(chunk)).unwrap();
        }
        std::future::ready(Ok(fed(content_type, rx)))
    }
}

/// A service answering its one request with an event stream fed by the
/// test through `rx` (held open while the sender lives).
fn stream_of(
    rx: mpsc::UnboundedReceiver<Bytes>,
) -> impl Fn(Request<()>) -> std::future::Ready<Result<Response<Channel>, Infallible>> {
    let rx = Mutex::new(Some(rx));
    move |_| {
        let rx = rx.lock().unwrap().take().expect("one request");
        std::future::ready(Ok(fed("text/event-stream", rx)))
    }
}

fn call(id: &str) -> Request<()> {
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(McpCall::new("tools/call", Some("t".into())).with_id(id));
    request
}

/// Every frame of `body`, then the error it ended with, if any.
async fn drain<B>(body: B) -> (Vec<u8>, Option<String>)
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut body = body;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => out.extend_from_slice(&frame.into_data().unwrap_or_default()),
            Err(error) => return (out, Some(error.to_string())),
        }
    }
    (out, None)
}

/// The data of each event of an event stream.
fn events(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or_default()
        })
        .collect()
}

fn last_error(text: &str) -> Value {
    let data = *events(text).last().unwrap();
    serde_json::from_str(data).unwrap()
}

#[tokio::test]
async fn an_event_stream_within_the_limits_is_passed_on_byte_for_byte() {
    // Events split across chunks, with LF, CRLF and CR line endings.
    let chunks: Vec<&'static [u8]> = vec![
        b"event: message\nda",
        b"ta: {\"a\":1}\n",
        b"\nid: 2\r\ndata: {\"b\":2}\r",
        b"\n\r\n: comment\r\r",
        b"data: {\"c\":3}\n\n",
    ];
    let whole: Vec<u8> = chunks.concat();
    let service = ServiceBuilder::new()
        .layer(ResponseLimitLayer::new().max_events(4))
        .service_fn(answer("text/event-stream; charset=utf-8", chunks));
    let response = service.oneshot(call("1")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (out, error) = drain(response.into_body()).await;
    assert_eq!(error, None);
    assert_eq!(out, whole);
}

#[tokio::test]
async fn too_many_events_end_with_a_json_rpc_error_event_naming_the_request() {
    let service = ServiceBuilder::new()
        .layer(ResponseLimitLayer::new().max_events(2))
        .service_fn(answer(
            "text/event-stream",
            vec![b"data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"],
        ));
    let response = service.oneshot(call("\"req-7\"")).await.unwrap();
    let (out, error) = drain(response.into_body()).await;
    assert_eq!(
        error, None,
        "a cut stream ends cleanly, after its error event"
    );
    let text = String::from_utf8(out).unwrap();
    assert_eq!(&events(&text)[..2], ["1", "2"]);
    assert_eq!(events(&text).len(), 3, "{text}");
    let error = last_error(&text);
    assert_eq!(error["jsonrpc"], "2.0");
    assert_eq!(error["id"], "req-7");
    assert_eq!(error["error"]["code"], -32000);
    assert_eq!(
        error["error"]["message"],
        ResponseLimitExceeded::Events.to_string()
    );
}

#[tokio::test]
async fn an_oversized_event_is_never_forwarded_in_part() {
    let service = ServiceBuilder::new()
        .layer(ResponseLimitLayer::new().max_event_bytes(32))
        .service_fn(answer(
            "text/event-stream",
            // The second event is still open when it crosses the limit.
            vec![
                b"data: small\n\n",
                b"data: 0123456789",
                b"0123456789",
                b"0123456789",
                b"never seen\n\n",
            ],
        ));
    let response = service.oneshot(call("3")).await.unwrap();
    let (out, _) = drain(response.into_body()).await;
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("data: small\n\n"), "{text}");
    assert!(
        !text.contains("0123456789"),
        "part of the big event leaked: {text}"
    );
    let error = last_error(&text);
    assert_eq!(error["id"], 3);
    assert_eq!(
        error["error"]["message"],
        ResponseLimitExceeded::Event.to_string()
    );
}

#[tokio::test]
async fn a_stream_over_its_byte_limit_is_cut_between_events() {
    let service = ServiceBuilder::new()
        .layer(ResponseLimitLayer::new().max_stream_bytes(20))
        .service_fn(answer(
            "text/event-stream",
            vec![b"data: aaaa\n\n", b"data: bbbb\n\n", b"data: cccc\n\n"],
        ));
    let response = service.oneshot(call("4")).await.unwrap();
    let (out, _) = drain(response.into_body()).await;
    let text = String::from_utf8(out).unwrap();
    assert_eq!(events(&text)[0], "aaaa");
    assert!(!text.contains("bbbb"), "{text}");
    assert_eq!(
        last_error(&text)["error"]["message"],
        ResponseLimitExceeded::Stream.to_string()
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_never_ends_is_cut_at_its_deadline() {
    let (tx, rx) = mpsc::unbounded_channel();
    let service = ServiceBuilder::new()
        .layer(ResponseLimitLayer::new().max_duration(Duration::from_secs(5)))
        .service_fn(stream_of(rx));
    let response = service.oneshot(call("9")).await.unwrap();
    tx.send(Bytes::from_static(b"data: first\n\n")).unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "data: first\n\n");
    // The upstream says nothing more and never ends; time passes.
    let started = tokio::time::Instant::now();
    let ending = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    let error = last_error(std::str::from_utf8(&ending).unwrap());
    assert_eq!(error["id"], 9);
    assert_eq!(
        error["error"]["message"],
        ResponseLimitExceeded::Duration.to_string()
    );
    assert!(
        body.frame().await.is_none(),
        "the stream ends after the error"
    );
    assert!(body.is_end_stream());
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn no_duration_limit_sets_no_timer() {
    let service = ServiceBuilder::new()
        .layer(ResponseLimitLayer::new().max_duration(Duration::MAX))
        .service_fn(answer("text/event-stream", vec![b"data: x\n\n"]));
    let response = service.oneshot(call("1")).await.unwrap();
    let (out, error) = drain(response.into_body()).await;
    assert_eq!((out.as_slice(), error), (&b"data: x\n\n"[..], None));
}

#[tokio::test]
async fn what_follows_the_last_whole_event_at_the_end_is_passed_on() {
    let service = ServiceBuilder::new()
        .layer(ResponseLimitLayer::new())
        .service_fn(answer("text/event-stream", vec![b"data: a\n\ndata: b"]));
    let response = service.oneshot(call("1")).await.unwrap();
    let (out, error) = drain(response.into_body()).await;
    assert_eq!((out.as_slice(), error), (&b"data: a\n\ndata: b"[..], None));
}

#[tokio::test]
async fn a_declared_body_over_the_cap_is_replaced_by_a_json_rpc_error() {
    let service = ServiceBuilder::new()
        .layer(ResponseLimitLayer::new().max_body_bytes(8))
        .service_fn(|_: Request<()>| async {
            let mut response = Response::new(http_body_util::Full::new(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":5,"result":{}}"#,
            )));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, "application/json".parse().unwrap());
            Ok::<_, Infallible>(response)
        });
    let response = service.oneshot(call("5")).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let (out, error) = drain(response.into_body()).await;
    assert_eq!(error, None);
    let answer: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(answer["id"], 5);
    assert_eq!(answer["error"]["code"], -32000);
    assert_eq!(
        answer["error"]["message"],
        ResponseLimitExceeded::Body.to_string()
    );
}

#[tokio::test]
async fn a_declared_content_length_over_the_cap_is_replaced_too() {
    let service = ServiceBuilder::new()
        .layer(ResponseLimitLayer::new().max_body_bytes(8))
        .service_fn(|_: Request<()>| async {
            let (_tx, rx) = mpsc::unbounded_channel();
            let mut response = Response::new(Channel(rx));
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, "1000000".parse().unwrap());
            Ok::<_, Infallible>(response)
        });
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let length: usize = response.headers()[CONTENT_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let (out, _) = drain(response.into_body()).await;
    assert_eq!(out.len(), length);
    let answer: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(answer["id"], Value::Null, "no McpCall: the id is null");
}

#[tokio::test]
async fn a_streamed_body_over_the_cap_ends_with_an_error_not_a_short_body() {
    let service = ServiceBuilder::new()
        .layer(ResponseLimitLayer::new().max_body_bytes(10))
        .service_fn(answer(
            "application/json",
            vec![b"0123456", b"789abc", b"def"],
        ));
    let response = service.oneshot(call("1")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (out, error) = drain(response.into_body()).await;
    assert_eq!(out, b"0123456");
    assert_eq!(error, Some(ResponseLimitExceeded::Body.to_string()));
}

#[tokio::test]
async fn a_body_within_the_cap_is_untouched() {
    let service = ServiceBuilder::new()
        .layer(ResponseLimitLayer::new().max_body_bytes(13))
        .service_fn(answer("application/json", vec![b"0123456", b"789abc"]));
    let response = service.oneshot(call("1")).await.unwrap();
    let (out, error) = drain(response.into_body()).await;
    assert_eq!((out.as_slice(), error), (&b"0123456789abc"[..], None));
}

#[tokio::test]
async fn an_unbounded_flood_of_events_holds_at_most_one_event_in_memory() {
    // 100k one-byte chunks of one endless event: cut at the event limit,
    // never buffered beyond it.
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(Bytes::from_static(b"data: ")).unwrap();
    for _ in 0..100_000 {
        tx.send(Bytes::from_static(b"x")).unwrap();
    }
    let service = ServiceBuilder::new()
        .layer(ResponseLimitLayer::new().max_event_bytes(1024))
        .service_fn(stream_of(rx));
    let response = service.oneshot(call("1")).await.unwrap();
    let (out, error) = drain(response.into_body()).await;
    assert_eq!(error, None);
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("xxxx"), "part of the endless event leaked");
    assert_eq!(
        last_error(&text)["error"]["message"],
        ResponseLimitExceeded::Event.to_string()
    );
    drop(tx);
}
