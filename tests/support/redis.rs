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

/// A `redis-server` of the test's own that speaks only TLS, with a
/// certificate for 127.0.0.1 from a CA made for it by the `openssl`
/// command. Its CA is in `ca_pem`.
pub(crate) struct OwnTlsServer {
    port: u16,
    child: Child,
    dir: std::path::PathBuf,
    pub(crate) ca_pem: Vec<u8>,
}

impl OwnTlsServer {
    /// `None` (with the reason printed) when `redis-server` or `openssl`
    /// is missing, unless `TOWER_WARDEN_REQUIRE_SERVICES=1`.
    pub(crate) fn start(test: &str) -> Option<Self> {
        if !have_redis_server(test) {
            return None;
        }
        let dir = std::env::temp_dir().join(unique_prefix(test).replace(':', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        let made = openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-nodes",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=tower-warden test CA",
                ],
            ]
            .concat(),
        ) && openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-nodes",
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
        ) && openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        if !made {
            let _ = std::fs::remove_dir_all(&dir);
            assert!(
                !required(),
                "{test}: openssl could not make certificates but TOWER_WARDEN_REQUIRE_SERVICES=1"
            );
            eprintln!("{test}: skipped: the openssl command is missing or failed");
            return None;
        }
        let port = free_port();
        let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--tls-cert-file", &file("server.pem")])
            .args(["--tls-key-file", &file("server.key")])
            .args(["--tls-ca-cert-file", &file("ca.pem")])
            .args(["--tls-auth-clients", "no"])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server (TLS) did not come up"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let ca_pem = std::fs::read(dir.join("ca.pem")).unwrap();
        Some(Self {
            port,
            child,
            dir,
            ca_pem,
        })
    }

    pub(crate) fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.port)
    }
}

impl Drop for OwnTlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
