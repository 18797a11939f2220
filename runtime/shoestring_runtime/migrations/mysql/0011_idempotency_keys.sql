-- Idempotency keys (chassis/idempotency.py): one row per client and Idempotency-Key header.
--
--   claim (own short transaction) --> RUNNING, reclaimable_at = now + lease
--   handler transaction commits   --> DONE with the response, reclaimable_at = now + TTL
--   handler fails (rolled back)   --> row deleted, the key may be used again at once
--   process dies mid-request      --> RUNNING until the lease runs out, then claimable again
--
-- reclaimable_at is "when another request may take this key over": the end of the lease while
-- RUNNING, the end of the retention period (IDEMPOTENCY_TTL_SECONDS) once DONE. The claim's
-- upsert takes over a row only from then on, and the purge deletes rows past it.
--
-- owner is the claim token of the request that holds (or completed) the key. Completion is
-- fenced on it: a request whose lease ran out and whose key was taken over cannot complete
-- (its upsert would set state to NULL, which NOT NULL refuses), so its handler transaction
-- rolls back and the effect happens once.
--
-- fingerprint is the SHA-256 of method, path, query and body: the same key sent with another
-- request is refused (422) instead of replaying a response that belongs to something else.
--
-- client is "sub:<token subject>" or "ip:<address>" for anonymous callers; keys are scoped per
-- client, so two clients may use the same key. Binary collation: keys are case-sensitive.

CREATE TABLE idempotency_keys (
    client VARCHAR(255) NOT NULL,
    idempotency_key VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    owner CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    endpoint VARCHAR(100) NOT NULL,
    fingerprint CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    state ENUM('RUNNING', 'DONE') NOT NULL,
    response_status SMALLINT NULL,
    response_headers TEXT NULL,
    response_body MEDIUMTEXT NULL,
    created_at DATETIME(6) NOT NULL,
    reclaimable_at DATETIME(6) NOT NULL,
    PRIMARY KEY (client, idempotency_key),
    KEY ix_idempotency_keys_reclaimable (reclaimable_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
