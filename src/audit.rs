//! The audit trail: one `tracing` event per authentication or authorization
//! failure, on the target `tower_warden::audit`.
//!
//! Route that target to its own sink (a file, a SIEM) with a
//! `tracing-subscriber` filter such as `tower_warden::audit=info`. Events
//! carry the stable reason code, the client address when known, and the
//! subject or key id when known; never a token, key, secret or signature.
//!
//! # Bounded under attack
//!
//! A flood of refusals must not become a flood of log lines. Within each
//! window of [`WINDOW`], the first denial of a (reason, client address)
//! pair is logged in full; the next ones of that pair are only counted.
//! At most [`KEYS_PER_WINDOW`] pairs are tracked per window (a fixed-size
//! table: spoofed addresses cannot grow it); denials of pairs beyond it are
//! counted too, unlogged. When a window ends (at the next denial after
//! it), one `event="suppressed"` line per reason reports how many denials
//! were counted without a line (`suppressed`) and for how many tracked
//! clients (`clients`). So the audit target writes at most
//! `KEYS_PER_WINDOW` denial lines plus one line per reason per window,
//! whatever the rate. The metrics counters still count every refusal.

#![cfg_attr(
    not(any(feature = "auth", feature = "mcp", feature = "namespace")),
    allow(dead_code)
)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use http::Extensions;

use crate::client_ip::ClientIp;
use crate::reject::Reason;

/// The `tracing` target of audit events.
pub const TARGET: &str = "tower_warden::audit";

/// How long a (reason, client address) pair is logged once.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How many (reason, client address) pairs are tracked, and so logged, per
/// window.
pub const KEYS_PER_WINDOW: usize = 1024;

/// What a [`Throttle`] decided for one denial.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The first of its pair in this window: log it.
    Log,
    /// Counted only.
    Suppressed,
}

/// One reason's count of denials that were not logged in a window.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) reason: Reason,
    pub(crate) suppressed: u64,
    pub(crate) clients: u64,
}

/// Decides which denials are logged: the first per (reason, client
/// address) per window, out of a table of at most `capacity` pairs.
#[derive(Debug)]
pub(crate) struct Throttle {
    window: Duration,
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    started: Option<Instant>,
    /// Per tracked pair: the denials counted after the logged one.
    seen: HashMap<(usize, Option<IpAddr>), u64>,
    /// Per reason: the denials of pairs the full table could not track.
    untracked: [u64; Reason::ALL.len()],
}

impl Throttle {
    /// A throttle of `capacity` pairs per `window`.
    pub(crate) fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity,
            state: Mutex::new(State {
                started: None,
                seen: HashMap::new(),
                untracked: [0; Reason::ALL.len()],
            }),
        }
    }

    /// The process-wide throttle of [`denied`].
    fn global() -> &'static Self {
        static GLOBAL: OnceLock<Throttle> = OnceLock::new();
        GLOBAL.get_or_init(|| Self::new(WINDOW, KEYS_PER_WINDOW))
    }

    /// One denial at `now`: whether to log it, and the summaries of the
    /// window it ended, if it did.
    pub(crate) fn record(
        &self,
        now: Instant,
        reason: Reason,
        client: Option<IpAddr>,
    ) -> (Verdict, Vec<Summary>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut summaries = Vec::new();
        match state.started {
            Some(started) if now.saturating_duration_since(started) < self.window => {}
            Some(_) => {
                summaries = state.roll_over();
                state.started = Some(now);
            }
            None => state.started = Some(now),
        }
        let key = (reason.index(), client);
        let verdict = if let Some(count) = state.seen.get_mut(&key) {
            *count += 1;
            Verdict::Suppressed
        } else if state.seen.len() < self.capacity {
            state.seen.insert(key, 0);
            Verdict::Log
        } else {
            state.untracked[reason.index()] += 1;
            Verdict::Suppressed
        };
        (verdict, summaries)
    }
}

impl State {
    /// Ends the window: what each reason suppressed in it, and a clean
    /// table.
    fn roll_over(&mut self) -> Vec<Summary> {
        let mut suppressed = self.untracked;
        let mut clients = [0u64; Reason::ALL.len()];
        for (&(reason, _), &count) in &self.seen {
            suppressed[reason] += count;
            clients[reason] += 1;
        }
        self.seen.clear();
        self.untracked = [0; Reason::ALL.len()];
        Reason::ALL
            .into_iter()
            .filter(|reason| suppressed[reason.index()] > 0)
            .map(|reason| Summary {
                reason,
                suppressed: suppressed[reason.index()],
                clients: clients[reason.index()],
            })
            .collect()
    }
}

/// Records one denial on the audit target (the first of its reason and
/// client address in the window; see the [module docs](self)).
///
/// `subject` and `key_id` must be safe to log: a JWT `sub`, a `kid`, an API
/// key's id, never the credential itself.
pub(crate) fn denied(
    reason: Reason,
    extensions: &Extensions,
    subject: Option<&str>,
    key_id: Option<&str>,
    detail: &str,
) {
    denied_through(
        Throttle::global(),
        Instant::now(),
        reason,
        extensions,
        subject,
        key_id,
        detail,
    );
}

