package senderkey

import (
	"context"
	"sync"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/protocol"
)

// Store keeps sender-key records by sender and group distribution id.
//
// LoadSenderKey returns (nil, nil) when it holds no record for the pair. The functions
// of this package treat a loaded record as theirs to change and call StoreSenderKey
// only when an operation succeeded, so a store that hands out copies (as [MemoryStore]
// does) is left untouched by a failure.
type Store interface {
	LoadSenderKey(ctx context.Context, sender protocol.Address, distributionID uuid.UUID) (*Record, error)
	StoreSenderKey(ctx context.Context, sender protocol.Address, distributionID uuid.UUID, r *Record) error
}

// MemoryStore is a [Store] in memory, safe for concurrent use. It keeps and returns
// deep copies, so what it returns never aliases what it holds.
type MemoryStore struct {
	mu      sync.Mutex
	records map[memoryKey]*Record
}

var _ Store = (*MemoryStore)(nil)

type memoryKey struct {
	sender         protocol.Address
	distributionID uuid.UUID
}

// NewMemoryStore returns an empty [MemoryStore].
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{records: make(map[memoryKey]*Record)}
}

// LoadSenderKey implements [Store].
func (m *MemoryStore) LoadSenderKey(ctx context.Context, sender protocol.Address, distributionID uuid.UUID) (*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.records[memoryKey{sender, distributionID}]
	if !ok {
		return nil, nil
	}
	return r.clone(), nil
}

// StoreSenderKey implements [Store].
func (m *MemoryStore) StoreSenderKey(ctx context.Context, sender protocol.Address, distributionID uuid.UUID, r *Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := r.clone()
	m.mu.Lock()
	m.records[memoryKey{sender, distributionID}] = c
	m.mu.Unlock()
	return nil
}
