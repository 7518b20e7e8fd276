//! Property tests: `ClientIpLayer` against a reference model of
//! rightmost-untrusted selection.
//!
//! Each case is a peer address, a list of trusted proxy prefixes (plain or
//! IPv4-mapped, from host routes to `/0`), a depth, the header the layer
//! reads, and some header lines of `X-Forwarded-For` and of RFC 7239
//! `Forwarded` — random chains of trusted and untrusted addresses in every
//! accepted spelling, malformed entries, unreadable lines, and in
//! `Forwarded` other parameters whose quoted values hold commas,
//! semicolons, `for=` and escaped quotes. The generator knows what every
//! entry means, so the model never parses text: it walks the known chain.
//!
//! The model, from the documented behaviour:
//!
//! * an untrusted peer is the client, whatever the headers say;
//! * from a trusted peer, the configured header's lines (the other header
//!   is never read) are walked from the right, entry by entry; the client is
//!   the first entry that is not a trusted proxy, or the `depth`-th entry
//!   (depth 0 counts as 1), whichever comes first;
//! * a walked entry that is not an address, or a walked line that is not
//!   visible ASCII, or a chain that ends first, is a refusal (400
//!   `forwarded_invalid`); entries left of the client are never read;
//! * IPv4-mapped IPv6 addresses and prefixes are IPv4;
//! * no peer address at all is a refusal (500 `client_ip_unavailable`).
//!
//! The layer runs as a service: the address is the `ClientIp` extension
//! the inner service saw, and a refusal must not call it. It is built both
//! in code and from the settings (`MCP_TRUST_X_FORWARDED`,
//! `MCP_TRUSTED_PROXIES`, `MCP_TRUSTED_PROXY_DEPTH`) as the stack does.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use proptest::test_runner::Config;
use tower::{ServiceBuilder, ServiceExt};
use tower_warden::client_ip::{ClientIp, ClientIpLayer};

// ---------------------------------------------------------------------------
// Addresses and prefixes.

/// A host: most from four small pools (so chains and trusted prefixes
/// collide), some anywhere.
#[derive(Clone, Copy, Debug)]
enum Host {
    Pool(u8, u8),
    V4(u32),
    V6(u128),
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        9 => (0u8..4, 0u8..8).prop_map(|(pool, n)| Host::Pool(pool, n)),
        1 => any::<u32>().prop_map(Host::V4),
        1 => any::<u128>().prop_map(Host::V6),
    ]
}

impl Host {
    fn ip(self) -> IpAddr {
        match self {
            Host::Pool(0, n) => IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)),
            Host::Pool(1, n) => IpAddr::V4(Ipv4Addr::new(203, 0, 113, n)),
            Host::Pool(2, n) => {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, n.into()))
            }
            Host::Pool(_, n) => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n.into())),
            Host::V4(bits) => IpAddr::V4(Ipv4Addr::from_bits(bits)),
            Host::V6(bits) => IpAddr::V6(Ipv6Addr::from_bits(bits)),
        }
    }
}

/// IPv4-mapped IPv6 as IPv4; everything else as is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_bits() >> 32 == 0xffff => {
            IpAddr::V4(Ipv4Addr::from_bits(v6.to_bits() as u32))
        }
        _ => ip,
    }
}

/// A trusted prefix: a host and a width class, maybe written as mapped
/// IPv6.
#[derive(Clone, Copy, Debug)]
struct TrustSpec {
    host: Host,
    width: u8,
    mapped: bool,
}

fn trust() -> impl Strategy<Value = TrustSpec> {
    (host(), 0u8..5, prop::bool::weighted(0.2)).prop_map(|(host, width, mapped)| TrustSpec {
        host,
        width,
        mapped,
    })
}

impl TrustSpec {
    fn net(self) -> IpNet {
        match self.host.ip() {
            IpAddr::V4(v4) => {
                let len = [32, 29, 24, 16, 0][usize::from(self.width)];
                if self.mapped {
                    IpNet::V6(Ipv6Net::new(v4.to_ipv6_mapped(), 96 + len).unwrap())
                } else {
                    IpNet::V4(Ipv4Net::new(v4, len).unwrap())
                }
            }
            IpAddr::V6(v6) => {
                let len = [128, 125, 112, 32, 0][usize::from(self.width)];
                IpNet::V6(Ipv6Net::new(v6, len).unwrap())
            }
        }
    }
}

