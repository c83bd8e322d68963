package protocol

import (
	"fmt"

	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/internal/primitives"
	"github.com/bastionchat/bastion/protocol/kem"
	"github.com/bastionchat/bastion/protocol/proto"
)

// MessageType is libsignal's CiphertextMessageType, which travels beside a message so
// the receiver knows how to parse it. The zero value is invalid.
type MessageType uint8

const (
	// TypeSignal is a [SignalMessage]: a session exists.
	TypeSignal MessageType = 2
	// TypePreKey is a [PreKeySignalMessage]: a session's first messages.
	TypePreKey MessageType = 3
)

const (
	// messageVersion is the only session version Bastion speaks: PQXDH, libsignal's
	// CIPHERTEXT_MESSAGE_CURRENT_VERSION. Version 3 (X3DH without Kyber) is refused.
	messageVersion = 4
	// versionByte is the first byte of every message Bastion sends: the message
	// version in the high nibble, the current version in the low one (0x44).
	versionByte = messageVersion<<4 | messageVersion
	// macSize is the truncated HMAC-SHA256 tag at the end of a SignalMessage: 8 bytes,
	// as libsignal sends it.
	macSize = 8
)

// CiphertextMessage is a serialized 1:1 message: a [*SignalMessage] or a
// [*PreKeySignalMessage].
type CiphertextMessage interface {
	// Type says how to parse Bytes.
	Type() MessageType
	// Bytes returns the serialized message, as it goes on the wire.
	Bytes() []byte
}

// ParseCiphertextMessage parses b according to t.
func ParseCiphertextMessage(t MessageType, b []byte) (CiphertextMessage, error) {
	switch t {
	case TypeSignal:
		return NewSignalMessage(b)
	case TypePreKey:
		return NewPreKeySignalMessage(b)
	default:
		return nil, fmt.Errorf("%w: unknown message type %d", ErrInvalidMessage, t)
	}
}

// SignalMessage is a Double Ratchet message: version byte, protobuf, 8-byte MAC.
type SignalMessage struct {
	ratchetKey *curve.PublicKey
	body       proto.SignalMessage
	serialized []byte
}

var _ CiphertextMessage = (*SignalMessage)(nil)

// NewSignalMessage parses a serialized SignalMessage. It checks the structure only;
// the MAC is checked when the message is decrypted.
func NewSignalMessage(b []byte) (*SignalMessage, error) {
	if len(b) < 1+macSize {
		return nil, fmt.Errorf("%w: message too short", ErrInvalidMessage)
	}
	// libsignal reads only the high nibble; so do we, so the low nibble cannot make
	// the two implementations disagree on whether a message is acceptable.
	if v := b[0] >> 4; v != messageVersion {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrInvalidMessage, v)
	}
	m := &SignalMessage{serialized: append([]byte(nil), b...)}
	if err := m.body.Unmarshal(m.serialized[1 : len(b)-macSize]); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidMessage, err)
	}
	k, err := curve.NewPublicKey(m.body.RatchetKey)
	if err != nil {
		return nil, fmt.Errorf("%w: ratchet key: %w", ErrInvalidMessage, err)
	}
	m.ratchetKey = k
	return m, nil
}

// newSignalMessage builds and MACs a message; addresses may be nil.
func newSignalMessage(mac *primitives.MAC, macKey []byte, ratchetKey *curve.PublicKey, counter, previous uint32,
	ciphertext, addresses []byte, sender, receiver *curve.PublicKey) *SignalMessage {
	m := &SignalMessage{ratchetKey: ratchetKey, body: proto.SignalMessage{
		RatchetKey: ratchetKey.Bytes(), Counter: counter, PreviousCounter: previous,
		Ciphertext: ciphertext, Addresses: addresses,
	}}
	b := make([]byte, 1, 1+len(ciphertext)+64+len(addresses)+macSize)
	b[0] = versionByte
	b = m.body.Marshal(b)
	tag := computeMAC(mac, macKey, sender.Bytes(), receiver.Bytes(), b)
	m.serialized = append(b, tag[:macSize]...)
	return m
}

// computeMAC is HMAC-SHA256(macKey, sender identity || receiver identity || message),
// the identities in their 33-byte serialized form (0x05 || u), as libsignal computes it.
func computeMAC(mac *primitives.MAC, macKey, sender, receiver, msg []byte) [32]byte {
	return mac.Sum32(macKey, sender, receiver, msg)
}

