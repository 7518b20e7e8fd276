//! The MCP-aware defences per call, beside a plain cached-token check, in
//! one run:
//!
//! * `mcp_defences/auth_cached_hs256`: `AuthLayer` with a cached HS256
//!   token, minus nothing (a whole request through the layer and an empty
//!   service), the reference figure;
//! * `mcp_defences/auth_dpop_es256`: the same with a DPoP-bound token
//!   (cached) and a fresh ES256 proof per request (RFC 9449: `jwk`
//!   thumbprint, signature, `htm`/`htu`/`iat`/`ath`, the `jti` recorded
//!   against replays); the proofs are made before the clock starts;
//! * `mcp_defences/auth_introspected_cached`: the same with an opaque
//!   token whose introspection answer is cached (RFC 7662; the endpoint, a
//!   local server, was asked once before the clock starts);
//! * `mcp_defences/baseline`: the empty service alone;
//! * `mcp_defences/arguments_valid` / `arguments_invalid`: one
//!   `SchemaCache::check_arguments` of a typical tool (five typed members,
//!   a pattern, an enum, a local `$ref`; compiled once, a cache hit);
//!   `arguments_valid_compiled`: the same check on a `ToolSchema` the
//!   caller keeps per pinned tool (no cache lookup);
//! * `mcp_defences/tool_digest` and `tool_screen`: pinning and screening
//!   the same tool's definition (done once per listing, not per call).

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use http_body_util::Empty;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_warden::auth::{Algorithm, AuthLayer, ClientAuth, DPOP, Introspection, JwtAuth};
use tower_warden::mcp::schema_firewall::SchemaCache;
use tower_warden::mcp::tool_integrity::{ToolDigest, ToolScreen};

const SECRET: &str = "a bench secret of at least thirty-two bytes, for HS256";

fn tool() -> Value {
    json!({
        "name": "create_issue",
        "description": "Creates an issue in a repository the caller may write to.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "owner": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,39}$"},
                "repo": {"type": "string", "maxLength": 100},
                "title": {"type": "string", "minLength": 1, "maxLength": 256},
                "labels": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
                "priority": {"enum": ["low", "normal", "high"]},
                "assignee": {"$ref": "#/$defs/login"}
            },
            "required": ["owner", "repo", "title"],
            "additionalProperties": false,
            "$defs": {"login": {"type": "string", "maxLength": 39}}
        },
        "annotations": {"destructiveHint": false, "openWorldHint": true}
    })
}

fn requests(bearer: &HeaderValue, n: u64) -> Vec<Request<Empty<Bytes>>> {
    (0..n)
        .map(|_| {
            Request::post("/mcp")
                .header(AUTHORIZATION, bearer.clone())
                .body(Empty::new())
                .unwrap()
        })
        .collect()
}

fn timed<S, B>(rt: &Runtime, service: &S, bearer: &HeaderValue, iters: u64) -> Duration
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let batch = requests(bearer, iters);
    let mut service = service.clone();
    rt.block_on(async {
        let start = Instant::now();
        for request in batch {
            let ready = service.ready().await.unwrap();
            black_box(ready.call(request).await.unwrap());
        }
        start.elapsed()
    })
}

/// A client's DPoP key (P-256), and proofs for `POST http://mcp.test/mcp`.
struct ProofKey {
    encoding: EncodingKey,
    header: String,
    jkt: String,
}

impl ProofKey {
    fn new() -> Self {
        let rng = aws_lc::rand::SystemRandom::new();
        let alg = &aws_lc::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = aws_lc::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = aws_lc::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
        let point = aws_lc::signature::KeyPair::public_key(&pair).as_ref();
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..65]),
        );
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        Self {
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            header: URL_SAFE_NO_PAD
                .encode(json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}).to_string()),
            jkt: URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical)),
        }
    }

    fn proof(&self, token: &str, jti: u64) -> HeaderValue {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({"jti": jti.to_string(), "htm": "POST", "htu": "http://mcp.test/mcp",
                            "iat": now, "ath": URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(token))});
        let signed = format!(
            "{}.{}",
            self.header,
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature =
            jsonwebtoken::crypto::sign(signed.as_bytes(), &self.encoding, Algorithm::ES256)
                .unwrap();
        HeaderValue::from_str(&format!("{signed}.{signature}")).unwrap()
    }
}

/// `iters` DPoP requests through `service`, their proofs made first.
fn timed_dpop<S, B>(
    rt: &Runtime,
    service: &S,
    (key, token, next): (&ProofKey, &str, &mut u64),
    iters: u64,
) -> Duration
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let authorization = HeaderValue::from_str(&format!("DPoP {token}")).unwrap();
    let batch: Vec<_> = (0..iters)
        .map(|_| {
            *next += 1;
            Request::post("http://mcp.test/mcp")
                .header(AUTHORIZATION, authorization.clone())
                .header(DPOP, key.proof(token, *next))
                .body(Empty::new())
                .unwrap()
        })
        .collect();
    let mut service = service.clone();
    rt.block_on(async {
        let start = Instant::now();
        for request in batch {
            let ready = service.ready().await.unwrap();
            let response = ready.call(request).await.unwrap();
            debug_assert_eq!(response.status(), 200);
            black_box(response);
        }
        start.elapsed()
    })
}

