//! The gateway's connection store against an SQLite file (always) and a
//! real PostgreSQL (`TOWER_WARDEN_POSTGRES_URL`, which `.ci/run` sets; the
//! PostgreSQL tests say why and pass without it, unless
//! `TOWER_WARDEN_REQUIRE_SERVICES=1`).

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;
use app::gateway::store;

use std::collections::HashSet;
use std::sync::Arc;

use store::{ConnectionStore, MAX_PINNED_TOOLS, NewConnection, Pin, StoreError, UpstreamAuth};

fn required() -> bool {
    std::env::var("TOWER_WARDEN_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

fn postgres(test: &str) -> Option<String> {
    match std::env::var("TOWER_WARDEN_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !required(),
                "{test}: TOWER_WARDEN_POSTGRES_URL is unset but TOWER_WARDEN_REQUIRE_SERVICES=1"
            );
            eprintln!(
                "{test}: skipped: TOWER_WARDEN_POSTGRES_URL is unset (start PostgreSQL and set it)"
            );
            None
        }
    }
}

/// A name no other test or run uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// An SQLite file in a fresh temporary directory (removed on drop).
struct TempDb(std::path::PathBuf);

impl TempDb {
    fn new() -> Self {
        Self(std::env::temp_dir().join(unique("tw-store")))
    }

