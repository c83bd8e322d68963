// Package senderkey implements Signal's Sender Keys for group messages, byte-compatible
// with libsignal 0.90.0 (rust/protocol/src/sender_keys.rs, group_cipher.rs, protocol.rs;
// schemas from proto/wire.proto and proto/storage.proto).
//
// Each member of a group has its own sending chain per group (named by a distribution
// id, a UUID). It hands the chain's key and public signing key to every other member
// once, in a [DistributionMessage] sent over 1:1 sessions, and then encrypts each group
// message once for all ([Encrypt]): AES-256-CBC under a key from a hash ratchet, signed
// with XEdDSA so that members cannot forge each other's messages.
//
// What it protects: confidentiality of group messages against anyone who never received
// the distribution message, their integrity and origin among members (each message is
// signed by its sender's chain key), forward secrecy along a chain (the chain key only
// moves forward; message keys are deleted when used) and replay (a message decrypts
// once). What it does not: there is no post-compromise security within a chain (whoever
// steals a chain key reads every later message until the sender rotates it), membership
// changes and rotation are the caller's job, and the distribution message itself must
// travel inside an authenticated 1:1 session.
//
// Each function loads a record, changes it and stores it back: calls for the same
// sender and group must not run concurrently (two concurrent [Encrypt] calls would use
// one message key twice). The caller serializes them, as libsignal's exclusive store
// borrow does.
//
// Every failure to decrypt leaves the [Store] as it was, and looks the same to whoever
// sent the message: [ErrInvalidMessage] without detail, apart from [ErrNoSenderKey] (we
// hold no chain for it: ask the sender for its distribution message) and
// [ErrDuplicateMessage] (already decrypted, or its key aged out).
package senderkey

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/internal/primitives"
)

var (
	// ErrNoSenderKey means the store holds no chain for the sender, group and (when
	// decrypting) chain id of the message.
	ErrNoSenderKey = errors.New("senderkey: no sender key")
	// ErrDuplicateMessage means a message's iteration is behind its chain and its key is
	// gone: it was decrypted before, or it is older than the kept message keys.
	ErrDuplicateMessage = errors.New("senderkey: duplicate message")
	// ErrInvalidMessage means a message failed to parse, verify or decrypt. It says no
	// more, on purpose.
	ErrInvalidMessage = errors.New("senderkey: invalid message")
)

// Create returns the distribution message for sender's own chain in the group
// distributionID, creating the chain (a random 31-bit chain id, a random chain key, a
// fresh signing key) if the store has none. Send the result to every member over a 1:1
// session.
func Create(ctx context.Context, store Store, sender protocol.Address, distributionID uuid.UUID) (*DistributionMessage, error) {
	if err := sender.Validate(); err != nil {
		return nil, fmt.Errorf("creating sender key: %w", err)
	}
	rec, err := store.LoadSenderKey(ctx, sender, distributionID)
	if err != nil {
		return nil, fmt.Errorf("loading sender key: %w", err)
	}
	if rec == nil {
		s, err := newOwnState()
		if err != nil {
			return nil, fmt.Errorf("creating sender key: %w", err)
		}
		rec = &Record{states: []*state{s}}
		if err := store.StoreSenderKey(ctx, sender, distributionID, rec); err != nil {
			return nil, fmt.Errorf("storing sender key: %w", err)
		}
	}
	if len(rec.states) == 0 {
		return nil, fmt.Errorf("creating sender key: %w", ErrNoSenderKey)
	}
	s := rec.states[0]
	return &DistributionMessage{
		distributionID: distributionID,
		chainID:        s.chainID,
		iteration:      s.chain.iteration,
		chainKey:       s.chain.key,
		signingKey:     s.signingPub,
	}, nil
}

