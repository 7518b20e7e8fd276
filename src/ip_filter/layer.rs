//! [`IpFilterLayer`].

use std::sync::{Arc, RwLock};

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
    set: Source,
    responder: R,
}

/// A fixed set, or one a [`IpSetHandle`] may replace.
#[derive(Clone, Debug)]
enum Source {
    Fixed(IpSet),
    Shared(IpSetHandle),
}

/// A replaceable [`IpSet`] for [`IpFilterLayer::with_handle`]: a hot
/// reload of the allow and deny lists. Clones share the set.
///
/// ```
/// use tower_warden::ip_filter::{IpFilterLayer, IpSet, IpSetHandle};
///
/// let handle = IpSetHandle::new(IpSet::builder().allow("10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()).build());
/// let layer = IpFilterLayer::with_handle(handle.clone());
/// // Later, on SIGHUP: every request after this sees the new lists.
/// handle.replace(IpSet::builder().allow("192.0.2.0/24".parse::<ipnet::IpNet>().unwrap()).build());
/// assert!(handle.get().is_allowed("192.0.2.1".parse().unwrap()));
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct IpSetHandle(Arc<RwLock<IpSet>>);

impl IpSetHandle {
    /// A handle holding `set`.
    #[must_use]
    pub fn new(set: IpSet) -> Self {
        Self(Arc::new(RwLock::new(set)))
    }

    /// The set in force.
    #[must_use]
    pub fn get(&self) -> IpSet {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the set, atomically: each request sees the old set or the
    /// new one, never a mix.
    pub fn replace(&self, set: IpSet) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = set;
    }

    #[inline]
    fn is_allowed(&self, ip: std::net::IpAddr) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_allowed(ip)
    }
}

impl Source {
    #[inline]
    fn is_allowed(&self, ip: std::net::IpAddr) -> bool {
        match self {
            Self::Fixed(set) => set.is_allowed(ip),
            Self::Shared(handle) => handle.is_allowed(ip),
        }
    }
}

impl IpFilterLayer {
    /// Filters on `set`, answering refusals with the [`DefaultResponder`].
    pub fn new(set: IpSet) -> Self {
        Self {
            set: Source::Fixed(set),
            responder: DefaultResponder,
        }
    }

    /// Filters on the set `handle` holds, which may be replaced at any time
    /// (a reload of the lists without a restart).
    pub fn with_handle(handle: IpSetHandle) -> Self {
        Self {
            set: Source::Shared(handle),
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

    /// The set this layer filters on now.
    #[must_use]
    pub fn ip_set(&self) -> IpSet {
        match &self.set {
            Source::Fixed(set) => set.clone(),
            Source::Shared(handle) => handle.get(),
        }
    }

    /// The handle that replaces this layer's set, when it was built
    /// [`with_handle`](IpFilterLayer::with_handle).
    #[must_use]
    pub fn handle(&self) -> Option<&IpSetHandle> {
        match &self.set {
            Source::Fixed(_) => None,
            Source::Shared(handle) => Some(handle),
        }
    }
}

impl<R: Respond> Check for IpFilterLayer<R> {
    const LAYER: &'static str = "ip_filter";

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
