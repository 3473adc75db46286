//! `trellis serve --config FILE`: a TOML file whose keys are `serve`'s flag
//! names (without `--`) and whose values become those flags' defaults, so
//! precedence is flags > `TRELLIS_*` environment > file > built-in defaults
//! (clap already ranks the first two above a default). Generic over the
//! command's arguments: a flag added to `serve` is a config key at once.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgMatches, Command, CommandFactory, FromArgMatches};

/// The subcommand a config file configures.
const SERVE: &str = "serve";
/// The `serve` argument naming the config file (clap's id of its field).
const CONFIG_ARG: &str = "config";

/// Why a config file could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("reading the config file {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing the config file {}", path.display())]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error(
        "unknown key `{key}` in the config file {}: not a `trellis serve` flag",
        path.display()
    )]
    UnknownKey { key: String, path: PathBuf },
    #[error(
        "key `{key}` in the config file {}: expected a string, number, boolean or array of them",
        path.display()
    )]
    BadValue { key: String, path: PathBuf },
}

/// Parses `args` into `C`, reading `serve --config FILE` (or
/// `TRELLIS_CONFIG`) first; exits as clap does on a bad command line.
pub fn parse<C: CommandFactory + FromArgMatches>(
    args: Vec<OsString>,
) -> Result<C, ConfigFileError> {
    let command = C::command();
    let matches = command
        .clone()
        .try_get_matches_from(&args)
        .unwrap_or_else(|e| e.exit());
    let Some(path) = config_path(&matches) else {
        return Ok(from_matches(&matches));
    };
    let command = with_file_defaults(command, &path)?;
    let matches = command
        .try_get_matches_from(&args)
        .unwrap_or_else(|e| e.exit());
    Ok(from_matches(&matches))
}

fn from_matches<C: FromArgMatches>(matches: &ArgMatches) -> C {
    C::from_arg_matches(matches).unwrap_or_else(|e| e.exit())
}

/// The config file `serve` was given, if any.
fn config_path(matches: &ArgMatches) -> Option<PathBuf> {
    match matches.subcommand() {
        Some((SERVE, serve)) => serve.get_one::<PathBuf>(CONFIG_ARG).cloned(),
        _ => None,
    }
}

/// `command` with the file's values as `serve`'s defaults.
pub fn with_file_defaults(command: Command, path: &Path) -> Result<Command, ConfigFileError> {
    let table = read_table(path)?;
    let serve = command
        .find_subcommand(SERVE)
        .expect("the CLI has a serve command")
        .clone();
    let mut defaults = Vec::new();
    for (key, value) in table {
        let arg = file_settable_arg(&serve, &key).ok_or_else(|| ConfigFileError::UnknownKey {
            key: key.clone(),
            path: path.to_path_buf(),
        })?;
        let values = flag_values(&value).ok_or_else(|| ConfigFileError::BadValue {
            key: key.clone(),
            path: path.to_path_buf(),
        })?;
        defaults.push((arg.get_id().clone(), values));
    }
    Ok(command.mut_subcommand(SERVE, |mut serve| {
        for (id, values) in defaults {
            serve = serve.mut_arg(id, |arg| {
                // A secret set in the file must not show up in `--help`.
                let secret = arg.is_hide_env_values_set();
                arg.default_values(values).hide_default_value(secret)
            });
        }
        serve
    }))
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|source| ConfigFileError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
}

/// The `serve` flag named `key` (its long name), unless it is one a file
/// cannot set (`config` itself, help and version).
fn file_settable_arg<'a>(serve: &'a Command, key: &str) -> Option<&'a Arg> {
    serve
        .get_arguments()
        .filter(|arg| is_file_settable(arg))
        .find(|arg| arg.get_long() == Some(key))
}

/// Whether a file may set this argument: every `serve` flag but `--config`
/// and clap's own.
pub fn is_file_settable(arg: &Arg) -> bool {
    let id = arg.get_id().as_str();
    arg.get_long().is_some() && !matches!(id, CONFIG_ARG | "help" | "version")
}

/// A TOML value as the flag's textual values (an array is a repeated flag).
fn flag_values(value: &toml::Value) -> Option<Vec<String>> {
    match value {
        toml::Value::Array(items) => items.iter().map(scalar_text).collect(),
        scalar => scalar_text(scalar).map(|text| vec![text]),
    }
}

fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(x) => Some(x.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

#[cfg(test)]
mod tests;
