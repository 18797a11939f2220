-- Idempotency keys (chassis/idempotency.py). The lifecycle and every column are described in
-- ../mysql/0011_idempotency_keys.sql; this is the same schema in SQLite's words.
--
-- Times are text 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC (see dialect.py), written by the chassis.

CREATE TABLE idempotency_keys (
    client TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    owner TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('RUNNING', 'DONE')),
    response_status INTEGER NULL,
    response_headers TEXT NULL,
    response_body TEXT NULL,
    created_at DATETIME NOT NULL,
    reclaimable_at DATETIME NOT NULL,
    PRIMARY KEY (client, idempotency_key)
);

CREATE INDEX ix_idempotency_keys_reclaimable ON idempotency_keys (reclaimable_at);
