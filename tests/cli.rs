//! `trellis schema check` and `trellis schema fmt` as a user runs them.

mod common;

use std::process::Command;

fn trellis(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(args)
        .current_dir(common::repo())
        .output()
        .expect("trellis runs")
}

#[test]
fn check_accepts_valid_files_and_validation_yaml() {
    let out = trellis(&[
        "schema",
        "check",
        "schema-examples/github.zed",
        "schema-examples/rbac.yaml",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("schema-examples/github.zed: ok"),
        "{stdout}"
    );
    assert!(stdout.contains("schema-examples/rbac.zed: ok"), "{stdout}");
}

#[test]
fn check_reports_file_line_column_source_and_caret() {
    let out = trellis(&[
        "schema",
        "check",
        "tests/schema/invalid/unknown_definition.zed",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("tests/schema/invalid/unknown_definition.zed:")
            && first.contains("error[unknown-definition]"),
        "{stderr}"
    );
    assert!(stderr.contains('^'), "{stderr}");
    assert!(stderr.contains("1 of 1 files have errors"), "{stderr}");
}

#[test]
fn fmt_prints_the_canonical_form() {
    let out = trellis(&["schema", "fmt", "tests/schema/valid/comments_block.zed"]);
    assert!(out.status.success());
    let expected =
        std::fs::read_to_string(common::repo().join("tests/schema/valid/comments_block.expected"))
            .expect("golden file");
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn missing_file_is_a_clear_error() {
    let out = trellis(&["schema", "check", "no/such/file.zed"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/file.zed"));
}

#[test]
fn cockroachdb_flags_are_checked_at_startup() {
    let out = trellis(&[
        "serve",
        "--datastore-engine",
        "cockroachdb",
        "--datastore-conn-uri",
        "postgresql://root@127.0.0.1:1/x",
        "--datastore-tx-overlap-strategy",
        "request",
        "--grpc-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not supported yet"), "{stderr}");

    let out = trellis(&[
        "datastore",
        "migrate",
        "head",
        "--datastore-engine",
        "cockroachdb",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--datastore-conn-uri is required"),
        "{stderr}"
    );
}

#[test]
fn serve_takes_the_dispatch_cache_flags() {
    let help = trellis(&["serve", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    for expected in [
        "--dispatch-cache-enabled",
        "TRELLIS_DISPATCH_CACHE_ENABLED",
        "--dispatch-cache-max-cost",
        "TRELLIS_DISPATCH_CACHE_MAX_COST",
        "[default: 30%]",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    // Refused while parsing, before anything is bound.
    let bad = trellis(&["serve", "--dispatch-cache-max-cost", "lots"]);
    assert!(!bad.status.success());
    let error = String::from_utf8_lossy(&bad.stderr);
    assert!(error.contains("invalid size `lots`"), "{error}");
}

#[test]
fn serve_takes_the_http_gateway_flags() {
    let help = trellis(&["serve", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    for expected in [
        "--http-enabled",
        "TRELLIS_HTTP_ENABLED",
        "--http-addr",
        "TRELLIS_HTTP_ADDR",
        "[default: :8443]",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    let bad = trellis(&["serve", "--http-enabled", "--http-addr", "nowhere"]);
    assert!(!bad.status.success());
    let error = String::from_utf8_lossy(&bad.stderr);
    assert!(error.contains("invalid address `nowhere`"), "{error}");
}

#[test]
fn serve_takes_dns_upstreams_and_refuses_malformed_ones() {
    let help = trellis(&["serve", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    for expected in [
        "dns:///NAME:PORT",
        "--dispatch-upstream-refresh-interval",
        "TRELLIS_DISPATCH_UPSTREAM_REFRESH_INTERVAL",
        "[default: 10s]",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    // Refused when the node is built, before anything is served.
    let bad = trellis(&[
        "serve",
        "--grpc-preshared-key",
        "k",
        "--grpc-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "",
        "--dispatch-upstream-addr",
        "dns:///peers-without-a-port",
    ]);
    assert!(!bad.status.success());
    let error = String::from_utf8_lossy(&bad.stderr);
    assert!(
        error.contains("invalid --dispatch-upstream-addr `dns:///peers-without-a-port`"),
        "{error}"
    );
}
