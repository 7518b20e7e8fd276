//! The values of the known settings, read from the environment (or pairs)
//! and the settings file, and the refusal of an `MCP_*` name nobody reads,
//! with the closest known one as a suggestion.

use std::path::PathBuf;

#[cfg(feature = "config-file")]
use super::file;
use super::settings::VARIABLES;
use super::suggest::closest;
use crate::error::ConfigError;

/// Every known setting's value, by its index in `names` (the perimeter's
/// [`VARIABLES`], then the application's): the environment (or the pairs
/// given) first, then the settings file.
pub(super) struct Vars {
    pub(super) names: Vec<&'static str>,
    pub(super) values: Vec<Option<String>>,
    /// For a value read from the settings file: its key as written there.
    pub(super) from_file: Vec<Option<String>>,
}

impl Vars {
    /// No values yet; the known names are [`VARIABLES`] and `also`.
    pub(super) fn new(also: &[&'static str]) -> Self {
        let mut names = VARIABLES.to_vec();
        for name in also {
            if !names.contains(name) {
                names.push(name);
            }
        }
        Self {
            values: vec![None; names.len()],
            from_file: vec![None; names.len()],
            names,
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|v| *v == name)
    }

    /// The value of `name`; a blank one counts as unset.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.raw(name).filter(|value| !value.is_empty())
    }

    /// The value of `name` as given, blank or not.
    pub(super) fn raw(&self, name: &str) -> Option<&str> {
        self.values[self.index(name)?].as_deref()
    }

    /// Fills what the environment left unset from the settings file of
    /// `MCP_CONFIG_FILE`, if any.
    pub(super) fn read_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = self.get("MCP_CONFIG_FILE").map(PathBuf::from) else {
            return Ok(());
        };
        #[cfg(feature = "config-file")]
        {
            for (index, value, key) in file::read(&path, &self.names)? {
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
        let source = self
            .index(error.setting())
            .and_then(|index| self.from_file[index].as_deref());
        match source {
            Some(source) => ConfigError::new(
                error.setting().to_owned(),
                format!("{} (from {source})", error.message()),
            ),
            None => error,
        }
    }

    /// The pairs `vars`, then the settings file they name; an `MCP_*` name
    /// that is not known is refused.
    pub(super) fn from_pairs<I, K, V>(vars: I, also: &[&'static str]) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut table = Self::new(also);
        for (key, value) in vars {
            let key = key.as_ref();
            if let Some(index) = table.index(key) {
                // Kept even when blank: a list set to nothing is refused,
                // while any other blank variable counts as unset.
                table.values[index] = Some(value.as_ref().trim().to_owned());
            } else if key.starts_with("MCP_") {
                // A typo (`MCP_ENV`) must not silently leave a default in
                // place, least of all the development environment.
                return Err(unknown_setting(key, table.names.iter().copied()));
            }
        }
        table.read_file()?;
        Ok(table)
    }

    /// The pairs of the process environment: every `MCP_*` variable, and
    /// the unprefixed known ones.
    pub(super) fn env_pairs(also: &[&'static str]) -> Result<Vec<(String, String)>, ConfigError> {
        let known = |key: &str| VARIABLES.contains(&key) || also.contains(&key);
        let mut pairs = Vec::new();
        for (key, value) in std::env::vars_os() {
            let Some(key) = key.to_str() else {
                let key = key.to_string_lossy();
                if key.starts_with("MCP_") {
                    let names = VARIABLES.iter().chain(also).copied();
                    return Err(unknown_setting(&key, names));
                }
                continue;
            };
            // `MCP_*`, and the unprefixed known variables
            // (`RATE_LIMIT_WINDOW_MS`, `CIRCUIT_BREAKER_*`, ...).
            if !key.starts_with("MCP_") && !known(key) {
                continue;
            }
            let value = value
                .into_string()
                .map_err(|_| ConfigError::new(key.to_owned(), "the value is not valid UTF-8"))?;
            pairs.push((key.to_owned(), value));
        }
        Ok(pairs)
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
