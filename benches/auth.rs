//! Per-request cost of `AuthLayer` on the admitted path, beside a service
//! with no middleware and beside `jsonwebtoken::decode` called directly, in
//! one run so that the ratios are comparable.
//!
//! * `auth/baseline`: the inner service alone.
//! * `auth/<alg>`: for HS256, RS256, ES256 and EdDSA, the peer (a bare
//!   `jsonwebtoken::decode` into a claims struct, no request around it),
//!   the layer with its verified-token cache off (a full verification per
//!   request) and with it on (the same token every request: a cache hit).
//! * `auth/cache_10k`: HS256 cache hits spread over 10 000 cached tokens.
//! * `auth/api_key`: a valid key among 1 and among 10 000, and an invalid
//!   key (401).
//!
//! Requests are built before the clock starts and responses dropped after it
//! stops. Every request carries one credential header, so building and
//! dropping it costs the same in every entry.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use http_body_util::Empty;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_warden::auth::{ApiKeys, AuthLayer, JwtAuth, X_API_KEY};
use tower_warden::principal::{AuthMethod, Principal};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys/");
const SECRET: &[u8] = b"a bench secret of at least thirty-two bytes, for HS256";
const AUDIENCE: &str = "https://mcp.example.com/mcp";
const ISSUER: &str = "https://auth.example.com/";
const SALT: &[u8] = b"a bench salt for the API key digests";

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    iat: u64,
    aud: String,
    iss: String,
    scope: String,
    namespace: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str) -> Claims {
    let iat = now();
    Claims {
        sub: sub.to_owned(),
        exp: iat + 3600,
        iat,
        aud: AUDIENCE.to_owned(),
        iss: ISSUER.to_owned(),
        scope: "tools:* resources:read".to_owned(),
        namespace: "acme".to_owned(),
    }
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{KEYS}{name}")).unwrap()
}

/// One algorithm: how to sign, how to verify, and the layer's key source.
struct Alg {
    name: &'static str,
    alg: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public key PEM (`None` for HMAC).
    public_pem: Option<Vec<u8>>,
}

fn algorithms() -> Vec<Alg> {
    let pem = |alg, name, private: &str, public: &str| {
        let (private, public) = (read(private), read(public));
        let (encoding, decoding) = match alg {
            Algorithm::RS256 => (
                EncodingKey::from_rsa_pem(&private).unwrap(),
                DecodingKey::from_rsa_pem(&public).unwrap(),
            ),
            Algorithm::ES256 => (
                EncodingKey::from_ec_pem(&private).unwrap(),
                DecodingKey::from_ec_pem(&public).unwrap(),
            ),
            Algorithm::EdDSA => (
                EncodingKey::from_ed_pem(&private).unwrap(),
                DecodingKey::from_ed_pem(&public).unwrap(),
            ),
            _ => unreachable!(),
        };
        Alg {
            name,
            alg,
            encoding,
            decoding,
            public_pem: Some(public),
        }
    };
    vec![
        Alg {
            name: "HS256",
            alg: Algorithm::HS256,
            encoding: EncodingKey::from_secret(SECRET),
            decoding: DecodingKey::from_secret(SECRET),
            public_pem: None,
        },
        pem(Algorithm::RS256, "RS256", "rsa.pem", "rsa.pub.pem"),
        pem(Algorithm::ES256, "ES256", "ec256.pem", "ec256.pub.pem"),
        pem(Algorithm::EdDSA, "EdDSA", "ed25519.pem", "ed25519.pub.pem"),
    ]
}

impl Alg {
    fn token(&self, sub: &str) -> String {
        jsonwebtoken::encode(&Header::new(self.alg), &claims(sub), &self.encoding).unwrap()
    }

    fn verifier(&self, cache_capacity: usize) -> JwtAuth {
        let builder = JwtAuth::builder();
        let builder = match &self.public_pem {
            None => builder.hmac_secret(SECRET, self.alg),
            Some(pem) => builder.public_key_pem(pem, self.alg),
        };
        builder
            .audience([AUDIENCE])
            .issuer([ISSUER])
            .cache_capacity(cache_capacity)
            .build()
            .unwrap()
    }

    fn validation(&self) -> Validation {
        let mut validation = Validation::new(self.alg);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation
    }
}

type Body = Empty<Bytes>;

fn inner() -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>>,
> + Clone {
    service_fn(|_req: Request<Body>| async { Ok::<_, Infallible>(Response::new(Empty::new())) })
}

/// A request with one credential header. The header value is copied into
/// its own buffer here, outside the timed region.
fn request(name: http::HeaderName, value: &str) -> Request<Body> {
    Request::post("/mcp")
        .header(name, HeaderValue::from_str(value).unwrap())
        .body(Empty::new())
        .unwrap()
}

fn bearer(token: &str) -> Request<Body> {
    request(AUTHORIZATION, &format!("Bearer {token}"))
}

