//! The gateway's REST connection API.
//!
//! ```text
//! POST   /api/v1/mcp/connections                          {"server_name","url","timeout"} → 201
//! GET    /api/v1/mcp/connections                          → the caller's connections
//! GET    /api/v1/mcp/connections/{id}/tools               → the upstream's tools
//! POST   /api/v1/mcp/connections/{id}/tools/{tool}/execute {"arguments":{..}} → the result
//! DELETE /api/v1/mcp/connections/{id}                     → 204
//! GET    /api/v1/mcp/connections/{id}/tools/changes       → tools waiting for review (admin)
//! POST   /api/v1/mcp/connections/{id}/tools/{tool}/approve {"digest":"…"|null} → 200 (admin)
//! ```
//!
//! The two review routes need the role `MCP_ADMIN_ROLE` names (403
//! `insufficient_scope` otherwise; with no admin role set, nobody reviews):
//! a tenant cannot approve the tools of its own upstream.
//!
//! Every route requires the scope `MCP_GATEWAY_SCOPE` (403
//! `insufficient_scope` otherwise) and works in the caller's namespace (the
//! `Namespace` that `NamespaceLayer` leaves): another namespace's
//! connection is 403 on every route, a body naming another namespace is
//! 403. Only the role `MCP_ADMIN_ROLE` names, when it is set, works in every
//! namespace; unset, no role crosses. Errors are problem JSON.
//!
//! Running a tool here is a `tools/call` of `<server_name>.<tool>`, and
//! listing tools a `tools/list`: the same tool policy (`MCP_TOOL_SCOPES`)
//! and per-tool quotas (`MCP_TOOL_RATE_LIMITS`) apply as over MCP, through
//! `WardenLayer::check_call`, before the upstream is asked anything.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rmcp::model::JsonObject;
use serde::Deserialize;
use serde_json::{Value, json};
use tower_warden::auth::RequireLayer;
use tower_warden::namespace::{Namespace, NamespaceLayer, Resolved};
use tower_warden::principal::McpCall;
use tower_warden::principal::Principal;
use tower_warden::reject::{Reason, Rejection, RequestHead};
use tower_warden::stack::WardenLayer;

use super::super::problem::{problem, rejected};
use super::super::tools::Deadlines;
use super::Gateway;
use super::store::{Connection, NewConnection, StoreError, UpstreamAuth};
use super::upstream::{ApproveError, OnBehalf, UpstreamError};

/// The connection API's path prefix.
pub const CONNECTIONS: &str = "/api/v1/mcp/connections";

/// Who may do what on the connection API, from the settings.
#[derive(Clone, Debug)]
pub struct Access {
    /// The role that works in every namespace (`MCP_ADMIN_ROLE` when set);
    /// `None`: no role crosses namespaces.
    pub admin_role: Option<String>,
    /// The scope every route requires (`MCP_GATEWAY_SCOPE`).
    pub scope: String,
    /// The perimeter whose tool policy and quotas a tool run here meets.
    pub warden: WardenLayer,
    /// How long a tool run here may take (as over MCP).
    pub deadlines: Arc<Deadlines>,
}

impl Access {
    /// The access rules of `settings`, with the tool rules of `warden` (the
    /// perimeter in front of the routes) and the tool `deadlines`.
    pub fn of(
        settings: &super::super::settings::Gateway,
        warden: &WardenLayer,
        deadlines: Arc<Deadlines>,
    ) -> Self {
        Self {
            admin_role: settings.cross_namespace_role.clone(),
            scope: settings.scope.clone(),
            warden: warden.clone(),
            deadlines,
        }
    }

    /// Whether `principal` may work in namespaces other than its own.
    fn crosses(&self, principal: &Principal) -> bool {
        self.admin_role
            .as_deref()
            .is_some_and(|role| principal.has_role(role))
    }
}

/// The state of the connection routes.
#[derive(Debug)]
struct Api {
    gateway: Arc<Gateway>,
    access: Access,
}

