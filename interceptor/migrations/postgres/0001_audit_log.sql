-- The audit log, PostgreSQL dialect. Keep in step with ../sqlite/0001_audit_log.sql: the
-- same tables, columns and meanings (see docs/audit.md and src/audit/chain.rs).

-- One row per event. seq is assigned by the single writer (no sequence: a rolled-back
-- batch must not leave a gap that would read as a deletion). payload is TEXT, not JSONB:
-- the chain hashes its exact bytes.
CREATE TABLE audit_events (
    seq         BIGINT PRIMARY KEY,
    time_ms     BIGINT NOT NULL,
    kind        TEXT   NOT NULL,
    agent       TEXT,
    pid         BIGINT,
    operation   TEXT,
    binary_path TEXT,
    path        TEXT,
    action      TEXT,
    outcome     TEXT,
    rule        TEXT,
    controls    TEXT,
    decided_by  TEXT,
    approver    TEXT,
    ref_seq     BIGINT,
    payload     TEXT   NOT NULL,
    prev_hash   BYTEA  NOT NULL,
    hash        BYTEA  NOT NULL
);

CREATE INDEX audit_events_time  ON audit_events (time_ms);
CREATE INDEX audit_events_agent ON audit_events (agent, time_ms);
CREATE INDEX audit_events_rule  ON audit_events (rule) WHERE rule IS NOT NULL;
CREATE INDEX audit_events_ref   ON audit_events (ref_seq) WHERE ref_seq IS NOT NULL;

-- The chain's two ends, updated in the same transaction as the rows they describe:
-- head = the last row written; anchor = the last row pruned (0 and 32 zero bytes before
-- any prune). Exactly one row.
CREATE TABLE audit_chain (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    head_seq    BIGINT NOT NULL,
    head_hash   BYTEA  NOT NULL,
    anchor_seq  BIGINT NOT NULL,
    anchor_hash BYTEA  NOT NULL
);

INSERT INTO audit_chain (id, head_seq, head_hash, anchor_seq, anchor_hash)
VALUES (1, 0, decode(repeat('00', 32), 'hex'), 0, decode(repeat('00', 32), 'hex'));
