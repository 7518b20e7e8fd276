//! The `tools/list` rewrite: which answer is filtered, how a JSON body or
//! an SSE event is rewritten, and the fail-closed error that replaces a
//! list that cannot be filtered.

use std::collections::VecDeque;
use std::mem;

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use serde_json::Value;

use super::rules::ToolPolicy;
use crate::mcp::errors::code::ErrorCode;
use crate::mcp::json;
use crate::mcp::sse::{Scan, data_value, sse_lines};
use crate::principal::Principal;

/// The `tools/list` requests whose answers are still to be filtered, and
/// for whom.
#[derive(Clone, Debug)]
pub(super) struct Filter {
    pub(super) ids: Vec<Value>,
    pub(super) principal: Option<Principal>,
    pub(super) policy: ToolPolicy,
    pub(super) limit: usize,
}

impl Filter {
    /// Filters `message` if it answers an outstanding `tools/list`; returns
    /// whether it changed.
    fn rewrite(&mut self, message: &mut Value) -> bool {
        let Some(id) = message.get("id") else {
            return false;
        };
        let Some(index) = self.ids.iter().position(|wanted| wanted == id) else {
            return false;
        };
        self.ids.swap_remove(index);
        let Some(tools) = message
            .get_mut("result")
            .and_then(|result| result.get_mut("tools"))
            .and_then(Value::as_array_mut)
        else {
            return false;
        };
        let before = tools.len();
        let principal = self.principal.as_ref();
        tools.retain(|tool| {
            tool.get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| self.policy.allows_for(principal, name))
        });
        tools.len() != before
    }

    /// Filters a whole JSON answer (one message or a batch).
    fn rewrite_json(&mut self, bytes: Bytes) -> Bytes {
        let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
            return bytes;
        };
        let changed = match &mut value {
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.rewrite(item) | changed),
            single => self.rewrite(single),
        };
        if !changed {
            return bytes;
        }
        serde_json::to_vec(&value).map_or_else(|_| self.error_object(), Bytes::from)
    }

    /// Filters one SSE event (its bytes through the blank line that ends
    /// it); `None` when it is passed on unchanged.
    fn rewrite_event(&mut self, event: &[u8]) -> Option<Bytes> {
        let lines = sse_lines(event);
        let mut data: Vec<u8> = Vec::new();
        let mut has_data = false;
        for line in &lines {
            if let Some(value) = data_value(line) {
                if has_data {
                    data.push(b'\n');
                }
                data.extend_from_slice(value);
                has_data = true;
            }
        }
        if data.is_empty() {
            return None;
        }
        let mut message = serde_json::from_slice::<Value>(&data).ok()?;
        if !self.rewrite(&mut message) {
            return None;
        }
        let json = serde_json::to_vec(&message).ok()?;
        let mut out = Vec::with_capacity(event.len());
        let mut written = false;
        for line in &lines {
            if data_value(line).is_some() {
                if !written {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(&json);
                    out.push(b'\n');
                    written = true;
                }
            } else if !line.is_empty() {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
        }
        out.push(b'\n');
        Some(Bytes::from(out))
    }

    /// The JSON-RPC error that replaces a list that cannot be filtered.
    pub(super) fn error_object(&self) -> Bytes {
        let id = self
            .ids
            .first()
            .and_then(|id| serde_json::to_string(id).ok());
        Bytes::from(json::error_object(
            id.as_deref(),
            ErrorCode::InternalError.code(),
            "Internal error: the tools/list answer could not be filtered",
        ))
    }

    /// [`error_object`](Self::error_object) as a final SSE event.
    fn error_event(&self) -> Bytes {
        let mut out = b"data: ".to_vec();
        out.extend_from_slice(&self.error_object());
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }
}

/// How the answer is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Json,
    Sse,
}

/// How far the rewrite of an answer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Reading the inner body to find the `tools/list` answer.
    Filtering,
    /// The answer has passed: the rest streams through.
    Passthrough,
    /// The inner body has ended (or the stream was cut off after an error
    /// event); what is queued is all that is left.
    Ended,
}

/// The rewrite of one answer in progress: what is buffered, what is ready
/// to go out.
#[derive(Debug)]
pub(super) struct FilterState {
    pub(super) filter: Filter,
    pub(super) mode: Mode,
    pub(super) buffer: BytesMut,
    pub(super) scan: Scan,
    pub(super) out: VecDeque<Bytes>,
    pub(super) phase: Phase,
    pub(super) trailers: Option<HeaderMap>,
}

impl FilterState {
    /// Moves what can be decided from the buffer to the output queue.
    /// `eof`: the inner body has no more data.
    pub(super) fn process(&mut self, eof: bool) {
        match self.mode {
            Mode::Json => {
                if eof {
                    let bytes = mem::take(&mut self.buffer).freeze();
                    let bytes = self.filter.rewrite_json(bytes);
                    self.queue(bytes);
                } else if self.buffer.len() > self.filter.limit {
                    self.fail(Mode::Json);
                }
            }
            Mode::Sse => self.process_events(eof),
        }
    }

    fn process_events(&mut self, eof: bool) {
        let mut passed = 0;
        while !self.filter.ids.is_empty() {
            let Some(len) = self.scan.complete_event(&self.buffer[passed..]) else {
                break;
            };
            if len > self.filter.limit {
                let done = self.buffer.split_to(passed).freeze();
                self.queue(done);
                self.fail(Mode::Sse);
                return;
            }
            let event = &self.buffer[passed..passed + len];
            match self.filter.rewrite_event(event) {
                None => passed += len,
                Some(rewritten) => {
                    let before = self.buffer.split_to(passed).freeze();
                    self.queue(before);
                    self.buffer.advance(len);
                    self.queue(rewritten);
                    passed = 0;
                }
            }
        }
        if self.filter.ids.is_empty() {
            // Every answer has passed: the rest goes on as it is.
            let rest = self.buffer.split().freeze();
            self.queue(rest);
            if self.phase == Phase::Filtering {
                self.phase = Phase::Passthrough;
            }
            return;
        }
        let done = self.buffer.split_to(passed).freeze();
        self.queue(done);
        if self.buffer.len() > self.filter.limit {
            self.fail(Mode::Sse);
        } else if eof {
            // An unterminated last event is read as if it were terminated.
            let rest = self.buffer.split().freeze();
            self.scan = Scan::default();
            match self.filter.rewrite_event(&rest) {
                Some(rewritten) => self.queue(rewritten),
                None => self.queue(rest),
            }
        }
    }

    fn queue(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.out.push_back(bytes);
        }
    }

    /// Fails closed: the unfiltered rest is dropped, a JSON-RPC error takes
    /// its place, and the stream ends.
    pub(super) fn fail(&mut self, mode: Mode) {
        tracing::warn!(
            target: "tower_warden",
            limit = self.filter.limit,
            "a tools/list answer is too large to filter; answering with an error"
        );
        self.buffer.clear();
        let error = match mode {
            Mode::Json => self.filter.error_object(),
            Mode::Sse => self.filter.error_event(),
        };
        self.queue(error);
        self.phase = Phase::Ended;
    }
}
