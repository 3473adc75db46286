//! Keeps ARCHITECTURE.md's invariants about who may see what true, by
//! reading the source: wire types (tonic, prost, the generated protos)
//! live only at the transports; the engine, the use cases, the vocabulary
//! and the storage port never see them; only the SQL datastore sees its
//! database driver; and the schema compiler depends on nothing else in the
//! crate.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `src/`, as a path relative to `src/`.
fn sources() -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("src is readable")
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).expect("under src");
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let root = repo().join("src");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join("src").join(relative)).expect("source is readable")
}

/// The files (outside `allowed`) whose code mentions one of `needles`.
fn offenders(needles: &[&str], allowed: impl Fn(&str) -> bool) -> Vec<String> {
    sources()
        .into_iter()
        .filter(|file| !allowed(file))
        .filter_map(|file| {
            let text = read(&file);
            let hits: Vec<&str> = needles
                .iter()
                .copied()
                .filter(|needle| {
                    text.lines()
                        .filter(|line| !line.trim_start().starts_with("//"))
                        .any(|line| line.contains(needle))
                })
                .collect();
            (!hits.is_empty()).then(|| format!("{file}: {}", hits.join(", ")))
        })
        .collect()
}

#[test]
fn wire_types_stay_at_the_transports() {
    let transports = |file: &str| {
        file.starts_with("api/")
            || file.starts_with("loadgen/")
            || file.starts_with("gateway/")
            || file.starts_with("client/")
            || file.starts_with("dispatch/remote/")
            || file == "dispatch/server.rs"
            || file == "server.rs"
            || file == "metrics.rs"
    };
    let found = offenders(
        &["tonic::", "prost::", "api::proto", "remote::proto"],
        transports,
    );
    assert!(
        found.is_empty(),
        "wire types outside api/, loadgen/, gateway/, client/, dispatch/remote/, dispatch/server.rs and server.rs:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_sql_datastore_sees_its_driver() {
    let found = offenders(&["tokio_postgres", "deadpool_postgres"], |file| {
        file.starts_with("datastore/postgres/")
    });
    assert!(
        found.is_empty(),
        "database driver outside datastore/postgres/:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_engine_never_sees_caches_peers_or_databases() {
    let found = offenders(
        &[
            "dispatch::caching",
            "dispatch::singleflight",
            "dispatch::remote",
            "datastore::postgres",
            "datastore::memory",
            "moka::",
        ],
        |file| !file.starts_with("graph/"),
    );
    assert!(
        found.is_empty(),
        "graph/ reaches past the Dispatcher and Reader traits:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_schema_compiler_depends_on_nothing_else_in_the_crate() {
    let others = [
        "crate::api",
        "crate::caveats",
        "crate::datastore",
        "crate::dispatch",
        "crate::graph",
        "crate::service",
        "crate::server",
        "crate::loadgen",
    ];
    let found = offenders(&others, |file| !file.starts_with("schema/"));
    assert!(
        found.is_empty(),
        "schema/ depends on other modules:\n{}",
        found.join("\n")
    );
}