/// [`denied`] through `throttle` at `now`.
fn denied_through(
    throttle: &Throttle,
    now: Instant,
    reason: Reason,
    extensions: &Extensions,
    subject: Option<&str>,
    key_id: Option<&str>,
    detail: &str,
) {
    let client_ip = ClientIp::of(extensions);
    let (verdict, summaries) = throttle.record(now, reason, client_ip);
    for summary in summaries {
        tracing::info!(
            target: TARGET,
            event = "suppressed",
            reason = summary.reason.code(),
            suppressed = summary.suppressed,
            clients = summary.clients,
            window_seconds = throttle.window.as_secs(),
            "denials counted without a line in the last window"
        );
    }
    if verdict == Verdict::Log {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10,000 refusals from 1,000 spoofed addresses over 30 s (an injected
    /// clock): each 7 s window logs at most its 64 tracked pairs in full,
    /// the rest are counted in one summary line per window, and the counts
    /// add up to every refusal.
    #[test]
    fn a_flood_of_denials_writes_a_bounded_number_of_lines() {
        crate::testing::start();
        const N: u32 = 10_000;
        let throttle = Throttle::new(Duration::from_secs(7), 64);
        let start = Instant::now();
        for i in 0..N {
            let client = 1_000 + i % 1_000;
            let mut extensions = Extensions::new();
            extensions.insert(ClientIp(IpAddr::from([
                198,
                18,
                (client / 256) as u8,
                (client % 256) as u8,
            ])));
            denied_through(
                &throttle,
                start + Duration::from_millis(u64::from(i) * 3),
                Reason::Unauthenticated,
                &extensions,
                None,
                None,
                "audit-flood-15",
            );
        }
        // The next denial, after the flood, reports the last window.
        denied_through(
            &throttle,
            start + Duration::from_secs(100),
            Reason::IpDenied,
            &Extensions::new(),
            None,
            None,
            "audit-flood-15-end",
        );
        let logged = crate::testing::lines_with("audit-flood-15\"");
        let summaries: Vec<String> = crate::testing::lines_with("window_seconds=7")
            .into_iter()
            .filter(|line| line.contains("event=\"suppressed\""))
            .collect();
        let windows = 5; // 30 s of flood in 7 s windows
        let bytes: usize = logged.iter().chain(&summaries).map(|l| l.len() + 1).sum();
        println!(
            "{N} denials: {} full lines, {} summary lines, {bytes} bytes",
            logged.len(),
            summaries.len()
        );
        assert!(
            logged.len() <= 64 * windows,
            "{} denial lines",
            logged.len()
        );
        assert_eq!(summaries.len(), windows, "{summaries:#?}");
        assert!(logged.iter().all(|l| l.contains(" INFO ")));
        let suppressed: u64 = summaries
            .iter()
            .map(|line| {
                let (_, rest) = line.split_once("suppressed=").unwrap();
                rest.split_whitespace()
                    .next()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        assert_eq!(logged.len() as u64 + suppressed, u64::from(N));
        assert!(bytes < 128 * 1024, "{bytes} bytes logged");
    }

    #[test]
    fn the_table_is_bounded_and_cleared_each_window() {
        let throttle = Throttle::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        let ip = |n: u8| Some(IpAddr::from([192, 0, 2, n]));
        let record = |s: u64, n: u8| {
            throttle.record(t0 + Duration::from_secs(s), Reason::RateLimited, ip(n))
        };
        assert_eq!(record(0, 1), (Verdict::Log, vec![]));
        assert_eq!(record(1, 1), (Verdict::Suppressed, vec![]));
        assert_eq!(record(2, 2), (Verdict::Log, vec![]));
        // Full: a third client is counted, not tracked.
        assert_eq!(record(3, 3), (Verdict::Suppressed, vec![]));
        assert_eq!(record(4, 3), (Verdict::Suppressed, vec![]));
        assert_eq!(throttle.state.lock().unwrap().seen.len(), 2);
        // A new window: the summary, and a fresh table.
        let (verdict, summaries) = record(10, 3);
        assert_eq!(verdict, Verdict::Log);
        assert_eq!(
            summaries,
            [Summary {
                reason: Reason::RateLimited,
                suppressed: 3,
                clients: 2
            }]
        );
        assert_eq!(record(11, 1), (Verdict::Log, vec![]));
    }

    /// Through the layers: every refusal is counted, the audit trail logs
    /// each client once per window, and the per-request rejection line is
    /// DEBUG.
    #[cfg(all(feature = "auth", feature = "metrics"))]
    #[tokio::test]
    async fn refusals_are_all_counted_and_logged_once_per_client() {
        use std::convert::Infallible;

        use http::{Request, Response, StatusCode};
        use tower::{ServiceBuilder, ServiceExt};

        use crate::auth::{Algorithm, AuthLayer, JwtAuth};
        use crate::metrics::MetricsLayer;

        crate::testing::start();
        let jwt = JwtAuth::builder()
            .hmac_secret(b"0123456789abcdef0123456789abcdef", Algorithm::HS256)
            .build()
            .unwrap();
        let metrics = MetricsLayer::new();
        let service = ServiceBuilder::new()
            .layer(metrics.clone())
            .layer(AuthLayer::jwt(jwt))
            .service_fn(|_: Request<()>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            });
        for i in 0..2_000u32 {
            let mut request = Request::builder()
                .uri("/audit-flood-path-15")
                .body(())
                .unwrap();
            request
                .extensions_mut()
                .insert(ClientIp(IpAddr::from([198, 19, 7, (i % 20) as u8])));
            let response = service.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
        assert_eq!(metrics.counts().rejected(Reason::Unauthenticated), 2_000);
        let audit: Vec<String> = crate::testing::lines_with("198.19.7.")
            .into_iter()
            .filter(|line| line.contains(TARGET))
            .collect();
        assert_eq!(audit.len(), 20, "{audit:#?}");
        let rejected = crate::testing::lines_with("/audit-flood-path-15");
        assert_eq!(rejected.len(), 2_000);
        assert!(
            rejected.iter().all(|line| line.contains(" DEBUG ")),
            "{}",
            rejected[0]
        );
    }
}
