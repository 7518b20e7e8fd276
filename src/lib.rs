//! Tower layers that put a production security perimeter in front of MCP
//! servers and any axum or tonic app.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
#[cfg(feature = "body-limit")]
pub mod body_limit;
#[cfg(feature = "client-cert")]
pub mod client_cert;
pub mod client_ip;
pub mod config;
mod error;
mod future;
#[cfg(feature = "mcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "mcp")))]
pub mod mcp;
mod net;
pub mod reject;

pub use error::ConfigError;
