-- The outbox, in SQLite's words: see ../mysql/0003_outbox.sql and 0002_message_queue.sql.

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    message_type TEXT NOT NULL,
    version INTEGER NOT NULL,
    payload JSON NOT NULL,
    status TEXT NOT NULL DEFAULT 'NEW'
        CHECK (status IN ('NEW', 'IN_PROGRESS', 'DONE', 'FAILED')),
    retry_count INTEGER NOT NULL DEFAULT 0,
    available_at DATETIME NOT NULL DEFAULT (datetime('now')),
    lease_owner TEXT NULL,
    lease_expires_at DATETIME NULL,
    last_error TEXT NULL,
    attempt_log JSON NULL,
    created_at DATETIME NOT NULL DEFAULT (datetime('now')),
    updated_at DATETIME NOT NULL DEFAULT (datetime('now')),
    UNIQUE (destination, message_id)
);

CREATE INDEX ix_outbox_status_destination_available
    ON outbox (status, destination, available_at);
