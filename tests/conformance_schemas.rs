//! Every schema in SpiceDB's own test configs (../shared/conformance) and in
//! schema-examples/ compiles and round-trips through the printer. The shared
//! data is optional: without it the SpiceDB part skips with a message.

mod common;

use std::path::{Path, PathBuf};

use trellis::validationfile;

/// Validation files whose schema SpiceDB's loader must refuse (conformance
/// README). Its other refusals (`just_rels`, `repeated_relationship`, ...) are about
/// relationships, which the engine checks.
const EXPECTED_TO_FAIL: &[&str] = &[
    "validationfile/schema_and_schemafile.yaml",
    "validationfile/loader_using_invalid_schemafile.yaml",
    "validationfile/loader_using_non-local_schemafile.yaml",
    "validationfile/loader_using_missing_schemafile.yaml",
    "validationfile/legacy.yaml",
    "validationfile/invalid_caveat.yaml",
];

fn yaml_files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().and_then(|e| e.to_str()) == Some("yaml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Loads a validation file and, when it has a schema, round-trips it.
fn check_file(path: &Path) -> Result<bool, String> {
    let loaded = validationfile::load(path).map_err(|e| e.to_string())?;
    if loaded.schema.trim().is_empty() {
        return Ok(false);
    }
    let label = path.display().to_string();
    trellis::schema::compile(&loaded.schema).map_err(|e| e.render(&label, &loaded.schema))?;
    common::assert_round_trips(&label, &loaded.schema);
    Ok(true)
}

#[test]
fn spicedb_testconfig_schemas_compile_and_round_trip() {
    let Some(root) = common::shared_testconfigs() else {
        return;
    };
    let mut compiled = 0;
    let mut failures = Vec::new();
    for path in yaml_files_below(&root) {
        let relative = path
            .strip_prefix(&root)
            .expect("below root")
            .to_string_lossy()
            .to_string();
        if relative.starts_with("steelthread/results/") || relative == "steelthread/manifest.yaml" {
            continue;
        }
        let expected_failure = EXPECTED_TO_FAIL.contains(&relative.as_str());
        match (check_file(&path), expected_failure) {
            (Ok(true), false) => compiled += 1,
            (Ok(false), false) | (Err(_), true) => {}
            (Ok(_), true) => failures.push(format!("{relative}: expected to fail, but loaded")),
            (Err(e), false) => failures.push(format!("{relative}: {e}")),
        }
    }
    println!("{compiled} SpiceDB test-config schemas compiled and round-tripped");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        compiled >= 73,
        "expected at least the 73 test configs, compiled {compiled}"
    );
}

#[test]
fn schema_examples_compile_and_round_trip() {
    let dir = common::repo().join("schema-examples");
    let files = common::files_with_extension(&dir, "yaml");
    assert!(files.len() >= 8, "expected at least eight schema examples");
    for path in files {
        let loaded = validationfile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            check_file(&path).unwrap_or_else(|e| panic!("{e}")),
            "{} has no schema",
            path.display()
        );
        let assertions = loaded.file.assertions.unwrap_or_default();
        let count = assertions.assert_true.len()
            + assertions.assert_false.len()
            + assertions.assert_caveated.len();
        assert!(
            count >= 10,
            "{} has {count} assertions, expected at least 10",
            path.display()
        );
        assert!(!assertions.assert_true.is_empty() && !assertions.assert_false.is_empty());
    }
}
