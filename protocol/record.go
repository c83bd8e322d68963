package protocol

import (
	"bytes"
	"fmt"
	"time"

	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/internal/primitives"
	"github.com/bastionchat/bastion/protocol/proto"
)

// SessionRecord is everything a device keeps about its sessions with one remote
// device: the current session state and up to 40 archived ones (libsignal's
// SessionRecord). Archived states matter when both sides start a session at once, or
// when a peer reinstalls: a message may belong to any of them.
//
// A record is not safe for concurrent use. The zero value is an empty record.
type SessionRecord struct {
	current  *proto.Session
	previous [][]byte // encoded proto.Session, newest first
	// ratchetKey caches the current state's sender ratchet private key, parsed, so
	// that a DH ratchet step does not recompute its public key from the stored
	// scalar. It is only a cache: ratchetPrivate checks it against the state.
	ratchetKey *curve.PrivateKey
}

// NewSessionRecord decodes a record made by [SessionRecord.Bytes].
func NewSessionRecord(b []byte) (*SessionRecord, error) {
	var r proto.Record
	if err := r.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("session record: %w", err)
	}
	if r.Current != nil {
		if err := checkState(r.Current); err != nil {
			return nil, fmt.Errorf("session record: %w", err)
		}
	}
	return &SessionRecord{current: r.Current, previous: r.Previous}, nil
}

// Bytes encodes the record for storage.
func (r *SessionRecord) Bytes() []byte {
	p := proto.Record{Current: r.current, Previous: r.previous}
	return p.Marshal(nil)
}

// Clone returns a deep copy of r; changing one never changes the other.
func (r *SessionRecord) Clone() *SessionRecord {
	c := &SessionRecord{previous: append([][]byte(nil), r.previous...), ratchetKey: r.ratchetKey}
	if r.current != nil {
		c.current = cloneState(r.current)
	}
	return c
}

// HasCurrentState reports whether the record has a current session state.
func (r *SessionRecord) HasCurrentState() bool {
	return r.current != nil && r.current.SenderChain != nil
}

// HasUsableSenderChain reports whether [Cipher.Encrypt] can use the record at now: it
// has a current state with a sending chain, and that state is not an unanswered
// PreKey session older than 30 days. When it is false, fetch a new bundle.
func (r *SessionRecord) HasUsableSenderChain(now time.Time) bool {
	if !r.HasCurrentState() {
		return false
	}
	p := r.current.PendingPreKey
	return p == nil || p.Timestamp+maxUnacknowledgedAgeSeconds >= uint64(max(now.Unix(), 0))
}

// RemoteRegistrationID returns the peer's registration id in the current state.
func (r *SessionRecord) RemoteRegistrationID() (uint32, bool) {
	if r.current == nil {
		return 0, false
	}
	return r.current.RemoteRegistrationID, true
}

// LocalRegistrationID returns our registration id in the current state.
func (r *SessionRecord) LocalRegistrationID() (uint32, bool) {
	if r.current == nil {
		return 0, false
	}
	return r.current.LocalRegistrationID, true
}

// RemoteIdentityKey returns the peer's identity key in the current state.
func (r *SessionRecord) RemoteIdentityKey() (*curve.PublicKey, bool) {
	if r.current == nil {
		return nil, false
	}
	k, err := curve.NewPublicKey(r.current.RemoteIdentityPublic)
	return k, err == nil
}

// ArchiveCurrentState moves the current state to the archive, so the next message
// sent needs a new session (libsignal's archive_current_state).
func (r *SessionRecord) ArchiveCurrentState() {
	if r.current == nil {
		return
	}
	st := r.current
	r.current, r.ratchetKey = nil, nil
	st.PendingPreKey = nil
	st.PendingKyberPreKey = nil
	r.previous = append([][]byte{st.Marshal(nil)}, r.previous...)
	if len(r.previous) > maxArchivedStates {
		r.previous = r.previous[:maxArchivedStates]
	}
}

// promoteState archives the current state and makes st current; key, which may be
// nil, is st's sender ratchet private key.
func (r *SessionRecord) promoteState(st *proto.Session, key *curve.PrivateKey) {
	r.ArchiveCurrentState()
	r.current, r.ratchetKey = st, key
}

// ratchetPrivate returns the sender ratchet private key of st, from cache when it is
// the cached key.
func ratchetPrivate(st *proto.Session, cached *curve.PrivateKey) (*curve.PrivateKey, error) {
	if cached != nil && primitives.Equal(cached.PublicKey().Bytes(), st.SenderChain.SenderRatchetKey) {
		return cached, nil
	}
	return curve.NewPrivateKey(st.SenderChain.SenderRatchetKeyPrivate)
}

// previousState decodes archived state i.
func (r *SessionRecord) previousState(i int) (*proto.Session, error) {
	var st proto.Session
	if err := st.Unmarshal(r.previous[i]); err != nil {
		return nil, fmt.Errorf("archived session state: %w", err)
	}
	if err := checkState(&st); err != nil {
		return nil, fmt.Errorf("archived session state: %w", err)
	}
	return &st, nil
}

// promoteOld removes archived state i and makes st, its updated form, current.
func (r *SessionRecord) promoteOld(i int, st *proto.Session, key *curve.PrivateKey) {
	r.previous = append(r.previous[:i:i], r.previous[i+1:]...)
	r.promoteState(st, key)
}

