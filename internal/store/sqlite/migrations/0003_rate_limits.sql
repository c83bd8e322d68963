-- Token buckets for rate limits (store.RateLimits). key is an HMAC-SHA256 digest under a
-- secret kept in the data directory, never in the database: a dump alone does not tell
-- which number, address or pair a bucket limits. full_at is when the bucket is full again;
-- from then on the row says nothing a missing row does not, and the janitor deletes it.

CREATE TABLE rate_limits (
    key        BLOB    NOT NULL PRIMARY KEY,
    tokens     REAL    NOT NULL,
    updated_at INTEGER NOT NULL,
    full_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX rate_limits_full_at ON rate_limits (full_at);
