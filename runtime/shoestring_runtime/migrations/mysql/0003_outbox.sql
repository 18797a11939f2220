-- The outbox: messages this service must deliver to peers, one row per message and
-- destination. Same lifecycle, columns and reasoning as message_queue (0002_message_queue.sql),
-- with destination in place of source.

CREATE TABLE outbox (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    message_id VARCHAR(64) NOT NULL,
    destination VARCHAR(100) NOT NULL,
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
    -- One row per message and peer: publishing fans out to every destination in the spec.
    UNIQUE KEY uq_outbox_destination_message (destination, message_id),
    -- The relay claims per destination (one batch goes to one peer), so the destination sits
    -- between status and time: a peer that is down never slows the claim for another.
    KEY ix_outbox_status_destination_available (status, destination, available_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
