//! The process's log subscriber: a level or `EnvFilter` directive
//! (`--log-level`, SpiceDB's name) and text or JSON lines on stderr
//! (`--log-format`). Events carry the fields of the spans they happen in, so
//! a JSON line of a call has its method and request id.

use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (coloured when stderr is a terminal).
    #[default]
    Text,
    /// One JSON object per event, with its span fields.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" | "console" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format `{other}`; available: text, json"
            )),
        }
    }
}

/// A log level or filter that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid --log-level `{directive}`: {reason}")]
pub struct LogSettingsError {
    directive: String,
    reason: String,
}

/// What `--log-level` and `--log-format` chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `trace`, `debug`, `info`, `warn`, `error`, or an `EnvFilter`
    /// directive such as `info,trellis::datastore=debug`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl LogSettings {
    /// The filter the level names; SpiceDB's level names are EnvFilter's.
    pub fn filter(&self) -> Result<EnvFilter, LogSettingsError> {
        EnvFilter::builder()
            .parse(&self.level)
            .map_err(|e| LogSettingsError {
                directive: self.level.clone(),
                reason: e.to_string(),
            })
    }
}

/// Installs the process's subscriber (stderr). Call once, before the first
/// event worth keeping; a second call (tests) leaves the first in place.
pub fn init(settings: &LogSettings) -> Result<(), LogSettingsError> {
    let filter = settings.filter()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Already installed (a second server in one process) is not an error.
    let _ = match settings.format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_parse_and_nonsense_does_not() {
        for level in [
            "trace",
            "debug",
            "info",
            "warn",
            "error",
            "info,trellis::datastore=debug",
        ] {
            let settings = LogSettings {
                level: level.into(),
                format: LogFormat::Json,
            };
            assert!(settings.filter().is_ok(), "{level}");
        }
        let bad = LogSettings {
            level: "info,trellis=loud".into(),
            format: LogFormat::Text,
        };
        let error = bad.filter().expect_err("not a level").to_string();
        assert!(error.contains("--log-level"), "{error}");
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
