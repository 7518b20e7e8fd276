//! Where settings come from: the environment (or any list of pairs) over
//! the settings file over the defaults, and the refusal of a name nobody
//! reads, with the closest known one as a suggestion.
//!
//! [`Source`] is that reading, for the perimeter's settings and for the
//! names an application reads beside them (the reference server's database,
//! logs, metrics listener...): one source, one set of rules, one set of
//! error messages.

use std::fmt;
use std::path::PathBuf;

use ipnet::IpNet;

use super::WardenConfig;
#[cfg(feature = "config-file")]
use super::file;
use super::value;
use super::vars::Vars;
use crate::error::ConfigError;

/// The settings a process is given — `MCP_*` environment variables over
/// the settings file of `MCP_CONFIG_FILE` — for the perimeter
/// ([`Source::warden`]) and for the settings an application reads beside
/// it, by the same rules: blank is unset, an unknown `MCP_*` name (in the
/// environment or the file) stops start-up naming the closest known one,
/// and every error names the variable (and the file key it came from).
///
/// ```
/// use tower_warden::config::Source;
///
/// // The application's own settings, declared beside the perimeter's.
/// const APP: &[&str] = &["MCP_DATABASE_URL", "MCP_GATEWAY_FANOUT"];
///
/// let source = Source::from_vars(
///     [("MCP_ENVIRONMENT", "development"), ("MCP_GATEWAY_FANOUT", "4")],
///     APP,
/// )?;
/// let perimeter = source.warden()?;
/// assert_eq!(source.whole("MCP_GATEWAY_FANOUT", 1_usize, 256)?, Some(4));
/// assert_eq!(source.get("MCP_DATABASE_URL"), None);
///
/// let typo = Source::from_vars([("MCP_GATEWAY_FANOUTS", "4")], APP).unwrap_err();
/// assert_eq!(typo.setting(), "MCP_GATEWAY_FANOUTS");
/// assert!(typo.message().contains("did you mean MCP_GATEWAY_FANOUT?"));
/// # let _ = perimeter;
/// # Ok::<(), tower_warden::ConfigError>(())
/// ```
pub struct Source {
    vars: Vars,
}

