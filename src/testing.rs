//! One log capture for the whole unit-test binary.
//!
//! A subscriber set per test (`with_default`) races with tests on other
//! threads: `tracing` caches per call site whether anyone listens, and a
//! call site first reached on a thread without the test's subscriber can be
//! cached as unheard. So the capture is the global default, installed once,
//! listening to everything; each test finds its own lines by a marker only
//! it uses (a client address, a subject).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static BUFFER: OnceLock<Buffer> = OnceLock::new();

/// Starts capturing (once per process).
pub(crate) fn start() {
    BUFFER.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in unit tests");
        buffer
    });
}

/// Everything logged so far by every test.
pub(crate) fn text() -> String {
    let buffer = BUFFER.get().expect("testing::start() first");
    let bytes = buffer.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The lines logged so far that contain `marker`.
pub(crate) fn lines_with(marker: &str) -> Vec<String> {
    text()
        .lines()
        .filter(|line| line.contains(marker))
        .map(str::to_owned)
        .collect()
}
