//! Binds MCP sessions to the principal that opened them:
//! [`SessionBindingLayer`](super::SessionBindingLayer).
//!
//! The MCP Streamable HTTP transport identifies a session by the
//! `Mcp-Session-Id` header, and the specification is explicit that a session
//! is never authentication. An MCP SDK's session manager (rmcp's, for one)
//! serves whoever presents a valid id, so a leaked or guessed id lets
//! principal B act in principal A's session. The binding layer closes that
//! gap. It goes after the authentication layer (it reads the
//! [`Principal`](crate::principal::Principal)) and before the MCP service.
//!
//! # Rules
//!
//! * **Binding.** A 2xx response that carries one `Mcp-Session-Id` to a
//!   request that carried none (the `initialize`) binds that session id to
//!   the caller's identity: the [`AuthMethod`](crate::principal::AuthMethod), subject and namespace of its
//!   [`Principal`](crate::principal::Principal). Roles, scopes and expiry are not part of it, so a
//!   refreshed token for the same subject keeps its sessions. A non-2xx
//!   response binds nothing.
//! * **Using.** A request that presents an `Mcp-Session-Id` (a `POST`, the
//!   `GET` of the event stream, a `DELETE`) passes only when the session is
//!   bound to the caller's identity; that refreshes the binding's idle timer.
//! * **Refusing.** A session bound to someone else, and a session the table
//!   does not know (never issued, evicted, expired, deleted, forged, not
//!   visible ASCII), are answered the way an MCP server answers an unknown
//!   session: **404** (rmcp's `StreamableHttpService` answers
//!   `404 Not Found: Session not found`). The answer is a [`Rejection`](crate::reject::Rejection) with
//!   [`Reason::SessionNotFound`](crate::reject::Reason::SessionNotFound) — `session_not_found` problem JSON with the
//!   default responder, like every other refusal of this crate; MCP clients
//!   look only at the status, read a 404 on a session as "start a new one"
//!   and re-initialize. Give the layer a [`responder`](super::SessionBindingLayer::responder) to
//!   answer with the server's exact body instead. The inner service is not
//!   called: a session the table does not know never reaches the server, so
//!   the table **fails closed** — an id issued while this layer was not in
//!   front of the server, or before a restart of this process, is refused
//!   too.
//! * **Several ids.** A request with more than one `Mcp-Session-Id` header
//!   line is refused the same way, 404 without calling the server: the
//!   layer would check one id while the server might use another (rmcp
//!   reads the first). It is not a 400 because no honest client sends two,
//!   and a confused one recovers by re-initializing. One header value is
//!   one id, commas included, as the server reads it.
//! * **Audit.** Each refusal is one event on the
//!   [audit target](crate::audit) with the reason, the client address and
//!   the caller's subject; the session id appears only as a keyed,
//!   per-process fingerprint (the same id gives the same fingerprint until
//!   the process restarts), never in full.
//! * **Ending.** A 2xx answer to the owner's `DELETE` removes the binding,
//!   and so does a 404 from the server for a bound session (the server
//!   forgot it first).
//! * **Anonymous callers.** A request without a [`Principal`](crate::principal::Principal) has the
//!   anonymous identity (`anonymous`, [`AuthMethod::Anonymous`](crate::principal::AuthMethod::Anonymous), no
//!   namespace), the same as [`Principal::anonymous`](crate::principal::Principal::anonymous). With authentication
//!   switched off every caller is that identity, so the layer then only
//!   keeps unknown and expired ids away from the server.
//!
//! # Memory
//!
//! The table holds at most [`max_sessions`](super::SessionBindingLayer::max_sessions) bindings
//! (100 000 by default). When it is full, binding a new session **evicts
//! the least recently used binding** rather than refusing the new session:
//! the evicted session's next request gets 404 and its client
//! re-initializes, which is safe, whereas refusing would let a burst of
//! sessions make `initialize` fail for everyone. Large tables are split in
//! 16 shards, each with its own lock and 1/16 of the capacity, so least
//! recently used is per shard. Bindings idle for
//! [`idle_timeout`](super::SessionBindingLayer::idle_timeout) (one hour by default) expire: a
//! lookup of an expired binding removes it, and every lookup or binding also
//! sweeps a few expired bindings from its shard, so no background task is
//! needed. Set the idle timeout at least as long as the server keeps an idle
//! session; a long-lived event stream alone does not refresh it.
//!
//! # Several instances
//!
//! The binding table lives in memory and fails closed, so a session opened
//! on instance A is 404 on instance B.
//! [`ShareSessionsLayer`](super::ShareSessionsLayer) goes in front of the
//! binding layer and fills the gap through a
//! [`SharedSessions`](super::SharedSessions) store (Redis, a database):
//!
//! - when a request presents a session id this instance does not know, the
//!   layer asks the store who owns it and binds it locally to that owner —
//!   the true owner, so the binding layer behind still answers anyone else
//!   exactly as it answers an unknown session;
//! - when a session is opened here, its owner is written to the store
//!   before the client gets the session id, so the next request may go to
//!   any instance;
//! - when the owner deletes the session (2xx to `DELETE`) or the server
//!   tells the owner it no longer exists (404), the store forgets it; a
//!   refusal to anyone else changes nothing there.
//!
//! The MCP server must restore the session on any instance too (rmcp's
//! `SessionStore`); the sharing layer only carries who may use it. A store
//! that fails is logged, and the request goes on with what this instance
//! knows: an unknown session stays unknown (fail closed). Its futures are
//! boxed: it is meant for deployments of several instances, where a store
//! round trip dominates anyway.
//!
//! # Layout
//!
//! [`SessionBindingLayer`](super::SessionBindingLayer), its service
//! [`SessionBinding`](super::SessionBinding), the
//! [`SessionTable`](super::SessionTable) handle and
//! [`MCP_SESSION_ID`](super::MCP_SESSION_ID) are re-exported from
//! [`mcp`](super); the response future, [`ResponseFuture`], and the
//! defaults are reached through this module.

mod future;
pub(super) mod header;
pub(super) mod layer;
pub(super) mod service;
pub(super) mod table;

pub use future::ResponseFuture;
pub use layer::{DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_SESSIONS};

#[cfg(test)]
mod tests;
