package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionchat/bastion/internal/translog"
)

// ktAppendLock is the advisory lock key that makes one node at a time the appender of
// the key transparency log ("bastkt" in ASCII; distinct from the migration lock).
const ktAppendLock = 0x626173746b74

// KTLog is the key transparency log's [translog.Storage] in the store's database: tables
// kt_entries, kt_hashes and kt_tree, shared by every node.
//
// Several nodes may append, one at a time: an appender wraps its whole Append (the read
// of the tree, the hash and entry writes, the compare-and-set of the tree) in
// [KTLog.LockAppends], which holds a transaction-level advisory lock. Without it a second
// node could overwrite the first one's hashes above the old size before WriteTree's
// check refuses it (see [translog.Storage]). The lock is released when its transaction
// ends, also when the node dies and its connection drops, so a crashed node never blocks
// the others.
type KTLog struct{ s *Store }

var _ translog.Storage = (*KTLog)(nil)

// KTLog returns the key transparency log's storage in this database.
func (s *Store) KTLog() *KTLog { return &KTLog{s: s} }

// LockAppends runs fn while this node holds the log's append lock, waiting for another
// node's append to finish first. fn's own queries use other connections of the pool; the
// lock lives in a transaction on a connection of its own.
func (k *KTLog) LockAppends(ctx context.Context, fn func(ctx context.Context) error) error {
	conn, err := k.s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("kt append lock: %w", err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("kt append lock: %w", err)
	}
	defer tx.Rollback(context.Background()) // releases the lock; a no-op after Commit
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(ktAppendLock)); err != nil {
		return fmt.Errorf("kt append lock: %w", err)
	}
	if err := fn(ctx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("kt append lock: releasing: %w", err)
	}
	return nil
}

// ReadHashes implements [translog.HashStore].
func (k *KTLog) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) == 0 {
		return []tlog.Hash{}, nil
	}
	rows, err := k.s.pool.Query(ctx, `SELECT idx, hash FROM kt_hashes WHERE idx = ANY($1)`, indexes)
	if err != nil {
		return nil, fmt.Errorf("reading kt hashes: %w", err)
	}
	defer rows.Close()
	found := make(map[int64]tlog.Hash, len(indexes))
	for rows.Next() {
		var idx int64
		var b []byte
		if err := rows.Scan(&idx, &b); err != nil {
			return nil, fmt.Errorf("reading kt hashes: %w", err)
		}
		if len(b) != tlog.HashSize {
			return nil, fmt.Errorf("reading kt hashes: hash %d is %d bytes", idx, len(b))
		}
		found[idx] = tlog.Hash(b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading kt hashes: %w", err)
	}
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, ok := found[x]
		if !ok {
			return nil, fmt.Errorf("reading kt hashes: no hash at index %d", x)
		}
		out[i] = h
	}
	return out, nil
}

// WriteHashes implements [translog.HashStore]: one statement, committed on return.
func (k *KTLog) WriteHashes(ctx context.Context, start int64, hashes []tlog.Hash) error {
	if len(hashes) == 0 {
		return nil
	}
	idx := make([]int64, len(hashes))
	hs := make([][]byte, len(hashes))
	for i := range hashes {
		idx[i], hs[i] = start+int64(i), hashes[i][:]
	}
	_, err := k.s.pool.Exec(ctx, `INSERT INTO kt_hashes (idx, hash) SELECT * FROM unnest($1::bigint[], $2::bytea[])
		ON CONFLICT (idx) DO UPDATE SET hash = excluded.hash`, idx, hs)
	if err != nil {
		return fmt.Errorf("writing kt hashes: %w", err)
	}
	return nil
}

// ReadEntries implements [translog.EntryStore].
func (k *KTLog) ReadEntries(ctx context.Context, start, end int64) ([][]byte, error) {
	if start < 0 || end < start {
		return nil, fmt.Errorf("reading kt entries: bad range [%d, %d)", start, end)
	}
	rows, err := k.s.pool.Query(ctx, `SELECT idx, data FROM kt_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx`, start, end)
	if err != nil {
		return nil, fmt.Errorf("reading kt entries: %w", err)
	}
	defer rows.Close()
	out := make([][]byte, 0, end-start)
	for rows.Next() {
		var idx int64
		var b []byte
		if err := rows.Scan(&idx, &b); err != nil {
			return nil, fmt.Errorf("reading kt entries: %w", err)
		}
		if idx != start+int64(len(out)) {
			return nil, fmt.Errorf("reading kt entries: no entry at index %d", start+int64(len(out)))
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading kt entries: %w", err)
	}
	if int64(len(out)) != end-start {
		return nil, fmt.Errorf("reading kt entries: no entry at index %d", start+int64(len(out)))
	}
	return out, nil
}

// WriteEntries implements [translog.EntryStore]: one statement, committed on return.
func (k *KTLog) WriteEntries(ctx context.Context, start int64, entries [][]byte) error {
	if len(entries) == 0 {
		return nil
	}
	idx := make([]int64, len(entries))
	for i := range entries {
		idx[i] = start + int64(i)
	}
	_, err := k.s.pool.Exec(ctx, `INSERT INTO kt_entries (idx, data) SELECT * FROM unnest($1::bigint[], $2::bytea[])
		ON CONFLICT (idx) DO UPDATE SET data = excluded.data`, idx, entries)
	if err != nil {
		return fmt.Errorf("writing kt entries: %w", err)
	}
	return nil
}

// ReadTree implements [translog.TreeStore].
func (k *KTLog) ReadTree(ctx context.Context) (tlog.Tree, error) {
	var t tlog.Tree
	var h []byte
	err := k.s.pool.QueryRow(ctx, `SELECT size, hash FROM kt_tree WHERE id = 1`).Scan(&t.N, &h)
	if errors.Is(err, pgx.ErrNoRows) {
		return tlog.Tree{}, errors.New("reading kt tree: the kt_tree row is missing")
	}
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("reading kt tree: %w", err)
	}
	if len(h) != tlog.HashSize {
		return tlog.Tree{}, fmt.Errorf("reading kt tree: hash is %d bytes", len(h))
	}
	t.Hash = tlog.Hash(h)
	return t, nil
}

// WriteTree implements [translog.TreeStore]: one compare-and-set statement, so a stale
// writer, on any node, changes nothing.
func (k *KTLog) WriteTree(ctx context.Context, old, new tlog.Tree) error {
	tag, err := k.s.pool.Exec(ctx, `UPDATE kt_tree SET size = $1, hash = $2 WHERE id = 1 AND size = $3 AND hash = $4`,
		new.N, new.Hash[:], old.N, old.Hash[:])
	if err != nil {
		return fmt.Errorf("writing kt tree: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("writing kt tree: %w", translog.ErrConflict)
	}
	return nil
}
