//! Pins the SQL and the arithmetic of the CockroachDB dialect: no server
//! runs here, so these are what is verified of it without one.

use std::time::{Duration, SystemTime};

use super::*;
use crate::datastore::{CounterChange, DeleteByFilter, RelationshipCounter, StoredSchema};
use crate::model::{RelationshipFilter, RelationshipUpdate, UpdateOperation, parse_relationship};

// ---- HLC timestamps ----

#[test]
fn hlc_decimal_packs_wall_and_logical() {
    let rev = parse_hlc("1700000000123456789.0000000002").expect("parses");
    assert_eq!(rev, Rev((1_700_000_000_123_456_789u128 << 32) | 2));
    assert_eq!(unpack(rev), (1_700_000_000_123_456_789, 2));
}

#[test]
fn hlc_round_trips_through_text() {
    for (wall, logical) in [
        (0, 0),
        (1, 0),
        (1_700_000_000_123_456_789, 0),
        (1_700_000_000_123_456_789, 1),
        (1_700_000_000_123_456_789, 4_294_967_295),
        (u64::MAX, u32::MAX),
    ] {
        let rev = pack(wall, logical);
        let text = format_hlc(rev);
        assert_eq!(parse_hlc(&text), Ok(rev), "{text}");
        assert_eq!(unpack(rev), (wall, logical));
    }
    assert_eq!(
        format_hlc(pack(1_700_000_000_000_000_000, 7)),
        "1700000000000000000.0000000007"
    );
}

#[test]
fn hlc_order_is_revision_order() {
    let texts = [
        "1699999999999999999.4294967295",
        "1700000000000000000.0000000000",
        "1700000000000000000.0000000001",
        "1700000000000000000.0000000010",
        "1700000000000000001.0000000000",
    ];
    let revs: Vec<Rev> = texts.iter().map(|t| parse_hlc(t).expect(t)).collect();
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");
}

#[test]
fn hlc_accepts_trimmed_or_padded_fractions() {
    let full = parse_hlc("1700000000000000000.1000000000").expect("ten digits");
    assert_eq!(parse_hlc("1700000000000000000.1"), Ok(full));
    assert_eq!(parse_hlc("1700000000000000000.100000000000"), Ok(full));
    assert_eq!(
        parse_hlc("1700000000000000000"),
        Ok(pack(1_700_000_000_000_000_000, 0))
    );
    assert_eq!(
        parse_hlc("1700000000000000000."),
        Ok(pack(1_700_000_000_000_000_000, 0))
    );
}

#[test]
fn hlc_rejects_malformed_text() {
    for bad in [
        "",
        ".5",
        "-1.0000000000",
        "abc",
        "17e9.0000000000",
        "1.00000000001",                   // an eleventh non-zero digit
        "1.9999999999",                    // logical above u32::MAX
        "18446744073709551616.0000000000", // wall above u64::MAX
        "1.000000000x",
    ] {
        assert!(parse_hlc(bad).is_err(), "{bad} should be rejected");
    }
}

#[test]
fn packed_revisions_stay_below_the_living_sentinel() {
    let newest = pack(u64::MAX, u32::MAX);
    assert!(newest < Dialect::Cockroach.newest_revision());
    assert_eq!(
        Dialect::Cockroach.newest_revision().0 + 1,
        CRDB_ALIVE.parse::<u128>().expect("a number")
    );
    assert_eq!(
        Dialect::Postgres.newest_revision().0 + 1,
        PG_ALIVE.parse::<u128>().expect("a number")
    );
}

#[test]
fn wall_time_conversions() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
    let rev = at_wall_time(at);
    assert_eq!(unpack(rev), (1_700_000_000_123_456_789, 0));
    assert_eq!(wall_time(pack(1_700_000_000_123_456_789, 9)), at);
    assert_eq!(
        hlc_before(rev, Duration::from_secs(1)),
        pack(1_699_999_999_123_456_789, 0)
    );
    assert_eq!(hlc_before(rev, Duration::from_secs(10_000_000_000)), Rev(0));
}

