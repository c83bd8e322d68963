package protocol

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/internal/primitives"
	"github.com/bastionchat/bastion/protocol/proto"
)

// Cipher runs the Signal Protocol for one local device: it starts sessions from
// bundles ([Cipher.ProcessPreKeyBundle]), encrypts ([Cipher.Encrypt]) and decrypts
// ([Cipher.Decrypt]) 1:1 messages, keeping all state in Stores.
//
// A Cipher holds no state of its own and may be shared, but calls that concern the
// same remote address must not run concurrently: each loads, changes and stores that
// address's session record.
type Cipher struct {
	// Local is this device's own address. It is bound into the SignalMessage of
	// every PreKeySignalMessage sent (field 6, when both addresses are service ids),
	// and checked in every message received that carries the binding.
	Local Address
	// Stores hold the identity, sessions and prekeys.
	Stores Stores
	// Rand is the source of key material; nil means crypto/rand.
	Rand io.Reader
}

func (c *Cipher) rand() io.Reader {
	if c.Rand == nil {
		return rand.Reader
	}
	return c.Rand
}

// macPool recycles HMAC states so the hot path allocates none of its own.
var macPool = sync.Pool{New: func() any { return primitives.NewMAC() }}

func getMAC() *primitives.MAC  { return macPool.Get().(*primitives.MAC) }
func putMAC(m *primitives.MAC) { macPool.Put(m) }

// ProcessPreKeyBundle starts a new session with remote from its bundle (PQXDH, as the
// initiator). It checks that the identity store trusts the bundle's identity key and
// that both prekey signatures verify, then makes the new session current (archiving
// any previous one). Until remote answers, every message [Cipher.Encrypt] makes for it
// is a [PreKeySignalMessage].
func (c *Cipher) ProcessPreKeyBundle(ctx context.Context, remote Address, bundle *PreKeyBundle, now time.Time) error {
	if err := remote.Validate(); err != nil {
		return fmt.Errorf("processing bundle: %w", err)
	}
	if bundle == nil || bundle.IdentityKey == nil {
		return fmt.Errorf("processing bundle: missing identity key")
	}
	trusted, err := c.Stores.Identity.IsTrustedIdentity(ctx, remote, bundle.IdentityKey, Sending)
	if err != nil {
		return fmt.Errorf("processing bundle: %w", err)
	}
	if !trusted {
		return fmt.Errorf("processing bundle: %w", ErrUntrustedIdentity)
	}
	if err := bundle.Verify(); err != nil {
		return fmt.Errorf("processing bundle: %w", err)
	}
	rec, err := c.Stores.Sessions.LoadSession(ctx, remote)
	if err != nil {
		return fmt.Errorf("processing bundle: loading session: %w", err)
	}
	if rec == nil {
		rec = new(SessionRecord)
	}
	identity, regID, err := c.Stores.Identity.LocalIdentity(ctx)
	if err != nil {
		return fmt.Errorf("processing bundle: %w", err)
	}
	st, ratchetKey, err := initiate(c.rand(), identity, bundle)
	if err != nil {
		return fmt.Errorf("processing bundle: %w", err)
	}
	st.PendingPreKey.Timestamp = uint64(max(now.Unix(), 0))
	st.LocalRegistrationID = regID
	st.RemoteRegistrationID = bundle.RegistrationID
	if _, err := c.Stores.Identity.SaveIdentity(ctx, remote, bundle.IdentityKey); err != nil {
		return fmt.Errorf("processing bundle: saving identity: %w", err)
	}
	rec.promoteState(st, ratchetKey)
	if err := c.Stores.Sessions.StoreSession(ctx, remote, rec); err != nil {
		return fmt.Errorf("processing bundle: storing session: %w", err)
	}
	return nil
}

