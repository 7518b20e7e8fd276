//! The HTTP client of every upstream call, with its answers capped: the
//! caps of [`ResponseLimitLayer`] (bytes per event, bytes and events per
//! stream, duration), counted by its [`StreamBudget`] over the events
//! rmcp's client has split, and one JSON-RPC error event carrying the
//! request's id when a stream is cut, so the call ends with an error
//! rather than silence.
//!
//! rmcp's client reads its answers through reqwest, which takes no
//! response middleware; this wraps it as rmcp's `StreamableHttpClient`
//! instead. The size of one event is also handed down to reqwest's reader,
//! which refuses a longer event before holding it whole; JSON answers
//! (not event streams) are capped by rmcp itself at 16 MiB.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, RequestParamsMeta as _};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::Sse;
use tower_warden::mcp::{ResponseLimitExceeded, ResponseLimitLayer, StreamBudget};
use tower_warden::otel;

type Events = BoxStream<'static, Result<Sse, SseError>>;

/// The bearer token a caller's upstream client sends, replaced when the
/// token exchanged for the caller is renewed (the MCP session stays). A
/// credential: its `Debug` shows nothing of it.
pub struct TokenCell(std::sync::RwLock<Arc<str>>);

impl TokenCell {
    /// A cell holding `token`.
    pub fn new(token: &str) -> Self {
        Self(std::sync::RwLock::new(Arc::from(token)))
    }

    /// Sends `token` from now on.
    pub fn set(&self, token: &str) {
        let mut held = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if **held != *token {
            *held = Arc::from(token);
        }
    }

    fn get(&self) -> String {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .to_string()
    }
}

impl std::fmt::Debug for TokenCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCell(..)")
    }
}

/// reqwest's client, its answers capped by `caps`.
#[derive(Clone, Debug)]
pub struct Capped {
    inner: reqwest::Client,
    caps: ResponseLimitLayer,
    /// Replaces the transport's bearer token (a caller's client).
    token: Option<Arc<TokenCell>>,
}

impl Capped {
    /// `inner`, its event streams capped by `caps` (its body limit does not
    /// apply: JSON answers are rmcp's to cap).
    pub fn new(inner: reqwest::Client, caps: ResponseLimitLayer) -> Self {
        Self {
            inner,
            caps,
            token: None,
        }
    }

    /// Sends the token in `cell` (as it is at each request) rather than
    /// the transport's own.
    pub fn with_token(mut self, cell: Option<Arc<TokenCell>>) -> Self {
        self.token = cell;
        self
    }

    /// The bearer token of a request: the cell's, else the transport's.
    fn auth(&self, transport: Option<String>) -> Option<String> {
        match &self.token {
            Some(cell) => Some(cell.get()),
            None => transport,
        }
    }

    /// The largest event either cap allows.
    fn event_bytes(&self, asked: usize) -> usize {
        asked.min(self.caps.stream_budget().max_event_bytes())
    }
}

/// The W3C trace context of a tool call's `_meta` (SEP-414), copied to
/// the `traceparent` and `tracestate` headers, so that an upstream that
/// reads only HTTP headers continues the trace too.
fn trace_headers(message: &ClientJsonRpcMessage, headers: &mut HashMap<HeaderName, HeaderValue>) {
    let ClientJsonRpcMessage::Request(request) = message else {
        return;
    };
    let ClientRequest::CallToolRequest(call) = &request.request else {
        return;
    };
    let fields = [
        (otel::TRACEPARENT, call.params.traceparent()),
        (otel::TRACESTATE, call.params.tracestate()),
    ];
    for (name, value) in fields {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    }
}

impl StreamableHttpClient for Capped {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.post_message_with_max_sse_event_size(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            usize::MAX,
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let id = match &message {
            ClientJsonRpcMessage::Request(request) => serde_json::to_string(&request.id).ok(),
            _ => None,
        };
        let mut custom_headers = custom_headers;
        trace_headers(&message, &mut custom_headers);
        let answer = self
            .inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                self.auth(auth_header),
                custom_headers,
                self.event_bytes(max_sse_event_size),
            )
            .await?;
        Ok(match answer {
            StreamableHttpPostResponse::Sse(events, session) => StreamableHttpPostResponse::Sse(
                capped(events, self.caps.stream_budget(), id),
                session,
            ),
            other => other,
        })
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        self.inner
            .delete_session(uri, session_id, self.auth(auth_header), custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<Events, StreamableHttpError<Self::Error>> {
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            usize::MAX,
        )
        .await
    }

    /// The session's own stream (server notifications) lives as long as
    /// the session: only the size of each event is capped.
    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<Events, StreamableHttpError<Self::Error>> {
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                self.auth(auth_header),
                custom_headers,
                self.event_bytes(max_sse_event_size),
            )
            .await
    }
}

/// What is left of one answer stream.
struct Capping {
    events: Events,
    budget: StreamBudget,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The request's id, as JSON.
    id: Option<String>,
    done: bool,
}

/// `events` counted against `budget` and its duration; past a limit, one
/// JSON-RPC error event for the request `id`, then the end.
fn capped(events: Events, budget: StreamBudget, id: Option<String>) -> Events {
    let deadline = Box::pin(tokio::time::sleep(budget.max_duration()));
    let state = Capping {
        events,
        budget,
        deadline,
        id,
        done: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        let crossed = tokio::select! {
            biased;
            () = &mut state.deadline => ResponseLimitExceeded::Duration,
            next = state.events.next() => match next {
                Some(Ok(event)) => {
                    let size = [&event.event, &event.data, &event.id]
                        .into_iter()
                        .map(|field| field.as_ref().map_or(0, String::len))
                        .sum();
                    match state.budget.admit(size) {
                        Ok(()) => return Some((Ok(event), state)),
                        Err(limit) => limit,
                    }
                }
                other => return other.map(|item| (item, state)),
            },
        };
        tracing::warn!(limit = ?crossed, "gateway: an upstream answer stream was cut");
        state.done = true;
        let error = crossed.json_rpc_error(state.id.as_deref());
        let ending = Sse::default().data(String::from_utf8_lossy(&error).into_owned());
        Some((Ok(ending), state))
    })
    .boxed()
}