// ---- optimized revision and GC window on the server clock ----

fn quantized(staleness: u32) -> RevisionConfig {
    RevisionConfig {
        quantization: Duration::from_secs(5),
        max_staleness_percent: staleness,
        gc_window: Duration::from_secs(3600),
    }
}

#[test]
fn optimized_revision_is_behind_the_follower_delay_and_quantized() {
    // 2 s into a window: less 4.8 s lands in the previous window.
    let now = pack(1_700_000_002_000_000_000, 5);
    let delay = Duration::from_millis(4800);
    let optimized = optimized_hlc(now, delay, &quantized(0));
    assert_eq!(optimized, pack(1_699_999_995_000_000_000, 0));
    // The whole window shares it.
    let later = pack(1_700_000_004_700_000_000, 0);
    assert_eq!(optimized_hlc(later, delay, &quantized(0)), optimized);
    // The next window moves on.
    let next = pack(1_700_000_004_900_000_000, 0);
    assert_eq!(
        optimized_hlc(next, delay, &quantized(0)),
        pack(1_700_000_000_000_000_000, 0)
    );
}

#[test]
fn optimized_revision_with_smear_stays_in_two_windows() {
    let now = pack(1_700_000_002_000_000_000, 0);
    let delay = Duration::from_millis(4800);
    for _ in 0..50 {
        let optimized = optimized_hlc(now, delay, &quantized(10));
        assert!(
            optimized == pack(1_699_999_995_000_000_000, 0)
                || optimized == pack(1_699_999_990_000_000_000, 0),
            "{optimized:?}"
        );
    }
}

#[test]
fn optimized_revision_without_quantization_or_delay_is_now() {
    let now = pack(1_700_000_002_123_000_000, 3);
    let off = RevisionConfig {
        quantization: Duration::ZERO,
        ..quantized(0)
    };
    assert_eq!(
        optimized_hlc(now, Duration::ZERO, &off),
        pack(1_700_000_002_123_000_000, 0)
    );
    assert!(optimized_hlc(now, Duration::ZERO, &off) <= now);
}

#[test]
fn oldest_readable_is_the_window_back_on_the_server_clock() {
    let now = pack(1_700_000_000_000_000_000, 1);
    assert_eq!(
        oldest_readable_hlc(now, Duration::from_secs(3600)),
        pack(1_699_996_400_000_000_000, 0)
    );
    assert_eq!(oldest_readable_hlc(now, Duration::MAX), Rev(0), "forever");
}

// ---- SQL the dialects render ----

#[test]
fn as_of_system_time_renders_the_hlc_decimal() {
    let rev = pack(1_700_000_000_123_456_789, 1);
    assert_eq!(
        Dialect::Cockroach.as_of(rev),
        " AS OF SYSTEM TIME '1700000000123456789.0000000001'"
    );
    assert_eq!(Dialect::Postgres.as_of(rev), "");
}

#[test]
fn revision_literals_and_params() {
    assert_eq!(Dialect::Postgres.alive(), "9223372036854775807");
    assert_eq!(Dialect::Cockroach.alive(), "9".repeat(38));
    assert_eq!(Dialect::Postgres.revision_param("$3"), "$3");
    assert_eq!(Dialect::Cockroach.revision_param("$3"), "$3::DECIMAL");
    assert_eq!(
        Dialect::Cockroach.json_array(),
        ("STRING[]", "caveat_context::JSONB")
    );
    assert!(Dialect::Postgres.caches_reads());
    assert!(!Dialect::Cockroach.caches_reads());
}

