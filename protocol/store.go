package protocol

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/bastionchat/bastion/protocol/curve"
)

// Direction says whether an identity is being checked to send to it or to receive
// from it (libsignal's Direction). The zero value is invalid.
type Direction uint8

const (
	// Sending: we are about to encrypt to the identity.
	Sending Direction = 1
	// Receiving: we decrypted, or are about to decrypt, from the identity.
	Receiving Direction = 2
)

// IdentityStore holds this device's identity and the identity keys it has seen for
// others. Every method takes a context; implementations may do I/O.
type IdentityStore interface {
	// LocalIdentity returns this device's identity key pair and registration id.
	LocalIdentity(ctx context.Context) (*IdentityKeyPair, uint32, error)
	// IsTrustedIdentity reports whether key may be used for addr in direction d.
	// libsignal's in-memory store, which [MemoryStore] follows, trusts a key it has
	// never seen for addr (trust on first use) and otherwise only the key it saved.
	IsTrustedIdentity(ctx context.Context, addr Address, key *curve.PublicKey, d Direction) (bool, error)
	// SaveIdentity records key as addr's identity and reports whether it replaced a
	// different key.
	SaveIdentity(ctx context.Context, addr Address, key *curve.PublicKey) (replaced bool, err error)
}

// SessionStore holds one [SessionRecord] per remote address.
type SessionStore interface {
	// LoadSession returns the record for addr, or nil and no error when there is none.
	// The caller may change the record it gets; the store's copy must not change
	// until StoreSession.
	LoadSession(ctx context.Context, addr Address) (*SessionRecord, error)
	// StoreSession saves rec for addr. The store may keep rec; the caller does not
	// use it afterwards.
	StoreSession(ctx context.Context, addr Address, rec *SessionRecord) error
}

// PreKeyStore holds the one-time EC prekeys this device published.
type PreKeyStore interface {
	// LoadPreKey returns prekey id, or nil and no error when there is none.
	LoadPreKey(ctx context.Context, id uint32) (*PreKeyRecord, error)
	// RemovePreKey deletes prekey id after a session used it.
	RemovePreKey(ctx context.Context, id uint32) error
}

// SignedPreKeyStore holds this device's signed EC prekeys.
type SignedPreKeyStore interface {
	// LoadSignedPreKey returns signed prekey id, or nil and no error when there is none.
	LoadSignedPreKey(ctx context.Context, id uint32) (*SignedPreKeyRecord, error)
}

// KyberPreKeyStore holds this device's signed Kyber prekeys, one-time and last-resort.
type KyberPreKeyStore interface {
	// LoadKyberPreKey returns Kyber prekey id, or nil and no error when there is none.
	LoadKyberPreKey(ctx context.Context, id uint32) (*KyberPreKeyRecord, error)
	// MarkKyberPreKeyUsed is told each time a new session used Kyber prekey id
	// together with signed prekey signedID and the initiator's base key. A store
	// deletes a one-time key here; for a last-resort key it should refuse (return an
	// error) a (signedID, baseKey) pair it has seen before, which stops the replay of
	// a PreKeySignalMessage against a last-resort key.
	MarkKyberPreKeyUsed(ctx context.Context, id, signedID uint32, baseKey *curve.PublicKey) error
}

// Stores is the set of stores a [Cipher] works on.
type Stores struct {
	Identity      IdentityStore
	Sessions      SessionStore
	PreKeys       PreKeyStore
	SignedPreKeys SignedPreKeyStore
	KyberPreKeys  KyberPreKeyStore
}

// ErrReusedKyberPreKey is returned by [MemoryStore.MarkKyberPreKeyUsed] for a
// last-resort Kyber prekey used twice with the same signed prekey and base key.
var ErrReusedKyberPreKey = errors.New("protocol: kyber prekey reused with the same base key")

// MemoryStore keeps every store in memory: for tests, examples and short-lived
// clients. It is safe for concurrent use.
type MemoryStore struct {
	mu             sync.Mutex
	identity       *IdentityKeyPair
	registrationID uint32
	identities     map[Address][]byte
	sessions       map[Address]*SessionRecord
	preKeys        map[uint32]*PreKeyRecord
	signedPreKeys  map[uint32]*SignedPreKeyRecord
	kyberPreKeys   map[uint32]*KyberPreKeyRecord
	lastResort     map[uint32]bool
	kyberUsed      map[string]bool
}

var (
	_ IdentityStore     = (*MemoryStore)(nil)
	_ SessionStore      = (*MemoryStore)(nil)
	_ PreKeyStore       = (*MemoryStore)(nil)
	_ SignedPreKeyStore = (*MemoryStore)(nil)
	_ KyberPreKeyStore  = (*MemoryStore)(nil)
)

