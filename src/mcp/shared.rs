//! Session bindings shared by several instances: [`ShareSessionsLayer`],
//! and the [`SharedSessions`] store it writes to.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::session::header::{Presented, presented};
use super::session::table::{Caller, Owner, SessionTable};
use crate::BoxFuture;
use crate::principal::Principal;
use crate::reject::Rejection;

/// A store error.
pub type StoreError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where the owners of MCP sessions are kept for every instance.
///
/// The owner is an opaque string the layer writes and reads back. An
/// implementation should expire entries some time after their last use,
/// refreshing the expiry on [`owner`](Self::owner).
pub trait SharedSessions: Send + Sync + 'static {
    /// The owner written for `id`, if any.
    fn owner(&self, id: String) -> BoxFuture<Result<Option<String>, StoreError>>;
    /// Records `owner` for `id`.
    fn bind(&self, id: String, owner: String) -> BoxFuture<Result<(), StoreError>>;
    /// Forgets `id`.
    fn remove(&self, id: String) -> BoxFuture<Result<(), StoreError>>;
}

/// Shares the session bindings of a
/// [`SessionBindingLayer`](super::SessionBindingLayer) with other instances
/// behind a load balancer, through a [`SharedSessions`] store: a session
/// opened on one instance may be used, by its owner only, on any other.
/// The [`session` module docs](super::session#several-instances) give the
/// rules.
///
/// Build it with the binding layer's
/// [`sessions`](super::SessionBindingLayer::sessions) table and place it
/// right in front of that layer:
/// `ServiceBuilder::new().layer(ShareSessionsLayer::new(bindings.sessions(), store)).layer(bindings)`.
#[derive(Clone)]
#[must_use]
pub struct ShareSessionsLayer {
    table: SessionTable,
    store: Arc<dyn SharedSessions>,
}

impl fmt::Debug for ShareSessionsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareSessionsLayer")
            .field("sessions", &self.table)
            .finish_non_exhaustive()
    }
}

impl ShareSessionsLayer {
    /// Shares `table` (from [`SessionBindingLayer::sessions`](super::SessionBindingLayer::sessions))
    /// through `store`.
    pub fn new(table: SessionTable, store: Arc<dyn SharedSessions>) -> Self {
        Self { table, store }
    }
}

impl<S> Layer<S> for ShareSessionsLayer {
    type Service = ShareSessions<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ShareSessions {
            inner,
            table: self.table.clone(),
            store: Arc::clone(&self.store),
        }
    }
}

/// The service made by [`ShareSessionsLayer`]. Clones share the table and
/// the store.
#[derive(Clone)]
pub struct ShareSessions<S> {
    inner: S,
    table: SessionTable,
    store: Arc<dyn SharedSessions>,
}

impl ShareSessions<()> {
    /// The layer that makes this service; see [`ShareSessionsLayer::new`].
    pub fn layer(table: SessionTable, store: Arc<dyn SharedSessions>) -> ShareSessionsLayer {
        ShareSessionsLayer::new(table, store)
    }
}