// promoteMatching makes the state whose initiator base key is baseKey current, if
// there is one, and reports whether there was: a PreKeySignalMessage for a session we
// already set up (a resend, or a later message of the same session).
func (r *SessionRecord) promoteMatching(baseKey []byte) (bool, error) {
	if r.current != nil && r.current.SessionVersion == messageVersion && primitives.Equal(r.current.AliceBaseKey, baseKey) {
		return true, nil
	}
	for i := range r.previous {
		st, err := r.previousState(i)
		if err != nil {
			return false, err
		}
		if st.SessionVersion == messageVersion && primitives.Equal(st.AliceBaseKey, baseKey) {
			r.promoteOld(i, st, nil)
			return true, nil
		}
	}
	return false, nil
}

// checkState checks the invariants the ratchet code relies on, so that a corrupt
// record is an error and never a panic.
func checkState(st *proto.Session) error {
	if st.SessionVersion != messageVersion {
		return fmt.Errorf("session version %d", st.SessionVersion)
	}
	if len(st.RootKey) != 32 {
		return fmt.Errorf("root key is %d bytes", len(st.RootKey))
	}
	if _, err := curve.NewPublicKey(st.LocalIdentityPublic); err != nil {
		return fmt.Errorf("local identity: %w", err)
	}
	if _, err := curve.NewPublicKey(st.RemoteIdentityPublic); err != nil {
		return fmt.Errorf("remote identity: %w", err)
	}
	if c := st.SenderChain; c != nil {
		if _, err := curve.NewPrivateKey(c.SenderRatchetKeyPrivate); err != nil {
			return fmt.Errorf("sender chain: %w", err)
		}
		if _, err := curve.NewPublicKey(c.SenderRatchetKey); err != nil {
			return fmt.Errorf("sender chain: %w", err)
		}
		if c.ChainKey == nil || len(c.ChainKey.Key) != 32 {
			return fmt.Errorf("sender chain key missing")
		}
	}
	if len(st.ReceiverChains) > maxReceiverChains {
		return fmt.Errorf("%d receiver chains", len(st.ReceiverChains))
	}
	for _, c := range st.ReceiverChains {
		if _, err := curve.NewPublicKey(c.SenderRatchetKey); err != nil {
			return fmt.Errorf("receiver chain: %w", err)
		}
		if c.ChainKey == nil || len(c.ChainKey.Key) != 32 {
			return fmt.Errorf("receiver chain key missing")
		}
		if len(c.MessageKeys) > maxMessageKeys {
			return fmt.Errorf("%d skipped message keys", len(c.MessageKeys))
		}
		for _, k := range c.MessageKeys {
			if len(k.Seed) != 32 {
				return fmt.Errorf("message key seed is %d bytes", len(k.Seed))
			}
		}
	}
	if p := st.PendingPreKey; p != nil {
		if _, err := curve.NewPublicKey(p.BaseKey); err != nil {
			return fmt.Errorf("pending prekey message: %w", err)
		}
	}
	if p := st.PendingKyberPreKey; p != nil && st.PendingPreKey == nil {
		return fmt.Errorf("kyber prekey pending without a prekey message")
	}
	return nil
}

// cloneState copies st deeply enough for the ratchet code: byte slices are never
// changed in place, so they may be shared; structs and slices of structs are copied.
func cloneState(st *proto.Session) *proto.Session {
	c := *st
	if st.SenderChain != nil {
		c.SenderChain = cloneChain(st.SenderChain)
	}
	if st.ReceiverChains != nil {
		c.ReceiverChains = make([]proto.Chain, len(st.ReceiverChains))
		for i := range st.ReceiverChains {
			c.ReceiverChains[i] = *cloneChain(&st.ReceiverChains[i])
		}
	}
	if st.PendingPreKey != nil {
		p := *st.PendingPreKey
		c.PendingPreKey = &p
	}
	if st.PendingKyberPreKey != nil {
		p := *st.PendingKyberPreKey
		c.PendingKyberPreKey = &p
	}
	return &c
}

func cloneChain(ch *proto.Chain) *proto.Chain {
	c := *ch
	if ch.ChainKey != nil {
		k := *ch.ChainKey
		c.ChainKey = &k
	}
	if ch.MessageKeys != nil {
		c.MessageKeys = append([]proto.MessageKey(nil), ch.MessageKeys...)
	}
	return &c
}

// receiverChain returns the index of the receiving chain for the ratchet key, or -1.
func receiverChain(st *proto.Session, ratchetKey []byte) int {
	for i := range st.ReceiverChains {
		if bytes.Equal(st.ReceiverChains[i].SenderRatchetKey, ratchetKey) {
			return i
		}
	}
	return -1
}

// addReceiverChain appends a receiving chain, dropping the oldest beyond the limit.
func addReceiverChain(st *proto.Session, ratchetKey, chainKey []byte) {
	st.ReceiverChains = append(st.ReceiverChains, proto.Chain{
		SenderRatchetKey: ratchetKey,
		ChainKey:         &proto.ChainKey{Key: chainKey},
	})
	if len(st.ReceiverChains) > maxReceiverChains {
		st.ReceiverChains = append(st.ReceiverChains[:0:0], st.ReceiverChains[1:]...)
	}
}