/// Whether `ip` (canonical) is in a trusted prefix, by bit arithmetic.
fn trusted(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|net| {
        let (key, len, v4) = match *net {
            IpNet::V4(n) => (u128::from(n.addr().to_bits()), n.prefix_len(), true),
            IpNet::V6(n) if n.prefix_len() >= 96 && n.addr().to_bits() >> 32 == 0xffff => (
                u128::from(n.addr().to_bits() as u32),
                n.prefix_len() - 96,
                true,
            ),
            IpNet::V6(n) => (n.addr().to_bits(), n.prefix_len(), false),
        };
        let (bits, width) = match ip {
            IpAddr::V4(a) if v4 => (u128::from(a.to_bits()), 32),
            IpAddr::V6(a) if !v4 => (a.to_bits(), 128),
            _ => return false,
        };
        let drop = width - u32::from(len);
        drop == width || (bits >> drop) == (key >> drop)
    })
}

// ---------------------------------------------------------------------------
// Header lines, with what each entry means.

/// One entry of a chain: an address written in one of the accepted
/// spellings, or something that is not an address.
#[derive(Clone, Debug)]
enum Entry {
    Addr {
        host: Host,
        spelling: u8,
        extras: Vec<Extra>,
        at: usize,
    },
    Bad(u8),
}

/// Another RFC 7239 parameter of an element, around `for=`.
#[derive(Clone, Copy, Debug)]
struct Extra(u8);

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        5 => (host(), any::<u8>(), prop::collection::vec(any::<u8>().prop_map(Extra), 0..3), any::<usize>())
            .prop_map(|(host, spelling, extras, at)| Entry::Addr { host, spelling, extras, at }),
        1 => any::<u8>().prop_map(Entry::Bad),
    ]
}

/// Quoted values a proxy might copy from a client into another parameter
/// (`host="…"`): RFC 7239 allows commas, semicolons and escaped quotes in
/// them, and none of it is an element of the chain.
const QUOTED: &[&str] = &[
    r#""x,for=6.6.6.6;y=""#,
    r#""a\"b, for=6.6.6.6""#,
    r#""a;for=6.6.6.6""#,
    r#""[2001:db8::6]:80,for=6.6.6.6""#,
    r#""""#,
    r#""\\""#,
    r#"",""#,
    r#""\",for=\"6.6.6.6""#,
];

impl Extra {
    fn text(self) -> String {
        let n = usize::from(self.0);
        match self.0 % 5 {
            0 => "proto=https".to_owned(),
            1 => "by=10.0.0.1".to_owned(),
            2 => r#"by="[2001:db8:ffff::1]:443""#.to_owned(),
            3 => format!("host={}", QUOTED[n / 5 % QUOTED.len()]),
            _ => format!("ext={}", QUOTED[n / 5 % QUOTED.len()]),
        }
    }
}

/// An address as `X-Forwarded-For` writes it.
fn xff_spelling(ip: IpAddr, spelling: u8) -> String {
    match ip {
        IpAddr::V4(v4) => match spelling % 4 {
            0 | 1 => v4.to_string(),
            2 => format!("{v4}:{}", 1024 + u16::from(spelling)),
            _ => format!("[{}]:8080", v4.to_ipv6_mapped()),
        },
        IpAddr::V6(v6) => match spelling % 3 {
            0 => v6.to_string(),
            1 => format!("[{v6}]"),
            _ => format!("[{v6}]:{}", 1024 + u16::from(spelling)),
        },
    }
}

/// An address as an RFC 7239 node: a token, or a quoted string with
/// brackets around IPv6 and maybe a port.
fn node_spelling(ip: IpAddr, spelling: u8) -> String {
    match ip {
        IpAddr::V4(v4) => match spelling % 4 {
            0 | 1 => v4.to_string(),
            2 => format!("\"{v4}:{}\"", 1024 + u16::from(spelling)),
            _ => format!("\"[{}]\"", v4.to_ipv6_mapped()),
        },
        IpAddr::V6(v6) => match spelling % 2 {
            0 => format!("\"[{v6}]\""),
            _ => format!("\"[{v6}]:{}\"", 1024 + u16::from(spelling)),
        },
    }
}

