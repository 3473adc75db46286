//! The compiler against its corpus: `tests/schema/valid/*.zed` must compile,
//! print as their golden `.expected` files (regenerate with
//! `UPDATE_GOLDEN=1 cargo test --test schema_corpus`) and round-trip;
//! `tests/schema/invalid/*.zed` must fail with the kind and position their
//! first line states; and accept/reject must agree with real SpiceDB's
//! recorded WriteSchema verdicts (`tests/schema/spicedb-verdicts.json`,
//! recorded by `tests/oracle/record-schema-verdicts.sh`).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

fn corpus() -> std::path::PathBuf {
    common::repo().join("tests/schema")
}

#[test]
fn valid_schemas_compile_print_as_golden_and_round_trip() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let files = common::files_with_extension(&corpus().join("valid"), "zed");
    assert!(files.len() >= 30, "expected at least 30 valid schemas");
    let mut mismatches = Vec::new();
    for path in &files {
        let source = std::fs::read_to_string(path).expect("readable schema");
        let label = path.display().to_string();
        let compiled = common::assert_round_trips(&label, &source);
        let printed = trellis::schema::format(&compiled) + "\n";
        let golden = path.with_extension("expected");
        if update {
            std::fs::write(&golden, &printed).expect("writable golden file");
        } else {
            let expected = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
                panic!("{} is missing; run with UPDATE_GOLDEN=1", golden.display())
            });
            if expected != printed {
                mismatches.push(label);
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "printed form differs from golden for: {mismatches:?}"
    );
}

/// `// expect: KIND at LINE:COL` on the first line of an invalid schema.
fn expectation(path: &Path, source: &str) -> (String, usize, usize) {
    let first = source.lines().next().unwrap_or_default();
    let rest = first.strip_prefix("// expect: ").unwrap_or_else(|| {
        panic!(
            "{}: first line must be `// expect: KIND at L:C`",
            path.display()
        )
    });
    let (kind, position) = rest.split_once(" at ").expect("`KIND at L:C`");
    let (line, col) = position.trim().split_once(':').expect("`L:C`");
    (
        kind.to_string(),
        line.parse().expect("line number"),
        col.parse().expect("column number"),
    )
}

#[test]
fn invalid_schemas_fail_with_the_expected_kind_and_position() {
    let files = common::files_with_extension(&corpus().join("invalid"), "zed");
    assert!(files.len() >= 40, "expected at least 40 invalid schemas");
    let mut failures = Vec::new();
    for path in &files {
        let source = std::fs::read_to_string(path).expect("readable schema");
        let (kind, line, col) = expectation(path, &source);
        match trellis::schema::compile(&source) {
            Ok(_) => failures.push(format!("{}: accepted, expected {kind}", path.display())),
            Err(errors) => {
                let first = errors.first();
                let got = (first.kind.name().to_string(), first.line_col(&source));
                if got != (kind.clone(), (line, col)) {
                    failures.push(format!(
                        "{}: expected {kind} at {line}:{col}, got {} at {}:{} ({})",
                        path.display(),
                        got.0,
                        got.1.0,
                        got.1.1,
                        first.message
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[derive(Debug, Deserialize)]
struct Verdict {
    accepted: bool,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    read_schema: Option<String>,
}

fn verdicts() -> BTreeMap<String, Verdict> {
    let text =
        std::fs::read_to_string(corpus().join("spicedb-verdicts.json")).expect("recorded verdicts");
    serde_yaml_ng::from_str(&text).expect("verdicts are JSON")
}

#[test]
fn accept_and_reject_agree_with_real_spicedb() {
    let verdicts = verdicts();
    assert!(
        verdicts.len() >= 70,
        "expected verdicts for the whole corpus"
    );
    let mut disagreements = Vec::new();
    for (file, verdict) in &verdicts {
        let source =
            std::fs::read_to_string(corpus().join(file)).expect("corpus file named in verdicts");
        let ours = trellis::schema::compile(&source);
        if ours.is_ok() != verdict.accepted {
            disagreements.push(format!(
                "{file}: spicedb accepted={}, trellis accepted={}",
                verdict.accepted,
                ours.is_ok()
            ));
            continue;
        }
        // SpiceDB reports parse errors as INVALID_ARGUMENT and type errors as
        // FAILED_PRECONDITION; the kind decides which one Trellis sends.
        // SpiceDB answers UNKNOWN for permission cycles (a plain Go error);
        // Trellis sends the type error they are, so there is nothing to match.
        if let (Err(errors), Some(code)) =
            (&ours, verdict.code.as_ref().filter(|c| *c != "UNKNOWN"))
        {
            let ours = if errors.first().kind.is_parse_error() {
                "INVALID_ARGUMENT"
            } else {
                "FAILED_PRECONDITION"
            };
            if ours != code {
                disagreements.push(format!(
                    "{file}: spicedb code {code}, trellis {ours} ({})",
                    errors.first().kind
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

/// Caveat bodies are the one place Trellis prints what was written, where
/// SpiceDB re-prints CEL from its syntax tree; everything else must match
/// SpiceDB's ReadSchema text exactly.
#[test]
fn printed_text_matches_spicedb_read_schema() {
    let mut differences = Vec::new();
    for (file, verdict) in verdicts() {
        let Some(expected) = verdict.read_schema else {
            continue;
        };
        let source = std::fs::read_to_string(corpus().join(&file)).expect("corpus file");
        let Ok(compiled) = trellis::schema::compile(&source) else {
            continue;
        };
        if !compiled.caveats().is_empty() {
            continue;
        }
        let printed = trellis::schema::format(&compiled);
        if printed.trim_end() != expected.trim_end() {
            differences.push(format!(
                "{file}:\n--- spicedb\n{expected}\n--- trellis\n{printed}"
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
}
