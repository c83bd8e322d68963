package channel

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"filippo.io/edwards25519"
)

// PublicKeySize is the size of a channel signing key's public half (RFC 8032).
const PublicKeySize = ed25519.PublicKeySize

// SignatureSize is the size of an Ed25519 signature.
const SignatureSize = ed25519.SignatureSize

// ErrInvalidKey is returned for key bytes that are not a valid encoding.
var ErrInvalidKey = errors.New("channel: invalid key")

// SigningKey is the private key of a channel's owner or of one of its admins. It
// has no String, no text and no JSON encoding on purpose.
type SigningKey struct {
	priv ed25519.PrivateKey
}

// GenerateSigningKey makes a new key from 32 bytes of rand (nil means
// crypto/rand.Reader).
func GenerateSigningKey(r io.Reader) (*SigningKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	if err := readRand(r, seed); err != nil {
		return nil, fmt.Errorf("generating channel key: %w", err)
	}
	return &SigningKey{priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// NewSigningKey validates a 32-byte seed, as [SigningKey.Bytes] returns it.
func NewSigningKey(seed []byte) (*SigningKey, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, ErrInvalidKey
	}
	return &SigningKey{priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// Bytes returns a copy of the 32-byte seed.
func (k *SigningKey) Bytes() []byte { return append([]byte(nil), k.priv.Seed()...) }

// Public returns the matching public key.
func (k *SigningKey) Public() PublicKey {
	var p PublicKey
	copy(p.k[:], k.priv[ed25519.SeedSize:])
	return p
}

// sign signs msg. Ed25519 is deterministic: the same key and message give the same
// signature, so re-signing an unchanged post never looks like a fork.
func (k *SigningKey) sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// PublicKey is the public half of a [SigningKey]. The zero value is not a valid key.
type PublicKey struct {
	k [PublicKeySize]byte
}

// NewPublicKey validates a 32-byte Ed25519 public key: it must be the canonical
// encoding of a point on the curve, not of small order. A small-order key (the identity, say) verifies
// signatures anyone can make for any message, so an owner must not be able to
// delegate one, even by mistake.
func NewPublicKey(b []byte) (PublicKey, error) {
	var p PublicKey
	if len(b) != PublicKeySize {
		return p, ErrInvalidKey
	}
	copy(p.k[:], b)
	if !p.valid() {
		return PublicKey{}, ErrInvalidKey
	}
	return p, nil
}

// valid reports whether p is the canonical encoding of a point of more than small
// order. Canonical only, so that one key has one encoding and one identity.
func (p PublicKey) valid() bool {
	pt, err := new(edwards25519.Point).SetBytes(p.k[:])
	if err != nil || !bytes.Equal(pt.Bytes(), p.k[:]) {
		return false
	}
	return new(edwards25519.Point).MultByCofactor(pt).Equal(edwards25519.NewIdentityPoint()) != 1
}

// Bytes returns a copy of the 32-byte key.
func (p PublicKey) Bytes() []byte { return append([]byte(nil), p.k[:]...) }

// IsZero reports whether p is the zero value.
func (p PublicKey) IsZero() bool { return p.k == [PublicKeySize]byte{} }

// Equal reports whether p and o are the same key, in constant time.
func (p PublicKey) Equal(o PublicKey) bool { return subtle.ConstantTimeCompare(p.k[:], o.k[:]) == 1 }

// String returns the key in hex; public keys are not secret.
func (p PublicKey) String() string { return hex.EncodeToString(p.k[:]) }

// verify reports whether sig is a valid signature by p over msg. Go's ed25519
// rejects a non-canonical s and a non-canonical R, so a signature cannot be
// mangled into a second valid one by anyone but the signer.
func (p PublicKey) verify(msg, sig []byte) bool {
	if p.IsZero() {
		return false
	}
	return ed25519.Verify(ed25519.PublicKey(p.k[:]), msg, sig)
}

// readRand fills b from r (nil means crypto/rand.Reader).
func readRand(r io.Reader, b []byte) error {
	if r == nil {
		r = rand.Reader
	}
	_, err := io.ReadFull(r, b)
	return err
}