const BAD_XFF: &[&str] = &[
    "unknown",
    "_hidden",
    "",
    "198.51.100",
    "[2001:db8::1",
    "999.1.1.1",
    "example.com",
    "198.51.100.1:99999",
    "[198.51.100.1]",
    "fe80::1%eth0",
    "\"198.51.100.1\"",
    "198.51.100.1 198.51.100.2",
];

const BAD_FORWARDED: &[&str] = &[
    "for=unknown",
    "for=_hidden",
    "for=\"_hidden\"",
    "proto=https",
    "for=198.51.100.1;for=198.51.100.2",
    "for=",
    "",
    "for=\"[2001:db8::1]:80",
    "for=198.51.100",
    "for=198.51.100.1;host=\"open",
    "for=198.51.100.1;x=a\"b",
    "by=198.51.100.1",
];

impl Entry {
    /// The address this entry names, if it names one.
    fn truth(&self) -> Option<IpAddr> {
        match self {
            Entry::Addr { host, .. } => Some(host.ip()),
            Entry::Bad(_) => None,
        }
    }

    fn xff(&self) -> String {
        match self {
            Entry::Addr { host, spelling, .. } => xff_spelling(host.ip(), *spelling),
            Entry::Bad(n) => BAD_XFF[usize::from(*n) % BAD_XFF.len()].to_owned(),
        }
    }

    fn forwarded(&self) -> String {
        match self {
            Entry::Addr {
                host,
                spelling,
                extras,
                at,
            } => {
                let key = ["for", "For", "FOR"][usize::from(*spelling / 4) % 3];
                let mut pairs: Vec<String> = extras.iter().map(|e| e.text()).collect();
                let at = at % (pairs.len() + 1);
                pairs.insert(at, format!("{key}={}", node_spelling(host.ip(), *spelling)));
                pairs.join(";")
            }
            Entry::Bad(n) => BAD_FORWARDED[usize::from(*n) % BAD_FORWARDED.len()].to_owned(),
        }
    }
}

/// One header line: entries joined by a list separator; an unreadable line
/// carries a byte outside visible ASCII.
#[derive(Clone, Debug)]
struct Line {
    entries: Vec<Entry>,
    separator: u8,
    unreadable: bool,
}

fn line() -> impl Strategy<Value = Line> {
    (
        prop::collection::vec(entry(), 1..5),
        any::<u8>(),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(entries, separator, unreadable)| Line {
            entries,
            separator,
            unreadable,
        })
}

impl Line {
    fn render(&self, forwarded: bool) -> HeaderValue {
        let separator = [",", ", ", " , ", ",\t"][usize::from(self.separator) % 4];
        let entries: Vec<String> = self
            .entries
            .iter()
            .map(|e| if forwarded { e.forwarded() } else { e.xff() })
            .collect();
        let mut bytes = entries.join(separator).into_bytes();
        if self.unreadable {
            bytes.splice(0..0, *b"caf\xe9, ");
        }
        HeaderValue::from_bytes(&bytes).expect("a valid header value")
    }
}

// ---------------------------------------------------------------------------
// A case, the model and the layer.

#[derive(Clone, Debug)]
struct Case {
    peer: Option<(Host, bool)>,
    trusted: Vec<TrustSpec>,
    trusted_as_text: bool,
    depth: usize,
    forwarded: bool,
    /// Lines of the header the layer reads.
    lines: Vec<Line>,
    /// Lines of the other header, which it must ignore.
    other: Vec<Line>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::option::weighted(0.97, (host(), prop::bool::weighted(0.2))),
        // Often the peer is a host a trusted prefix was made from.
        prop::option::weighted(0.6, any::<prop::sample::Index>()),
        prop::collection::vec(trust(), 0..4),
        any::<bool>(),
        0usize..5,
        any::<bool>(),
        prop::collection::vec(line(), 0..4),
        prop::collection::vec(line(), 0..2),
    )
        .prop_map(
            |(peer, proxy, trusted, trusted_as_text, depth, forwarded, lines, other)| Case {
                peer: match (peer, proxy) {
                    (Some((_, mapped)), Some(i)) if !trusted.is_empty() => {
                        Some((trusted[i.index(trusted.len())].host, mapped))
                    }
                    _ => peer,
                },
                trusted,
                trusted_as_text,
                depth,
                forwarded,
                lines,
                other,
            },
        )
}

