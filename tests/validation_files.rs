//! Runs validation files through the engine in-process: every schema
//! example, and every SpiceDB test config in ../shared/conformance (skipped
//! with a message when absent). Each assertion is checked with
//! CheckPermission and CheckBulkPermissions, as SpiceDB's harness does.
//! Every file is expected to pass; `EXPECTED_FAILURES` is where a file that
//! cannot yet would go, with its reason.

mod common;

use std::path::Path;

use trellis::validationfile;

/// Files expected to fail, each for a reason named beside it. A listed
/// file that passes fails the test, so the list cannot go stale.
const EXPECTED_FAILURES: &[&str] = &[];

async fn run(path: &Path) -> Result<usize, String> {
    let loaded = validationfile::load(path).map_err(|e| e.to_string())?;
    let report = trellis::server::validate_in_memory(&loaded).await;
    if report.failures.is_empty() {
        Ok(report.assertions_passed)
    } else {
        let lines: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
        Err(lines.join("\n"))
    }
}

/// Runs every `.yaml` directly in `dir`; returns (passed, total) and the
/// unexpected outcomes.
async fn run_folder(dir: &Path) -> (usize, usize, Vec<String>) {
    let mut passed = 0;
    let mut problems = Vec::new();
    let files = common::files_with_extension(dir, "yaml");
    for path in &files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let expected_failure = EXPECTED_FAILURES.contains(&name);
        match (run(path).await, expected_failure) {
            (Ok(_), false) => passed += 1,
            (Err(_), true) => {}
            (Ok(_), true) => problems.push(format!(
                "{name} passes now: remove it from EXPECTED_FAILURES"
            )),
            (Err(e), false) => problems.push(e),
        }
    }
    (passed, files.len(), problems)
}

#[tokio::test]
async fn schema_examples_pass() {
    let (passed, total, problems) = run_folder(&common::repo().join("schema-examples")).await;
    println!(
        "schema examples: {passed}/{total} pass ({} expected to fail)",
        total - passed
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn spicedb_test_configs_pass() {
    let Some(root) = common::shared_testconfigs() else {
        return;
    };
    let (passed, total, problems) = run_folder(&root).await;
    println!(
        "SpiceDB test configs: {passed}/{total} pass ({} expected to fail)",
        total - passed
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(total >= 73);
}
