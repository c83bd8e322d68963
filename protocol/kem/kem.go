// Package kem holds the Kyber-1024 keys of the Signal Protocol's PQXDH, encoded as
// libsignal encodes them (rust/protocol/src/kem.rs): every public key, secret key and
// ciphertext starts with the key-type byte 0x08 (Kyber-1024, round 3 of the NIST
// competition), followed by the raw key or ciphertext.
//
// The KEM itself is github.com/cloudflare/circl/kem/kyber/kyber1024. Go's crypto/mlkem
// is FIPS 203 ML-KEM, whose key derivation differs from round-3 Kyber: it would not
// interoperate with libsignal's key type 0x08, so it is not used here.
//
// What it protects: a session's shared secret against an attacker who records traffic
// now and has a quantum computer later (PQXDH mixes the KEM secret into the X25519
// ones). What it does not: authentication (the prekey is signed by the identity key,
// see package protocol) or keys in memory.
package kem

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/kem/kyber/kyber1024"
)

const (
	// TypeKyber1024 is libsignal's key-type byte for Kyber-1024 keys and ciphertexts.
	TypeKyber1024 = 0x08

	// PublicKeySize is the size of a serialized public key: type byte and raw key.
	PublicKeySize = 1 + kyber1024.PublicKeySize // 1569
	// PrivateKeySize is the size of a serialized secret key: type byte and raw key.
	PrivateKeySize = 1 + kyber1024.PrivateKeySize // 3169
	// CiphertextSize is the size of a serialized ciphertext: type byte and raw
	// ciphertext, as it travels in a PreKeySignalMessage.
	CiphertextSize = 1 + kyber1024.CiphertextSize // 1569
	// SharedSecretSize is the size of the shared secret.
	SharedSecretSize = kyber1024.SharedKeySize // 32
	// SeedSize is the size of the seed [NewKeyPairFromSeed] takes.
	SeedSize = kyber1024.KeySeedSize // 64
)

// ErrInvalidKey is returned for bytes that are not a valid serialized key.
var ErrInvalidKey = errors.New("kem: invalid key")

// ErrInvalidCiphertext is returned for bytes that are not a valid serialized ciphertext.
var ErrInvalidCiphertext = errors.New("kem: invalid ciphertext")

// PublicKey is a Kyber-1024 public key. The zero value is not valid.
type PublicKey struct {
	k   *kyber1024.PublicKey
	raw []byte // serialized, with the type byte
}

// PrivateKey is a Kyber-1024 secret key. It has no String or text encoding on purpose.
type PrivateKey struct {
	k   *kyber1024.PrivateKey
	pub *PublicKey
}

// KeyPair is a private key and its public key.
type KeyPair struct {
	Public  *PublicKey
	Private *PrivateKey
}

// GenerateKeyPair makes a new key pair from 64 bytes of r (nil means crypto/rand).
func GenerateKeyPair(r io.Reader) (*KeyPair, error) {
	if r == nil {
		r = rand.Reader
	}
	var seed [SeedSize]byte
	if _, err := io.ReadFull(r, seed[:]); err != nil {
		return nil, fmt.Errorf("generating kyber key: %w", err)
	}
	kp := NewKeyPairFromSeed(seed[:])
	clear(seed[:])
	return kp, nil
}

// NewKeyPairFromSeed derives a key pair deterministically from a 64-byte seed, for
// known-answer tests. It panics if the seed has the wrong size (a caller bug).
func NewKeyPairFromSeed(seed []byte) *KeyPair {
	if len(seed) != SeedSize {
		panic("kem: seed must be 64 bytes")
	}
	pk, sk := kyber1024.NewKeyFromSeed(seed)
	pub := newPublic(pk)
	return &KeyPair{Public: pub, Private: &PrivateKey{k: sk, pub: pub}}
}

func newPublic(pk *kyber1024.PublicKey) *PublicKey {
	raw := make([]byte, PublicKeySize)
	raw[0] = TypeKyber1024
	pk.Pack(raw[1:])
	return &PublicKey{k: pk, raw: raw}
}

