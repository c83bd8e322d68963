-- The key transparency log (internal/translog on this database): its entries, the
-- RFC 6962 hashes of its Merkle tree in tlog's stored-hash layout, and the committed tree
-- head, shared by every node; one node appends at a time under an advisory lock (see
-- translog.go). The same tables and columns as the SQLite backend. Append-only: rows are
-- never deleted.

CREATE TABLE kt_entries (
    idx  bigint NOT NULL PRIMARY KEY,
    data bytea  NOT NULL
);

CREATE TABLE kt_hashes (
    idx  bigint NOT NULL PRIMARY KEY,
    hash bytea  NOT NULL
);

-- One row: the committed tree. The zero size and zero hash stand for the empty tree.
CREATE TABLE kt_tree (
    id   smallint NOT NULL PRIMARY KEY CHECK (id = 1),
    size bigint   NOT NULL,
    hash bytea    NOT NULL
);
INSERT INTO kt_tree (id, size, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));
