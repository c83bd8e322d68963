-- 0001: accounts and devices, prekeys, per-device envelope queues, registration sessions
-- and the connection log. The same tables and columns as the SQLite backend, so that one
-- data inventory (internal/store) describes both; a test fails when a column is missing
-- from it. Times are timestamptz (microsecond precision).

CREATE TABLE accounts (
    id           uuid        NOT NULL PRIMARY KEY,
    number       text        NOT NULL UNIQUE,
    identity_key bytea       NOT NULL,
    created_at   timestamptz NOT NULL
);

CREATE TABLE devices (
    account_id      uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id              integer     NOT NULL,
    registration_id integer     NOT NULL,
    credential_hash bytea       NOT NULL,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (account_id, id)
);

-- The current signed EC prekey of a device: one row per device.
CREATE TABLE signed_prekeys (
    account_id uuid    NOT NULL,
    device_id  integer NOT NULL,
    key_id     bigint  NOT NULL,
    public_key bytea   NOT NULL,
    signature  bytea   NOT NULL,
    PRIMARY KEY (account_id, device_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
);

-- The last-resort Kyber prekey of a device: one row per device, handed out when the
-- one-time Kyber prekeys have run out, never deleted by a bundle fetch.
CREATE TABLE kyber_last_resort_prekeys (
    account_id uuid    NOT NULL,
    device_id  integer NOT NULL,
    key_id     bigint  NOT NULL,
    public_key bytea   NOT NULL,
    signature  bytea   NOT NULL,
    PRIMARY KEY (account_id, device_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
);

-- One-time EC prekeys, deleted as they are handed out.
CREATE TABLE prekeys (
    account_id uuid    NOT NULL,
    device_id  integer NOT NULL,
    key_id     bigint  NOT NULL,
    public_key bytea   NOT NULL,
    PRIMARY KEY (account_id, device_id, key_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
);

-- One-time Kyber prekeys, deleted as they are handed out.
CREATE TABLE kyber_prekeys (
    account_id uuid    NOT NULL,
    device_id  integer NOT NULL,
    key_id     bigint  NOT NULL,
    public_key bytea   NOT NULL,
    signature  bytea   NOT NULL,
    PRIMARY KEY (account_id, device_id, key_id),
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
);

-- Queued ciphertext. There is deliberately no sender column. seq comes from an identity
-- sequence, so it is never reused, even after the newest envelope is acknowledged: a
-- client's "after" cursor must never skip a later envelope.
CREATE TABLE envelopes (
    seq         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  uuid        NOT NULL,
    device_id   integer     NOT NULL,
    id          uuid        NOT NULL,
    server_time timestamptz NOT NULL,
    body        bytea       NOT NULL,
    FOREIGN KEY (account_id, device_id) REFERENCES devices (account_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX envelopes_by_id ON envelopes (account_id, device_id, id);
CREATE INDEX envelopes_by_queue ON envelopes (account_id, device_id, seq);
CREATE INDEX envelopes_by_server_time ON envelopes (server_time);

CREATE TABLE verifications (
    id         text        NOT NULL PRIMARY KEY,
    number     text        NOT NULL,
    code_hash  bytea       NOT NULL,
    attempts   integer     NOT NULL,
    verified   boolean     NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX verifications_by_expiry ON verifications (expires_at);

CREATE TABLE connections (
    account_id uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    ip         text        NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    PRIMARY KEY (account_id, ip)
);
CREATE INDEX connections_by_last_seen ON connections (last_seen);
