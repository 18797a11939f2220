-- Circuit breakers (chassis/breaker.py): one row per peer that has failed at least once, shared by
-- every process of the service (web processes, cron workers), so a peer that is down is found out
-- once and not called by anyone until one process's trial call says it is back.
--
--   closed --failure_threshold failed calls in a row, or a Retry-After--> open until open_until
--   open --open_until passed: ONE process's conditional UPDATE--> half_open, trial_owner = it
--   half_open --trial succeeds--> closed (failures, trips reset)
--   half_open --trial fails--> open again, for a cool-down doubled per trip (trips)
--   half_open --trial_expires_at passed without an answer--> another process may take the trial
--
-- Times are on the database clock, like the leases of the queue and the outbox. On SQLite the
-- same table lives in a database file of its own (see breaker.py), so it has no migration there.

CREATE TABLE circuit_breakers (
    name VARCHAR(100) NOT NULL,
    state ENUM('closed', 'open', 'half_open') NOT NULL DEFAULT 'closed',
    failures INT NOT NULL DEFAULT 0,
    trips INT NOT NULL DEFAULT 0,
    open_until DATETIME(6) NULL,
    trial_owner VARCHAR(100) NULL,
    trial_expires_at DATETIME(6) NULL,
    opened_at DATETIME(6) NULL,
    last_error TEXT NULL,
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