// Encrypt encrypts plaintext for remote on the current session. The result is a
// [*PreKeySignalMessage] until remote has answered, a [*SignalMessage] afterwards.
// It fails with [ErrNoSession] without a session (or with one whose prekey message
// has gone unanswered for 30 days), and with [ErrUntrustedIdentity] if the identity
// store no longer trusts remote's identity key.
func (c *Cipher) Encrypt(ctx context.Context, remote Address, plaintext []byte, now time.Time) (CiphertextMessage, error) {
	rec, err := c.Stores.Sessions.LoadSession(ctx, remote)
	if err != nil {
		return nil, fmt.Errorf("encrypting: loading session: %w", err)
	}
	if rec == nil || !rec.HasCurrentState() {
		return nil, fmt.Errorf("encrypting: %w", ErrNoSession)
	}
	if !rec.HasUsableSenderChain(now) {
		return nil, fmt.Errorf("encrypting: unanswered session is stale: %w", ErrNoSession)
	}
	st := rec.current
	// checkState has validated every key below when the record was decoded or built.
	local, err1 := curve.NewPublicKey(st.LocalIdentityPublic)
	theirs, err2 := curve.NewPublicKey(st.RemoteIdentityPublic)
	ratchet, err3 := curve.NewPublicKey(st.SenderChain.SenderRatchetKey)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("encrypting: corrupt session: %w", err)
	}

	mac := getMAC()
	defer putMAC(mac)
	ck := st.SenderChain.ChainKey
	seed, next := chainStep(mac, ck.Key)
	keys := deriveMessageKeys(mac, seed[:])
	ct, err := primitives.EncryptCBC(keys.cipherKey[:], keys.iv[:], plaintext)
	if err != nil {
		return nil, fmt.Errorf("encrypting: %w", err)
	}
	// Like libsignal (0.91 on), bind the addresses only into the first messages of a
	// session, the ones a PreKeySignalMessage carries: that is where a message could
	// be replayed to another recipient or under another sender to start a session.
	var addrs []byte
	if st.PendingPreKey != nil {
		addrs, _ = bindAddresses(c.Local, remote)
	}
	sm := newSignalMessage(mac, keys.macKey[:], ratchet, ck.Index, st.PreviousCounter, ct, addrs, local, theirs)
	var out CiphertextMessage = sm
	if p := st.PendingPreKey; p != nil {
		out = newPreKeySignalMessage(st, local, sm)
	}
	st.SenderChain.ChainKey = &proto.ChainKey{Index: ck.Index + 1, Key: next[:]}

	trusted, err := c.Stores.Identity.IsTrustedIdentity(ctx, remote, theirs, Sending)
	if err != nil {
		return nil, fmt.Errorf("encrypting: %w", err)
	}
	if !trusted {
		return nil, fmt.Errorf("encrypting: %w", ErrUntrustedIdentity)
	}
	if _, err := c.Stores.Identity.SaveIdentity(ctx, remote, theirs); err != nil {
		return nil, fmt.Errorf("encrypting: saving identity: %w", err)
	}
	if err := c.Stores.Sessions.StoreSession(ctx, remote, rec); err != nil {
		return nil, fmt.Errorf("encrypting: storing session: %w", err)
	}
	return out, nil
}

func newPreKeySignalMessage(st *proto.Session, local *curve.PublicKey, sm *SignalMessage) *PreKeySignalMessage {
	p := st.PendingPreKey
	m := &PreKeySignalMessage{message: sm, identityKey: local, body: proto.PreKeySignalMessage{
		RegistrationID: st.LocalRegistrationID,
		PreKeyID:       p.PreKeyID,
		HasPreKeyID:    p.HasPreKeyID,
		SignedPreKeyID: uint32(p.SignedPreKeyID),
		BaseKey:        p.BaseKey,
		IdentityKey:    local.Bytes(),
		Message:        sm.serialized,
	}}
	if k := st.PendingKyberPreKey; k != nil {
		m.body.HasKyberPreKeyID = true
		m.body.KyberPreKeyID = k.PreKeyID
		m.body.KyberCiphertext = k.Ciphertext
	}
	m.baseKey, _ = curve.NewPublicKey(p.BaseKey)
	m.serialized = m.body.Marshal([]byte{versionByte})
	return m
}

// Decrypt decrypts a message from remote: [Cipher.DecryptSignal] or
// [Cipher.DecryptPreKey] according to its type.
func (c *Cipher) Decrypt(ctx context.Context, remote Address, msg CiphertextMessage) ([]byte, error) {
	switch m := msg.(type) {
	case *SignalMessage:
		return c.DecryptSignal(ctx, remote, m)
	case *PreKeySignalMessage:
		return c.DecryptPreKey(ctx, remote, m)
	default:
		return nil, fmt.Errorf("decrypting: %w: unknown message type", ErrInvalidMessage)
	}
}