impl Gateway {
    /// The namespace a connection route asks for: its connection's owner.
    async fn owner(self: Arc<Self>, id: Option<String>) -> Resolved {
        let Some(id) = id else { return Ok(None) };
        match self.store.get(&id).await {
            Ok(found) => Ok(found.map(|c| c.namespace)),
            Err(error) => {
                tracing::warn!(%error, "connection store unavailable");
                Err(Rejection::new(Reason::AuthUnavailable)
                    .with_detail("the connection store is unavailable"))
            }
        }
    }
}

/// The connection id in a connection route's path, if any.
fn connection_id(head: &RequestHead<'_>) -> Option<String> {
    let rest = head
        .uri
        .path()
        .strip_prefix(CONNECTIONS)?
        .strip_prefix('/')?;
    let id = rest.split('/').next().filter(|id| !id.is_empty())?;
    Some(id.to_owned())
}

/// The connection API, behind the scope `access.scope` and a
/// `NamespaceLayer` that resolves each connection's owner. The caller adds
/// the perimeter (authentication) in front.
pub fn routes(gateway: Arc<Gateway>, access: Access) -> Router {
    let scope = RequireLayer::scopes([access.scope.clone()]);
    let resolver = Arc::clone(&gateway);
    let namespaces = match &access.admin_role {
        Some(role) => NamespaceLayer::new().admin_role(role.clone()),
        None => NamespaceLayer::new(),
    }
    .resolve_async(move |head: &RequestHead<'_>| Arc::clone(&resolver).owner(connection_id(head)));
    Router::new()
        .route(CONNECTIONS, post(create).get(list))
        .route(&format!("{CONNECTIONS}/{{id}}"), get(show).delete(remove))
        .route(&format!("{CONNECTIONS}/{{id}}/tools"), get(tools))
        .route(
            &format!("{CONNECTIONS}/{{id}}/tools/{{tool}}/execute"),
            post(execute),
        )
        .route(&format!("{CONNECTIONS}/{{id}}/tools/changes"), get(changes))
        .route(
            &format!("{CONNECTIONS}/{{id}}/tools/{{tool}}/approve"),
            post(approve),
        )
        .with_state(Arc::new(Api { gateway, access }))
        .route_layer(namespaces)
        // Outermost: without the scope, nothing about connections is told.
        .route_layer(scope)
}

fn store_failed(error: &StoreError) -> Response {
    match error {
        StoreError::Invalid(why) => {
            problem(StatusCode::BAD_REQUEST, "invalid_request", why.clone())
        }
        StoreError::Conflict(why) => problem(StatusCode::CONFLICT, "conflict", why.clone()),
        StoreError::Duplicate(why) => {
            problem(StatusCode::CONFLICT, "duplicate_upstream", why.clone())
        }
        StoreError::Limit(_) => {
            problem(StatusCode::CONFLICT, "connection_limit", error.to_string())
        }
        other => {
            tracing::warn!(error = %other, "connection store failed");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the connection store is unavailable",
            )
        }
    }
}

