-- Token buckets for rate limits (store.RateLimits), shared by every node. key is an
-- HMAC-SHA256 digest under a secret kept in the nodes' data directories, never in the
-- database: a dump alone does not tell which number, address or pair a bucket limits.
-- full_at is when the bucket is full again; from then on the row says nothing a missing
-- row does not, and the janitor deletes it. The same table and columns as SQLite.

CREATE TABLE rate_limits (
    key        bytea            NOT NULL PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at timestamptz      NOT NULL,
    full_at    timestamptz      NOT NULL
);

CREATE INDEX rate_limits_full_at ON rate_limits (full_at);