    fn url(&self) -> String {
        format!("sqlite://{}/nested/mcp.db", self.0.display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn new(name: &str) -> NewConnection {
    NewConnection {
        server_name: name.to_owned(),
        // One upstream per name: a namespace reaches an upstream once.
        url: format!("https://{name}.upstream.example/mcp"),
        timeout_ms: 30_000,
        credential: None,
        upstream_auth: UpstreamAuth::Credential,
    }
}

async fn round_trip(url: &str) {
    let store = ConnectionStore::connect(url)
        .await
        .unwrap()
        .with_credential_key(Some([7; 32]));
    let a = unique("ns-a");
    let b = unique("ns-b");
    let mut first = new("search");
    first.credential = Some("upstream-secret-token".to_owned());
    let created = store.create(&a, first).await.unwrap();
    assert_eq!(created.namespace, a);
    assert_eq!(created.id.len(), 32);
    assert!(created.has_credential);
    let json = serde_json::to_string(&created).unwrap();
    assert!(!json.contains("upstream-secret-token"), "{json}");
    assert!(json.contains("\"has_credential\":true"));

    store.create(&a, new("fetch")).await.unwrap();
    store.create(&b, new("search")).await.unwrap();

    let listed = store.list(&a).await.unwrap();
    let names: Vec<_> = listed.iter().map(|c| c.server_name.as_str()).collect();
    assert_eq!(names, ["search", "fetch"]);
    assert_eq!(store.list(&b).await.unwrap().len(), 1);

    let got = store.get(&created.id).await.unwrap().unwrap();
    assert_eq!(got, created);
    assert_eq!(got.credential.as_deref(), Some("upstream-secret-token"));
    assert!(store.get("not-an-id").await.unwrap().is_none());

    // How the upstream is called is kept, and shown.
    let exchanged = store
        .create(
            &b,
            NewConnection {
                upstream_auth: UpstreamAuth::TokenExchange,
                ..new("exchanged")
            },
        )
        .await
        .unwrap();
    let got = store.get(&exchanged.id).await.unwrap().unwrap();
    assert_eq!(got.upstream_auth, UpstreamAuth::TokenExchange);
    assert!(!got.has_credential);
    assert!(
        serde_json::to_string(&got)
            .unwrap()
            .contains("\"upstream_auth\":\"token_exchange\""),
    );
    assert_eq!(
        store.get(&created.id).await.unwrap().unwrap().upstream_auth,
        UpstreamAuth::Credential
    );

    match store.create(&a, new("search")).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }

    // The same upstream under another name, spelled differently but read
    // alike by the HTTP client: refused; another namespace may have it.
    let renamed = NewConnection {
        url: "HTTPS://Search.Upstream.Example:443/mcp#again".to_owned(),
        ..new("renamed")
    };
    match store.create(&a, renamed).await {
        Err(StoreError::Duplicate(why)) => assert!(why.contains("search"), "{why}"),
        other => panic!("expected a duplicate upstream, got {other:?}"),
    }
    assert_eq!(store.list(&a).await.unwrap().len(), 2);

    assert!(store.delete(&created.id).await.unwrap());
    assert!(!store.delete(&created.id).await.unwrap());
    assert!(store.get(&created.id).await.unwrap().is_none());
}

async fn durable_and_concurrent(url: &str) {
    let ns = unique("ns-c");
    {
        let store = Arc::new(ConnectionStore::connect(url).await.unwrap());
        let mut tasks = Vec::new();
        for i in 0..50 {
            let store = Arc::clone(&store);
            let ns = ns.clone();
            tasks.push(tokio::spawn(async move {
                store.create(&ns, new(&format!("server-{i}"))).await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }
    // A restart: a new store on the same database keeps every connection.
    let store = ConnectionStore::connect(url).await.unwrap();
    let names: HashSet<String> = store
        .list(&ns)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.server_name)
        .collect();
    assert_eq!(names.len(), 50);
}

fn pin(tool: &str, digest: &str) -> Pin {
    Pin {
        tool: tool.to_owned(),
        digest: digest.to_owned(),
        definition: format!(r#"{{"name":"{tool}","description":"{digest}"}}"#),
    }
}

/// A connection's approved tools: pinned once on first use (a second
/// first-use pin, as a racing instance would write, changes nothing),
/// re-pinned and forgotten one by one, capped, and gone with the
/// connection.
async fn pins_round_trip(url: &str) {
    let store = ConnectionStore::connect(url).await.unwrap();
    let namespace = unique("pins");
    let id = store.create(&namespace, new("pinned")).await.unwrap().id;
    assert_eq!(store.pins(&id).await.unwrap(), None, "not yet pinned");

    assert!(
        store
            .pin_first(&id, &[pin("b", "1"), pin("a", "1")])
            .await
            .unwrap()
    );
    assert!(
        !store.pin_first(&id, &[pin("evil", "9")]).await.unwrap(),
        "pinned once"
    );
    assert_eq!(
        store.pins(&id).await.unwrap(),
        Some(vec![pin("a", "1"), pin("b", "1")])
    );

    assert!(store.approve(&id, Ok(&pin("a", "2"))).await.unwrap());
    assert!(store.approve(&id, Err("b")).await.unwrap());
    assert_eq!(store.pins(&id).await.unwrap(), Some(vec![pin("a", "2")]));
    // Approving the removal of the last tool leaves an empty, pinned set.
    assert!(store.approve(&id, Err("a")).await.unwrap());
    assert_eq!(store.pins(&id).await.unwrap(), Some(vec![]));

    // Another store on the same database reads the same pins.
    let again = ConnectionStore::connect(url).await.unwrap();
    assert_eq!(again.pins(&id).await.unwrap(), Some(vec![]));

    // At most MAX_PINNED_TOOLS per connection.
    let many: Vec<Pin> = (0..MAX_PINNED_TOOLS + 6)
        .map(|i| pin(&format!("t{i:05}"), "1"))
        .collect();
    let full = store.create(&namespace, new("full")).await.unwrap().id;
    assert!(store.pin_first(&full, &many).await.unwrap());
    assert_eq!(
        store.pins(&full).await.unwrap().unwrap().len(),
        MAX_PINNED_TOOLS
    );
    assert!(
        !store
            .approve(&full, Ok(&pin("one-more", "1")))
            .await
            .unwrap(),
        "over the cap"
    );
    assert!(
        store.approve(&full, Ok(&pin("t00000", "2"))).await.unwrap(),
        "a re-pin is no more"
    );

    // Gone with the connection; an unknown connection pins nothing.
    assert!(store.delete(&id).await.unwrap());
    assert_eq!(store.pins(&id).await.unwrap(), None);
    assert!(!store.approve(&id, Ok(&pin("a", "3"))).await.unwrap());
    assert!(!store.pin_first(&id, &[pin("a", "3")]).await.unwrap());
    assert!(store.delete(&full).await.unwrap());
}

#[tokio::test]
async fn sqlite_keeps_approved_tools() {
    let db = TempDb::new();
    pins_round_trip(&db.url()).await;
}

#[tokio::test]
async fn postgres_keeps_approved_tools() {
    if let Some(url) = postgres("postgres_keeps_approved_tools") {
        pins_round_trip(&url).await;
    }
}

#[tokio::test]
async fn sqlite_round_trip() {
    let db = TempDb::new();
    round_trip(&db.url()).await;
}

#[tokio::test]
async fn sqlite_keeps_everything_across_restarts_and_concurrent_writers() {
    let db = TempDb::new();
    durable_and_concurrent(&db.url()).await;
}

#[tokio::test]
async fn postgres_round_trip() {
    if let Some(url) = postgres("postgres_round_trip") {
        round_trip(&url).await;
    }
}

#[tokio::test]
async fn postgres_keeps_everything_across_restarts_and_concurrent_writers() {
    if let Some(url) = postgres("postgres_keeps_everything_across_restarts_and_concurrent_writers")
    {
        durable_and_concurrent(&url).await;
    }
}

#[tokio::test]
async fn invalid_fields_are_refused_before_the_database() {
    let store = ConnectionStore::connect("sqlite::memory:").await.unwrap();
    let long_name = "x".repeat(65);
    let cases: Vec<(&str, NewConnection)> = vec![
        ("acme", new("")),
        ("acme", new("has space")),
        ("acme", new("dot.ted")),
        ("acme", new(&long_name)),
        (
            "acme",
            NewConnection {
                url: "ftp://x/".into(),
                ..new("a")
            },
        ),
        (
            "acme",
            NewConnection {
                url: "not a url".into(),
                ..new("a")
            },
        ),
        (
            "acme",
            NewConnection {
                url: "http:///path".into(),
                ..new("a")
            },
        ),
        (
            "acme",
            NewConnection {
                timeout_ms: 0,
                ..new("a")
            },
        ),
        (
            "acme",
            NewConnection {
                timeout_ms: 300_001,
                ..new("a")
            },
        ),
        (
            "acme",
            NewConnection {
                credential: Some(String::new()),
                ..new("a")
            },
        ),
        (
            "acme",
            NewConnection {
                credential: Some("two words".into()),
                ..new("a")
            },
        ),
        (
            "acme",
            NewConnection {
                credential: Some("line\nbreak".into()),
                ..new("a")
            },
        ),
        // A credential and token exchange exclude each other.
        (
            "acme",
            NewConnection {
                credential: Some("a-token".into()),
                upstream_auth: UpstreamAuth::TokenExchange,
                ..new("a")
            },
        ),
        (
            "acme",
            NewConnection {
                url: "https://user:pw@upstream.example/mcp".into(),
                ..new("a")
            },
        ),
        ("ACME", new("a")),
        ("", new("a")),
    ];
    for (namespace, connection) in cases {
        let shown = format!("{namespace:?} {connection:?}");
        match store.create(namespace, connection).await {
            Err(StoreError::Invalid(_)) => {}
            other => panic!("{shown}: expected Invalid, got {other:?}"),
        }
    }
    assert!(store.list("acme").await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_database_is_an_error_without_the_password() {
    let error = ConnectionStore::connect("postgres://admin:hunter2@127.0.0.1:1/nope")
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(matches!(error, StoreError::Database(_)));
}
