//! `RequireLayer`: scope and role requirements on the authenticated caller.

use std::sync::Arc;

use http::Request;
use http::header::WWW_AUTHENTICATE;
use tower_layer::Layer;

use crate::audit;
use crate::challenge::{self, Challenge};
use crate::guard::{Check, Guard};
use crate::principal::Principal;
use crate::reject::{DefaultResponder, Reason, Rejection, Respond};

#[derive(Clone, Debug, Default)]
struct Requirements {
    scopes: Vec<String>,
    roles: Vec<String>,
    any_role: bool,
    /// Named in the 403 challenge (RFC 9728 §5.1).
    resource_metadata: Option<String>,
}

/// Refuses callers whose [`Principal`] lacks required scopes or roles.
///
/// Place it after [`AuthLayer`](super::AuthLayer) (in axum, with
/// `route_layer` on the routes that need it). A missing scope or role is
/// 403 `insufficient_scope` with
/// `WWW-Authenticate: Bearer error="insufficient_scope", error_description="…", scope="<missing>"`
/// (RFC 6750 §3.1; and `resource_metadata="…"` when
/// [set](Self::resource_metadata)) and one audit event; a request without any principal is
/// 401 `unauthenticated` (the auth layer is missing in front).
///
/// ```
/// use tower_warden::auth::RequireLayer;
///
/// let admin_only = RequireLayer::scopes(["admin:write"]).all_roles(["admin"]);
/// # let _ = admin_only;
/// ```
#[must_use]
#[derive(Clone, Debug)]
pub struct RequireLayer<R = DefaultResponder> {
    requirements: Arc<Requirements>,
    responder: R,
}

impl RequireLayer {
    /// Requires every scope in `scopes`.
    pub fn scopes<I, T>(scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self {
            requirements: Arc::new(Requirements {
                scopes: scopes.into_iter().map(Into::into).collect(),
                ..Requirements::default()
            }),
            responder: DefaultResponder,
        }
    }

    /// Requires the role `role`.
    pub fn role(role: impl Into<String>) -> Self {
        Self::scopes(Vec::<String>::new()).all_roles([role])
    }
}

impl<R> RequireLayer<R> {
    fn requirements_mut(&mut self) -> &mut Requirements {
        Arc::make_mut(&mut self.requirements)
    }

    /// Also requires every role in `roles`.
    pub fn all_roles<I, T>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let r = self.requirements_mut();
        r.roles.extend(roles.into_iter().map(Into::into));
        r.any_role = false;
        self
    }

    /// Also requires at least one role in `roles`.
    pub fn any_role<I, T>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let r = self.requirements_mut();
        r.roles.extend(roles.into_iter().map(Into::into));
        r.any_role = true;
        self
    }

    /// Names the protected-resource metadata URL (RFC 9728) in the 403
    /// challenge, as [`AuthLayer::resource_metadata`](super::AuthLayer::resource_metadata)
    /// does in the 401 (MCP asks the two to agree).
    pub fn resource_metadata(mut self, url: impl Into<String>) -> Self {
        self.requirements_mut().resource_metadata = Some(url.into());
        self
    }

    /// Answers refusals with `responder`.
    pub fn responder<R2: Respond>(self, responder: R2) -> RequireLayer<R2> {
        RequireLayer {
            requirements: self.requirements,
            responder,
        }
    }
}

/// The refusal for a principal that lacks `missing` scopes (or roles, when
/// `missing` is empty).
fn insufficient_scope(
    principal: Option<&Principal>,
    extensions: &http::Extensions,
    missing: &[&str],
    detail: String,
    resource_metadata: Option<&str>,
) -> Rejection {
    audit::denied(
        Reason::InsufficientScope,
        extensions,
        principal.map(Principal::subject),
        principal.and_then(Principal::key_id),
        &detail,
    );
    let challenge = challenge::insufficient_scope(missing, Some(&detail), resource_metadata);
    Rejection::new(Reason::InsufficientScope)
        .with_detail(detail)
        .with_header(WWW_AUTHENTICATE, challenge)
}

impl<R: Respond> Check for RequireLayer<R> {
    const LAYER: &'static str = "auth";

    type Responder = R;

    fn check<B>(&self, request: &mut Request<B>) -> Result<(), Rejection> {
        let Some(principal) = request.extensions().get::<Principal>() else {
            audit::denied(
                Reason::Unauthenticated,
                request.extensions(),
                None,
                None,
                "no authenticated principal",
            );
            return Err(Rejection::new(Reason::Unauthenticated)
                .with_header(WWW_AUTHENTICATE, Challenge::default().to_header()));
        };
        let req = &*self.requirements;
        let missing = principal.missing_scopes(req.scopes.iter().map(String::as_str));
        if !missing.is_empty() {
            let detail = format!("missing scope(s): {}", missing.join(" "));
            return Err(insufficient_scope(
                Some(principal),
                request.extensions(),
                &missing,
                detail,
                req.resource_metadata.as_deref(),
            ));
        }
        let roles_ok = req.roles.is_empty()
            || if req.any_role {
                req.roles.iter().any(|r| principal.has_role(r))
            } else {
                req.roles.iter().all(|r| principal.has_role(r))
            };
        if !roles_ok {
            let detail = format!(
                "requires {} role(s): {}",
                if req.any_role { "one of the" } else { "the" },
                req.roles.join(", ")
            );
            return Err(insufficient_scope(
                Some(principal),
                request.extensions(),
                &[],
                detail,
                req.resource_metadata.as_deref(),
            ));
        }
        Ok(())
    }

    fn responder(&self) -> &R {
        &self.responder
    }
}

impl<S, R: Respond> Layer<S> for RequireLayer<R> {
    type Service = Require<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard::new(inner, self.clone())
    }
}

/// The service made by [`RequireLayer`].
pub type Require<S, R = DefaultResponder> = Guard<S, RequireLayer<R>>;

impl Require<(), DefaultResponder> {
    /// The layer that requires every scope in `scopes`; see
    /// [`RequireLayer::scopes`] (and [`RequireLayer::role`] for roles).
    pub fn layer<I, T>(scopes: I) -> RequireLayer
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        RequireLayer::scopes(scopes)
    }
}
