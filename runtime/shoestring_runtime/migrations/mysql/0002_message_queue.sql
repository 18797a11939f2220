-- Durable messaging: message_queue holds the work this service must do (messages from peers and
-- its own background jobs), outbox holds the messages it must deliver to peers. Both tables share
-- one lifecycle, driven by chassis/claim.py:
--
--   NEW --claim--> IN_PROGRESS --complete--> DONE     purged after MESSAGE_RETENTION_DAYS
--                      |--fail--> NEW again, available_at pushed back (backoff with jitter)
--                      |--fail, last attempt or unusable payload--> FAILED (the dead letters)
--                      `--lease runs out (worker killed)--> claimable again, retry_count + 1
--
-- available_at is "when this row next needs attention": a NEW row may be claimed from then on,
-- an IN_PROGRESS row's lease runs out then, a DONE or FAILED row finished then. One index on
-- (status, available_at) therefore serves the claim, the reclaim of expired leases, the purge and
-- the dead-letter age filters, and keeps finished rows out of the claim's range entirely.
--
-- payload holds the whole CloudEvents 1.0 envelope (id, source, type, time, traceparent, data).
-- retry_count counts attempts that did not finish. attempt_log is a JSON list with one entry per
-- such attempt ({"attempt", "at", "worker", "error"}), last_error the latest error with its
-- traceback: together they are the dead letter's story.

CREATE TABLE message_queue (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    message_id VARCHAR(64) NOT NULL,
    source VARCHAR(200) NOT NULL,
    message_type VARCHAR(200) NOT NULL,
    version INT NOT NULL,
    payload JSON NOT NULL,
    status ENUM('NEW', 'IN_PROGRESS', 'DONE', 'FAILED') NOT NULL DEFAULT 'NEW',
    retry_count INT NOT NULL DEFAULT 0,
    available_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    lease_owner VARCHAR(100) NULL,
    lease_expires_at DATETIME(6) NULL,
    last_error TEXT NULL,
    attempt_log JSON NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    -- A message delivered twice (a peer's retry after a lost acknowledgement) is one row.
    UNIQUE KEY uq_message_queue_source_message (source, message_id),
    KEY ix_message_queue_status_available (status, available_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
