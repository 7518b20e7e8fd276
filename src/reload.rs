//! Hot reload: settings swapped in without a restart, all or nothing per
//! part, keeping the old settings when a new file is invalid.
//!
//! A [`ReloadHandle`] is a list of named reload steps. Each step reads and
//! validates its new settings completely, then swaps them in atomically
//! (an [`IpSetHandle`](crate::ip_filter::IpSetHandle), [`ApiKeys::replace_from`](crate::auth::ApiKeys::replace_from),
//! [`JwtAuth::replace_jwks`](crate::auth::JwtAuth::replace_jwks)), so a
//! request sees the old settings or the new ones, never a mix. A step that
//! fails changes nothing: its error is logged and returned, and the other
//! steps still run. Call [`reload`](ReloadHandle::reload) from a SIGHUP
//! handler, an admin endpoint, or a file watcher.
//!
//! ```
//! use tower_warden::ip_filter::{IpFilterLayer, IpSet, IpSetHandle};
//! use tower_warden::reload::ReloadHandle;
//!
//! let lists = IpSetHandle::new(IpSet::builder().build());
//! let layer = IpFilterLayer::with_handle(lists.clone());
//! let reload = ReloadHandle::new().step("ip lists", move || {
//!     // Read the new lists from wherever they live; `?` keeps the old ones.
//!     let set = IpSet::builder().deny("203.0.113.0/24".parse::<ipnet::IpNet>().unwrap()).build();
//!     lists.replace(set);
//!     Ok("1 denied network".to_owned())
//! });
//! let outcome = reload.reload();
//! assert!(outcome.is_ok());
//! # let _ = layer;
//! ```

use std::fmt;
use std::sync::Arc;

use crate::error::ConfigError;

type Step = Arc<dyn Fn() -> Result<String, ConfigError> + Send + Sync>;

/// Named reload steps, run in order by [`reload`](Self::reload). Clones
/// share the steps.
#[derive(Clone, Default)]
#[must_use]
pub struct ReloadHandle {
    steps: Arc<Vec<(String, Step)>>,
}

impl fmt::Debug for ReloadHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadHandle")
            .field(
                "steps",
                &self.steps.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ReloadHandle {
    /// A handle with no steps.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a step: `run` loads and validates its part, swaps it in, and
    /// says what it loaded (for the log); on an error it must change
    /// nothing.
    pub fn step(
        mut self,
        name: impl Into<String>,
        run: impl Fn() -> Result<String, ConfigError> + Send + Sync + 'static,
    ) -> Self {
        let mut steps = Vec::clone(&self.steps);
        steps.push((name.into(), Arc::new(run)));
        self.steps = Arc::new(steps);
        self
    }

    /// The number of steps.
    #[must_use]
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there are no steps.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs every step. Each success is logged at info and each failure
    /// at error, naming the step and setting; a failed step keeps its old
    /// settings and does not stop the others.
    ///
    /// # Errors
    ///
    /// The first failure (all are logged).
    pub fn reload(&self) -> Result<Vec<String>, ConfigError> {
        let mut done = Vec::with_capacity(self.steps.len());
        let mut first_error = None;
        for (name, run) in self.steps.iter() {
            match run() {
                Ok(what) => {
                    tracing::info!(target: "tower_warden", step = %name, loaded = %what, "reloaded");
                    done.push(format!("{name}: {what}"));
                }
                Err(error) => {
                    tracing::error!(
                        target: "tower_warden",
                        step = %name,
                        %error,
                        "reload failed; the previous settings stay in force"
                    );
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(done),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn steps_run_in_order_and_a_failure_does_not_stop_the_others() {
        let runs = Arc::new(AtomicUsize::new(0));
        let (a, b) = (Arc::clone(&runs), Arc::clone(&runs));
        let handle = ReloadHandle::new()
            .step("broken", || {
                Err(ConfigError::new("MCP_API_KEYS_FILE", "line 2: not JSON"))
            })
            .step("counted", move || {
                a.fetch_add(1, Ordering::SeqCst);
                Ok("1 thing".to_owned())
            });
        let error = handle.reload().unwrap_err();
        assert_eq!(error.setting(), "MCP_API_KEYS_FILE");
        assert_eq!(runs.load(Ordering::SeqCst), 1, "the later step still ran");
        // Adding to a shared handle keeps the earlier steps.
        let shared = handle.clone();
        let more = shared.step("more", move || {
            b.fetch_add(10, Ordering::SeqCst);
            Ok(String::new())
        });
        assert!(more.reload().is_err());
        assert_eq!(runs.load(Ordering::SeqCst), 12);
        assert_eq!(handle.len(), 2);
    }
}