fn defences(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tower_warden::auth::install_crypto_provider();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "alice", "scope": "*", "exp": 4_000_000_000u64}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    let inner = service_fn(|_: Request<Empty<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
    });
    let jwt = JwtAuth::builder()
        .hmac_secret(SECRET, Algorithm::HS256)
        .build()
        .unwrap();
    // Room for every proof of a run within the 60 s iat window.
    let dpop_auth = AuthLayer::jwt(jwt.clone())
        .dpop_replay_capacity(2_000_000)
        .layer(inner);
    let auth = AuthLayer::jwt(jwt).layer(inner);
    let first = rt.block_on(auth.clone().oneshot(requests(&bearer, 1).remove(0)));
    assert_eq!(first.unwrap().status(), 200);
    let proof_key = ProofKey::new();
    let bound = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "alice", "scope": "*", "exp": 4_000_000_000u64,
                "cnf": {"jkt": proof_key.jkt}}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let mut next_jti = 0;
    let admitted = rt.block_on(
        dpop_auth.clone().oneshot(
            Request::post("http://mcp.test/mcp")
                .header(AUTHORIZATION, format!("DPoP {bound}"))
                .header(DPOP, proof_key.proof(&bound, u64::MAX))
                .body(Empty::<Bytes>::new())
                .unwrap(),
        ),
    );
    assert_eq!(admitted.unwrap().status(), 200);

    // An introspection endpoint on 127.0.0.1 that calls every token active.
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let endpoint = format!("http://{}/introspect", listener.local_addr().unwrap());
    let answer = json!({"active": true, "sub": "alice", "scope": "*", "exp": 4_000_000_000u64});
    let app = axum::Router::new().route(
        "/introspect",
        axum::routing::post(move || {
            let answer = answer.clone();
            async move { axum::Json(answer) }
        }),
    );
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    let introspection = Introspection::builder(
        endpoint,
        "bench",
        ClientAuth::SecretBasic("bench-secret".to_owned()),
    )
    .build()
    .unwrap();
    let opaque_auth = AuthLayer::introspection_only(introspection).layer(inner);
    let opaque = HeaderValue::from_static("Bearer 8cTqJXtE0sN2vH7kM4wR9yL1pF6aD3gB5zU0xQ");
    let primed = rt.block_on(opaque_auth.clone().oneshot(requests(&opaque, 1).remove(0)));
    assert_eq!(primed.unwrap().status(), 200);

    let cache = SchemaCache::new(1024);
    let tool = tool();
    let valid = json!({"owner": "octo-org", "repo": "tower", "title": "Flaky test",
                       "labels": ["bug", "ci"], "priority": "high", "assignee": "alice"});
    let invalid = json!({"owner": "octo-org", "repo": "tower", "title": "Flaky test",
                         "labels": ["bug", "ci"], "priority": "urgent", "assignee": "alice"});
    assert!(cache.check_arguments(&tool, Some(&valid)).is_ok());
    assert!(cache.check_arguments(&tool, Some(&invalid)).is_err());
    let screen = ToolScreen::new();
    assert!(screen.screen(&tool).is_ok());

    let mut group = c.benchmark_group("mcp_defences");
    group.bench_function("baseline", |b| {
        b.iter_custom(|iters| timed(&rt, &inner, &bearer, iters));
    });
    group.bench_function("auth_cached_hs256", |b| {
        b.iter_custom(|iters| timed(&rt, &auth, &bearer, iters));
    });
    group.bench_function("auth_introspected_cached", |b| {
        b.iter_custom(|iters| timed(&rt, &opaque_auth, &opaque, iters));
    });
    group.bench_function("auth_dpop_es256", |b| {
        b.iter_custom(|iters| {
            timed_dpop(&rt, &dpop_auth, (&proof_key, &bound, &mut next_jti), iters)
        });
    });
    group.bench_function("arguments_valid", |b| {
        b.iter(|| black_box(cache.check_arguments(black_box(&tool), Some(black_box(&valid)))));
    });
    let compiled = cache.get(&tool["inputSchema"]).unwrap();
    group.bench_function("arguments_valid_compiled", |b| {
        b.iter(|| black_box(compiled.check_arguments(Some(black_box(&valid)))));
    });
    group.bench_function("arguments_invalid", |b| {
        b.iter(|| black_box(cache.check_arguments(black_box(&tool), Some(black_box(&invalid)))));
    });
    group.bench_function("tool_digest", |b| {
        b.iter(|| black_box(ToolDigest::of(black_box(&tool))));
    });
    group.bench_function("tool_screen", |b| {
        b.iter(|| black_box(screen.screen(black_box(&tool))));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = defences
}
criterion_main!(benches);
