-- The legal desk's own database (legal.db), kept apart from user data: see db.go.

-- Desk operators. The token is random (256 bits) and stored as its SHA-256 only.
CREATE TABLE operators (
	id         INTEGER PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	token_hash BLOB NOT NULL UNIQUE,
	created_at INTEGER NOT NULL -- unix seconds
);

-- Orders as entered. order_json is the canonical order (the bytes order_hash is the
-- SHA-256 of); it names the targets, so this table holds personal data for as long as the
-- order's file is kept.
CREATE TABLE orders (
	id              INTEGER PRIMARY KEY,
	order_json      BLOB NOT NULL,
	order_hash      BLOB NOT NULL,
	jurisdiction    TEXT NOT NULL,
	status          TEXT NOT NULL,          -- pending, approved, rejected, concluded
	outcome         TEXT NOT NULL DEFAULT '', -- fulfilled, partially_fulfilled, not_held, rejected
	received_at     INTEGER NOT NULL,
	acknowledged_at INTEGER,                -- first operator decision
	concluded_at    INTEGER,                -- rejection or disclosure
	notify_after    INTEGER,                -- deferral of the user notice, unix seconds
	reasons         TEXT NOT NULL DEFAULT '[]', -- JSON list of {category|target, reason}
	disclosed       TEXT NOT NULL DEFAULT '[]', -- JSON list of category ids given
	package         BLOB,                   -- the signed disclosure package, once given
	signature       BLOB
);

CREATE TABLE approvals (
	order_id    INTEGER NOT NULL REFERENCES orders(id),
	operator_id INTEGER NOT NULL REFERENCES operators(id),
	approved_at INTEGER NOT NULL,
	PRIMARY KEY (order_id, operator_id)
);

-- Notices for affected accounts, held until due_at (the order's deferral).
CREATE TABLE notices (
	id         INTEGER PRIMARY KEY,
	order_id   INTEGER NOT NULL REFERENCES orders(id),
	account_id TEXT NOT NULL,
	body       BLOB NOT NULL,
	due_at     INTEGER NOT NULL,
	sent_at    INTEGER
);
CREATE INDEX notices_due ON notices (due_at) WHERE sent_at IS NULL;

-- Markets the service is withdrawn from now, and every withdrawal and restoration ever.
CREATE TABLE markets (
	country        TEXT PRIMARY KEY, -- ISO 3166-1 alpha-2
	reason         TEXT NOT NULL,
	withdrawn_at   INTEGER NOT NULL,
	close_existing INTEGER NOT NULL
);
CREATE TABLE market_events (
	id      INTEGER PRIMARY KEY,
	country TEXT NOT NULL,
	action  TEXT NOT NULL, -- withdraw, restore
	reason  TEXT NOT NULL,
	at      INTEGER NOT NULL
);

-- The public legal log (package translog's storage).
CREATE TABLE log_entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE log_hashes (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE log_tree (id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL, hash BLOB NOT NULL);

-- Log entries decided but not yet appended: written in the transaction that decides, then
-- appended and deleted, so a crash between the two neither loses nor doubles an entry.
CREATE TABLE log_pending (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
