//! [`IpFilterLayer`].

use tower_layer::Layer;

use super::{IpFilter, IpSet};
use crate::reject::{DefaultResponder, Respond};

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

impl<S, R: Clone> Layer<S> for IpFilterLayer<R> {
    type Service = IpFilter<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        IpFilter::from_parts(inner, self.set.clone(), self.responder.clone())
    }
}
