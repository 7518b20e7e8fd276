//! Redis for the tests: the shared server `.ci/run` starts, and servers of
//! a test's own that it can stop and start again.
//!
//! The shared server comes from `TOWER_WARDEN_REDIS_URL`. Without it (or
//! without `redis-server` on the `PATH`) a test says why and passes, unless
//! `TOWER_WARDEN_REQUIRE_SERVICES=1`, when it fails.

use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn required() -> bool {
    std::env::var("TOWER_WARDEN_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The shared server's URL, or `None` (with the reason printed) to skip.
pub(crate) fn redis_url(test: &str) -> Option<String> {
    match std::env::var("TOWER_WARDEN_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !required(),
                "{test}: TOWER_WARDEN_REDIS_URL is unset but TOWER_WARDEN_REQUIRE_SERVICES=1"
            );
            eprintln!(
                "{test}: skipped: TOWER_WARDEN_REDIS_URL is unset (start a redis-server and set it)"
            );
            None
        }
    }
}

/// A key prefix no other test (or run) uses.
pub(crate) fn unique_prefix(test: &str) -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("tw-test:{test}:{:016x}:", h.finish())
}

/// Whether `redis-server` can be run (with the reason printed to skip).
pub(crate) fn have_redis_server(test: &str) -> bool {
    let have = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            !required(),
            "{test}: redis-server is not installed but TOWER_WARDEN_REQUIRE_SERVICES=1"
        );
        eprintln!("{test}: skipped: no redis-server on PATH");
    }
    have
}

/// A `redis-server` of the test's own, on a fixed port.
pub(crate) struct OwnServer {
    port: u16,
    child: Child,
}

impl OwnServer {
    pub(crate) fn start(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = Self { port, child };
        server.wait_until_up();
        Some(server)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn wait_until_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url()).unwrap();
        loop {
            if let Ok(mut con) = client.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut con).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