#[test]
fn gc_deletes_use_limit_on_cockroach_and_ctid_on_postgres() {
    let [dead, expired] = Dialect::Cockroach.gc_deletes(100);
    assert_eq!(
        dead,
        format!(
            "DELETE FROM relation_tuple WHERE deleted_revision <= $1 \
             AND deleted_revision < {CRDB_ALIVE} LIMIT 100"
        )
    );
    assert_eq!(
        expired,
        format!(
            "DELETE FROM relation_tuple WHERE expiration <= $1 \
             AND deleted_revision = {CRDB_ALIVE} AND created_revision <= $2 LIMIT 100"
        )
    );
    for statement in Dialect::Postgres.gc_deletes(100) {
        assert!(statement.contains("ctid = ANY(ARRAY("), "{statement}");
        assert!(statement.contains(PG_ALIVE), "{statement}");
    }
}

#[test]
fn cockroach_locks_are_rows_not_advisory_locks() {
    let crdb = Dialect::Cockroach;
    assert!(crdb.migration_lock().ends_with("FOR UPDATE"));
    assert!(!crdb.migration_table_exists().contains("to_regclass"));
    for statement in crdb.migration_setup() {
        assert!(!statement.contains("advisory"), "{statement}");
    }
    assert!(!TAKE_GC_LEASE.contains("advisory"));
    assert!(
        Dialect::Postgres
            .migration_lock()
            .contains("pg_advisory_xact_lock")
    );
}

