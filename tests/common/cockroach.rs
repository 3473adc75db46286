//! A CockroachDB for the tests of one binary, when the environment names
//! one: `TRELLIS_TEST_CRDB_URL`, a connection URI of an insecure cluster
//! (no TLS), e.g. `postgresql://root@127.0.0.1:26257/defaultdb?sslmode=disable`.
//! Each test gets a fresh database of its own. Without the variable the
//! tests that need it skip with a message (no CockroachDB can be installed
//! where Trellis is built; see README, "Datastores").

#![allow(dead_code)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use trellis::datastore::postgres::{CockroachSettings, PoolSettings, PostgresConfig};

/// The variable naming the cluster.
pub const URL_VARIABLE: &str = "TRELLIS_TEST_CRDB_URL";

static URL: OnceLock<Option<String>> = OnceLock::new();
static NEXT_DATABASE: AtomicUsize = AtomicUsize::new(0);

/// The cluster's URI, or `None` (after saying so once) when unset.
pub fn url() -> Option<&'static str> {
    URL.get_or_init(|| match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipping CockroachDB tests: set {URL_VARIABLE} to an insecure cluster's URI"
            );
            None
        }
    })
    .as_deref()
}

/// `uri` with its database replaced by `database` (URI or key=value form).
pub fn with_database(uri: &str, database: &str) -> String {
    let Some(scheme_end) = uri.find("://").map(|i| i + 3) else {
        // key=value: a later dbname overrides an earlier one.
        return format!("{uri} dbname={database}");
    };
    let (head, query) = match uri.find('?') {
        Some(q) => (&uri[..q], &uri[q..]),
        None => (uri, ""),
    };
    let authority_end = head[scheme_end..]
        .find('/')
        .map_or(head.len(), |i| scheme_end + i);
    format!("{}/{database}{query}", &head[..authority_end])
}

/// Creates an empty database and returns a CockroachDB datastore config
/// for it (small pools: many tests run at once) with `settings`.
pub async fn fresh_database(settings: CockroachSettings) -> PostgresConfig {
    let url = url().expect("checked by `available`");
    let name = format!(
        "trellis_t{}_{}",
        std::process::id(),
        NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
    );
    super::postgres::create_database(url, &name).await;
    let small = |max_open| PoolSettings {
        max_open,
        max_lifetime: Duration::from_secs(1800),
        max_idle: Duration::from_secs(1800),
    };
    PostgresConfig {
        uri: with_database(url, &name),
        read_pool: small(4),
        write_pool: small(2),
        connect_timeout: Duration::from_secs(5),
        cockroach: Some(settings),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            with_database("postgresql://root@h:26257/defaultdb?sslmode=disable", "t1"),
            "postgresql://root@h:26257/t1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgresql://root@h:26257", "t1"),
            "postgresql://root@h:26257/t1"
        );
        assert_eq!(
            with_database("host=h port=26257", "t1"),
            "host=h port=26257 dbname=t1"
        );
    }
}
