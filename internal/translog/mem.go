package translog

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// MemStorage is a [Storage] in memory, for tests and for a single-process
// server that rebuilds its log at start. The zero value is an empty log.
type MemStorage struct {
	mu      sync.RWMutex
	hashes  []tlog.Hash
	entries [][]byte
	tree    tlog.Tree
}

var _ Storage = (*MemStorage)(nil)

// NewMemStorage returns an empty MemStorage.
func NewMemStorage() *MemStorage { return &MemStorage{} }

// ReadHashes implements [HashStore].
func (m *MemStorage) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("memstorage: no hash at index %d", x)
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

// WriteHashes implements [HashStore].
func (m *MemStorage) WriteHashes(ctx context.Context, start int64, hashes []tlog.Hash) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if start < 0 || start > int64(len(m.hashes)) {
		return fmt.Errorf("memstorage: hash write at %d leaves a gap after %d", start, len(m.hashes))
	}
	for i, h := range hashes {
		if x := start + int64(i); x < int64(len(m.hashes)) {
			m.hashes[x] = h
		} else {
			m.hashes = append(m.hashes, h)
		}
	}
	return nil
}

// ReadEntries implements [EntryStore]. It returns copies.
func (m *MemStorage) ReadEntries(ctx context.Context, start, end int64) ([][]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if start < 0 || end < start || end > int64(len(m.entries)) {
		return nil, fmt.Errorf("memstorage: no entries [%d, %d)", start, end)
	}
	out := make([][]byte, 0, end-start)
	for _, e := range m.entries[start:end] {
		out = append(out, bytes.Clone(e))
	}
	return out, nil
}

// WriteEntries implements [EntryStore]. It stores copies.
func (m *MemStorage) WriteEntries(ctx context.Context, start int64, entries [][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if start < 0 || start > int64(len(m.entries)) {
		return fmt.Errorf("memstorage: entry write at %d leaves a gap after %d", start, len(m.entries))
	}
	for i, e := range entries {
		if x := start + int64(i); x < int64(len(m.entries)) {
			m.entries[x] = bytes.Clone(e)
		} else {
			m.entries = append(m.entries, bytes.Clone(e))
		}
	}
	return nil
}

// ReadTree implements [TreeStore].
func (m *MemStorage) ReadTree(ctx context.Context) (tlog.Tree, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.tree, nil
}

// WriteTree implements [TreeStore].
func (m *MemStorage) WriteTree(ctx context.Context, old, new tlog.Tree) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tree != old {
		return fmt.Errorf("memstorage: stored tree has size %d, writer read %d: %w", m.tree.N, old.N, ErrConflict)
	}
	m.tree = new
	return nil
}
