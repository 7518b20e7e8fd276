use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use http_body_util::{LengthLimitError, Limited};
use pin_project_lite::pin_project;

pin_project! {
    /// The request body the inner service receives from
    /// [`BodyLimit`](super::BodyLimit): the original body, stopped with a
    /// `http_body_util::LengthLimitError` once it passes the limit.
    #[derive(Debug)]
    pub struct LimitedBody<B> {
        #[pin]
        inner: Limited<B>,
        // `None` for a body whose exact size is known and within the limit:
        // nothing to watch.
        tripped: Option<Arc<AtomicBool>>,
    }
}

impl<B> LimitedBody<B> {
    pub(super) fn new(body: B, limit: u64, tripped: Option<Arc<AtomicBool>>) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Self {
            inner: Limited::new(body, limit),
            tripped,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Err(error)) = &frame
            && error.is::<LengthLimitError>()
            && let Some(tripped) = this.tripped
        {
            tripped.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