/// Times `service` over requests from `make(i)`, all driven inside one
/// `block_on` of a current-thread runtime.
fn bench_service<S, B>(
    c: &mut Criterion,
    rt: &Runtime,
    group: &str,
    name: &str,
    mut service: S,
    make: impl Fn(u64) -> Request<Body>,
) where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    c.benchmark_group(group).bench_function(name, |b| {
        b.iter_custom(|iters| {
            let requests: Vec<_> = (0..iters).map(&make).collect();
            let mut responses = Vec::with_capacity(requests.len());
            let elapsed = rt.block_on(async {
                let start = Instant::now();
                for request in requests {
                    let ready = service.ready().await.unwrap();
                    responses.push(black_box(ready.call(request).await.unwrap()));
                }
                start.elapsed()
            });
            drop(responses);
            elapsed
        })
    });
}

/// Checks once, outside any timing, that `service` answers `request` with
/// `status`.
fn expect<S, B>(rt: &Runtime, service: &S, request: Request<Body>, status: u16)
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let response = rt.block_on(service.clone().oneshot(request)).unwrap();
    assert_eq!(response.status().as_u16(), status);
}

fn api_keys(count: usize) -> (ApiKeys, String) {
    let keys = ApiKeys::new(SALT).unwrap();
    let presented = "wk_live_3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e".to_owned();
    keys.insert_key(
        &presented,
        Principal::builder("ci-bot", AuthMethod::ApiKey)
            .namespace("acme")
            .scopes(["tools:*"])
            .build(),
    )
    .unwrap();
    // The rest in one load: `insert_key` copies the table on every call.
    let lines: String = (1..count)
        .map(|i| {
            let digest = ApiKeys::digest_of(SALT, &format!("wk_live_{i:032x}"));
            format!("{{\"id\":\"key-{i}\",\"digest\":\"{digest}\",\"scopes\":[\"tools:*\"]}}\n")
        })
        .collect();
    keys.load_lines(&lines).unwrap();
    assert_eq!(keys.len(), count);
    (keys, presented)
}

fn auth(c: &mut Criterion) {
    tower_warden::auth::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let algorithms = algorithms();

    let hs256 = algorithms[0].token("alice");
    bench_service(c, &rt, "auth/baseline", "no middleware", inner(), |_| {
        bearer(&hs256)
    });

    for alg in &algorithms {
        let token = alg.token("alice");
        println!("{} token: {} bytes", alg.name, token.len());
        let group = format!("auth/{}", alg.name);

        let validation = alg.validation();
        jsonwebtoken::decode::<Claims>(&token, &alg.decoding, &validation).unwrap();
        c.benchmark_group(&group)
            .bench_function("jsonwebtoken decode (direct)", |b| {
                b.iter(|| {
                    jsonwebtoken::decode::<Claims>(black_box(&token), &alg.decoding, &validation)
                        .unwrap()
                })
            });

        let uncached = AuthLayer::jwt(alg.verifier(0)).layer(inner());
        expect(&rt, &uncached, bearer(&token), 200);
        bench_service(
            c,
            &rt,
            &group,
            "tower-warden uncached (full verify)",
            uncached,
            |_| bearer(&token),
        );

        let verifier = alg.verifier(10_000);
        let cached = AuthLayer::jwt(verifier.clone()).layer(inner());
        expect(&rt, &cached, bearer(&token), 200);
        assert_eq!(verifier.cached_tokens(), 1);
        bench_service(c, &rt, &group, "tower-warden cached (hit)", cached, |_| {
            bearer(&token)
        });
        let (_, misses) = verifier.cache_stats();
        assert_eq!(misses, 1, "only the first request may miss");
    }

    // Cache hits spread over 10 000 cached tokens, round robin: the sharded
    // map at size, its entries mostly out of the CPU caches.
    let hs = &algorithms[0];
    let tokens: Vec<String> = (0..10_000)
        .map(|i| hs.token(&format!("user-{i}")))
        .collect();
    // Room for all of them: a shard is bounded at capacity / 16.
    let verifier = hs.verifier(20_000);
    let cached = AuthLayer::jwt(verifier.clone()).layer(inner());
    for token in &tokens {
        expect(&rt, &cached, bearer(token), 200);
    }
    assert_eq!(verifier.cached_tokens(), tokens.len());
    bench_service(
        c,
        &rt,
        "auth/cache_10k",
        "tower-warden HS256 hit, 10 000 tokens",
        cached,
        |i| bearer(&tokens[i as usize % tokens.len()]),
    );
    let (_, misses) = verifier.cache_stats();
    assert_eq!(misses, tokens.len() as u64, "only the first round may miss");

    for count in [1, 10_000] {
        let (keys, presented) = api_keys(count);
        let service = AuthLayer::api_keys(keys).layer(inner());
        expect(&rt, &service, request(X_API_KEY, &presented), 200);
        let name = if count == 1 {
            "valid key, 1 key".to_owned()
        } else {
            format!("valid key, {count} keys")
        };
        bench_service(c, &rt, "auth/api_key", &name, service, |_| {
            request(X_API_KEY, &presented)
        });
    }
    let (keys, _) = api_keys(10_000);
    let service = AuthLayer::api_keys(keys).layer(inner());
    let wrong = "wk_live_00000000000000000000000000000000x";
    expect(&rt, &service, request(X_API_KEY, wrong), 401);
    bench_service(
        c,
        &rt,
        "auth/api_key",
        "invalid key (401), 10000 keys",
        service,
        |_| request(X_API_KEY, wrong),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = auth
}
criterion_main!(benches);
