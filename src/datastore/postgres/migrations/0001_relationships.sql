-- Relationships with their MVCC history, the transaction log, and the
-- versioned schema and counters. Revisions are a gap-free commit sequence
-- (see ARCHITECTURE.md, "PostgreSQL revisions"). Every name column uses the
-- "C" collation so that ORDER BY and the indexes follow byte order, which is
-- the order of `RelationshipKey` and of the cursors built on it.

CREATE TABLE metadata (
    unique_id TEXT NOT NULL
);
INSERT INTO metadata (unique_id) VALUES (md5(random()::text || clock_timestamp()::text));

-- One row. Its row lock is the commit order: a writer takes it first, so
-- revision N+1 is assigned only after revision N has committed or rolled back.
CREATE TABLE revision_counter (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    revision BIGINT NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL
);
INSERT INTO revision_counter (revision, committed_at) VALUES (0, clock_timestamp());

-- One row per committed revision (0 is the empty datastore).
CREATE TABLE transactions (
    revision BIGINT PRIMARY KEY,
    committed_at TIMESTAMPTZ NOT NULL,
    metadata JSONB NOT NULL DEFAULT '{}',
    schema_changed BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX ix_transactions_committed_at ON transactions (committed_at);
INSERT INTO transactions (revision, committed_at) SELECT revision, committed_at FROM revision_counter;

-- A relationship version is visible at revision R when
-- created_revision <= R < deleted_revision (and it has not expired).
-- created_seq / deleted_seq order the change feed within a revision; a NULL
-- deleted_seq marks a retirement that is no change of its own (a TOUCH
-- replacing the version, or removing one that had expired).
CREATE TABLE relation_tuple (
    namespace TEXT COLLATE "C" NOT NULL,
    object_id TEXT COLLATE "C" NOT NULL,
    relation TEXT COLLATE "C" NOT NULL,
    userset_namespace TEXT COLLATE "C" NOT NULL,
    userset_object_id TEXT COLLATE "C" NOT NULL,
    userset_relation TEXT COLLATE "C" NOT NULL,
    caveat_name TEXT,
    caveat_context JSONB,
    expiration TIMESTAMPTZ,
    created_revision BIGINT NOT NULL,
    created_seq INTEGER NOT NULL,
    deleted_revision BIGINT NOT NULL DEFAULT 9223372036854775807,
    deleted_seq INTEGER,
    CONSTRAINT pk_relation_tuple PRIMARY KEY
        (namespace, object_id, relation, userset_namespace, userset_object_id, userset_relation, created_revision)
);
-- At most one living version per relationship.
CREATE UNIQUE INDEX uq_relation_tuple_living ON relation_tuple
    (namespace, object_id, relation, userset_namespace, userset_object_id, userset_relation)
    WHERE deleted_revision = 9223372036854775807;
-- Reverse walks (LookupResources) and subject filters.
CREATE INDEX ix_relation_tuple_by_subject ON relation_tuple
    (userset_namespace, userset_object_id, userset_relation, namespace, relation);
-- The change feed.
CREATE INDEX ix_relation_tuple_created ON relation_tuple (created_revision);
CREATE INDEX ix_relation_tuple_deleted ON relation_tuple (deleted_revision)
    WHERE deleted_revision < 9223372036854775807;
-- Garbage collection of expired relationships.
CREATE INDEX ix_relation_tuple_expiration ON relation_tuple (expiration)
    WHERE expiration IS NOT NULL;

-- The schema text as written, from `revision` until the next row.
CREATE TABLE schema_history (
    revision BIGINT PRIMARY KEY,
    text TEXT NOT NULL,
    hash BYTEA NOT NULL
);

-- Every registered relationship counter, as a whole list from `revision`
-- until the next row (counters are few).
CREATE TABLE counter_history (
    revision BIGINT PRIMARY KEY,
    counters JSONB NOT NULL
);
