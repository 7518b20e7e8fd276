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
pub mod client_ip;
mod error;
mod future;
#[cfg(feature = "ip-filter")]
pub mod ip_filter;
mod net;
pub mod reject;

pub use error::ConfigError;
#[cfg(feature = "ip-filter")]
pub use ip_filter::{Decision, IpFilter, IpFilterLayer, IpSet, IpSetBuilder};
