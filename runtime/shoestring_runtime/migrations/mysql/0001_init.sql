-- The chassis's own tables. Applied by `python -m <package> migrate` before the app's migrations.

-- Which migrations have run. The migrate command creates nothing else by itself; this statement
-- is idempotent so the first run can record itself.
CREATE TABLE IF NOT EXISTS schema_migrations (
    name VARCHAR(191) NOT NULL PRIMARY KEY,  -- "chassis/0001_init", "app/0001_orders"
    applied_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Who did what and when, written in the same transaction as the change (chassis/audit.py).
CREATE TABLE audit_log (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    occurred_at DATETIME(6) NOT NULL,
    action VARCHAR(191) NOT NULL,
    actor VARCHAR(191) NULL,
    request_id VARCHAR(128) NULL,
    trace_id CHAR(32) NULL,
    detail TEXT NOT NULL,
    KEY audit_log_occurred_at (occurred_at),
    KEY audit_log_action (action, occurred_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
