-- 0005: public broadcast channels (store.Channels, docs/channels.md): each channel's
-- signed genesis and newest owner head, its posts as the signed bytes the signers
-- submitted, aggregate subscriber and view counters (no follower list, no per-reader
-- record), the operator's signed notices and the reports it received (no reporter
-- identity). Channel content is public content. Times are unix microseconds.

CREATE TABLE channels (
    id          BLOB    NOT NULL PRIMARY KEY,
    handle      TEXT    NOT NULL UNIQUE,
    private     INTEGER NOT NULL,
    genesis     BLOB    NOT NULL,
    head        BLOB,
    head_seq    INTEGER NOT NULL,
    newest      INTEGER NOT NULL,
    newest_hash BLOB    NOT NULL,
    state       BLOB    NOT NULL,
    subscribers INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

-- The primary key is what makes an append atomic against a concurrent one: two posts
-- cannot both be stored as seq n.
CREATE TABLE channel_posts (
    channel BLOB    NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    post    BLOB    NOT NULL,
    views   INTEGER NOT NULL,
    PRIMARY KEY (channel, seq)
);

CREATE TABLE channel_notices (
    channel      BLOB    NOT NULL,
    seq          INTEGER NOT NULL,
    action       INTEGER NOT NULL,
    jurisdiction TEXT    NOT NULL,
    notice       BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (channel, seq, action, jurisdiction)
);

CREATE TABLE channel_reports (
    id         BLOB    NOT NULL PRIMARY KEY,
    channel    BLOB    NOT NULL,
    seq        INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    status     TEXT    NOT NULL,
    decided_at INTEGER
);

CREATE INDEX channel_reports_status ON channel_reports (status, created_at);
