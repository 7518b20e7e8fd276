//! [`IpFilterLayer`].

use http::Request;
use tower_layer::Layer;

use super::{IpFilter, IpSet};
use crate::client_ip::ClientIp;
use crate::guard::{Check, Guard};
use crate::reject::{DefaultResponder, Reason, Rejection, Respond};

/// Admits only the client addresses an [`IpSet`] allows; refuses the others
/// with 403 `ip_denied`.
///
/// Clones share the set. See the [module docs](super).
#[derive(Clone, Debug)]
#[must_use]
pub struct IpFilterLayer<R = DefaultResponder> {
    set: IpSet,
    responder: R,
}

impl IpFilterLayer {
    /// Filters on `set`, answering refusals with the [`DefaultResponder`].
    pub fn new(set: IpSet) -> Self {
        Self {
            set,
            responder: DefaultResponder,
        }
    }
}

impl<R> IpFilterLayer<R> {
    /// Answers refusals with `responder` instead of the default.
    pub fn responder<R2: Respond>(self, responder: R2) -> IpFilterLayer<R2> {
        IpFilterLayer {
            set: self.set,
            responder,
        }
    }

    /// The set this layer filters on.
    #[must_use]
    pub fn ip_set(&self) -> &IpSet {
        &self.set
    }
}

impl<R: Respond> Check for IpFilterLayer<R> {
    type Responder = R;

    #[inline]
    fn check<B>(&self, request: &mut Request<B>) -> Result<(), Rejection> {
        match ClientIp::of(request.extensions()) {
            Some(ip) if self.set.is_allowed(ip) => Ok(()),
            Some(_) => Err(Rejection::new(Reason::IpDenied)),
            // Fail closed: without an address there is nothing to allow.
            None => Err(Rejection::new(Reason::IpDenied)
                .with_detail("the client address is unknown, so it cannot be allowed")),
        }
    }

    fn responder(&self) -> &R {
        &self.responder
    }
}

impl<S, R: Respond> Layer<S> for IpFilterLayer<R> {
    type Service = IpFilter<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard::new(inner, self.clone())
    }
}
