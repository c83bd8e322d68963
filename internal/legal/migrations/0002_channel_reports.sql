-- 0002: notice and action for public channel posts (moderation.go, DSA Art. 16/17).
-- One row per report the desk has taken in from the shared store, numbered by the desk:
-- the number, the ground and the dates go to the public legal log; the report itself
-- (post, text) stays in the shared store, which holds no reporter identity, and so does
-- this table. statement is the operator's reason: for a restriction or removal it is
-- also the published statement of reasons in the signed notice; for a dismissal it is
-- kept here only.
CREATE TABLE channel_reports (
	number       INTEGER PRIMARY KEY,
	report_id    TEXT NOT NULL UNIQUE,      -- the store's report id (a random UUID)
	ground       TEXT NOT NULL,             -- illegal, terms
	received_at  INTEGER NOT NULL,          -- unix seconds, when the store received it
	action       TEXT NOT NULL DEFAULT '',  -- '' while open; dismissed, duplicate, restricted, removed
	jurisdiction TEXT NOT NULL DEFAULT '',  -- the country of a restriction
	statement    TEXT NOT NULL DEFAULT '',
	operator_id  INTEGER REFERENCES operators(id),
	decided_at   INTEGER
);