/// The tenant's answer to a failed upstream call: a stable code and
/// [`UpstreamError::public_detail`], never the upstream's own text (that
/// was logged where the call failed).
fn upstream_failed(error: &UpstreamError) -> Response {
    let detail = error.public_detail();
    match error {
        UpstreamError::Open { retry_after } => {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            rejected(
                &Rejection::new(Reason::CircuitOpen)
                    .with_detail(detail)
                    .with_header(header::RETRY_AFTER, HeaderValue::from(secs.max(1))),
            )
        }
        UpstreamError::Timeout => problem(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", detail),
        UpstreamError::Failed(_) => {
            problem(StatusCode::BAD_GATEWAY, "upstream_unavailable", detail)
        }
        UpstreamError::Refused(_) => problem(StatusCode::BAD_GATEWAY, "upstream_refused", detail),
        UpstreamError::Forbidden(_) => problem(StatusCode::FORBIDDEN, "upstream_forbidden", detail),
        UpstreamError::Store(error) => store_failed(error),
        UpstreamError::Capped(_) => problem(StatusCode::BAD_GATEWAY, "upstream_too_large", detail),
        UpstreamError::Denied(_) => {
            rejected(&Rejection::new(Reason::InsufficientScope).with_detail(detail))
        }
        UpstreamError::Exchange(exchange) => {
            let code = match exchange.status() {
                StatusCode::UNAUTHORIZED => "token_exchange_refused",
                StatusCode::FORBIDDEN => "token_exchange_forbidden",
                _ => "token_exchange_failed",
            };
            problem(exchange.status(), code, detail)
        }
    }
}

fn forbidden() -> Response {
    rejected(&Rejection::new(Reason::NamespaceForbidden))
}

/// The answer to a caller without the admin role on a review route.
fn not_admin() -> Response {
    rejected(
        &Rejection::new(Reason::InsufficientScope)
            .with_detail("reviewing upstream tools needs the role MCP_ADMIN_ROLE names"),
    )
}

/// Who calls, and in which namespace: what `NamespaceLayer` and the auth
/// layer left. Missing (a principal without a namespace, let through as an
/// admin) answers 403.
struct Caller {
    namespace: Namespace,
    /// Whether it holds the role that works in every namespace.
    admin: bool,
}

impl axum::extract::FromRequestParts<Arc<Api>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        api: &Arc<Api>,
    ) -> Result<Self, Response> {
        let principal = parts.extensions.get::<Principal>().cloned();
        let namespace = parts.extensions.get::<Namespace>().cloned();
        match (principal, namespace) {
            (Some(principal), Some(namespace)) => Ok(Self {
                namespace,
                admin: api.access.crosses(&principal),
            }),
            _ => Err(forbidden()),
        }
    }
}

/// The caller's connection `id`: 404 when there is none, 403 when it is
/// another namespace's (the layer already refused that; checked again
/// here, at the source).
async fn owned(gateway: &Gateway, caller: &Caller, id: &str) -> Result<Connection, Response> {
    match gateway.store.get(id).await {
        Ok(Some(connection))
            if connection.namespace == caller.namespace.as_str() || caller.admin =>
        {
            Ok(connection)
        }
        Ok(Some(_)) => Err(forbidden()),
        Ok(None) => Err(problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such connection",
        )),
        Err(error) => Err(store_failed(&error)),
    }
}

/// The body of `POST /api/v1/mcp/connections`.
#[derive(Debug, Deserialize)]
struct CreateBody {
    server_name: String,
    url: String,
    /// Seconds (fractions allowed).
    timeout: Option<f64>,
    namespace: Option<String>,
    /// A credential for the upstream (sent as a bearer token).
    credential: Option<String>,
    /// `credential` (the default) or `token_exchange`.
    upstream_auth: Option<UpstreamAuth>,
}

async fn create(
    State(api): State<Arc<Api>>,
    caller: Caller,
    body: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let gateway = &api.gateway;
    let Json(body) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                rejection.body_text(),
            );
        }
    };
    let namespace = match body.namespace.as_deref() {
        None => caller.namespace.to_string(),
        Some(asked) if asked == caller.namespace.as_str() => asked.to_owned(),
        Some(asked) if caller.admin => asked.to_owned(),
        Some(_) => return forbidden(),
    };
    let timeout_ms = match body.timeout {
        None => super::store::DEFAULT_TIMEOUT_MS,
        Some(secs) if secs.is_finite() && secs > 0.0 && secs <= 300.0 => {
            Duration::from_secs_f64(secs).as_millis().max(1) as u64
        }
        Some(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "timeout must be between 0 and 300 seconds",
            );
        }
    };
    if let Err(why) = gateway.upstreams.reach().check_url(&body.url) {
        return problem(StatusCode::BAD_REQUEST, "upstream_forbidden", why);
    }
    let upstream_auth = body.upstream_auth.unwrap_or_default();
    if upstream_auth == UpstreamAuth::TokenExchange && !gateway.upstreams.exchanges_tokens() {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "upstream_auth token_exchange needs MCP_TOKEN_EXCHANGE_URL on this server",
        );
    }
    let new = NewConnection {
        server_name: body.server_name,
        url: body.url,
        timeout_ms,
        credential: body.credential,
        upstream_auth,
    };
    match gateway.store.create(&namespace, new).await {
        Ok(connection) => (StatusCode::CREATED, Json(connection)).into_response(),
        Err(error) => store_failed(&error),
    }
}

