-- The chassis's own tables. Applied by `python -m <package> migrate` before the app's migrations.
-- DATETIME columns hold UTC text "YYYY-MM-DD HH:MM:SS.ffffff" (see chassis/dialect.py).

-- Which migrations have run. Idempotent so the first run can record itself.
CREATE TABLE IF NOT EXISTS schema_migrations (
    name VARCHAR(191) NOT NULL PRIMARY KEY,  -- "chassis/0001_init", "app/0001_orders"
    applied_at DATETIME NOT NULL
);

-- Who did what and when, written in the same transaction as the change (chassis/audit.py).
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at DATETIME NOT NULL,
    action VARCHAR(191) NOT NULL,
    actor VARCHAR(191),
    request_id VARCHAR(128),
    trace_id CHAR(32),
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_occurred_at ON audit_log (occurred_at);
CREATE INDEX audit_log_action ON audit_log (action, occurred_at);