impl fmt::Debug for Source {
    /// The names that are set, never their values (some are secrets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self
            .vars
            .names
            .iter()
            .zip(&self.vars.values)
            .filter(|(_, value)| value.is_some())
            .map(|(name, _)| *name);
        f.debug_struct("Source")
            .field("set", &set.collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Source {
    /// The process environment (every `MCP_*` variable and the unprefixed
    /// known ones), then the settings file of `MCP_CONFIG_FILE`. The known
    /// names are the perimeter's ([`VARIABLES`](super::VARIABLES)) and `also`.
    ///
    /// # Errors
    ///
    /// An unknown `MCP_*` name, a value that is not UTF-8, or a settings
    /// file that cannot be read.
    pub fn from_env(also: &[&'static str]) -> Result<Self, ConfigError> {
        Self::from_vars(Vars::env_pairs(also)?, also)
    }

    /// `(name, value)` pairs (later pairs win), then the settings file they
    /// name; see [`Source::from_env`].
    ///
    /// # Errors
    ///
    /// An unknown `MCP_*` name, or a settings file that cannot be read.
    pub fn from_vars<I, K, V>(vars: I, also: &[&'static str]) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Ok(Self {
            vars: Vars::from_pairs(vars, also)?,
        })
    }

    /// Settings in TOML (the format of `MCP_CONFIG_FILE`), without looking
    /// at the environment.
    ///
    /// # Errors
    ///
    /// The text is not TOML, or a key is unknown.
    #[cfg(feature = "config-file")]
    #[cfg_attr(docsrs, doc(cfg(feature = "config-file")))]
    pub fn from_toml(text: &str, also: &[&'static str]) -> Result<Self, ConfigError> {
        let mut vars = Vars::new(also);
        for (index, value, key) in file::parse(text, "the TOML text", &vars.names)? {
            vars.values[index] = Some(value);
            vars.from_file[index] = Some(key);
        }
        Ok(Self { vars })
    }

    /// The perimeter's settings.
    ///
    /// # Errors
    ///
    /// The first invalid perimeter setting, by variable name.
    pub fn warden(&self) -> Result<WardenConfig, ConfigError> {
        WardenConfig::load(&self.vars).map_err(|e| self.vars.attribute(e))
    }

    /// The value of `name`, if it is set and not blank.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name)
    }

    /// The value of `name` as given, blank or not (a blank list or scope is
    /// an error where unset is not).
    #[must_use]
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.vars.raw(name)
    }

    /// An error about `name`, saying which settings-file key its value came
    /// from, as the perimeter's own errors do.
    #[must_use]
    pub fn error(&self, name: &'static str, message: impl Into<String>) -> ConfigError {
        self.vars.attribute(ConfigError::new(name, message))
    }

    /// A boolean (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`), if set.
    ///
    /// # Errors
    ///
    /// Anything else, by variable name.
    pub fn boolean(&self, name: &'static str) -> Result<Option<bool>, ConfigError> {
        value::boolean(&self.vars, name).map_err(|e| self.vars.attribute(e))
    }

    /// A whole number from `min` to `max`, if set.
    ///
    /// # Errors
    ///
    /// Anything else, by variable name.
    pub fn whole<T>(&self, name: &'static str, min: T, max: T) -> Result<Option<T>, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display,
    {
        value::whole(&self.vars, name, min, max).map_err(|e| self.vars.attribute(e))
    }

    /// A list (`a, b` or a JSON array of strings), if set.
    ///
    /// # Errors
    ///
    /// A list that is set but names nothing (``, `,`, `[]`: unset it to get
    /// its default), or a malformed JSON array.
    pub fn list(&self, name: &'static str) -> Result<Option<Vec<String>>, ConfigError> {
        value::list(&self.vars, name).map_err(|e| self.vars.attribute(e))
    }

    /// A [`list`](Source::list) of addresses and CIDR prefixes, if set.
    ///
    /// # Errors
    ///
    /// As [`Source::list`], or an entry that is not an address or prefix.
    pub fn nets(&self, name: &'static str) -> Result<Option<Vec<IpNet>>, ConfigError> {
        value::nets(&self.vars, name).map_err(|e| self.vars.attribute(e))
    }

    /// A file path, if set.
    #[must_use]
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.get(name).map(PathBuf::from)
    }

    /// An `https://` URL (or `http://` in development or to a loopback
    /// host), if set; errors show it redacted.
    ///
    /// # Errors
    ///
    /// Anything else, by variable name.
    pub fn url(&self, name: &'static str, production: bool) -> Result<Option<String>, ConfigError> {
        self.get(name)
            .map(|text| value::url(name, text, production))
            .transpose()
            .map_err(|e| self.vars.attribute(e))
    }

    /// A [`list`](Source::list) of [`url`](Source::url)s, if set.
    ///
    /// # Errors
    ///
    /// As [`Source::list`], or an entry that is not such a URL (shown
    /// redacted).
    pub fn urls(
        &self,
        name: &'static str,
        production: bool,
    ) -> Result<Option<Vec<String>>, ConfigError> {
        self.list(name)?
            .map(|items| {
                items
                    .iter()
                    .map(|text| value::url(name, text, production))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|e| self.vars.attribute(e))
    }

    /// The `N` bytes spelled by exactly `2 * N` hex digits, if set.
    ///
    /// # Errors
    ///
    /// Anything else, by variable name (the value is never shown).
    pub fn hex<const N: usize>(&self, name: &'static str) -> Result<Option<[u8; N]>, ConfigError> {
        self.get(name)
            .map(|text| {
                value::hex_array(text).ok_or_else(|| {
                    self.error(
                        name,
                        format!("expected {} hex digits (a {N}-byte key)", 2 * N),
                    )
                })
            })
            .transpose()
    }
}

impl WardenConfig {
    /// Loads the settings from the process environment: every `MCP_*`
    /// variable, and the unprefixed ones of [`VARIABLES`](super::VARIABLES)
    /// (`RATE_LIMIT_WINDOW_MS`, `RATE_LIMIT_MAX_REQUESTS`). An application
    /// that reads settings of its own beside these uses [`Source`].
    ///
    /// # Errors
    ///
    /// The first invalid setting, by variable name. A variable whose value
    /// is not UTF-8 is invalid.
    pub fn from_env() -> Result<Self, ConfigError> {
        Source::from_env(&[])?.warden()
    }

    /// Loads the settings from `(name, value)` pairs; later pairs win.
    ///
    /// # Errors
    ///
    /// The first invalid setting, by variable name.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        Source::from_vars(vars, &[])?.warden()
    }

    /// The settings in TOML (the format of `MCP_CONFIG_FILE`), without
    /// looking at the environment.
    ///
    /// # Errors
    ///
    /// The text is not TOML, a key is unknown, or a value is invalid (by
    /// variable name).
    #[cfg(feature = "config-file")]
    #[cfg_attr(docsrs, doc(cfg(feature = "config-file")))]
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Source::from_toml(text, &[])?.warden()
    }

    #[cfg(feature = "config-file")]
    pub(super) fn from_settings(settings: Vec<file::Setting>) -> Result<Self, ConfigError> {
        let mut vars = Vars::new(&[]);
        for (index, value, key) in settings {
            vars.values[index] = Some(value);
            vars.from_file[index] = Some(key);
        }
        Source { vars }.warden()
    }
}
