//! The process's log subscriber: a level or `EnvFilter` directive
//! (`--log-level`, SpiceDB's name) and text or JSON lines on stderr
//! (`--log-format`), plus OTLP span export with `--otel-endpoint` when built
//! with the `otel` feature. Events carry the fields of the spans they happen
//! in, so a JSON line of a call has its method and request id.

use std::str::FromStr;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

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

/// Why logging (or span export) could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogSettingsError {
    #[error("invalid --log-level `{directive}`: {reason}")]
    Level { directive: String, reason: String },
    #[error(
        "--otel-endpoint is set but this build has no OTLP export: build with `--features otel`"
    )]
    NoOtel,
    #[cfg(feature = "otel")]
    #[error(transparent)]
    Otel(#[from] super::otel::OtelError),
}

/// What `--log-level` and `--log-format` chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `trace`, `debug`, `info`, `warn`, `error`, or an `EnvFilter`
    /// directive such as `info,trellis::datastore=debug`.
    pub level: String,
    pub format: LogFormat,
    /// OTLP/gRPC collector spans are exported to (`--otel-endpoint`,
    /// e.g. `http://collector:4317`); empty: none.
    pub otel_endpoint: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
            otel_endpoint: String::new(),
        }
    }
}

impl LogSettings {
    /// The filter the level names; SpiceDB's level names are EnvFilter's.
    pub fn filter(&self) -> Result<EnvFilter, LogSettingsError> {
        EnvFilter::builder()
            .parse(&self.level)
            .map_err(|e| LogSettingsError::Level {
                directive: self.level.clone(),
                reason: e.to_string(),
            })
    }
}

/// Keeps span export running until dropped (then flushes it); holds
/// nothing without `--otel-endpoint`.
pub struct TelemetryGuard {
    #[cfg(feature = "otel")]
    _otel: Option<super::otel::OtelGuard>,
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the process's subscriber (stderr, and OTLP export if asked).
/// Call once, inside the runtime, before the first event worth keeping; a
/// second call (tests) leaves the first in place.
pub fn init(settings: &LogSettings) -> Result<TelemetryGuard, LogSettingsError> {
    let filter = settings.filter()?;
    let stderr = match settings.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let mut layers: Vec<BoxedLayer> = vec![stderr];
    let guard = export_layer(settings, &mut layers)?;
    // Already installed (a second server in one process) is not an error.
    let _ = tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init();
    Ok(guard)
}

#[cfg(feature = "otel")]
fn export_layer(
    settings: &LogSettings,
    layers: &mut Vec<BoxedLayer>,
) -> Result<TelemetryGuard, LogSettingsError> {
    if settings.otel_endpoint.is_empty() {
        return Ok(TelemetryGuard { _otel: None });
    }
    let (layer, guard) = super::otel::layer(&settings.otel_endpoint)?;
    layers.push(layer);
    Ok(TelemetryGuard { _otel: Some(guard) })
}

#[cfg(not(feature = "otel"))]
fn export_layer(
    settings: &LogSettings,
    _layers: &mut Vec<BoxedLayer>,
) -> Result<TelemetryGuard, LogSettingsError> {
    if settings.otel_endpoint.is_empty() {
        Ok(TelemetryGuard {})
    } else {
        Err(LogSettingsError::NoOtel)
    }
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
                ..LogSettings::default()
            };
            assert!(settings.filter().is_ok(), "{level}");
        }
        let bad = LogSettings {
            level: "info,trellis=loud".into(),
            ..LogSettings::default()
        };
        let error = bad.filter().expect_err("not a level").to_string();
        assert!(error.contains("--log-level"), "{error}");
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert!("xml".parse::<LogFormat>().is_err());
    }

    #[cfg(not(feature = "otel"))]
    #[test]
    fn an_otel_endpoint_needs_the_otel_feature() {
        let settings = LogSettings {
            otel_endpoint: "http://localhost:4317".into(),
            ..LogSettings::default()
        };
        let error = init(&settings).err().expect("refused").to_string();
        assert!(error.contains("--features otel"), "{error}");
    }
}