/// The SQL of a migration without its comments.
fn code(sql: &str) -> String {
    sql.lines()
        .map(|line| line.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn cockroach_migrations_have_no_postgres_only_constructs() {
    let migrations = Dialect::Cockroach.migrations();
    assert_eq!(
        migrations
            .iter()
            .map(|m| (m.version, m.name))
            .collect::<Vec<_>>(),
        Dialect::Postgres
            .migrations()
            .iter()
            .map(|m| (m.version, m.name))
            .collect::<Vec<_>>(),
        "one CockroachDB migration per PostgreSQL migration"
    );
    for migration in migrations {
        let sql = code(migration.sql).to_uppercase();
        for construct in [
            "COLLATE",
            "BIGINT",
            "BYTEA",
            "MD5(",
            "CTID",
            "ADVISORY",
            "REVISION_COUNTER",
            "9223372036854775807",
            "INTEGER",
            "SERIAL",
            "INCLUDE (",
        ] {
            assert!(
                !sql.contains(construct),
                "{} uses {construct}",
                migration.name
            );
        }
        for table in [
            "METADATA",
            "TRANSACTIONS",
            "RELATION_TUPLE",
            "SCHEMA_HISTORY",
            "COUNTER_HISTORY",
            "TRANSACTION_OVERLAP",
            "GC_LEASE",
        ] {
            assert!(sql.contains(&format!("CREATE TABLE {table} (")), "{table}");
        }
        assert_eq!(
            sql.matches("DECIMAL(38,0)").count(),
            7,
            "every revision column holds a packed HLC"
        );
        assert!(sql.contains(&format!("DEFAULT {CRDB_ALIVE}")));
        assert!(sql.contains(&format!("WHERE DELETED_REVISION = {CRDB_ALIVE}")));
    }
}

#[test]
fn postgres_migrations_keep_their_collation() {
    let sql = code(Dialect::Postgres.migrations()[0].sql);
    assert_eq!(sql.matches("COLLATE \"C\"").count(), 6);
    assert!(sql.contains("revision_counter"));
}

#[test]
fn cockroach_only_statements() {
    assert_eq!(
        CLUSTER_TIMESTAMP,
        "SELECT cluster_logical_timestamp()::STRING"
    );
    assert_eq!(
        UPSERT_OVERLAP_KEYS,
        "UPSERT INTO transaction_overlap (key, revision) \
         SELECT k, $2::DECIMAL FROM unnest($1::STRING[]) AS k"
    );
    assert!(TAKE_GC_LEASE.contains("WHERE holder = $1 OR expires_at < now()"));
    assert!(RELEASE_GC_LEASE.contains("greatest(horizon, $2::DECIMAL)"));
}

// ---- overlap keys ----

fn touch(texts: &[&str]) -> WriteBatch {
    WriteBatch {
        updates: texts
            .iter()
            .map(|t| RelationshipUpdate {
                operation: UpdateOperation::Touch,
                relationship: parse_relationship(t).expect("fixture parses"),
            })
            .collect(),
        ..WriteBatch::default()
    }
}

#[test]
fn static_overlap_is_one_key_for_every_write() {
    let strategy = OverlapStrategy::parse("static", "key").expect("static");
    assert_eq!(strategy.keys(&touch(&["doc:a#viewer@user:x"])), ["key"]);
    assert_eq!(strategy.keys(&WriteBatch::default()), ["key"]);
    let custom = OverlapStrategy::parse("static", "shared").expect("static");
    assert_eq!(
        custom.keys(&touch(&["t1/doc:a#viewer@t2/user:x"])),
        ["shared"]
    );
}

#[test]
fn prefix_overlap_keys_are_the_type_prefixes() {
    let strategy = OverlapStrategy::parse("prefix", "key").expect("prefix");
    assert_eq!(
        strategy.keys(&touch(&["tenant/doc:a#viewer@tenant/user:x"])),
        ["tenant"]
    );
    assert_eq!(
        strategy.keys(&touch(&[
            "beta/doc:a#viewer@beta/user:x",
            "alpha/doc:a#viewer@alpha/group:g#member",
        ])),
        ["alpha", "beta"],
        "sorted, once each"
    );
    assert_eq!(
        strategy.keys(&touch(&["tenant/doc:a#viewer@user:x"])),
        ["key", "tenant"],
        "an unprefixed type takes the shared key"
    );
    assert_eq!(strategy.keys(&WriteBatch::default()), ["key"]);
}

#[test]
fn prefix_overlap_covers_deletes_schema_and_counters() {
    let strategy = OverlapStrategy::parse("prefix", "key").expect("prefix");
    let delete = |resource_type: Option<&str>| WriteBatch {
        delete_by_filter: Some(DeleteByFilter {
            filter: RelationshipFilter {
                resource_type: resource_type.map(str::to_string),
                ..RelationshipFilter::default()
            },
            limit: None,
            allow_partial: false,
        }),
        ..WriteBatch::default()
    };
    assert_eq!(strategy.keys(&delete(Some("tenant/doc"))), ["tenant"]);
    assert_eq!(
        strategy.keys(&delete(None)),
        ["key"],
        "any type: shared key"
    );
    let schema = WriteBatch {
        schema: Some(StoredSchema {
            text: String::new(),
            hash: [0; 32],
        }),
        ..touch(&["tenant/doc:a#viewer@tenant/user:x"])
    };
    assert_eq!(strategy.keys(&schema), ["key", "tenant"]);
    let counters = WriteBatch {
        counters: vec![CounterChange::Register(RelationshipCounter {
            name: "c".into(),
            filter: RelationshipFilter::default(),
        })],
        ..WriteBatch::default()
    };
    assert_eq!(strategy.keys(&counters), ["key"]);
    let load = [parse_relationship("t/doc:a#viewer@t/user:x").expect("parses")];
    assert_eq!(strategy.keys_for_load(&load), ["t"]);
}

#[test]
fn insecure_overlap_has_no_keys_and_request_is_refused() {
    let insecure = OverlapStrategy::parse("insecure", "key").expect("insecure");
    assert!(insecure.keys(&touch(&["doc:a#viewer@user:x"])).is_empty());
    let request = OverlapStrategy::parse("request", "key").expect_err("not supported yet");
    assert!(request.contains("not supported yet"), "{request}");
    assert!(
        request.contains("io.spicedb.requestoverlapkey"),
        "{request}"
    );
    let unknown = OverlapStrategy::parse("bogus", "key").expect_err("unknown");
    assert!(unknown.contains("static, prefix, insecure"), "{unknown}");
}

#[test]
fn cockroach_defaults_are_spicedbs() {
    let settings = CockroachSettings::default();
    assert_eq!(settings.follower_read_delay, Duration::from_millis(4800));
    assert_eq!(settings.overlap, OverlapStrategy::Static("key".into()));
    assert_eq!(settings.max_tx_retries, 10);
}
