-- CockroachDB's variant of migrations/0001_relationships.sql: the same
-- tables and columns, so every query is shared, with these differences.
-- Revisions are HLC commit timestamps packed as wall_nanos << 32 | logical
-- (about 2^93), too large for INT8: revision columns are DECIMAL(38,0) and
-- a living version's deleted_revision is 38 nines. There is no
-- revision_counter (one row every writer updates would be a hotspot; the
-- HLC orders commits), and STRING compares bytes, so no COLLATE "C" is
-- needed for key order. Sequential keys (revisions) are hash-sharded so
-- inserts spread over ranges.

CREATE TABLE metadata (
    unique_id STRING NOT NULL
);
INSERT INTO metadata (unique_id) VALUES (gen_random_uuid()::STRING);

-- One row per committed revision, keyed by its HLC commit timestamp.
CREATE TABLE transactions (
    revision DECIMAL(38,0) NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL,
    metadata JSONB NOT NULL DEFAULT '{}',
    schema_changed BOOL NOT NULL DEFAULT false,
    CONSTRAINT pk_transactions PRIMARY KEY (revision) USING HASH
);
CREATE INDEX ix_transactions_committed_at ON transactions (committed_at);

-- Overlap keys (--datastore-tx-overlap-strategy): the last statement of a
-- write upserts its keys, so writers sharing a key are ordered.
CREATE TABLE transaction_overlap (
    key STRING PRIMARY KEY,
    revision DECIMAL(38,0) NOT NULL
);

-- The garbage collector's election (no advisory locks here): a lease held
-- until expires_at, and the horizon below which history was collected.
CREATE TABLE gc_lease (
    singleton BOOL PRIMARY KEY DEFAULT true CHECK (singleton),
    holder STRING NOT NULL DEFAULT '',
    expires_at TIMESTAMPTZ NOT NULL DEFAULT '1970-01-01 00:00:00+00',
    horizon DECIMAL(38,0) NOT NULL DEFAULT 0
);
INSERT INTO gc_lease (singleton) VALUES (true);

-- A relationship version is visible at revision R when
-- created_revision <= R < deleted_revision (and it has not expired); the
-- seq columns order the change feed within a revision, as on PostgreSQL.
CREATE TABLE relation_tuple (
    namespace STRING NOT NULL,
    object_id STRING NOT NULL,
    relation STRING NOT NULL,
    userset_namespace STRING NOT NULL,
    userset_object_id STRING NOT NULL,
    userset_relation STRING NOT NULL,
    caveat_name STRING,
    caveat_context JSONB,
    expiration TIMESTAMPTZ,
    created_revision DECIMAL(38,0) NOT NULL,
    created_seq INT4 NOT NULL,
    deleted_revision DECIMAL(38,0) NOT NULL DEFAULT 99999999999999999999999999999999999999,
    deleted_seq INT4,
    CONSTRAINT pk_relation_tuple PRIMARY KEY
        (namespace, object_id, relation, userset_namespace, userset_object_id, userset_relation, created_revision)
);
CREATE UNIQUE INDEX uq_relation_tuple_living ON relation_tuple
    (namespace, object_id, relation, userset_namespace, userset_object_id, userset_relation)
    WHERE deleted_revision = 99999999999999999999999999999999999999;
CREATE INDEX ix_relation_tuple_by_subject ON relation_tuple
    (userset_namespace, userset_object_id, userset_relation, namespace, relation);
CREATE INDEX ix_relation_tuple_created ON relation_tuple (created_revision) USING HASH;
CREATE INDEX ix_relation_tuple_deleted ON relation_tuple (deleted_revision)
    WHERE deleted_revision < 99999999999999999999999999999999999999;
CREATE INDEX ix_relation_tuple_expiration ON relation_tuple (expiration)
    WHERE expiration IS NOT NULL;

CREATE TABLE schema_history (
    revision DECIMAL(38,0) PRIMARY KEY,
    text STRING NOT NULL,
    hash BYTES NOT NULL
);

CREATE TABLE counter_history (
    revision DECIMAL(38,0) PRIMARY KEY,
    counters JSONB NOT NULL
);