// NewMemoryStore returns empty stores for the device with the given identity.
func NewMemoryStore(identity *IdentityKeyPair, registrationID uint32) *MemoryStore {
	return &MemoryStore{
		identity:       identity,
		registrationID: registrationID,
		identities:     map[Address][]byte{},
		sessions:       map[Address]*SessionRecord{},
		preKeys:        map[uint32]*PreKeyRecord{},
		signedPreKeys:  map[uint32]*SignedPreKeyRecord{},
		kyberPreKeys:   map[uint32]*KyberPreKeyRecord{},
		lastResort:     map[uint32]bool{},
		kyberUsed:      map[string]bool{},
	}
}

// Stores returns s as every store of a [Stores].
func (s *MemoryStore) Stores() Stores {
	return Stores{Identity: s, Sessions: s, PreKeys: s, SignedPreKeys: s, KyberPreKeys: s}
}

// LocalIdentity implements [IdentityStore].
func (s *MemoryStore) LocalIdentity(context.Context) (*IdentityKeyPair, uint32, error) {
	return s.identity, s.registrationID, nil
}

// IsTrustedIdentity implements [IdentityStore]: trust on first use, then only the
// saved key, in both directions.
func (s *MemoryStore) IsTrustedIdentity(_ context.Context, addr Address, key *curve.PublicKey, _ Direction) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	known, ok := s.identities[addr]
	if !ok {
		return true, nil
	}
	k, err := curve.NewPublicKey(known)
	if err != nil {
		return false, fmt.Errorf("stored identity for %s: %w", addr, err)
	}
	return k.Equal(key), nil
}

// SaveIdentity implements [IdentityStore].
func (s *MemoryStore) SaveIdentity(_ context.Context, addr Address, key *curve.PublicKey) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	known, ok := s.identities[addr]
	b := key.Bytes()
	s.identities[addr] = b
	return ok && string(known) != string(b), nil
}

// Identity returns the identity key saved for addr, or nil.
func (s *MemoryStore) Identity(addr Address) *curve.PublicKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := curve.NewPublicKey(s.identities[addr])
	if err != nil {
		return nil
	}
	return k
}

// LoadSession implements [SessionStore]; it returns a copy.
func (s *MemoryStore) LoadSession(_ context.Context, addr Address) (*SessionRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.sessions[addr]
	if !ok {
		return nil, nil
	}
	return r.Clone(), nil
}

// StoreSession implements [SessionStore].
func (s *MemoryStore) StoreSession(_ context.Context, addr Address, rec *SessionRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions[addr] = rec
	return nil
}

// StorePreKey adds a one-time prekey.
func (s *MemoryStore) StorePreKey(p *PreKeyRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.preKeys[p.ID] = p
}

// LoadPreKey implements [PreKeyStore].
func (s *MemoryStore) LoadPreKey(_ context.Context, id uint32) (*PreKeyRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.preKeys[id], nil
}

// RemovePreKey implements [PreKeyStore].
func (s *MemoryStore) RemovePreKey(_ context.Context, id uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.preKeys, id)
	return nil
}

// StoreSignedPreKey adds a signed prekey.
func (s *MemoryStore) StoreSignedPreKey(p *SignedPreKeyRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signedPreKeys[p.ID] = p
}

// LoadSignedPreKey implements [SignedPreKeyStore].
func (s *MemoryStore) LoadSignedPreKey(_ context.Context, id uint32) (*SignedPreKeyRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signedPreKeys[id], nil
}

// StoreKyberPreKey adds a Kyber prekey; a last-resort one survives its use.
func (s *MemoryStore) StoreKyberPreKey(p *KyberPreKeyRecord, lastResort bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kyberPreKeys[p.ID] = p
	s.lastResort[p.ID] = lastResort
}

// LoadKyberPreKey implements [KyberPreKeyStore].
func (s *MemoryStore) LoadKyberPreKey(_ context.Context, id uint32) (*KyberPreKeyRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kyberPreKeys[id], nil
}

// MarkKyberPreKeyUsed implements [KyberPreKeyStore].
func (s *MemoryStore) MarkKyberPreKeyUsed(_ context.Context, id, signedID uint32, baseKey *curve.PublicKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lastResort[id] {
		delete(s.kyberPreKeys, id)
		delete(s.lastResort, id)
		return nil
	}
	k := fmt.Sprintf("%d/%d/%x", id, signedID, baseKey.Bytes())
	if s.kyberUsed[k] {
		return ErrReusedKyberPreKey
	}
	s.kyberUsed[k] = true
	return nil
}

// PreKeyCounts returns how many one-time EC and Kyber prekeys are left (for tests and
// for deciding when to upload more).
func (s *MemoryStore) PreKeyCounts() (ec, kyber int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.preKeys), len(s.kyberPreKeys)
}
