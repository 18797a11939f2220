-- Rate limits (chassis/ratelimit.py): one row per policy and client, holding the "theoretical
-- arrival time" of the generic cell rate algorithm (GCRA). A request is admitted when
-- tat_us <= now + period - interval, and then moves tat_us one interval (period / limit) past
-- max(tat_us, now). One upsert per check decides and records the request atomically, so
-- concurrent processes (Passenger, several workers) share one exact count.
--
-- tat_us is Unix time in microseconds. A row whose tat_us lies in the past means "full quota",
-- exactly as a missing row does, so the purge deletes such rows at any time without changing
-- a decision. last_allowed is the decision of the latest check, read back in the same
-- transaction (MySQL has no RETURNING).
--
-- bucket is "<policy>|<key>" in ASCII (long or non-ASCII keys are hashed), with a binary
-- collation: client subjects that differ only in case are different clients.

CREATE TABLE rate_limit_buckets (
    bucket VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    tat_us BIGINT NOT NULL,
    last_allowed TINYINT NOT NULL,
    PRIMARY KEY (bucket),
    KEY ix_rate_limit_buckets_tat (tat_us)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
