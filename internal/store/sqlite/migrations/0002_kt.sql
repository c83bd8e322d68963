-- The key transparency log (internal/translog on this database): its entries, the
-- RFC 6962 hashes of its Merkle tree in tlog's stored-hash layout, and the committed tree
-- head. Entries are public by design: device bindings (account id, device id, public
-- identity key) and lookup bindings that hold a phone number only as a VRF output.
-- Append-only: rows are never deleted.

CREATE TABLE kt_entries (
    idx  INTEGER NOT NULL PRIMARY KEY,
    data BLOB    NOT NULL
);

CREATE TABLE kt_hashes (
    idx  INTEGER NOT NULL PRIMARY KEY,
    hash BLOB    NOT NULL
);

-- One row: the committed tree. The zero size and zero hash stand for the empty tree.
CREATE TABLE kt_tree (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL,
    hash BLOB    NOT NULL
);
INSERT INTO kt_tree (id, size, hash) VALUES (1, 0, zeroblob(32));