async fn list(State(api): State<Arc<Api>>, caller: Caller) -> Response {
    let gateway = &api.gateway;
    match gateway.store.list(caller.namespace.as_str()).await {
        Ok(connections) => Json(json!({ "connections": connections })).into_response(),
        Err(error) => store_failed(&error),
    }
}

async fn show(State(api): State<Arc<Api>>, caller: Caller, Path(id): Path<String>) -> Response {
    let gateway = &api.gateway;
    match owned(gateway, &caller, &id).await {
        Ok(connection) => Json(connection).into_response(),
        Err(response) => response,
    }
}

async fn remove(State(api): State<Arc<Api>>, caller: Caller, Path(id): Path<String>) -> Response {
    let gateway = &api.gateway;
    if let Err(response) = owned(gateway, &caller, &id).await {
        return response;
    }
    match gateway.store.delete(&id).await {
        Ok(_) => {
            gateway.upstreams.forget(&id);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => store_failed(&error),
    }
}

/// A tool of a connection as MCP names it: `<server_name>.<tool>`.
fn mcp_name(connection: &Connection, tool: &str) -> String {
    format!("{}.{tool}", connection.server_name)
}

/// The request as the perimeter's call check sees it: the caller's
/// extensions (principal, client address) and, for a `tools/call` of
/// `name`, the call.
fn call_head(extensions: &axum::http::Extensions, name: Option<String>) -> http::Request<()> {
    let mut head = http::Request::new(());
    *head.extensions_mut() = extensions.clone();
    if let Some(name) = name {
        head.extensions_mut()
            .insert(McpCall::new("tools/call", Some(name)));
    }
    head
}

/// A `tools/list` of one connection: only the tools the caller may call
/// (the filter of MCP `tools/list` answers).
async fn tools(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    extensions: axum::http::Extensions,
) -> Response {
    let gateway = &api.gateway;
    let connection = match owned(gateway, &caller, &id).await {
        Ok(connection) => connection,
        Err(response) => return response,
    };
    match gateway
        .upstreams
        .list_tools(&connection, OnBehalf::of(Some(&extensions)))
        .await
    {
        Ok(mut tools) => {
            let head = call_head(&extensions, None);
            let warden = &api.access.warden;
            let principal = extensions.get::<Principal>();
            tools.retain(|tool| {
                warden.may_call(&head, &mcp_name(&connection, &tool.name))
                    && gateway
                        .upstreams
                        .annotation_refusal(principal, tool)
                        .is_none()
            });
            Json(json!({ "connection_id": connection.id, "tools": tools })).into_response()
        }
        Err(error) => upstream_failed(&error),
    }
}

/// The body of `.../tools/{tool}/execute`.
#[derive(Debug, Default, Deserialize)]
struct ExecuteBody {
    arguments: Option<JsonObject>,
}

/// A `tools/call` of `<server_name>.<tool>`: the tool policy and quotas
/// of MCP calls (`WardenLayer::check_call`) decide before the upstream is
/// asked anything.
async fn execute(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((id, tool)): Path<(String, String)>,
    extensions: axum::http::Extensions,
    body: Result<Json<ExecuteBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let gateway = &api.gateway;
    let connection = match owned(gateway, &caller, &id).await {
        Ok(connection) => connection,
        Err(response) => return response,
    };
    let arguments = match body {
        Ok(Json(body)) => body.arguments,
        Err(axum::extract::rejection::JsonRejection::MissingJsonContentType(_)) => None,
        Err(rejection) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                rejection.body_text(),
            );
        }
    };
    let name = mcp_name(&connection, &tool);
    let deadline = api.access.deadlines.of(&name);
    let head = call_head(&extensions, Some(name));
    if let Err(refused) = api.access.warden.check_call(&head).await {
        return rejected(refused.rejection());
    }
    // Cut at the tool's deadline as over MCP: the upstream call is
    // abandoned, and the upstream told so (`notifications/cancelled`).
    let called = tokio::time::timeout(
        deadline,
        gateway.upstreams.call_tool(
            &connection,
            &tool,
            arguments,
            OnBehalf::of(Some(&extensions)),
        ),
    )
    .await
    .unwrap_or(Err(UpstreamError::Timeout));
    match called {
        Ok(result) => {
            let value: Value = serde_json::to_value(&result).unwrap_or(Value::Null);
            Json(json!({ "connection_id": connection.id, "tool": tool, "result": value }))
                .into_response()
        }
        Err(error) => upstream_failed(&error),
    }
}

