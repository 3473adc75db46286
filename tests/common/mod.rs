//! Helpers shared by the integration tests: where the shared conformance data
//! lives, and how to skip cleanly when it is absent.

#![allow(dead_code)]

pub mod cockroach;
pub mod matrix;
pub mod postgres;
pub mod server;

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/conformance/spicedb-testconfigs`, if it is there.
pub fn shared_testconfigs() -> Option<PathBuf> {
    let dir = repo().join("../shared/conformance/spicedb-testconfigs");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; clone the project with ../shared beside it to run the SpiceDB conformance data",
            dir.display()
        );
        None
    }
}

/// Files directly in `dir` with the given extension, sorted.
pub fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(extension))
        .collect();
    files.sort();
    files
}

/// Asserts that printing a compiled schema and compiling the text again gives
/// the same schema and the same text.
pub fn assert_round_trips(label: &str, source: &str) -> trellis::schema::CompiledSchema {
    let compiled = trellis::schema::compile(source)
        .unwrap_or_else(|e| panic!("{label} does not compile:\n{}", e.render(label, source)));
    let printed = trellis::schema::format(&compiled);
    let again = trellis::schema::compile(&printed).unwrap_or_else(|e| {
        panic!(
            "{label}: printed form does not compile:\n{}",
            e.render(label, &printed)
        )
    });
    assert!(
        compiled == again,
        "{label}: printed form compiles to a different schema:\n{printed}"
    );
    assert_eq!(
        printed,
        trellis::schema::format(&again),
        "{label}: printing is not stable"
    );
    compiled
}
