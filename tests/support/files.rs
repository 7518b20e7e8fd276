//! Files a test's settings point to (key files, JWKS documents, settings
//! files), in a directory of their own that is removed when the test ends.

use std::path::PathBuf;

/// A test's files, under `<temp>/tower-warden-<pid>-<name>`.
pub struct Files {
    dir: PathBuf,
}

impl Files {
    /// An empty directory for the test `name` (unique within one test
    /// binary; the process id keeps binaries apart).
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tower-warden-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    /// Writes `text` to `name` at once (a rename, as deploy tools do) and
    /// returns its path.
    pub fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        let temp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, &path).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
