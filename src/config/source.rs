//! Where settings come from: the environment (or any list of pairs) over
//! the settings file over the defaults, and the refusal of a name nobody
//! reads, with the closest known one as a suggestion.

use std::path::PathBuf;

use super::WardenConfig;
#[cfg(feature = "config-file")]
use super::file;
use super::settings::VARIABLES;
use super::suggest::closest;
use crate::error::ConfigError;

/// Every setting's value, by its index in [`VARIABLES`]: the environment
/// (or the pairs given) first, then the settings file.
pub(super) struct Vars {
    values: [Option<String>; VARIABLES.len()],
    /// For a value read from the settings file: its key as written there.
    from_file: [Option<String>; VARIABLES.len()],
}

impl Vars {
    pub(super) fn new() -> Self {
        Self {
            values: std::array::from_fn(|_| None),
            from_file: std::array::from_fn(|_| None),
        }
    }

    /// The value of `name`; a blank one counts as unset.
    pub(super) fn get(&self, name: &'static str) -> Option<&str> {
        self.raw(name).filter(|value| !value.is_empty())
    }

    /// The value of `name` as given, blank or not.
    pub(super) fn raw(&self, name: &'static str) -> Option<&str> {
        let index = VARIABLES.iter().position(|v| *v == name)?;
        self.values[index].as_deref()
    }

    /// Fills what the environment left unset from the settings file of
    /// `MCP_CONFIG_FILE`, if any.
    pub(super) fn read_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = self.get("MCP_CONFIG_FILE").map(PathBuf::from) else {
            return Ok(());
        };
        #[cfg(feature = "config-file")]
        {
            for (index, value, key) in file::read(&path)? {
                if self.values[index].as_deref().is_none_or(str::is_empty) {
                    self.values[index] = Some(value);
                    self.from_file[index] = Some(format!("{key} in {}", path.display()));
                }
            }
            Ok(())
        }
        #[cfg(not(feature = "config-file"))]
        Err(ConfigError::new(
            "MCP_CONFIG_FILE",
            format!(
                "cannot read {}: settings files need the `config-file` feature",
                path.display()
            ),
        ))
    }

    /// `error`, saying which file key the faulty value came from.
    pub(super) fn attribute(&self, error: ConfigError) -> ConfigError {
        let source = VARIABLES
            .iter()
            .position(|v| *v == error.setting())
            .and_then(|index| self.from_file[index].as_deref());
        match source {
            Some(source) => ConfigError::new(
                error.setting().to_owned(),
                format!("{} (from {source})", error.message()),
            ),
            None => error,
        }
    }
}

impl WardenConfig {
    /// Loads the settings from the process environment: every `MCP_*`
    /// variable, and the unprefixed ones of [`VARIABLES`]
    /// (`RATE_LIMIT_WINDOW_MS`, `RATE_LIMIT_MAX_REQUESTS`).
    ///
    /// # Errors
    ///
    /// The first invalid setting, by variable name. A variable whose value
    /// is not UTF-8 is invalid.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut pairs = Vec::new();
        for (key, value) in std::env::vars_os() {
            let Some(key) = key.to_str() else {
                let key = key.to_string_lossy();
                if key.starts_with("MCP_") {
                    return Err(unknown_setting(&key, VARIABLES.iter().copied()));
                }
                continue;
            };
            // `MCP_*`, and the two unprefixed `RATE_LIMIT_*` variables.
            if !key.starts_with("MCP_") && !VARIABLES.contains(&key) {
                continue;
            }
            let value = value
                .into_string()
                .map_err(|_| ConfigError::new(key.to_owned(), "the value is not valid UTF-8"))?;
            pairs.push((key.to_owned(), value));
        }
        Self::from_vars(pairs)
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
        let mut table = Vars::new();
        for (key, value) in vars {
            let key = key.as_ref();
            if let Some(index) = VARIABLES.iter().position(|v| *v == key) {
                // Kept even when blank: a list set to nothing is refused,
                // while any other blank variable counts as unset.
                table.values[index] = Some(value.as_ref().trim().to_owned());
            } else if key.starts_with("MCP_") {
                // A typo (`MCP_ENV`) must not silently leave a default in
                // place, least of all the development environment.
                return Err(unknown_setting(key, VARIABLES.iter().copied()));
            }
        }
        table.read_file()?;
        Self::load(&table).map_err(|e| table.attribute(e))
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
        Self::from_settings(file::parse(text, "the TOML text")?)
    }

    #[cfg(feature = "config-file")]
    pub(super) fn from_settings(settings: Vec<file::Setting>) -> Result<Self, ConfigError> {
        let mut table = Vars::new();
        for (index, value, key) in settings {
            table.values[index] = Some(value);
            table.from_file[index] = Some(key);
        }
        Self::load(&table).map_err(|e| table.attribute(e))
    }
}

/// The error for an environment variable nobody reads, naming the known
/// one closest to it: `unknown setting MCP_ENV; did you mean
/// MCP_ENVIRONMENT?`. Settings-file keys use the same [`closest`].
fn unknown_setting<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> ConfigError {
    let message = match closest(name, known) {
        Some(near) => format!("unknown setting {name}; did you mean {near}?"),
        None => format!("unknown setting {name}"),
    };
    ConfigError::new(name.to_owned(), message)
}