/// What the layer must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Client(IpAddr),
    Refused(StatusCode, &'static str),
}

const INVALID: Outcome = Outcome::Refused(StatusCode::BAD_REQUEST, "forwarded_invalid");

impl Case {
    fn nets(&self) -> Vec<IpNet> {
        self.trusted.iter().map(|t| t.net()).collect()
    }

    fn peer(&self) -> Option<SocketAddr> {
        let (host, mapped) = self.peer?;
        let ip = match host.ip() {
            IpAddr::V4(v4) if mapped => IpAddr::V6(v4.to_ipv6_mapped()),
            ip => ip,
        };
        Some(SocketAddr::new(ip, 40_000))
    }

    fn model(&self) -> Outcome {
        let Some(peer) = self.peer() else {
            return Outcome::Refused(StatusCode::INTERNAL_SERVER_ERROR, "client_ip_unavailable");
        };
        let nets = self.nets();
        let peer = canonical(peer.ip());
        if !trusted(&nets, peer) {
            return Outcome::Client(peer);
        }
        let depth = self.depth.max(1);
        let mut walked = 0;
        for line in self.lines.iter().rev() {
            if line.unreadable {
                return INVALID;
            }
            for entry in line.entries.iter().rev() {
                let Some(ip) = entry.truth() else {
                    return INVALID;
                };
                let ip = canonical(ip);
                walked += 1;
                if walked >= depth || !trusted(&nets, ip) {
                    return Outcome::Client(ip);
                }
            }
        }
        INVALID
    }

    fn layer(&self) -> ClientIpLayer {
        let layer = if self.trusted_as_text {
            let text: Vec<String> = self.nets().iter().map(ToString::to_string).collect();
            ClientIpLayer::new()
                .try_trusted_proxies(text)
                .expect("valid prefixes")
        } else {
            ClientIpLayer::new().trusted_proxies(self.nets())
        };
        let layer = layer.depth(self.depth);
        if self.forwarded {
            layer.forwarded()
        } else {
            layer.x_forwarded_for()
        }
    }

    fn request(&self) -> Request<()> {
        let mut request = Request::new(());
        if let Some(peer) = self.peer() {
            request.extensions_mut().insert(peer);
        }
        let (name, other) = if self.forwarded {
            ("forwarded", "x-forwarded-for")
        } else {
            ("x-forwarded-for", "forwarded")
        };
        // The other header's lines go first, between and after: only the
        // order within one header matters.
        for line in &self.other {
            request
                .headers_mut()
                .append(other, line.render(!self.forwarded));
        }
        for line in &self.lines {
            request
                .headers_mut()
                .append(name, line.render(self.forwarded));
        }
        request
    }
}

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
});

/// What the inner service saw, or the refusal (which must not call it).
fn run(layer: ClientIpLayer, request: Request<()>) -> Outcome {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(None));
    let service = {
        let (calls, seen) = (calls.clone(), seen.clone());
        ServiceBuilder::new()
            .layer(layer)
            .service_fn(move |request: Request<()>| {
                calls.fetch_add(1, Ordering::SeqCst);
                *seen.lock().unwrap() = request.extensions().get::<ClientIp>().copied();
                async { Ok::<_, Infallible>(Response::new(String::new())) }
            })
    };
    RUNTIME.block_on(async {
        let response = service.oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        if status == StatusCode::OK {
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            let ClientIp(ip) = seen.lock().unwrap().expect("a ClientIp extension");
            return Outcome::Client(ip);
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "a refusal called the service"
        );
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let code = match problem["code"].as_str().unwrap() {
            "forwarded_invalid" => "forwarded_invalid",
            "client_ip_unavailable" => "client_ip_unavailable",
            other => panic!("unexpected problem code {other}"),
        };
        Outcome::Refused(status, code)
    })
}

