//! `ClientIpLayer` over arbitrary `X-Forwarded-For` / `Forwarded` headers,
//! against a plain model of rightmost-untrusted selection.
//!
//! Invariants: never a panic; the layer admits exactly when the model
//! does, with the same address; an untrusted peer is always its own client
//! address, whatever the headers say.
#![no_main]

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use arbitrary::Arbitrary;
use http::{HeaderValue, Request};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use tower_warden::client_ip::ClientIpLayer;
use tower_warden::guard::Check;

#[derive(Arbitrary, Debug)]
struct Input {
    peer: Addr,
    trusted: Vec<(Addr, u8)>,
    depth: u8,
    forwarded: bool,
    lines: Vec<Vec<u8>>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
    /// Small addresses so that fuzzed text collides with the set.
    Small(u8),
}

impl Addr {
    fn ip(self) -> IpAddr {
        match self {
            Addr::V4(b) => IpAddr::from(b),
            Addr::V6(b) => IpAddr::from(b),
            Addr::Small(n) => IpAddr::from([10, 0, 0, n % 4]),
        }
    }
}

fn net(addr: Addr, len: u8) -> IpNet {
    let ip = addr.ip();
    let max = if ip.is_ipv4() { 32 } else { 128 };
    IpNet::new(ip, len % (max + 1)).expect("length in range")
}

/// The model's view of a prefix: IPv4-mapped IPv6 prefixes of /96 or longer
/// are IPv4 prefixes.
fn model_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.addr().to_ipv4_mapped()
    {
        return IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap();
    }
    net
}

fn model_entry(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// One RFC 7239 element: `;`-separated `token=value` pairs, a quoted
/// string kept whole (a backslash inside one escapes the next byte); each
/// value a token without quotes or one whole quoted string; exactly one
/// `for`. A comma outside quotes or a string left open spoils it.
fn model_forwarded(element: &str) -> Option<IpAddr> {
    let mut pairs = Vec::new();
    let (mut start, mut inside, mut escape) = (0, false, false);
    for (i, b) in element.bytes().enumerate() {
        if escape {
            escape = false;
            continue;
        }
        match b {
            b'\\' if inside => escape = true,
            b'"' => inside = !inside,
            b';' if !inside => {
                pairs.push(&element[start..i]);
                start = i + 1;
            }
            b',' if !inside => return None,
            _ => {}
        }
    }
    if inside {
        return None;
    }
    pairs.push(&element[start..]);
    let mut found = None;
    for pair in pairs {
        let (key, value) = pair.split_once('=')?;
        let key = key.trim();
        let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if key.is_empty() || !key.bytes().all(tchar) {
            return None;
        }
        let value = value.trim();
        let value = if let Some(quoted) = value.strip_prefix('"') {
            let inner = quoted.strip_suffix('"')?;
            let mut escaped = false;
            for b in inner.bytes() {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    return None;
                }
            }
            inner
        } else if value.contains('"') {
            return None;
        } else {
            value
        };
        if !key.eq_ignore_ascii_case("for") {
            continue;
        }
        if found.is_some() {
            return None;
        }
        found = Some(model_entry(value)?);
    }
    found
}

/// The elements of one `Forwarded` line, rightmost first, read from the
/// right: outside a quoted string a quote opens one (read backwards) and a
/// comma ends the element; inside, a quote closes it unless an odd run of
/// backslashes precedes it. `None` when a string is still open at the
/// start of the line.
fn model_elements(line: &str) -> Vec<Option<&str>> {
    let bytes = line.as_bytes();
    let (mut out, mut end, mut inside) = (Vec::new(), line.len(), false);
    for i in (0..bytes.len()).rev() {
        match bytes[i] {
            b'"' if !inside => inside = true,
            b'"' => {
                let backslashes = bytes[..i].iter().rev().take_while(|&&b| b == b'\\').count();
                inside = backslashes % 2 == 1;
            }
            b',' if !inside => {
                out.push(Some(&line[i + 1..end]));
                end = i;
            }
            _ => {}
        }
    }
    out.push((!inside).then_some(&line[..end]));
    out
}

/// Rightmost-untrusted, walking at most `depth` entries from the right.
fn model(input: &Input, lines: &[HeaderValue], trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| model_net(*n).contains(&ip));
    let peer = input.peer.ip().to_canonical();
    if !is_trusted(peer) {
        return Some(peer);
    }
    let depth = usize::from(input.depth).max(1);
    let mut walked = 0;
    for line in lines.iter().rev() {
        let text = line.to_str().ok()?;
        let entries: Vec<Option<IpAddr>> = if input.forwarded {
            model_elements(text)
                .into_iter()
                .map(|element| model_forwarded(element?.trim()))
                .collect()
        } else {
            text.rsplit(',')
                .map(|entry| model_entry(entry.trim()))
                .collect()
        };
        for entry in entries {
            let ip = entry?.to_canonical();
            walked += 1;
            if walked >= depth || !is_trusted(ip) {
                return Some(ip);
            }
        }
    }
    None
}

fuzz_target!(|input: Input| {
    let trusted: Vec<IpNet> = input.trusted.iter().map(|&(a, l)| net(a, l)).collect();
    let mut layer = ClientIpLayer::new()
        .trusted_proxies(trusted.clone())
        .depth(usize::from(input.depth));
    if input.forwarded {
        layer = layer.forwarded();
    }
    let name = if input.forwarded {
        "forwarded"
    } else {
        "x-forwarded-for"
    };
    let mut request = Request::new(());
    let mut lines = Vec::new();
    for line in &input.lines {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            request.headers_mut().append(name, value.clone());
            lines.push(value);
        }
    }
    request
        .extensions_mut()
        .insert(SocketAddr::new(input.peer.ip(), 4711));

    let got = layer
        .check(&mut request)
        .map(|()| tower_warden::client_ip::ClientIp::of(request.extensions()).expect("a resolved address"));
    let want = model(&input, &lines, &trusted);
    match (&got, want) {
        (Ok(ip), Some(want)) => assert_eq!(*ip, want, "{input:?}"),
        (Err(rejection), None) => {
            assert_eq!(rejection.reason(), tower_warden::reject::Reason::ForwardedInvalid)
        }
        _ => panic!("layer {got:?} but model {want:?} for {input:?}"),
    }
});
