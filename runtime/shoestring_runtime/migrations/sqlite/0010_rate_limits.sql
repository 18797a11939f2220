-- Rate limits (chassis/ratelimit.py). The algorithm and every column are described in
-- ../mysql/0010_rate_limits.sql; this is the same schema in SQLite's words.

CREATE TABLE rate_limit_buckets (
    bucket TEXT NOT NULL PRIMARY KEY,
    tat_us INTEGER NOT NULL,
    last_allowed INTEGER NOT NULL
);

CREATE INDEX ix_rate_limit_buckets_tat ON rate_limit_buckets (tat_us);
