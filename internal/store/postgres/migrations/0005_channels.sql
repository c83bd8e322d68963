-- 0005: public broadcast channels (store.Channels, docs/channels.md): each channel's
-- signed genesis and newest owner head, its posts as the signed bytes the signers
-- submitted, aggregate subscriber and view counters (no follower list, no per-reader
-- record), the operator's signed notices and the reports it received (no reporter
-- identity). Channel content is public content. The same tables and columns as SQLite.

CREATE TABLE channels (
    id          bytea       NOT NULL PRIMARY KEY,
    handle      text        NOT NULL UNIQUE,
    private     boolean     NOT NULL,
    genesis     bytea       NOT NULL,
    head        bytea,
    head_seq    bigint      NOT NULL,
    newest      bigint      NOT NULL,
    newest_hash bytea       NOT NULL,
    state       bytea       NOT NULL,
    subscribers bigint      NOT NULL CHECK (subscribers >= 0),
    created_at  timestamptz NOT NULL
);

-- The primary key is what makes an append atomic against a concurrent one on any node:
-- two posts cannot both be stored as seq n.
CREATE TABLE channel_posts (
    channel bytea  NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    seq     bigint NOT NULL,
    post    bytea  NOT NULL,
    views   bigint NOT NULL,
    PRIMARY KEY (channel, seq)
);

CREATE TABLE channel_notices (
    channel      bytea       NOT NULL,
    seq          bigint      NOT NULL,
    action       smallint    NOT NULL,
    jurisdiction text        NOT NULL,
    notice       bytea       NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (channel, seq, action, jurisdiction)
);

CREATE TABLE channel_reports (
    id         uuid        NOT NULL PRIMARY KEY,
    channel    bytea       NOT NULL,
    seq        bigint      NOT NULL,
    reason     text        NOT NULL,
    text       text        NOT NULL,
    created_at timestamptz NOT NULL,
    status     text        NOT NULL,
    decided_at timestamptz
);

CREATE INDEX channel_reports_status ON channel_reports (status, created_at);
