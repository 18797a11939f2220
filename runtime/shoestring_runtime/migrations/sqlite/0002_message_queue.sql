-- Durable messaging: message_queue holds the work this service must do (messages from peers and
-- its own background jobs); 0003 adds the outbox. The lifecycle,
-- the meaning of every column and the reason for each index are described in
-- ../mysql/0002_message_queue.sql; this is the same schema in SQLite's words.
--
-- Times are text 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC (see dialect.py), written by the chassis.
-- The defaults only serve rows inserted by hand.

CREATE TABLE message_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    source TEXT NOT NULL,
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
    UNIQUE (source, message_id)
);

CREATE INDEX ix_message_queue_status_available ON message_queue (status, available_at);