// DecryptSignal decrypts a SignalMessage from remote, trying the current session state
// and then every archived one; the state that decrypts it becomes current. On any
// failure no store changes. Failures: [ErrNoSession], [ErrDuplicateMessage],
// [ErrUntrustedIdentity], and [ErrInvalidMessage] for everything else.
func (c *Cipher) DecryptSignal(ctx context.Context, remote Address, m *SignalMessage) ([]byte, error) {
	rec, err := c.Stores.Sessions.LoadSession(ctx, remote)
	if err != nil {
		return nil, fmt.Errorf("decrypting: loading session: %w", err)
	}
	if rec == nil {
		return nil, fmt.Errorf("decrypting: %w", ErrNoSession)
	}
	pt, err := c.decryptRecord(rec, remote, m, false)
	if err != nil {
		return nil, fmt.Errorf("decrypting: %w", err)
	}
	theirs, err := curve.NewPublicKey(rec.current.RemoteIdentityPublic)
	if err != nil {
		return nil, fmt.Errorf("decrypting: corrupt session: %w", err)
	}
	trusted, err := c.Stores.Identity.IsTrustedIdentity(ctx, remote, theirs, Receiving)
	if err != nil {
		return nil, fmt.Errorf("decrypting: %w", err)
	}
	if !trusted {
		return nil, fmt.Errorf("decrypting: %w", ErrUntrustedIdentity)
	}
	if _, err := c.Stores.Identity.SaveIdentity(ctx, remote, theirs); err != nil {
		return nil, fmt.Errorf("decrypting: saving identity: %w", err)
	}
	if err := c.Stores.Sessions.StoreSession(ctx, remote, rec); err != nil {
		return nil, fmt.Errorf("decrypting: storing session: %w", err)
	}
	return pt, nil
}

// DecryptPreKey decrypts a PreKeySignalMessage from remote: it runs PQXDH as the
// responder (unless the message belongs to a session already set up), decrypts the
// SignalMessage inside, and only then saves the identity, consumes the one-time
// prekeys and stores the session. On any failure no store changes. Failures:
// [ErrUntrustedIdentity], [ErrNoPreKey], [ErrDuplicateMessage], and
// [ErrInvalidMessage] for everything else.
func (c *Cipher) DecryptPreKey(ctx context.Context, remote Address, m *PreKeySignalMessage) ([]byte, error) {
	rec, err := c.Stores.Sessions.LoadSession(ctx, remote)
	if err != nil {
		return nil, fmt.Errorf("decrypting: loading session: %w", err)
	}
	if rec == nil {
		rec = new(SessionRecord)
	}
	trusted, err := c.Stores.Identity.IsTrustedIdentity(ctx, remote, m.identityKey, Receiving)
	if err != nil {
		return nil, fmt.Errorf("decrypting: %w", err)
	}
	if !trusted {
		return nil, fmt.Errorf("decrypting: %w", ErrUntrustedIdentity)
	}
	newSession, err := c.respond(ctx, rec, m)
	if err != nil {
		return nil, fmt.Errorf("decrypting: %w", err)
	}
	pt, err := c.decryptRecord(rec, remote, m.message, true)
	if err != nil {
		return nil, fmt.Errorf("decrypting: %w", err)
	}
	if newSession {
		// First, the one check that can still refuse: a last-resort Kyber prekey
		// replayed with the same base key.
		if err := c.Stores.KyberPreKeys.MarkKyberPreKeyUsed(ctx, m.body.KyberPreKeyID, m.body.SignedPreKeyID, m.baseKey); err != nil {
			return nil, fmt.Errorf("decrypting: kyber prekey: %w", err)
		}
	}
	if _, err := c.Stores.Identity.SaveIdentity(ctx, remote, m.identityKey); err != nil {
		return nil, fmt.Errorf("decrypting: saving identity: %w", err)
	}
	if newSession && m.body.HasPreKeyID {
		if err := c.Stores.PreKeys.RemovePreKey(ctx, m.body.PreKeyID); err != nil {
			return nil, fmt.Errorf("decrypting: removing prekey: %w", err)
		}
	}
	if err := c.Stores.Sessions.StoreSession(ctx, remote, rec); err != nil {
		return nil, fmt.Errorf("decrypting: storing session: %w", err)
	}
	return pt, nil
}

