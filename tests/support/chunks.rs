//! A request body streamed in chunks with no declared size, like a chunked
//! upload; shared by the body-limit unit tests and `tests/axum.rs`.
#![allow(dead_code)] // each includer uses its own constructor

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};

pub(crate) struct Chunks(VecDeque<Bytes>);

impl Chunks {
    /// Chunks of `x` bytes, one per size.
    pub(crate) fn new(sizes: &[usize]) -> Self {
        Self(sizes.iter().map(|&n| Bytes::from(vec![b'x'; n])).collect())
    }

    /// These chunks, in order.
    pub(crate) fn of(chunks: Vec<Bytes>) -> Self {
        Self(chunks.into())
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}
