//! The [`RateLimit`] service: a [`RateLimitLayer`] run as an
//! [`AsyncCheck`].

use std::sync::Arc;

use http::Request;
use http::header::HeaderMap;

use super::config::Config;
use super::key::KeyBy;
use super::layer::RateLimitLayer;
use super::store::{Allowance, Quota, Store};
use crate::guard::{AsyncCheck, AsyncGuard, AsyncResponseFuture, NowOrLater};
use crate::reject::{DefaultResponder, Rejection, Respond};

/// The service of [`RateLimitLayer`]: the inner service behind the layer's
/// quota. Clones share the store.
pub type RateLimit<S, R = DefaultResponder> = AsyncGuard<S, RateLimitLayer<R>>;

/// The response future of [`RateLimit`] (boxed only while a shared store
/// decides).
pub type ResponseFuture<S, B, R = DefaultResponder> = AsyncResponseFuture<S, B, RateLimitLayer<R>>;

impl RateLimit<(), DefaultResponder> {
    /// The layer that counts requests per `key` against `quota` in `store`;
    /// see [`RateLimitLayer::new`].
    pub fn layer(quota: Quota, key: KeyBy, store: Arc<dyn Store>) -> RateLimitLayer {
        RateLimitLayer::new(quota, key, store)
    }
}

/// What [`RateLimit`] keeps of an admitted request for its response
/// headers: the limit it was counted against and its allowance.
pub struct Counted {
    config: Arc<Config>,
    limit: usize,
    allowance: Allowance,
}

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counted")
            .field("limit", &self.limit)
            .field("allowance", &self.allowance)
            .finish_non_exhaustive()
    }
}

impl<R: Respond> AsyncCheck for RateLimitLayer<R> {
    const LAYER: &'static str = "rate_limit";

    type Responder = R;
    type Outcome = Allowance;
    /// The limit the request is counted against.
    type Memo = usize;
    type Admitted = Counted;

    #[inline]
    fn decide<B>(&self, request: &Request<B>) -> Option<(usize, NowOrLater<Allowance>)> {
        let config = self.config();
        let (key, limit) = config.select(request)?;
        Some((limit, config.store.check(&key, config.quota(limit))))
    }

    fn apply<B>(
        &self,
        limit: usize,
        allowance: Allowance,
        _request: &mut Request<B>,
    ) -> Result<Counted, Rejection> {
        let config = self.config();
        config.record(limit, allowance.allowed);
        if allowance.allowed {
            Ok(Counted {
                config: Arc::clone(config),
                limit,
                allowance,
            })
        } else {
            Err(config.rejection(limit, &allowance))
        }
    }

    #[inline]
    fn on_response(counted: Counted, headers: &mut HeaderMap) {
        counted
            .config
            .write_headers(counted.limit, &counted.allowance, headers);
    }

    fn responder(&self) -> &R {
        self.responder_ref()
    }
}
