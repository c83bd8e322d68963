package senderkey

import (
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bastionchat/bastion/protocol/curve"
)

const (
	// messageVersion is libsignal's SENDERKEY_MESSAGE_CURRENT_VERSION. Both message
	// kinds start with the byte version<<4 | version, 0x33; libsignal refuses any other
	// version in the high nibble.
	messageVersion = 3
	versionByte    = messageVersion<<4 | messageVersion

	// chainKeySize is the size of a sender chain key (libsignal makes 32 random bytes
	// and refuses any other size in a distribution message).
	chainKeySize = 32
)

// ErrInvalidEncoding is returned by [NewDistributionMessage] and [NewMessage] for bytes
// that are not a well-formed message.
var ErrInvalidEncoding = errors.New("senderkey: invalid message encoding")

// DistributionMessage is libsignal's SenderKeyDistributionMessage: what a group member
// sends each other member, over a 1:1 session, so they can decrypt its group messages.
// It carries the sender's current chain key: whoever holds it can read every later
// message on that chain, so it must only travel encrypted.
type DistributionMessage struct {
	distributionID uuid.UUID
	chainID        uint32
	iteration      uint32
	chainKey       [chainKeySize]byte
	signingKey     *curve.PublicKey
}

// NewDistributionMessage parses a serialized SenderKeyDistributionMessage: the byte
// 0x33 followed by the protobuf (libsignal wire.proto) with all five fields present.
func NewDistributionMessage(b []byte) (*DistributionMessage, error) {
	m, err := parseDistributionMessage(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEncoding, err)
	}
	return m, nil
}

func parseDistributionMessage(b []byte) (*DistributionMessage, error) {
	if len(b) < 1 {
		return nil, errors.New("empty distribution message")
	}
	if b[0] != versionByte {
		return nil, fmt.Errorf("version byte 0x%02x, want 0x%02x", b[0], versionByte)
	}
	f, ok, err := readFields(b[1:], protowire.BytesType, protowire.VarintType, protowire.VarintType, protowire.BytesType, protowire.BytesType)
	if err != nil {
		return nil, err
	}
	for i, p := range ok {
		if !p {
			return nil, fmt.Errorf("%w: missing field %d", errEncoding, i+1)
		}
	}
	m := new(DistributionMessage)
	if m.distributionID, err = uuid.FromBytes(f[0].bytes); err != nil {
		return nil, fmt.Errorf("%w: distribution id is %d bytes", errEncoding, len(f[0].bytes))
	}
	if m.chainID, err = uint32Field(f[1]); err != nil {
		return nil, err
	}
	if m.iteration, err = uint32Field(f[2]); err != nil {
		return nil, err
	}
	if len(f[3].bytes) != chainKeySize {
		return nil, fmt.Errorf("%w: chain key is %d bytes, want %d", errEncoding, len(f[3].bytes), chainKeySize)
	}
	copy(m.chainKey[:], f[3].bytes)
	if m.signingKey, err = curve.NewPublicKey(f[4].bytes); err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return m, nil
}

// Bytes returns the serialized message, as libsignal serializes it.
func (m *DistributionMessage) Bytes() []byte {
	b := make([]byte, 0, 1+2+16+6+6+2+chainKeySize+2+curve.PublicKeySize)
	b = append(b, versionByte)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, m.distributionID[:])
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(m.chainID))
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(m.iteration))
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendBytes(b, m.chainKey[:])
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	b = protowire.AppendBytes(b, m.signingKey.Bytes())
	return b
}

// DistributionID returns the group's distribution id.
func (m *DistributionMessage) DistributionID() uuid.UUID { return m.distributionID }

// ChainID returns the id of the sender's chain.
func (m *DistributionMessage) ChainID() uint32 { return m.chainID }

// Iteration returns the chain iteration the carried chain key is at: the message
// number of the first message its receiver can decrypt.
func (m *DistributionMessage) Iteration() uint32 { return m.iteration }

// SigningKey returns the public key that signs every message on the chain.
func (m *DistributionMessage) SigningKey() *curve.PublicKey { return m.signingKey }

