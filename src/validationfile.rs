//! SpiceDB's validation-file format (YAML with `schema` or `schemaFile`,
//! `relationships`, `assertions`, `validation`): loading and shape checks.
//! Running the assertions belongs to the engine; this module only reads.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A validation file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationFile {
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default, rename = "schemaFile")]
    pub schema_file: Option<String>,
    #[serde(default)]
    pub relationships: Option<String>,
    #[serde(default)]
    pub assertions: Option<Assertions>,
    #[serde(default)]
    pub validation: Option<serde_yaml_ng::Value>,
    /// Deprecated keys, accepted by the YAML reader only to be refused clearly.
    #[serde(default)]
    pub namespace_configs: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub validation_tuples: Option<serde_yaml_ng::Value>,
}

/// The three assertion lists; each item is `resource#perm@subject[ with {json}]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assertions {
    #[serde(default, rename = "assertTrue")]
    pub assert_true: Vec<String>,
    #[serde(default, rename = "assertCaveated")]
    pub assert_caveated: Vec<String>,
    #[serde(default, rename = "assertFalse")]
    pub assert_false: Vec<String>,
}

/// Why a validation file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid validation file: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Shape { path: PathBuf, message: String },
}

/// A loaded file with its schema text resolved.
#[derive(Debug, Clone)]
pub struct LoadedFile {
    pub path: PathBuf,
    pub file: ValidationFile,
    /// The schema text, inline or from `schemaFile`; empty when neither is given.
    pub schema: String,
    /// Where the schema text came from (the YAML itself or the schema file).
    pub schema_path: PathBuf,
}

/// Reads a validation file and the schema file it names, refusing the
/// deprecated keys and a `schemaFile` outside the file's folder.
pub fn load(path: &Path) -> Result<LoadedFile, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file: ValidationFile = serde_yaml_ng::from_str(&text).map_err(|e| LoadError::Yaml {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let shape = |message: &str| LoadError::Shape {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    if file.namespace_configs.is_some() || file.validation_tuples.is_some() {
        return Err(shape(
            "`namespace_configs` and `validation_tuples` are no longer supported: relationships must be specified in `relationships`",
        ));
    }
    let (schema, schema_path) = match (&file.schema, &file.schema_file) {
        (Some(_), Some(_)) => {
            return Err(shape("only one of `schema` and `schemaFile` may be given"));
        }
        (Some(inline), None) => (inline.clone(), path.to_path_buf()),
        (None, Some(relative)) => {
            let schema_path = resolve_schema_file(path, relative).ok_or_else(|| {
                shape("`schemaFile` must be a relative path inside the validation file's folder")
            })?;
            let schema =
                std::fs::read_to_string(&schema_path).map_err(|source| LoadError::Read {
                    path: schema_path.clone(),
                    source,
                })?;
            (schema, schema_path)
        }
        (None, None) => (String::new(), path.to_path_buf()),
    };
    Ok(LoadedFile {
        path: path.to_path_buf(),
        file,
        schema,
        schema_path,
    })
}

/// `relative` joined to the YAML's folder, provided it stays inside it.
fn resolve_schema_file(yaml: &Path, relative: &str) -> Option<PathBuf> {
    let relative = Path::new(relative);
    let escapes = relative.is_absolute()
        || relative
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
    if escapes {
        return None;
    }
    Some(yaml.parent().unwrap_or(Path::new(".")).join(relative))
}

/// Whether a path looks like a validation file rather than a bare schema.
pub fn is_validation_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}
