//! The reference server, by idea. `main.rs` runs it; the integration tests
//! include this one file (`#[path = "../examples/mcp_server/server.rs"]`),
//! so they run exactly this code.
//!
//! | module | holds |
//! |---|---|
//! | [`router`] | the security recipe: what wraps what around rmcp |
//! | [`dev_token`] | the development token (ephemeral secret) |
//! | [`health`] | `/health`, and the process view of `/status` |
//! | [`serving`] | listener, peer address, shutdown, reload on SIGHUP |
//! | [`settings`] | the one place that reads the server's settings |
//! | [`ws`] | MCP over WebSocket (`/mcp/ws`) |
//! | [`ops`] | logs, audit, request ids, metrics, `/status`, CORS, timeout |
//! | [`problem`] | problem answers, rendered by `tower_warden::reject` |
//! | [`tools`] | the rmcp tools (`echo`, `add`, `sleep`, `whoami`) |
//! | [`gateway`] | upstream MCP servers: connection API, client, store |
//! | `sessions` | MCP sessions shared through Redis (feature `redis`) |

#[path = "dev_token.rs"]
pub mod dev_token;
#[path = "gateway/mod.rs"]
pub mod gateway;
#[path = "health.rs"]
pub mod health;
#[path = "ops.rs"]
pub mod ops;
#[path = "problem.rs"]
pub mod problem;
#[path = "router.rs"]
pub mod router;
#[path = "serving.rs"]
pub mod serving;
#[cfg(feature = "redis")]
#[path = "sessions.rs"]
pub mod sessions;
#[path = "settings.rs"]
pub mod settings;
#[path = "tools.rs"]
pub mod tools;
#[path = "ws.rs"]
pub mod ws;

// What the integration tests reach at the top (`main.rs` uses a few).
#[allow(unused_imports)]
pub use router::{Auth, Loader, auth, build, gateway, router, router_with};
#[cfg(unix)]
#[allow(unused_imports)]
pub use serving::reload_on_sighup;
#[allow(unused_imports)]
pub use serving::{cancel_on_signal, peer_address, serve, serve_draining};