// verifyMAC checks the message's tag in constant time; sender and receiver are
// serialized identity keys.
func (m *SignalMessage) verifyMAC(mac *primitives.MAC, macKey, sender, receiver []byte) bool {
	n := len(m.serialized) - macSize
	tag := computeMAC(mac, macKey, sender, receiver, m.serialized[:n])
	return primitives.Equal(tag[:macSize], m.serialized[n:])
}

// Type returns [TypeSignal].
func (m *SignalMessage) Type() MessageType { return TypeSignal }

// Bytes returns a copy of the serialized message.
func (m *SignalMessage) Bytes() []byte { return append([]byte(nil), m.serialized...) }

// Counter returns the message's index in its sending chain.
func (m *SignalMessage) Counter() uint32 { return m.body.Counter }

// RatchetKey returns the sender's current ratchet public key.
func (m *SignalMessage) RatchetKey() *curve.PublicKey { return m.ratchetKey }

// PreKeySignalMessage carries a session's first [SignalMessage] together with what the
// responder needs to run PQXDH: the initiator's identity and base keys, the prekey ids
// it used and the Kyber ciphertext.
type PreKeySignalMessage struct {
	identityKey *curve.PublicKey
	baseKey     *curve.PublicKey
	message     *SignalMessage
	body        proto.PreKeySignalMessage
	serialized  []byte
}

var _ CiphertextMessage = (*PreKeySignalMessage)(nil)

// NewPreKeySignalMessage parses a serialized PreKeySignalMessage, including the
// SignalMessage inside it. Version 4 requires the Kyber prekey id and ciphertext.
func NewPreKeySignalMessage(b []byte) (*PreKeySignalMessage, error) {
	if len(b) < 1 {
		return nil, fmt.Errorf("%w: message too short", ErrInvalidMessage)
	}
	if v := b[0] >> 4; v != messageVersion {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrInvalidMessage, v)
	}
	m := &PreKeySignalMessage{serialized: append([]byte(nil), b...)}
	if err := m.body.Unmarshal(m.serialized[1:]); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidMessage, err)
	}
	if !m.body.HasKyberPreKeyID || m.body.KyberCiphertext == nil {
		return nil, fmt.Errorf("%w: missing kyber prekey", ErrInvalidMessage)
	}
	if len(m.body.KyberCiphertext) != kem.CiphertextSize || m.body.KyberCiphertext[0] != kem.TypeKyber1024 {
		return nil, fmt.Errorf("%w: kyber ciphertext is not Kyber-1024", ErrInvalidMessage)
	}
	var err error
	if m.baseKey, err = curve.NewPublicKey(m.body.BaseKey); err != nil {
		return nil, fmt.Errorf("%w: base key: %w", ErrInvalidMessage, err)
	}
	if m.identityKey, err = curve.NewPublicKey(m.body.IdentityKey); err != nil {
		return nil, fmt.Errorf("%w: identity key: %w", ErrInvalidMessage, err)
	}
	if m.message, err = NewSignalMessage(m.body.Message); err != nil {
		return nil, err
	}
	return m, nil
}

// Type returns [TypePreKey].
func (m *PreKeySignalMessage) Type() MessageType { return TypePreKey }

// Bytes returns a copy of the serialized message.
func (m *PreKeySignalMessage) Bytes() []byte { return append([]byte(nil), m.serialized...) }

// RegistrationID returns the sender's registration id.
func (m *PreKeySignalMessage) RegistrationID() uint32 { return m.body.RegistrationID }

// PreKeyID returns the one-time prekey id used, and whether one was.
func (m *PreKeySignalMessage) PreKeyID() (uint32, bool) { return m.body.PreKeyID, m.body.HasPreKeyID }

// SignedPreKeyID returns the signed prekey id used.
func (m *PreKeySignalMessage) SignedPreKeyID() uint32 { return m.body.SignedPreKeyID }

// KyberPreKeyID returns the Kyber prekey id used.
func (m *PreKeySignalMessage) KyberPreKeyID() uint32 { return m.body.KyberPreKeyID }

// IdentityKey returns the sender's identity key.
func (m *PreKeySignalMessage) IdentityKey() *curve.PublicKey { return m.identityKey }

// BaseKey returns the sender's PQXDH base key.
func (m *PreKeySignalMessage) BaseKey() *curve.PublicKey { return m.baseKey }

// Message returns the SignalMessage inside.
func (m *PreKeySignalMessage) Message() *SignalMessage { return m.message }
