//! Namespace (tenant) isolation: [`NamespaceLayer`] keeps every caller
//! inside its own namespace.
//!
//! The caller's namespace comes from its [`Principal`] (put an
//! [`AuthLayer`](crate::auth::AuthLayer) in front). The namespace a request
//! asks for comes from a path segment, a header, or a resolver — for example
//! "the owner of connection `{id}`", looked up in a store. When they differ
//! the request is refused with 403 `namespace_forbidden` (gRPC
//! `PERMISSION_DENIED`) and an audit event on
//! [`tower_warden::audit`](crate::audit::TARGET); the inner service is not
//! called. A configured admin role may cross namespaces.
//!
//! Admitted requests carry a [`Namespace`] extension (the namespace asked
//! for, or else the caller's own) for handlers to scope their queries with.
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_warden::namespace::{Namespace, NamespaceLayer};
//! use tower_warden::principal::{AuthMethod, Principal};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // `/tenants/{namespace}/...`: the namespace is path segment 1.
//! let service = ServiceBuilder::new()
//!     .layer(NamespaceLayer::new().from_path_segment(1))
//!     .service_fn(|request: Request<()>| async move {
//!         let ns = request.extensions().get::<Namespace>().unwrap().clone();
//!         Ok::<_, std::convert::Infallible>(Response::new(ns.to_string()))
//!     });
//!
//! let alice = Principal::builder("alice", AuthMethod::Jwt).namespace("acme").build();
//! let mut own = Request::new(());
//! *own.uri_mut() = "/tenants/acme/items".parse()?;
//! own.extensions_mut().insert(alice.clone());
//! assert_eq!(service.clone().oneshot(own).await?.status(), StatusCode::OK);
//!
//! let mut foreign = Request::new(());
//! *foreign.uri_mut() = "/tenants/globex/items".parse()?;
//! foreign.extensions_mut().insert(alice);
//! assert_eq!(service.oneshot(foreign).await?.status(), StatusCode::FORBIDDEN);
//! # Ok(())
//! # }
//! ```
//!
//! # Names
//!
//! A namespace name is 1 to 64 characters of `a-z`, `0-9`, `_` and `-`,
//! starting with a letter or digit. Names are compared exactly; there is no
//! case folding, so `Acme` is not a valid name rather than an alias of
//! `acme`. A request that asks for an invalid name is refused like a
//! foreign one; a principal whose namespace claim is invalid has no
//! namespace.

use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use http::Request;
#[cfg(feature = "axum")]
use http::Response;
use http::header::HeaderName;
use tower_layer::Layer;

use crate::BoxFuture;
use crate::audit;
use crate::guard::{AsyncCheck, AsyncGuard, AsyncResponseFuture, NowOrLater};
use crate::principal::Principal;
#[cfg(feature = "axum")]
use crate::reject;
use crate::reject::{DefaultResponder, Reason, Rejection, RequestHead, Respond};

/// The longest namespace name.
pub const MAX_NAMESPACE_LEN: usize = crate::principal::MAX_NAMESPACE_LEN;

/// A valid namespace name, left in the request extensions by
/// [`NamespaceLayer`]. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(Arc<str>);

impl Namespace {
    /// `name` as a namespace, if it is a valid name (see the
    /// [module docs](self#names)).
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        is_valid(name).then(|| Self(name.into()))
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `name` is a valid namespace name.
#[must_use]
pub fn is_valid(name: &str) -> bool {
    crate::principal::is_valid_namespace(name)
}

impl Deref for Namespace {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Namespace {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Namespace {
    type Rejection = Response<axum::body::Body>;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            let rejection = Rejection::new(Reason::NamespaceForbidden)
                .with_detail("no namespace for this request");
            reject::problem_response(&rejection).map(axum::body::Body::from)
        })
    }
}

/// What an asynchronous resolver returns: the namespace asked for (`None`:
/// none, e.g. an id that does not exist — the handler answers that), or a
/// rejection (e.g. 503 when the store is down).
pub type Resolved = Result<Option<String>, Rejection>;