proptest! {
    #![proptest_config(Config::with_cases(2048))]

    /// The layer answers exactly as the model: the same client address, or
    /// the same refusal.
    #[test]
    fn matches_rightmost_untrusted_selection(case in case()) {
        let rendered: Vec<HeaderValue> = case
            .lines
            .iter()
            .map(|l| l.render(case.forwarded))
            .collect();
        prop_assert_eq!(run(case.layer(), case.request()), case.model(), "lines {:?}", rendered);
    }

    /// An untrusted peer is its own client address, whatever either header
    /// says and however the layer is configured.
    #[test]
    fn an_untrusted_peer_is_the_client(mut case in case(), peer in host()) {
        case.peer = Some((peer, false));
        let nets = case.nets();
        prop_assume!(!trusted(&nets, canonical(peer.ip())));
        let got = run(case.layer(), case.request());
        prop_assert_eq!(got, Outcome::Client(canonical(peer.ip())));
    }
}

proptest! {
    #![proptest_config(Config::with_cases(512))]

    /// The layer the settings build (`MCP_TRUST_X_FORWARDED`,
    /// `MCP_TRUSTED_PROXIES` as text or a JSON array,
    /// `MCP_TRUSTED_PROXY_DEPTH`) answers as the model for
    /// `X-Forwarded-For`; with trust off, the peer is always the client.
    #[test]
    fn the_settings_build_the_same_layer(
        mut case in case(),
        first in trust(),
        depth in 1usize..5,
        trust_on in prop::bool::weighted(0.8),
        as_json in any::<bool>(),
    ) {
        case.trusted.insert(0, first);
        case.depth = depth;
        case.forwarded = false;
        let texts: Vec<String> = case.nets().iter().map(ToString::to_string).collect();
        let proxies = if as_json {
            serde_json::to_string(&texts).unwrap()
        } else {
            texts.join(", ")
        };
        let depth_text = depth.to_string();
        let vars = [
            ("MCP_TRUST_X_FORWARDED", if trust_on { "true" } else { "false" }),
            ("MCP_TRUSTED_PROXIES", proxies.as_str()),
            ("MCP_TRUSTED_PROXY_DEPTH", depth_text.as_str()),
        ];
        let config = tower_warden::config::WardenConfig::from_vars(vars).unwrap();
        let layer = tower_warden::stack::client_ip(&config);
        let want = match case.peer() {
            Some(peer) if !trust_on => Outcome::Client(canonical(peer.ip())),
            _ => case.model(),
        };
        prop_assert_eq!(run(layer, case.request()), want);
    }
}

/// A regression found by `matches_rightmost_untrusted_selection`: a comma
/// inside a quoted value of another parameter (here `host`, which a proxy
/// may copy from the client's `Host`) split the element, so the client
/// chose its own address.
#[test]
fn attack_a_quoted_comma_in_forwarded_does_not_spoof_the_client() {
    let layer = ClientIpLayer::new()
        .try_trusted_proxies(["10.0.0.0/8"])
        .unwrap()
        .forwarded();
    let request = |value: &str| {
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(SocketAddr::from(([10, 0, 0, 2], 40_000)));
        request
            .headers_mut()
            .insert("forwarded", HeaderValue::from_str(value).unwrap());
        request
    };
    let client = Outcome::Client(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)));
    for value in [
        r#"for=203.0.113.7;host="x,for=6.6.6.6;y=""#,
        r#"for=203.0.113.7;host="a\",for=6.6.6.6;b=\"""#,
        r#"host="x;for=6.6.6.6";for=203.0.113.7"#,
        r#"for=198.51.100.9, for=203.0.113.7;proto=https;host="h, for=6.6.6.6""#,
    ] {
        assert_eq!(run(layer.clone(), request(value)), client, "{value}");
    }
    // A stray quote in a walked element is refused, never read as the end
    // of a quoted string.
    for value in [r#"for=203.0.113.7;x=a"b"#, r#"for=203.0.113.7;host="open"#] {
        assert_eq!(run(layer.clone(), request(value)), INVALID, "{value}");
    }
    // And whatever the client wrote before the proxy's element on the same
    // line, quotes included, the element is read on its own.
    for value in [
        r#"x=", for=203.0.113.7"#,
        r#"for=6.6.6.6;host="x, for=203.0.113.7"#,
        r#""\", for=203.0.113.7;host="h""#,
    ] {
        assert_eq!(run(layer.clone(), request(value)), client, "{value}");
    }
}