// respond makes the session a PreKeySignalMessage asks for current in rec, and
// reports whether it is new (false: the message belongs to a session we have).
func (c *Cipher) respond(ctx context.Context, rec *SessionRecord, m *PreKeySignalMessage) (bool, error) {
	found, err := rec.promoteMatching(m.body.BaseKey)
	if err != nil {
		return false, err
	}
	if found {
		return false, nil
	}
	signed, err := c.Stores.SignedPreKeys.LoadSignedPreKey(ctx, m.body.SignedPreKeyID)
	if err != nil {
		return false, fmt.Errorf("loading signed prekey: %w", err)
	}
	if signed == nil {
		return false, fmt.Errorf("signed prekey %d: %w", m.body.SignedPreKeyID, ErrNoPreKey)
	}
	kyber, err := c.Stores.KyberPreKeys.LoadKyberPreKey(ctx, m.body.KyberPreKeyID)
	if err != nil {
		return false, fmt.Errorf("loading kyber prekey: %w", err)
	}
	if kyber == nil {
		return false, fmt.Errorf("kyber prekey %d: %w", m.body.KyberPreKeyID, ErrNoPreKey)
	}
	var oneTime *PreKeyRecord
	if m.body.HasPreKeyID {
		if oneTime, err = c.Stores.PreKeys.LoadPreKey(ctx, m.body.PreKeyID); err != nil {
			return false, fmt.Errorf("loading prekey: %w", err)
		}
		if oneTime == nil {
			return false, fmt.Errorf("prekey %d: %w", m.body.PreKeyID, ErrNoPreKey)
		}
	}
	identity, regID, err := c.Stores.Identity.LocalIdentity(ctx)
	if err != nil {
		return false, err
	}
	st, err := respond(identity, signed, oneTime, kyber, m)
	if err != nil {
		return false, err
	}
	st.LocalRegistrationID = regID
	st.RemoteRegistrationID = m.body.RegistrationID
	rec.promoteState(st, signed.Private)
	return true, nil
}

// decryptRecord decrypts with the current state, then (for a SignalMessage) with each
// archived one, promoting the state that works. A PreKeySignalMessage has just
// selected or made the current state, so only that one is tried, as libsignal does.
func (c *Cipher) decryptRecord(rec *SessionRecord, remote Address, m *SignalMessage, preKey bool) ([]byte, error) {
	if rec.current != nil {
		st := cloneState(rec.current)
		pt, key, err := c.decryptState(st, remote, m, rec.ratchetKey)
		if err == nil {
			rec.current, rec.ratchetKey = st, key
			return pt, nil
		}
		if errors.Is(err, ErrDuplicateMessage) || preKey {
			return nil, err
		}
	}
	for i := range rec.previous {
		st, err := rec.previousState(i)
		if err != nil {
			return nil, err
		}
		pt, key, err := c.decryptState(st, remote, m, nil)
		if err == nil {
			rec.promoteOld(i, st, key)
			return pt, nil
		}
		if errors.Is(err, ErrDuplicateMessage) {
			return nil, err
		}
	}
	if rec.current == nil && len(rec.previous) == 0 {
		return nil, ErrNoSession
	}
	return nil, ErrInvalidMessage
}

