//! The audit trail: one `tracing` event per authentication or authorization
//! failure, on the target `tower_warden::audit`.
//!
//! Route that target to its own sink (a file, a SIEM) with a
//! `tracing-subscriber` filter such as `tower_warden::audit=info`. Events
//! carry the stable reason code, the client address when known, and the
//! subject or key id when known; never a token, key, secret or signature.

use http::Extensions;

use crate::client_ip::ClientIp;
use crate::reject::Reason;

/// The `tracing` target of audit events.
pub const TARGET: &str = "tower_warden::audit";

/// Records one denial on the audit target.
///
/// `subject` and `key_id` must be safe to log: a JWT `sub`, a `kid`, an API
/// key's id, never the credential itself.
#[cfg_attr(
    not(any(feature = "auth", feature = "mcp", feature = "namespace")),
    allow(dead_code)
)]
pub(crate) fn denied(
    reason: Reason,
    extensions: &Extensions,
    subject: Option<&str>,
    key_id: Option<&str>,
    detail: &str,
) {
    let client_ip = ClientIp::of(extensions);
    tracing::info!(
        target: TARGET,
        event = "denied",
        reason = reason.code(),
        client_ip = client_ip.map(tracing::field::display),
        subject,
        key_id,
        detail,
        "request denied"
    );
}