func newOwnState() (*state, error) {
	var b [4 + 32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	priv, err := curve.GeneratePrivateKey(nil)
	if err != nil {
		return nil, err
	}
	s := &state{
		// 31 bits, as libsignal makes them: libsignal-protocol-java reads chain ids as
		// signed 32-bit integers.
		chainID:     binary.BigEndian.Uint32(b[:4]) >> 1,
		signingPub:  priv.PublicKey(),
		signingPriv: priv,
	}
	copy(s.chain.key[:], b[4:])
	return s, nil
}

// Process stores the chain a distribution message from sender carries, so that
// [Decrypt] can read sender's messages in that group. Processing the same message again
// changes nothing; a new chain from the same sender becomes the newest of at most
// [MaxStates].
func Process(ctx context.Context, store Store, sender protocol.Address, m *DistributionMessage) error {
	if err := sender.Validate(); err != nil {
		return fmt.Errorf("processing sender key: %w", err)
	}
	rec, err := store.LoadSenderKey(ctx, sender, m.distributionID)
	if err != nil {
		return fmt.Errorf("loading sender key: %w", err)
	}
	if rec == nil {
		rec = new(Record)
	}
	rec.addState(&state{
		chainID:    m.chainID,
		chain:      chainKey{iteration: m.iteration, key: m.chainKey},
		signingPub: m.signingKey,
	})
	if err := store.StoreSenderKey(ctx, sender, m.distributionID, rec); err != nil {
		return fmt.Errorf("storing sender key: %w", err)
	}
	return nil
}

// Encrypt encrypts plaintext as sender (ourselves) for the group distributionID with
// the chain [Create] made, and returns the serialized, signed SenderKeyMessage.
func Encrypt(ctx context.Context, store Store, sender protocol.Address, distributionID uuid.UUID, plaintext []byte) ([]byte, error) {
	if err := sender.Validate(); err != nil {
		return nil, fmt.Errorf("group encrypt: %w", err)
	}
	rec, err := store.LoadSenderKey(ctx, sender, distributionID)
	if err != nil {
		return nil, fmt.Errorf("loading sender key: %w", err)
	}
	if rec == nil || len(rec.states) == 0 {
		return nil, fmt.Errorf("group encrypt: %w", ErrNoSenderKey)
	}
	s := rec.states[0]
	if s.signingPriv == nil {
		return nil, fmt.Errorf("group encrypt: newest chain is not ours: %w", ErrNoSenderKey)
	}
	if s.chain.iteration == math.MaxUint32 {
		// The chain cannot move on; the sender must start a new one.
		return nil, errors.New("group encrypt: sender chain exhausted")
	}
	mk := s.chain.messageKey()
	iv, key := mk.keys()
	ct, err := primitives.EncryptCBC(key, iv, plaintext)
	if err != nil {
		return nil, fmt.Errorf("group encrypt: %w", err)
	}
	msg, err := newMessage(distributionID, s.chainID, mk.iteration, ct, s.signingPriv)
	if err != nil {
		return nil, fmt.Errorf("group encrypt: %w", err)
	}
	s.chain = s.chain.next()
	if err := store.StoreSenderKey(ctx, sender, distributionID, rec); err != nil {
		return nil, fmt.Errorf("storing sender key: %w", err)
	}
	return msg.serialized, nil
}

// Decrypt verifies and decrypts a SenderKeyMessage from sender. Only when it succeeds
// does the store change: the chain moves past the message, and keys for any messages it
// skipped are kept for them (at most [MaxMessageKeys]).
func Decrypt(ctx context.Context, store Store, sender protocol.Address, ciphertext []byte) ([]byte, error) {
	if err := sender.Validate(); err != nil {
		return nil, fmt.Errorf("group decrypt: %w", err)
	}
	msg, err := parseMessage(ciphertext)
	if err != nil {
		return nil, ErrInvalidMessage
	}
	rec, err := store.LoadSenderKey(ctx, sender, msg.distributionID)
	if err != nil {
		return nil, fmt.Errorf("loading sender key: %w", err)
	}
	if rec == nil {
		return nil, ErrNoSenderKey
	}
	s := rec.stateFor(msg.chainID)
	if s == nil {
		return nil, ErrNoSenderKey
	}
	if !msg.verify(s.signingPub) {
		return nil, ErrInvalidMessage
	}
	step, err := s.stepTo(msg.iteration)
	if err != nil {
		return nil, err
	}
	iv, key := step.key.keys()
	pt, err := primitives.DecryptCBC(key, iv, msg.ciphertext)
	if err != nil {
		return nil, ErrInvalidMessage
	}
	step.apply(s)
	if err := store.StoreSenderKey(ctx, sender, msg.distributionID, rec); err != nil {
		return nil, fmt.Errorf("storing sender key: %w", err)
	}
	return pt, nil
}

// step is how a state changes once a message decrypted: computed first, applied only
// on success, so a failure leaves the state as it was.
type step struct {
	key     messageKey
	used    int          // index of key in skipped, or -1 if it came from the chain
	skipped []messageKey // keys derived on the way to the message's iteration
	chain   chainKey     // the chain after the message
}

// stepTo finds the message key for iteration without changing s.
func (s *state) stepTo(iteration uint32) (step, error) {
	if iteration < s.chain.iteration {
		for i, k := range s.skipped {
			if k.iteration == iteration {
				return step{key: k, used: i, chain: s.chain}, nil
			}
		}
		return step{}, ErrDuplicateMessage
	}
	if iteration-s.chain.iteration > MaxForwardJumps {
		return step{}, ErrInvalidMessage
	}
	if iteration == math.MaxUint32 {
		// libsignal cannot move its chain past this iteration either.
		return step{}, ErrInvalidMessage
	}
	st := step{used: -1}
	c := s.chain
	if n := iteration - c.iteration; n > 0 {
		keep := min(int(n), MaxMessageKeys) // older ones would be evicted at once
		st.skipped = make([]messageKey, 0, keep)
		for c.iteration < iteration {
			if iteration-c.iteration <= uint32(keep) {
				st.skipped = append(st.skipped, c.messageKey())
			}
			c = c.next()
		}
	}
	st.key = c.messageKey()
	st.chain = c.next()
	return st, nil
}

// apply commits a step to s.
func (st *step) apply(s *state) {
	if st.used >= 0 {
		s.skipped = append(s.skipped[:st.used], s.skipped[st.used+1:]...)
		return
	}
	s.skipped = append(s.skipped, st.skipped...)
	if over := len(s.skipped) - MaxMessageKeys; over > 0 {
		s.skipped = append(s.skipped[:0], s.skipped[over:]...)
	}
	s.chain = st.chain
}
