package senderkey

import (
	"bytes"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bastionchat/bastion/protocol/curve"
)

// Limits, as libsignal sets them (rust/protocol/src/consts.rs).
const (
	// MaxStates is how many chains a record keeps per sender and group
	// (MAX_SENDER_KEY_STATES): a sender that rotates its sender key stays readable for a
	// few rotations, and a record cannot grow without bound.
	MaxStates = 5
	// MaxMessageKeys is how many skipped message keys a chain keeps for late messages
	// (MAX_MESSAGE_KEYS); the oldest go first.
	MaxMessageKeys = 2000
	// MaxForwardJumps is how far ahead of its chain a message may be (MAX_FORWARD_JUMPS):
	// it bounds the work and storage one forged iteration number can cost.
	MaxForwardJumps = 25000
)

// ErrInvalidRecord is returned by [NewRecord] for bytes that are not a valid record.
var ErrInvalidRecord = errors.New("senderkey: invalid record")

// Record is what a member holds for one sender in one group: up to [MaxStates] chains,
// newest first. A sender's record for its own chain holds the private signing key.
// Records serialize with [Record.Bytes] and come back with [NewRecord]; the encoding
// follows libsignal's storage.proto (SenderKeyRecordStructure).
type Record struct {
	states []*state
}

// state is one chain: libsignal's SenderKeyStateStructure.
type state struct {
	chainID     uint32
	chain       chainKey
	signingPub  *curve.PublicKey
	signingPriv *curve.PrivateKey // nil unless this is our own chain
	skipped     []messageKey      // ascending iterations, all below chain.iteration
}

// NewRecord parses a record serialized by [Record.Bytes].
func NewRecord(b []byte) (*Record, error) {
	r, err := parseRecord(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	// One record, one encoding: anything our encoder would not write is refused.
	if !bytes.Equal(r.Bytes(), b) {
		return nil, fmt.Errorf("%w: non-canonical encoding", ErrInvalidRecord)
	}
	return r, nil
}

func parseRecord(b []byte) (*Record, error) {
	r := new(Record)
	for len(b) > 0 {
		f, n, err := readField(b)
		if err != nil {
			return nil, err
		}
		b = b[n:]
		if f.num != 1 || f.typ != protowire.BytesType {
			return nil, fmt.Errorf("%w: unexpected field %d", errEncoding, f.num)
		}
		if len(r.states) == MaxStates {
			return nil, fmt.Errorf("more than %d states", MaxStates)
		}
		s, err := parseState(f.bytes)
		if err != nil {
			return nil, fmt.Errorf("state %d: %w", len(r.states), err)
		}
		for _, o := range r.states {
			if o.chainID == s.chainID {
				return nil, fmt.Errorf("two states with chain id %d", s.chainID)
			}
		}
		r.states = append(r.states, s)
	}
	return r, nil
}

// parseState reads a SenderKeyStateStructure: chain_id 1, sender_chain_key 2,
// sender_signing_key 3, sender_message_keys 4 (repeated), message_version 5.
func parseState(b []byte) (*state, error) {
	s := new(state)
	var haveChain, haveSigning bool
	version := uint32(0)
	for len(b) > 0 {
		f, n, err := readField(b)
		if err != nil {
			return nil, err
		}
		b = b[n:]
		switch {
		case f.num == 1 && f.typ == protowire.VarintType:
			if s.chainID, err = uint32Field(f); err != nil {
				return nil, err
			}
		case f.num == 2 && f.typ == protowire.BytesType:
			it, seed, err := parseIterationSeed(f.bytes)
			if err != nil {
				return nil, fmt.Errorf("chain key: %w", err)
			}
			s.chain = chainKey{iteration: it, key: seed}
			haveChain = true
		case f.num == 3 && f.typ == protowire.BytesType:
			if err := s.parseSigningKey(f.bytes); err != nil {
				return nil, fmt.Errorf("signing key: %w", err)
			}
			haveSigning = true
		case f.num == 4 && f.typ == protowire.BytesType:
			it, seed, err := parseIterationSeed(f.bytes)
			if err != nil {
				return nil, fmt.Errorf("message key: %w", err)
			}
			if len(s.skipped) == MaxMessageKeys {
				return nil, fmt.Errorf("more than %d message keys", MaxMessageKeys)
			}
			if k := len(s.skipped); k > 0 && s.skipped[k-1].iteration >= it {
				return nil, fmt.Errorf("message keys out of order")
			}
			s.skipped = append(s.skipped, messageKey{iteration: it, seed: seed})
		case f.num == 5 && f.typ == protowire.VarintType:
			if version, err = uint32Field(f); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: unexpected field %d", errEncoding, f.num)
		}
	}
	if version != messageVersion {
		return nil, fmt.Errorf("message version %d, want %d", version, messageVersion)
	}
	if !haveChain || !haveSigning {
		return nil, errors.New("missing chain key or signing key")
	}
	if k := len(s.skipped); k > 0 && s.skipped[k-1].iteration >= s.chain.iteration {
		return nil, errors.New("message key at or beyond the chain")
	}
	return s, nil
}

// parseIterationSeed reads SenderChainKey and SenderMessageKey, which share a shape:
// iteration 1, seed 2 (32 bytes).
func parseIterationSeed(b []byte) (uint32, [32]byte, error) {
	var seed [32]byte
	f, ok, err := readFields(b, protowire.VarintType, protowire.BytesType)
	if err != nil {
		return 0, seed, err
	}
	if !ok[1] || len(f[1].bytes) != len(seed) {
		return 0, seed, errors.New("seed missing or not 32 bytes")
	}
	it, err := uint32Field(f[0])
	if err != nil {
		return 0, seed, err
	}
	copy(seed[:], f[1].bytes)
	return it, seed, nil
}

// parseSigningKey reads SenderSigningKey: public 1, private 2 (absent for others' chains).
func (s *state) parseSigningKey(b []byte) error {
	f, ok, err := readFields(b, protowire.BytesType, protowire.BytesType)
	if err != nil {
		return err
	}
	if !ok[0] {
		return errors.New("missing public key")
	}
	if s.signingPub, err = curve.NewPublicKey(f[0].bytes); err != nil {
		return err
	}
	if ok[1] {
		if s.signingPriv, err = curve.NewPrivateKey(f[1].bytes); err != nil {
			return err
		}
		// A private key that does not match would sign messages nobody can verify.
		if !s.signingPriv.PublicKey().Equal(s.signingPub) {
			return errors.New("private key does not match public key")
		}
	}
	return nil
}

// Bytes serializes the record (libsignal storage.proto, proto3: zero values omitted,
// fields in ascending order).
func (r *Record) Bytes() []byte {
	var b []byte
	for _, s := range r.states {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, s.bytes())
	}
	return b
}