type SyncResolver = dyn Fn(&RequestHead<'_>) -> Option<String> + Send + Sync;
type AsyncResolver = dyn Fn(&RequestHead<'_>) -> BoxFuture<Resolved> + Send + Sync;

/// Where the namespace a request asks for is read from.
#[derive(Clone)]
enum Source {
    /// Nowhere: every request works in the caller's own namespace.
    Own,
    /// Path segment `n` (0-based, after the leading `/`).
    PathSegment(usize),
    Header(HeaderName),
    Sync(Arc<SyncResolver>),
    Async(Arc<AsyncResolver>),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Own => f.write_str("Own"),
            Self::PathSegment(n) => f.debug_tuple("PathSegment").field(n).finish(),
            Self::Header(name) => f.debug_tuple("Header").field(name).finish(),
            Self::Sync(_) => f.write_str("Resolver(..)"),
            Self::Async(_) => f.write_str("AsyncResolver(..)"),
        }
    }
}

#[derive(Clone, Debug)]
struct Config {
    source: Source,
    admin_role: Option<Box<str>>,
    require: bool,
}

impl Config {
    /// The requested namespace, when it can be read at once.
    fn requested<B>(&self, request: &Request<B>) -> Option<String> {
        match &self.source {
            Source::Own | Source::Async(_) => None,
            Source::PathSegment(n) => request
                .uri()
                .path()
                .split('/')
                .skip(1)
                .nth(*n)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            Source::Header(name) => request
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            Source::Sync(resolve) => resolve(&RequestHead::of(request)),
        }
    }

    /// Decides `request` given the namespace it asks for, adding the
    /// [`Namespace`] extension when admitted.
    fn decide<B>(
        &self,
        request: &mut Request<B>,
        requested: Option<&str>,
    ) -> Result<(), Rejection> {
        let Some(principal) = request.extensions().get::<Principal>() else {
            return Err(Rejection::new(Reason::Unauthenticated)
                .with_detail("no authenticated principal for a namespaced request"));
        };
        let own = principal.namespace().and_then(Namespace::parse);
        let admin = self
            .admin_role
            .as_deref()
            .is_some_and(|role| principal.has_role(role));
        let granted = match requested {
            Some(name) => match Namespace::parse(name) {
                Some(asked) if own.as_ref() == Some(&asked) || admin => Some(asked),
                Some(_) => {
                    return Err(self.refuse(request, "namespace belongs to another tenant"));
                }
                None => return Err(self.refuse(request, "invalid namespace name")),
            },
            None if own.is_none() && self.require && !admin => {
                return Err(self.refuse(request, "the principal has no namespace"));
            }
            None => own,
        };
        if let Some(namespace) = granted {
            request.extensions_mut().insert(namespace);
        }
        Ok(())
    }

    fn refuse<B>(&self, request: &Request<B>, detail: &'static str) -> Rejection {
        let principal = request.extensions().get::<Principal>();
        audit::denied(
            Reason::NamespaceForbidden,
            request.extensions(),
            principal.map(Principal::subject),
            principal.and_then(Principal::key_id),
            detail,
        );
        Rejection::new(Reason::NamespaceForbidden).with_detail(detail)
    }
}

/// Keeps each caller inside its own namespace; see the
/// [module docs](self).
#[derive(Clone, Debug)]
#[must_use]
pub struct NamespaceLayer<R = DefaultResponder> {
    config: Arc<Config>,
    responder: R,
}

impl Default for NamespaceLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl NamespaceLayer {
    /// Every request works in the caller's own namespace, which callers
    /// must have; admins none unless set.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config {
                source: Source::Own,
                admin_role: None,
                require: true,
            }),
            responder: DefaultResponder,
        }
    }
}

impl<R> NamespaceLayer<R> {
    fn with_source(mut self, source: Source) -> Self {
        Arc::make_mut(&mut self.config).source = source;
        self
    }