// Equal reports whether m and o carry the same fields, comparing the chain key in
// constant time.
func (m *DistributionMessage) Equal(o *DistributionMessage) bool {
	return m.distributionID == o.distributionID && m.chainID == o.chainID && m.iteration == o.iteration &&
		subtle.ConstantTimeCompare(m.chainKey[:], o.chainKey[:]) == 1 && m.signingKey.Equal(o.signingKey)
}

// Message is libsignal's SenderKeyMessage: one group message as its sender encrypted it
// once for every member. Its serialized form is the byte 0x33, the protobuf (distribution
// id, chain id, iteration, AES-256-CBC ciphertext), and a 64-byte XEdDSA signature by the
// chain's signing key over everything before it.
type Message struct {
	distributionID uuid.UUID
	chainID        uint32
	iteration      uint32
	ciphertext     []byte
	serialized     []byte
}

// NewMessage parses a serialized SenderKeyMessage. It does not check the signature;
// [Decrypt] does, with the signing key it holds for the sender.
func NewMessage(b []byte) (*Message, error) {
	m, err := parseMessage(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEncoding, err)
	}
	return m, nil
}

func parseMessage(b []byte) (*Message, error) {
	if len(b) < 1+curve.SignatureSize {
		return nil, fmt.Errorf("message is %d bytes, too short", len(b))
	}
	if b[0] != versionByte {
		return nil, fmt.Errorf("version byte 0x%02x, want 0x%02x", b[0], versionByte)
	}
	f, ok, err := readFields(b[1:len(b)-curve.SignatureSize], protowire.BytesType, protowire.VarintType, protowire.VarintType, protowire.BytesType)
	if err != nil {
		return nil, err
	}
	for i, p := range ok {
		if !p {
			return nil, fmt.Errorf("%w: missing field %d", errEncoding, i+1)
		}
	}
	m := &Message{serialized: append([]byte(nil), b...)}
	if m.distributionID, err = uuid.FromBytes(f[0].bytes); err != nil {
		return nil, fmt.Errorf("%w: distribution id is %d bytes", errEncoding, len(f[0].bytes))
	}
	if m.chainID, err = uint32Field(f[1]); err != nil {
		return nil, err
	}
	if m.iteration, err = uint32Field(f[2]); err != nil {
		return nil, err
	}
	// AES-CBC with PKCS#7 padding always yields whole blocks, at least one.
	if n := len(f[3].bytes); n == 0 || n%16 != 0 {
		return nil, fmt.Errorf("%w: ciphertext is %d bytes, not whole AES blocks", errEncoding, n)
	}
	// Point into our own copy, so the caller may reuse b.
	off := len(b) - curve.SignatureSize - len(f[3].bytes)
	m.ciphertext = m.serialized[off : off+len(f[3].bytes) : off+len(f[3].bytes)]
	return m, nil
}

// newMessage builds and signs a message.
func newMessage(distributionID uuid.UUID, chainID, iteration uint32, ciphertext []byte, key *curve.PrivateKey) (*Message, error) {
	b := make([]byte, 0, 1+2+16+6+6+protowire.SizeBytes(len(ciphertext))+1+curve.SignatureSize)
	b = append(b, versionByte)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, distributionID[:])
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(chainID))
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(iteration))
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendBytes(b, ciphertext)
	sig, err := key.Sign(nil, b)
	if err != nil {
		return nil, err
	}
	b = append(b, sig...)
	off := len(b) - curve.SignatureSize - len(ciphertext)
	return &Message{
		distributionID: distributionID,
		chainID:        chainID,
		iteration:      iteration,
		ciphertext:     b[off : off+len(ciphertext) : off+len(ciphertext)],
		serialized:     b,
	}, nil
}

// Bytes returns a copy of the serialized message, signature included.
func (m *Message) Bytes() []byte { return append([]byte(nil), m.serialized...) }

// DistributionID returns the group's distribution id.
func (m *Message) DistributionID() uuid.UUID { return m.distributionID }

// ChainID returns the id of the sender's chain the message is on.
func (m *Message) ChainID() uint32 { return m.chainID }

// Iteration returns the message's number on its chain.
func (m *Message) Iteration() uint32 { return m.iteration }

// verify reports whether the signature is by key over the rest of the message.
func (m *Message) verify(key *curve.PublicKey) bool {
	n := len(m.serialized) - curve.SignatureSize
	return key.Verify(m.serialized[:n], m.serialized[n:])
}