/// The tools of a connection that wait for an operator: flagged by the
/// screen, added or changed since approval, or gone (a fresh listing).
async fn changes(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    extensions: axum::http::Extensions,
) -> Response {
    if !caller.admin {
        return not_admin();
    }
    let gateway = &api.gateway;
    let connection = match owned(gateway, &caller, &id).await {
        Ok(connection) => connection,
        Err(response) => return response,
    };
    match gateway
        .upstreams
        .changes(&connection, OnBehalf::of(Some(&extensions)))
        .await
    {
        Ok(changes) => {
            Json(json!({ "connection_id": connection.id, "changes": changes })).into_response()
        }
        Err(error) => upstream_failed(&error),
    }
}

/// The body of `.../tools/{tool}/approve`: the digest of the definition
/// the operator reviewed, or `null` to approve a tool's removal.
#[derive(Debug, Deserialize)]
struct ApproveBody {
    digest: Option<String>,
}

/// Approves one tool as the operator reviewed it (re-pins it).
async fn approve(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((id, tool)): Path<(String, String)>,
    extensions: axum::http::Extensions,
    body: Result<Json<ApproveBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if !caller.admin {
        return not_admin();
    }
    let gateway = &api.gateway;
    let connection = match owned(gateway, &caller, &id).await {
        Ok(connection) => connection,
        Err(response) => return response,
    };
    let digest = match body {
        Ok(Json(body)) => body.digest,
        Err(rejection) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                rejection.body_text(),
            );
        }
    };
    match gateway
        .upstreams
        .approve(
            &connection,
            &tool,
            digest.as_deref(),
            OnBehalf::of(Some(&extensions)),
        )
        .await
    {
        Ok(()) => {
            let subject = extensions
                .get::<Principal>()
                .map(|p| p.subject().to_owned())
                .unwrap_or_default();
            tracing::info!(
                target: tower_warden::audit::TARGET,
                event = "tool_approved",
                namespace = %connection.namespace,
                connection = %connection.id,
                server = %connection.server_name,
                tool = %tool,
                digest = digest.as_deref().unwrap_or("removed"),
                subject = %subject,
                "gateway: an operator approved an upstream tool"
            );
            Json(json!({ "connection_id": connection.id, "tool": tool, "digest": digest }))
                .into_response()
        }
        Err(ApproveError::Unknown) => problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "the upstream does not offer this tool, and it has no approved definition",
        ),
        Err(ApproveError::Stale { now: Some(now) }) => problem(
            StatusCode::CONFLICT,
            "tool_changed",
            format!(
                "the tool's definition is not the one reviewed (its digest now is {now}): review it again"
            ),
        ),
        Err(ApproveError::Stale { now: None }) => problem(
            StatusCode::CONFLICT,
            "tool_changed",
            "the upstream no longer offers this tool: approve its removal with a null digest",
        ),
        Err(ApproveError::Full) => problem(
            StatusCode::CONFLICT,
            "tool_limit",
            format!(
                "this connection already has {} approved tools, the most it may have",
                super::store::MAX_PINNED_TOOLS
            ),
        ),
        Err(ApproveError::Upstream(error)) => upstream_failed(&error),
    }
}
