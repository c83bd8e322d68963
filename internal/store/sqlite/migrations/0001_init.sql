-- 0001: accounts and devices, prekeys, per-device envelope queues, registration sessions
-- and the connection log. Every column is described in internal/store/inventory.json; a
-- test fails when one is not. Ids are 16-byte UUIDs, times are unix microseconds (the
-- precision PostgreSQL keeps, so both backends round-trip the same values).

CREATE TABLE accounts (
    id           BLOB    NOT NULL PRIMARY KEY,
    number       TEXT    NOT NULL UNIQUE,
    identity_key BLOB    NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE devices (
    account_id      BLOB    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id              INTEGER NOT NULL,
    registration_id INTEGER NOT NULL,
    credential_hash BLOB    NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (account_id, id)
);

-- The current signed EC prekey of a device: one row per device.
CREATE TABLE signed_prekeys (
    account_id BLOB    NOT NULL,
    device_id  INTEGER NOT NULL,
    key_id     INTEGER NOT NULL,
    public_key BLOB    NOT NULL,
    signature  BLOB    NOT NULL,
    PRIMARY KEY (account_id, device_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
);

-- The last-resort Kyber prekey of a device: one row per device, handed out when the
-- one-time Kyber prekeys have run out, never deleted by a bundle fetch.
CREATE TABLE kyber_last_resort_prekeys (
    account_id BLOB    NOT NULL,
    device_id  INTEGER NOT NULL,
    key_id     INTEGER NOT NULL,
    public_key BLOB    NOT NULL,
    signature  BLOB    NOT NULL,
    PRIMARY KEY (account_id, device_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
);

-- One-time EC prekeys, deleted as they are handed out.
CREATE TABLE prekeys (
    account_id BLOB    NOT NULL,
    device_id  INTEGER NOT NULL,
    key_id     INTEGER NOT NULL,
    public_key BLOB    NOT NULL,
    PRIMARY KEY (account_id, device_id, key_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
);

-- One-time Kyber prekeys, deleted as they are handed out.
CREATE TABLE kyber_prekeys (
    account_id BLOB    NOT NULL,
    device_id  INTEGER NOT NULL,
    key_id     INTEGER NOT NULL,
    public_key BLOB    NOT NULL,
    signature  BLOB    NOT NULL,
    PRIMARY KEY (account_id, device_id, key_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
);

-- Queued ciphertext. There is deliberately no sender column. AUTOINCREMENT so that a seq
-- is never reused, even after the newest envelope is acknowledged: a client's "after"
-- cursor must never skip a later envelope. Two indexes only, since every insert and every
-- acknowledgement pays for each: by id (idempotent enqueue, ack) and by queue. The second
-- is ordered by seq without naming it: an SQLite index ends with the rowid, which seq is.
-- Expiry scans the table on a reader instead of keeping a third index.
CREATE TABLE envelopes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  BLOB    NOT NULL,
    device_id   INTEGER NOT NULL,
    id          BLOB    NOT NULL,
    server_time INTEGER NOT NULL,
    body        BLOB    NOT NULL,
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX envelopes_by_id ON envelopes (account_id, device_id, id);
CREATE INDEX envelopes_by_queue ON envelopes (account_id, device_id);

CREATE TABLE verifications (
    id         TEXT    NOT NULL PRIMARY KEY,
    number     TEXT    NOT NULL,
    code_hash  BLOB    NOT NULL,
    attempts   INTEGER NOT NULL,
    verified   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX verifications_by_expiry ON verifications (expires_at);

CREATE TABLE connections (
    account_id BLOB    NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    ip         TEXT    NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    PRIMARY KEY (account_id, ip)
);
CREATE INDEX connections_by_last_seen ON connections (last_seen);
