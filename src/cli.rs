//! Command-line commands: `schema check` and `schema fmt`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use trellis::schema;
use trellis::validationfile;

/// Trellis: a Zanzibar-style permission service, compatible with SpiceDB.
#[derive(Debug, Parser)]
#[command(name = "trellis", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with schema files.
    #[command(subcommand)]
    Schema(SchemaCommand),
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Compile schema files (`.zed`, or validation `.yaml` files) and report
    /// every error with its position. Exits 1 if any file has errors.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a schema in canonical form (SpiceDB's ReadSchema format).
    Fmt { file: PathBuf },
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Schema(SchemaCommand::Check { files }) => check(&files),
        Command::Schema(SchemaCommand::Fmt { file }) => fmt(&file),
    }
}

/// A schema's text and the name to report errors under.
fn read_schema(path: &Path) -> anyhow::Result<(String, String)> {
    if validationfile::is_validation_file(path) {
        let loaded = validationfile::load(path)?;
        let label = if loaded.schema_path == path {
            format!("{} (schema block)", path.display())
        } else {
            loaded.schema_path.display().to_string()
        };
        return Ok((loaded.schema, label));
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok((text, path.display().to_string()))
}

fn check(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut failed = 0;
    for path in files {
        let (source, label) = read_schema(path)?;
        match schema::compile(&source) {
            Ok(compiled) => println!(
                "{label}: ok ({} definitions, {} caveats)",
                compiled.definitions().len(),
                compiled.caveats().len()
            ),
            Err(errors) => {
                failed += 1;
                eprint!("{}", errors.render(&label, &source));
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} files have errors", files.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt(path: &Path) -> anyhow::Result<ExitCode> {
    let (source, label) = read_schema(path)?;
    match schema::compile(&source) {
        Ok(compiled) => {
            println!("{}", schema::format(&compiled));
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprint!("{}", errors.render(&label, &source));
            Ok(ExitCode::FAILURE)
        }
    }
}
