//! The typed error every fallible builder and loader returns.

use std::borrow::Cow;
use std::fmt;

/// A setting that cannot be used, found while building a layer or loading
/// configuration — never at request time.
///
/// The message names the setting (a builder method or an environment
/// variable such as `MCP_ALLOWED_IPS`) and says what is wrong with it. It
/// never repeats a secret value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    setting: Cow<'static, str>,
    message: String,
}

impl ConfigError {
    /// An error about `setting`, explained by `message`.
    #[must_use]
    pub fn new(setting: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            message: message.into(),
        }
    }

    /// The setting at fault, e.g. `MCP_ALLOWED_IPS` or `IpSet::allow`.
    #[must_use]
    pub fn setting(&self) -> &str {
        &self.setting
    }

    /// What is wrong with it.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error, attributed to another setting name (for example an
    /// environment variable that fed a builder method).
    #[must_use]
    pub fn for_setting(mut self, setting: impl Into<Cow<'static, str>>) -> Self {
        self.setting = setting.into();
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.setting, self.message)
    }
}

impl std::error::Error for ConfigError {}