// NewPublicKey validates a serialized public key: the type byte 0x08 and 1568 bytes
// whose polynomial coefficients are reduced (an honest key generator never produces
// anything else, and accepting other encodings would give one key several names).
func NewPublicKey(b []byte) (*PublicKey, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if b[0] != TypeKyber1024 {
		return nil, fmt.Errorf("%w: unknown key type 0x%02x", ErrInvalidKey, b[0])
	}
	if len(b) != PublicKeySize {
		return nil, fmt.Errorf("%w: public key is %d bytes, want %d", ErrInvalidKey, len(b), PublicKeySize)
	}
	pk := new(kyber1024.PublicKey)
	pk.Unpack(b[1:])
	k := newPublic(pk)
	if !bytes.Equal(k.raw, b) {
		return nil, fmt.Errorf("%w: coefficients not reduced", ErrInvalidKey)
	}
	return k, nil
}

// NewPrivateKey validates a serialized secret key: the type byte 0x08 and 3168 bytes.
// The public key embedded in a round-3 secret key must match its hash, which is
// checked too.
func NewPrivateKey(b []byte) (*PrivateKey, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if b[0] != TypeKyber1024 {
		return nil, fmt.Errorf("%w: unknown key type 0x%02x", ErrInvalidKey, b[0])
	}
	if len(b) != PrivateKeySize {
		return nil, fmt.Errorf("%w: secret key is %d bytes, want %d", ErrInvalidKey, len(b), PrivateKeySize)
	}
	sk := new(kyber1024.PrivateKey)
	sk.Unpack(b[1:])
	var back [kyber1024.PrivateKeySize]byte
	sk.Pack(back[:])
	if subtle.ConstantTimeCompare(back[:], b[1:]) != 1 {
		return nil, fmt.Errorf("%w: secret key does not re-encode", ErrInvalidKey)
	}
	clear(back[:])
	pub, ok := sk.Public().(*kyber1024.PublicKey)
	if !ok {
		panic("kem: circl returned an unexpected public key type")
	}
	return &PrivateKey{k: sk, pub: newPublic(pub)}, nil
}

// Bytes returns a copy of the serialized public key (0x08 || 1568 bytes).
func (k *PublicKey) Bytes() []byte { return bytes.Clone(k.raw) }

// Equal reports whether k and o are the same key, in constant time.
func (k *PublicKey) Equal(o *PublicKey) bool {
	if k == nil || o == nil {
		return k == o
	}
	return subtle.ConstantTimeCompare(k.raw, o.raw) == 1
}

// Encapsulate makes a fresh shared secret for k's owner, with 32 bytes of randomness
// from r (nil means crypto/rand). It returns the secret and the serialized ciphertext
// (0x08 || 1568 bytes).
func (k *PublicKey) Encapsulate(r io.Reader) (sharedSecret, ciphertext []byte, err error) {
	if r == nil {
		r = rand.Reader
	}
	var seed [kyber1024.EncapsulationSeedSize]byte
	if _, err := io.ReadFull(r, seed[:]); err != nil {
		return nil, nil, fmt.Errorf("kyber encapsulation: %w", err)
	}
	ss := make([]byte, SharedSecretSize)
	ct := make([]byte, CiphertextSize)
	ct[0] = TypeKyber1024
	k.k.EncapsulateTo(ct[1:], ss, seed[:])
	clear(seed[:])
	return ss, ct, nil
}

// Bytes returns a copy of the serialized secret key (0x08 || 3168 bytes).
func (k *PrivateKey) Bytes() []byte {
	b := make([]byte, PrivateKeySize)
	b[0] = TypeKyber1024
	k.k.Pack(b[1:])
	return b
}

// PublicKey returns the matching public key.
func (k *PrivateKey) PublicKey() *PublicKey { return k.pub }

// Decapsulate recovers the shared secret from a serialized ciphertext. Kyber's
// implicit rejection means a tampered ciphertext of the right shape yields an
// unrelated secret, not an error; the protocol's MAC catches it.
func (k *PrivateKey) Decapsulate(ciphertext []byte) ([]byte, error) {
	if len(ciphertext) == 0 || ciphertext[0] != TypeKyber1024 {
		return nil, fmt.Errorf("%w: wrong key type", ErrInvalidCiphertext)
	}
	if len(ciphertext) != CiphertextSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidCiphertext, len(ciphertext), CiphertextSize)
	}
	ss := make([]byte, SharedSecretSize)
	k.k.DecapsulateTo(ss, ciphertext[1:])
	return ss, nil
}
