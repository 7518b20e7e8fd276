//! SSE framing: whether a response is an event stream, where an event
//! ends, its lines, and its `data` values.

use http::HeaderMap;
use http::header::CONTENT_TYPE;

/// Whether `headers` announce an event stream.
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// The lines of an SSE event (without their CR, LF or CRLF endings).
pub(crate) fn sse_lines(event: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < event.len() {
        match event[i] {
            b'\n' => {
                lines.push(&event[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                lines.push(&event[start..i]);
                i += if event.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < event.len() {
        lines.push(&event[start..]);
    }
    lines
}

/// The value of a `data` field line, `None` for any other line.
pub(crate) fn data_value(line: &[u8]) -> Option<&[u8]> {
    if line == b"data" {
        return Some(b"");
    }
    let value = line.strip_prefix(b"data:")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// Where the search for the end of the first buffered SSE event stopped.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Scan {
    pos: usize,
    line_start: usize,
}

impl Scan {
    /// The length of the first complete event in `buffer` (through the
    /// blank line that ends it), resuming where the last call stopped.
    pub(crate) fn complete_event(&mut self, buffer: &[u8]) -> Option<usize> {
        while self.pos < buffer.len() {
            let i = self.pos;
            let end = match buffer[i] {
                b'\n' => i + 1,
                b'\r' => match buffer.get(i + 1) {
                    // Wait for the byte after a final CR: it may be an LF.
                    None => return None,
                    Some(b'\n') => i + 2,
                    Some(_) => i + 1,
                },
                _ => {
                    self.pos = buffer[i..]
                        .iter()
                        .position(|b| matches!(b, b'\n' | b'\r'))
                        .map_or(buffer.len(), |n| i + n);
                    continue;
                }
            };
            let blank = i == self.line_start;
            self.pos = end;
            self.line_start = end;
            if blank {
                *self = Self::default();
                return Some(end);
            }
        }
        None
    }
}
