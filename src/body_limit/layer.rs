use tower_layer::Layer;

use super::BodyLimit;
use crate::reject::{DefaultResponder, Respond};

/// Caps request bodies at a number of bytes. See the
/// [module docs](crate::body_limit).
#[derive(Clone, Copy, Debug)]
#[must_use]
pub struct BodyLimitLayer<R = DefaultResponder> {
    limit: u64,
    responder: R,
}

impl BodyLimitLayer {
    /// Allows bodies of at most `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            responder: DefaultResponder,
        }
    }
}

impl<R> BodyLimitLayer<R> {
    /// Answers refusals with `responder` instead of the default.
    pub fn responder<R2: Respond>(self, responder: R2) -> BodyLimitLayer<R2> {
        BodyLimitLayer {
            limit: self.limit,
            responder,
        }
    }

    /// The configured limit in bytes.
    #[must_use]
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

impl<S, R: Clone> Layer<S> for BodyLimitLayer<R> {
    type Service = BodyLimit<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit::new(inner, self.limit, self.responder.clone())
    }
}
