//! The npm package `oidc-provider` (`tests/oidc/provider.js`) on 127.0.0.1
//! at a free port, for the tests that need a real authorization server.
//! Needs `node` and `tests/oidc/node_modules` (`npm ci --prefix
//! tests/oidc`, which `.ci/run` does); without them a test says why and
//! passes, unless `TOWER_WARDEN_REQUIRE_SERVICES=1`, when it fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub(crate) fn required() -> bool {
    std::env::var("TOWER_WARDEN_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

pub(crate) fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// `oidc-provider`, killed when dropped.
pub(crate) struct Provider {
    child: Child,
    pub(crate) issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the provider, or `None` (with the reason printed) to skip.
pub(crate) fn start_provider(test: &str, env: &[(&str, String)]) -> Option<Provider> {
    let skip = |why: &str| {
        assert!(
            !required(),
            "{test}: {why} but TOWER_WARDEN_REQUIRE_SERVICES=1"
        );
        eprintln!("{test}: skipped: {why} (install node, then `npm ci --prefix tests/oidc`)");
        None
    };
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return skip("node is not installed");
    }
    if !oidc_dir().join("node_modules/oidc-provider").is_dir() {
        return skip("tests/oidc/node_modules is missing");
    }
    let mut child = Command::new("node")
        .arg("provider.js")
        .current_dir(oidc_dir())
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        // Closed when the test ends, however it ends: the script then exits.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node provider.js");
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout
        .read_line(&mut line)
        .expect("the provider's first line");
    // Whatever it prints later (notices) is read and dropped: a closed
    // pipe would end the provider at its next line.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let started: Value = serde_json::from_str(&line)
        .unwrap_or_else(|_| panic!("{test}: the provider did not start: {line:?}"));
    Some(Provider {
        child,
        issuer: started["issuer"].as_str().unwrap().to_owned(),
    })
}

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