// decryptState decrypts m with one session state, changing st (a copy the caller
// throws away on failure). ratchetKey is st's sender ratchet private key if the caller has
// it parsed (or nil); the key returned is st's afterwards. Every cryptographic
// failure is ErrInvalidMessage.
func (c *Cipher) decryptState(st *proto.Session, remote Address, m *SignalMessage, ratchetKey *curve.PrivateKey) ([]byte, *curve.PrivateKey, error) {
	if st.SenderChain == nil {
		return nil, nil, ErrInvalidMessage
	}
	mac := getMAC()
	defer putMAC(mac)

	idx := receiverChain(st, m.body.RatchetKey)
	if idx < 0 {
		fresh, err := c.ratchetStep(mac, st, m.ratchetKey, ratchetKey)
		if err != nil {
			return nil, nil, ErrInvalidMessage
		}
		ratchetKey = fresh
		idx = len(st.ReceiverChains) - 1
	}
	chain := &st.ReceiverChains[idx]
	counter := m.body.Counter
	var seed [32]byte
	if ck := chain.ChainKey; ck.Index > counter {
		found := false
		for i, k := range chain.MessageKeys {
			if k.Index == counter {
				copy(seed[:], k.Seed)
				chain.MessageKeys = append(chain.MessageKeys[:i:i], chain.MessageKeys[i+1:]...)
				found = true
				break
			}
		}
		if !found {
			return nil, nil, ErrDuplicateMessage
		}
	} else {
		selfSession := primitives.Equal(st.LocalIdentityPublic, st.RemoteIdentityPublic)
		if counter-ck.Index > maxForwardJumps && !selfSession {
			return nil, nil, ErrInvalidMessage
		}
		key := ck.Key
		var skipped []proto.MessageKey
		for i := ck.Index; i < counter; i++ {
			s, next := chainStep(mac, key)
			skipped = append(skipped, proto.MessageKey{Index: i, Seed: s[:]})
			key = next[:]
		}
		if len(skipped) > 0 {
			// Newest first; the oldest beyond the limit are dropped.
			keys := make([]proto.MessageKey, 0, min(len(skipped)+len(chain.MessageKeys), maxMessageKeys))
			for i := len(skipped) - 1; i >= 0 && len(keys) < maxMessageKeys; i-- {
				keys = append(keys, skipped[i])
			}
			for _, k := range chain.MessageKeys {
				if len(keys) == maxMessageKeys {
					break
				}
				keys = append(keys, k)
			}
			chain.MessageKeys = keys
		}
		s, next := chainStep(mac, key)
		seed = s
		chain.ChainKey = &proto.ChainKey{Index: counter + 1, Key: next[:]}
	}
	keys := deriveMessageKeys(mac, seed[:])

	// Both identities were validated when the state was built or decoded (checkState).
	if !m.verifyMAC(mac, keys.macKey[:], st.RemoteIdentityPublic, st.LocalIdentityPublic) {
		return nil, nil, ErrInvalidMessage
	}
	if m.body.Addresses != nil {
		want, ok := bindAddresses(remote, c.Local)
		if !ok || !primitives.Equal(want, m.body.Addresses) {
			return nil, nil, ErrInvalidMessage
		}
	}
	pt, err := primitives.DecryptCBC(keys.cipherKey[:], keys.iv[:], m.body.Ciphertext)
	if err != nil {
		return nil, nil, ErrInvalidMessage
	}
	st.PendingPreKey = nil
	st.PendingKyberPreKey = nil
	return pt, ratchetKey, nil
}

// ratchetStep handles a new ratchet key from the peer: a receiving chain from the DH
// of our current ratchet key with theirs, then a fresh ratchet key of ours and a
// sending chain from it (Signal's Double Ratchet spec, section 3.5).
func (c *Cipher) ratchetStep(mac *primitives.MAC, st *proto.Session, theirs *curve.PublicKey, cached *curve.PrivateKey) (*curve.PrivateKey, error) {
	ours, err := ratchetPrivate(st, cached)
	if err != nil {
		return nil, err
	}
	root, recvChain, err := rootStep(mac, st.RootKey, theirs, ours)
	if err != nil {
		return nil, err
	}
	fresh, err := curve.GeneratePrivateKey(c.rand())
	if err != nil {
		return nil, err
	}
	root2, sendChain, err := rootStep(mac, root, theirs, fresh)
	if err != nil {
		return nil, err
	}
	st.RootKey = root2
	addReceiverChain(st, theirs.Bytes(), recvChain)
	if i := st.SenderChain.ChainKey.Index; i > 0 {
		st.PreviousCounter = i - 1
	} else {
		st.PreviousCounter = 0
	}
	st.SenderChain = &proto.Chain{
		SenderRatchetKey:        fresh.PublicKey().Bytes(),
		SenderRatchetKeyPrivate: fresh.Bytes(),
		ChainKey:                &proto.ChainKey{Key: sendChain},
	}
	return fresh, nil
}

// bindAddresses encodes the sender/recipient binding of SignalMessage field 6: each
// address as its service id in libsignal's fixed-width binary form (kind byte 0x00
// for an ACI, 0x01 for a PNI, then the 16-byte UUID) followed by its device id as one
// byte. It reports false when an address is not a service id or its device id does
// not fit libsignal's range (1..127).
func bindAddresses(sender, recipient Address) ([]byte, bool) {
	out := make([]byte, 0, 36)
	for _, a := range []Address{sender, recipient} {
		name, kind := a.Name, byte(0x00)
		if rest, ok := strings.CutPrefix(name, "PNI:"); ok {
			name, kind = rest, 0x01
		}
		if len(name) != 36 || a.DeviceID < 1 || a.DeviceID > 127 {
			return nil, false
		}
		u, err := uuid.Parse(name)
		if err != nil {
			return nil, false
		}
		out = append(out, kind)
		out = append(out, u[:]...)
		out = append(out, byte(a.DeviceID))
	}
	return out, true
}