    /// Reads the requested namespace from path segment `index` (0-based:
    /// in `/tenants/acme/items`, `acme` is segment 1). A path too short to
    /// have it asks for none.
    pub fn from_path_segment(self, index: usize) -> Self {
        self.with_source(Source::PathSegment(index))
    }

    /// Reads the requested namespace from `header`. Without the header the
    /// request asks for none.
    pub fn from_header(self, header: HeaderName) -> Self {
        self.with_source(Source::Header(header))
    }

    /// Finds the requested namespace with `resolve`, synchronously.
    pub fn resolve_with<F>(self, resolve: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> Option<String> + Send + Sync + 'static,
    {
        self.with_source(Source::Sync(Arc::new(resolve)))
    }

    /// Finds the requested namespace with `resolve`, which may wait (for
    /// example on a database: "the owner of connection `{id}`"). Only
    /// requests this resolver answers for box a future.
    pub fn resolve_async<F, Fut>(self, resolve: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Resolved> + Send + 'static,
    {
        self.with_source(Source::Async(Arc::new(move |head: &RequestHead<'_>| {
            Box::pin(resolve(head)) as BoxFuture<Resolved>
        })))
    }

    /// Principals with `role` may work in any namespace (the crossing is
    /// admitted, not audited as a denial).
    pub fn admin_role(mut self, role: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.config).admin_role = Some(role.into().into_boxed_str());
        self
    }

    /// Whether a principal without a (valid) namespace is refused when the
    /// request asks for none (default `true`). When `false` it passes
    /// without a [`Namespace`] extension.
    pub fn require_namespace(mut self, require: bool) -> Self {
        Arc::make_mut(&mut self.config).require = require;
        self
    }

    /// Answers refusals with `responder` instead of the default.
    pub fn responder<R2: Respond>(self, responder: R2) -> NamespaceLayer<R2> {
        NamespaceLayer {
            config: self.config,
            responder,
        }
    }
}

impl<S, R: Clone> Layer<S> for NamespaceLayer<R> {
    type Service = RequireNamespace<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        AsyncGuard::new(inner, self.clone())
    }
}

/// The service of [`NamespaceLayer`]: the inner service behind the
/// namespace rule. (Not `Namespace`: that is the extension it leaves.)
pub type RequireNamespace<S, R = DefaultResponder> = AsyncGuard<S, NamespaceLayer<R>>;

/// The response future of [`RequireNamespace`] (boxed only while an
/// asynchronous resolver runs).
pub type ResponseFuture<S, B, R = DefaultResponder> = AsyncResponseFuture<S, B, NamespaceLayer<R>>;

impl RequireNamespace<(), DefaultResponder> {
    /// The layer that keeps every request in the caller's own namespace;
    /// see [`NamespaceLayer::new`].
    pub fn layer() -> NamespaceLayer {
        NamespaceLayer::new()
    }
}

impl<R: Respond> AsyncCheck for NamespaceLayer<R> {
    const LAYER: &'static str = "namespace";

    type Responder = R;
    /// The namespace the request asks for, or a rejection.
    type Outcome = Resolved;
    type Memo = ();
    type Admitted = ();

    #[inline]
    fn decide<B>(&self, request: &Request<B>) -> Option<((), NowOrLater<Resolved>)> {
        let decision = match &self.config.source {
            Source::Async(resolve) => NowOrLater::Later(resolve(&RequestHead::of(request))),
            _ => NowOrLater::Now(Ok(self.config.requested(request))),
        };
        Some(((), decision))
    }

    fn apply<B>(
        &self,
        (): (),
        resolved: Resolved,
        request: &mut Request<B>,
    ) -> Result<(), Rejection> {
        resolved.and_then(|requested| self.config.decide(request, requested.as_deref()))
    }

    fn responder(&self) -> &R {
        &self.responder
    }
}

#[cfg(test)]
mod tests;
