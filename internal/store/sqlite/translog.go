package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionchat/bastion/internal/store"
	"github.com/bastionchat/bastion/internal/translog"
)

// KTLog is the key transparency log's [translog.Storage] in the store's database: tables
// kt_entries, kt_hashes and kt_tree. Its writes go through the store's one writer, so
// each returns once committed with synchronous=FULL, that is, durably, as translog
// requires. One process opens a SQLite database, so one [translog.Log] appends to it.
type KTLog struct{ s *Store }

var _ translog.Storage = (*KTLog)(nil)

// KTLog returns the key transparency log's storage in this database.
func (s *Store) KTLog() *KTLog { return &KTLog{s: s} }

// ReadHashes implements [translog.HashStore].
func (k *KTLog) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) == 0 {
		return []tlog.Hash{}, nil
	}
	// One query for the whole set: a proof needs about 2*log2(N) hashes, and one
	// statement per hash would cost a round through the driver each.
	list, err := json.Marshal(indexes)
	if err != nil {
		return nil, err
	}
	rows, err := k.s.readRows(ctx, `SELECT idx, hash FROM kt_hashes WHERE idx IN (SELECT value FROM json_each(?))`, string(list))
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

// WriteHashes implements [translog.HashStore].
func (k *KTLog) WriteHashes(ctx context.Context, start int64, hashes []tlog.Hash) error {
	if len(hashes) == 0 {
		return nil
	}
	// The callback may still run after an early return on ctx; give it its own copy.
	hs := append([]tlog.Hash(nil), hashes...)
	err := k.s.write(ctx, 0, func(tx *wtx) error {
		for i := range hs {
			if _, err := tx.Exec(`INSERT OR REPLACE INTO kt_hashes (idx, hash) VALUES (?, ?)`, start+int64(i), hs[i][:]); err != nil {
				return err
			}
		}
		return nil
	})
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
	rows, err := k.s.readRows(ctx, `SELECT idx, data FROM kt_entries WHERE idx >= ? AND idx < ? ORDER BY idx`, start, end)
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

// WriteEntries implements [translog.EntryStore].
func (k *KTLog) WriteEntries(ctx context.Context, start int64, entries [][]byte) error {
	if len(entries) == 0 {
		return nil
	}
	es := make([][]byte, len(entries))
	size := 0
	for i, e := range entries {
		es[i] = append([]byte(nil), e...) // see WriteHashes
		size += len(e)
	}
	err := k.s.write(ctx, size, func(tx *wtx) error {
		for i, e := range es {
			if _, err := tx.Exec(`INSERT OR REPLACE INTO kt_entries (idx, data) VALUES (?, ?)`, start+int64(i), e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing kt entries: %w", err)
	}
	return nil
}

// ReadTree implements [translog.TreeStore].
func (k *KTLog) ReadTree(ctx context.Context) (tlog.Tree, error) {
	var t tlog.Tree
	var h []byte
	err := k.s.readRow(ctx, `SELECT size, hash FROM kt_tree WHERE id = 1`).Scan(&t.N, &h)
	if errors.Is(err, sql.ErrNoRows) {
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
// writer changes nothing.
func (k *KTLog) WriteTree(ctx context.Context, old, new tlog.Tree) error {
	var changed int64
	err := k.s.write(ctx, 0, func(tx *wtx) error {
		res, err := tx.Exec(`UPDATE kt_tree SET size = ?, hash = ? WHERE id = 1 AND size = ? AND hash = ?`,
			new.N, new.Hash[:], old.N, old.Hash[:])
		if err != nil {
			return err
		}
		if changed, err = res.RowsAffected(); err != nil {
			return err
		}
		if changed != 1 {
			// store.ErrConflict too: the writer then rolls back this write alone, not the
			// batch it shares with other callers.
			return fmt.Errorf("%w (%w)", translog.ErrConflict, store.ErrConflict)
		}
		return nil
	}, oneStatement)
	if err != nil {
		return fmt.Errorf("writing kt tree: %w", err)
	}
	return nil
}