func (s *state) bytes() []byte {
	var b []byte
	if s.chainID != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(s.chainID))
	}
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, appendIterationSeed(nil, s.chain.iteration, s.chain.key[:]))
	var sk []byte
	sk = protowire.AppendTag(sk, 1, protowire.BytesType)
	sk = protowire.AppendBytes(sk, s.signingPub.Bytes())
	if s.signingPriv != nil {
		sk = protowire.AppendTag(sk, 2, protowire.BytesType)
		sk = protowire.AppendBytes(sk, s.signingPriv.Bytes())
	}
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, sk)
	var mk []byte
	for _, k := range s.skipped {
		mk = appendIterationSeed(mk[:0], k.iteration, k.seed[:])
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, mk)
	}
	b = protowire.AppendTag(b, 5, protowire.VarintType)
	b = protowire.AppendVarint(b, messageVersion)
	return b
}

func appendIterationSeed(b []byte, iteration uint32, seed []byte) []byte {
	if iteration != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(iteration))
	}
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendBytes(b, seed)
}

// clone returns a deep copy of r. Keys are immutable and shared.
func (r *Record) clone() *Record {
	c := &Record{states: make([]*state, len(r.states))}
	for i, s := range r.states {
		cs := *s
		cs.skipped = append([]messageKey(nil), s.skipped...)
		c.states[i] = &cs
	}
	return c
}

// stateFor returns the state of the chain chainID, or nil.
func (r *Record) stateFor(chainID uint32) *state {
	for _, s := range r.states {
		if s.chainID == chainID {
			return s
		}
	}
	return nil
}

// addState makes the chain the newest state, as libsignal's add_sender_key_state does:
// a state with the same chain id and signing key is kept as it is (a repeated
// distribution message must not rewind the chain and re-enable old message keys), one
// with the same chain id but another key is replaced, and the oldest states go when the
// record is full.
func (r *Record) addState(s *state) {
	var keep *state
	kept := r.states[:0]
	for _, o := range r.states {
		if o.chainID != s.chainID {
			kept = append(kept, o)
			continue
		}
		if keep == nil && o.signingPub.Equal(s.signingPub) {
			keep = o
		}
	}
	if keep != nil {
		s = keep
	}
	for i := len(kept); i < len(r.states); i++ {
		r.states[i] = nil
	}
	if len(kept) >= MaxStates {
		kept = kept[:MaxStates-1]
	}
	r.states = append([]*state{s}, kept...)
}
