//! The server of the HTTP load benchmark (`run-http`): axum 0.8 answering
//! `hello` on `/` (GET and POST) and `POST /mcp`, on 127.0.0.1 only, on a
//! current-thread runtime (one core), behind one of four perimeters:
//!
//! * `bare`: no middleware.
//! * `peers`: tower_governor keyed by the peer address, with its headers,
//!   then tower-http's bearer check (one fixed HS256 token).
//! * `warden-defaults`: `WardenLayer` configuration A (the reference
//!   server's defaults, HS256).
//! * `warden-full`: `WardenLayer` configuration B (trusted proxy 127.0.0.1
//!   with `X-Forwarded-For`, 100,000-prefix allow list, RS256, rate limits,
//!   body cap, `Host` rule).
//!
//! ```text
//! hello <bare|peers|warden-defaults|warden-full> [PORT]   (PORT also from HELLO_PORT; default 8080)
//! ```
//!
//! It prints `token <JWT>` (the bearer token the variant admits) and then
//! `listening on http://127.0.0.1:<PORT>`, and serves until killed.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use axum::Router;
use axum::routing::{get, post};
use tower_warden_compare::{Alg, bearer_check, governor, warden_defaults, warden_full};

const VARIANTS: [&str; 4] = ["bare", "peers", "warden-defaults", "warden-full"];

async fn hello() -> &'static str {
    "hello"
}

/// The router of `variant` and the token it admits.
fn app(variant: &str) -> Option<(Router, String)> {
    let routes = Router::new()
        .route("/", get(hello).post(hello))
        .route("/mcp", post(hello));
    // `route_layer`: the last one added is the outermost.
    Some(match variant {
        "bare" => (routes, Alg::Hs256.token()),
        "peers" => {
            let token = Alg::Hs256.token();
            let routes = routes
                .route_layer(bearer_check::<axum::body::Body>(&token))
                .route_layer(governor());
            (routes, token)
        }
        "warden-defaults" => (routes.route_layer(warden_defaults()), Alg::Hs256.token()),
        "warden-full" => {
            let (warden, _) = warden_full("127.0.0.1");
            (routes.route_layer(warden), Alg::Rs256.token())
        }
        _ => return None,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || {
        eprintln!(
            "usage: hello <{}> [PORT]   (PORT also from HELLO_PORT; default 8080)",
            VARIANTS.join("|")
        );
        ExitCode::from(2)
    };
    let Some(variant) = args.first() else {
        return usage();
    };
    let port = args
        .get(1)
        .cloned()
        .or_else(|| std::env::var("HELLO_PORT").ok())
        .unwrap_or_else(|| "8080".to_owned());
    let Ok(port) = port.parse::<u16>() else {
        return usage();
    };
    let Some((app, token)) = app(variant) else {
        return usage();
    };
    println!("token {token}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let listener = match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("hello: cannot listen on {address}: {error}");
                return ExitCode::FAILURE;
            }
        };
        println!("listening on http://{address} ({variant})");
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        match axum::serve(listener, service).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("hello: {error}");
                ExitCode::FAILURE
            }
        }
    })
}