impl<S: fmt::Debug> fmt::Debug for ShareSessions<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareSessions")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ShareSessions<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The ready service goes with the request; this one gets a fresh
        // clone that is polled ready before its next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let table = self.table.clone();
        let store = Arc::clone(&self.store);
        let owner = Caller::of(request.extensions().get::<Principal>()).to_owner();
        let id = match presented(request.headers()) {
            Presented::One(value) => value.to_str().ok().map(str::to_owned),
            _ => None,
        };
        let delete = request.method() == Method::DELETE;
        Box::pin(async move {
            if let Some(id) = &id
                && !table.0.knows(id)
            {
                match store.owner(id.clone()).await {
                    Ok(Some(text)) => match Owner::from_text(&text) {
                        Some(owner) => table.0.bind(id, owner),
                        None => tracing::warn!(
                            target: "tower_warden",
                            "shared session store holds an unreadable owner; the session stays unknown here"
                        ),
                    },
                    Ok(None) => {}
                    Err(error) => tracing::warn!(
                        target: "tower_warden",
                        %error,
                        "shared session store unreachable; a session opened elsewhere is unknown here"
                    ),
                }
            }
            let response = inner.call(request).await?;
            let status = response.status();
            match &id {
                // A session opened here: its owner goes to the store before
                // the client learns the id.
                None if status.is_success() => {
                    if let Presented::One(value) = presented(response.headers())
                        && let Ok(new_id) = value.to_str()
                        && let Err(error) = store.bind(new_id.to_owned(), owner.to_text()).await
                    {
                        tracing::warn!(
                            target: "tower_warden",
                            %error,
                            "shared session store unreachable; this session works on this instance only"
                        );
                    }
                }
                // Ended by its owner, or forgotten by the server. A 404 the
                // binding layer gave someone else (a refusal) changes nothing.
                Some(id)
                    if response.extensions().get::<Rejection>().is_none()
                        && ((delete && status.is_success()) || status == StatusCode::NOT_FOUND) =>
                {
                    if let Err(error) = store.remove(id.clone()).await {
                        tracing::warn!(target: "tower_warden", %error, "shared session store: cannot forget a session");
                    }
                }
                _ => {}
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tower::ServiceExt;

    use super::*;
    use crate::mcp::SessionBindingLayer;
    use crate::principal::AuthMethod;

    #[derive(Default)]
    struct Memory {
        owners: Mutex<HashMap<String, String>>,
        down: AtomicBool,
    }

    impl Memory {
        fn fail(&self) -> Result<(), StoreError> {
            if self.down.load(Ordering::SeqCst) {
                Err("store down".into())
            } else {
                Ok(())
            }
        }
    }

    impl SharedSessions for Arc<Memory> {
        fn owner(&self, id: String) -> BoxFuture<Result<Option<String>, StoreError>> {
            let this = Arc::clone(self);
            Box::pin(async move {
                this.fail()?;
                Ok(this.owners.lock().unwrap().get(&id).cloned())
            })
        }
        fn bind(&self, id: String, owner: String) -> BoxFuture<Result<(), StoreError>> {
            let this = Arc::clone(self);
            Box::pin(async move {
                this.fail()?;
                this.owners.lock().unwrap().insert(id, owner);
                Ok(())
            })
        }
        fn remove(&self, id: String) -> BoxFuture<Result<(), StoreError>> {
            let this = Arc::clone(self);
            Box::pin(async move {
                this.fail()?;
                this.owners.lock().unwrap().remove(&id);
                Ok(())
            })
        }
    }

    /// One instance: the shared layer, the binding layer, and a server that
    /// opens session `s-1` and knows every session (as rmcp restoring from
    /// its own store would).
    fn instance(
        store: &Arc<Memory>,
    ) -> impl Service<
        Request<()>,
        Response = Response<crate::body::ResponseBody<()>>,
        Error = Infallible,
        Future: Send,
    > + Clone {
        let binding = SessionBindingLayer::new();
        let shared = ShareSessionsLayer::new(binding.sessions(), Arc::new(Arc::clone(store)));
        tower::ServiceBuilder::new()
            .layer(shared)
            .layer(binding)
            .service_fn(|request: Request<()>| async move {
                let mut response = Response::new(());
                if !request.headers().contains_key("mcp-session-id") {
                    response
                        .headers_mut()
                        .insert("mcp-session-id", "s-1".parse().unwrap());
                }
                Ok::<_, Infallible>(response)
            })
    }

    fn request(user: &str, method: Method, session: Option<&str>) -> Request<()> {
        let mut request = Request::builder().method(method).uri("/mcp");
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        let mut request = request.body(()).unwrap();
        request.extensions_mut().insert(
            Principal::builder(user, AuthMethod::Jwt)
                .namespace("acme")
                .build(),
        );
        request
    }

    async fn status(
        service: &(
             impl Service<
            Request<()>,
            Response = Response<crate::body::ResponseBody<()>>,
            Error = Infallible,
        > + Clone
         ),
        request: Request<()>,
    ) -> StatusCode {
        service.clone().oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn a_session_opened_on_one_instance_is_its_owners_on_another() {
        let store = Arc::new(Memory::default());
        let (a, b) = (instance(&store), instance(&store));
        assert_eq!(
            status(&a, request("alice", Method::POST, None)).await,
            StatusCode::OK
        );
        assert!(store.owners.lock().unwrap().contains_key("s-1"));
        // The owner moves to B.
        assert_eq!(
            status(&b, request("alice", Method::POST, Some("s-1"))).await,
            StatusCode::OK
        );
        // Someone else with the id, on either instance: unknown, and the
        // store keeps the owner's binding.
        let c = instance(&store);
        assert_eq!(
            status(&c, request("mallory", Method::POST, Some("s-1"))).await,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(&b, request("mallory", Method::DELETE, Some("s-1"))).await,
            StatusCode::NOT_FOUND
        );
        assert!(store.owners.lock().unwrap().contains_key("s-1"));
        // The owner ends it: gone from the store, so a fresh instance does
        // not know it.
        assert_eq!(
            status(&b, request("alice", Method::DELETE, Some("s-1"))).await,
            StatusCode::OK
        );
        assert!(store.owners.lock().unwrap().is_empty());
        let d = instance(&store);
        assert_eq!(
            status(&d, request("alice", Method::POST, Some("s-1"))).await,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn an_unreachable_store_fails_closed() {
        let store = Arc::new(Memory::default());
        let a = instance(&store);
        assert_eq!(
            status(&a, request("alice", Method::POST, None)).await,
            StatusCode::OK
        );
        store.down.store(true, Ordering::SeqCst);
        let b = instance(&store);
        assert_eq!(
            status(&b, request("alice", Method::POST, Some("s-1"))).await,
            StatusCode::NOT_FOUND
        );
        // The instance that opened it still serves it.
        assert_eq!(
            status(&a, request("alice", Method::POST, Some("s-1"))).await,
            StatusCode::OK
        );
    }

    #[test]
    fn owners_round_trip_and_garbage_is_refused() {
        let principal = Principal::builder("a\"b,c", AuthMethod::ApiKey).build();
        let owner = Caller::of(Some(&principal)).to_owner();
        assert_eq!(Owner::from_text(&owner.to_text()), Some(owner));
        for garbage in [
            "",
            "[]",
            "[\"jwt\",null]",
            "[\"root\",null,\"x\"]",
            "{\"a\":1}",
        ] {
            assert_eq!(Owner::from_text(garbage), None, "{garbage}");
        }
    }

    #[tokio::test]
    async fn the_service_constructor_makes_the_same_layer() {
        let store = Arc::new(Memory::default());
        let binding = SessionBindingLayer::new();
        let service = tower::ServiceBuilder::new()
            .layer(ShareSessions::layer(
                binding.sessions(),
                Arc::new(Arc::clone(&store)),
            ))
            .layer(binding)
            .service_fn(|_: Request<()>| async move {
                let mut response = Response::new(());
                response
                    .headers_mut()
                    .insert("mcp-session-id", "s-9".parse().unwrap());
                Ok::<_, Infallible>(response)
            });
        assert_eq!(
            status(&service, request("alice", Method::POST, None)).await,
            StatusCode::OK
        );
        // The owner went to the store, as with `ShareSessionsLayer::new`.
        assert!(store.owners.lock().unwrap().contains_key("s-9"));
    }
}
