// Package curve holds the Curve25519 keys of the Signal Protocol: X25519 agreement and
// XEdDSA signatures, encoded exactly as libsignal encodes them.
//
// It is the one piece of cryptography the server shares with clients: the server checks
// the XEdDSA signature on an uploaded prekey with it, and nothing more. It has no I/O and
// no state.
//
// Encodings (libsignal rust/protocol/src/curve.rs): a public key is the type byte 0x05
// followed by the 32-byte Montgomery u-coordinate; a private key is the 32-byte scalar,
// clamped as RFC 7748 says. Signatures are XEdDSA (Signal's "XEdDSA and VXEdDSA"
// specification, section 2.3) in libsignal's variant, which keeps the sign of the signer's
// Edwards public key in the top bit of the last signature byte instead of negating the
// private scalar; a verifier reads that bit, so both variants verify.
//
// What it does not protect: a key's provenance (that is what identity keys, safety
// numbers and key transparency are for) and keys in memory.
package curve

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"sync"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

const (
	// PublicKeySize is the size of an encoded public key: type byte and u-coordinate.
	PublicKeySize = 33
	// PrivateKeySize is the size of an encoded private key.
	PrivateKeySize = 32
	// SignatureSize is the size of an XEdDSA signature.
	SignatureSize = 64

	// TypeDjb is libsignal's key-type byte for Curve25519 ("djb") public keys.
	TypeDjb = 0x05
)

// ErrInvalidKey is returned for key bytes that are not a valid encoding.
var ErrInvalidKey = errors.New("curve: invalid key")

// PublicKey is a Curve25519 public key. The zero value is not a valid key.
type PublicKey struct {
	u [32]byte

	// The Edwards form for XEdDSA verification, computed on first use: it costs an
	// inversion and a square root, which a key that only ever does X25519 never needs.
	edOnce sync.Once
	ed     *edwardsKey
}

// edwardsKey is a Montgomery key's Edwards image for both signs of x, as a verifier
// needs it: the point with its negation, and their encodings (hashed into the challenge).
type edwardsKey struct {
	point, neg  *edwards25519.Point
	enc, negEnc []byte
}

// NewPublicKey validates a serialized public key: 0x05 followed by 32 bytes.
//
// It is stricter than RFC 7748 on purpose: a u-coordinate with the top bit set or not
// reduced modulo 2^255-19 is refused, because an honest key generator never produces one
// and accepting several encodings of one key would let one key have several identities.
func NewPublicKey(b []byte) (*PublicKey, error) {
	if len(b) != PublicKeySize {
		return nil, fmt.Errorf("%w: public key is %d bytes, want %d", ErrInvalidKey, len(b), PublicKeySize)
	}
	if b[0] != TypeDjb {
		return nil, fmt.Errorf("%w: unknown key type 0x%02x", ErrInvalidKey, b[0])
	}
	var fe field.Element
	if _, err := fe.SetBytes(b[1:]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	if subtle.ConstantTimeCompare(fe.Bytes(), b[1:]) != 1 {
		return nil, fmt.Errorf("%w: non-canonical u-coordinate", ErrInvalidKey)
	}
	k := new(PublicKey)
	copy(k.u[:], b[1:])
	return k, nil
}

// Bytes returns a copy of the 33-byte serialized key.
func (k *PublicKey) Bytes() []byte {
	b := make([]byte, PublicKeySize)
	b[0] = TypeDjb
	copy(b[1:], k.u[:])
	return b
}

// U returns a copy of the 32-byte Montgomery u-coordinate without the type byte.
func (k *PublicKey) U() []byte {
	return append([]byte(nil), k.u[:]...)
}

// Equal reports whether k and o are the same key, in constant time.
func (k *PublicKey) Equal(o *PublicKey) bool {
	if k == nil || o == nil {
		return k == o
	}
	return subtle.ConstantTimeCompare(k.u[:], o.u[:]) == 1
}

// String returns the key in hex; public keys are not secret.
func (k *PublicKey) String() string { return fmt.Sprintf("%x", k.Bytes()) }

// PrivateKey is a Curve25519 private key. It has no String or text encoding on purpose.
type PrivateKey struct {
	k   [32]byte
	dh  *ecdh.PrivateKey
	pub *PublicKey

	// The signing scalar and Edwards public key, computed on first Sign: ephemeral
	// ratchet keys never sign, so they should not pay a base-point multiplication.
	signOnce sync.Once
	a        *edwards25519.Scalar
	bigA     []byte
}

// GeneratePrivateKey makes a new private key from 32 bytes of rand (nil means
// crypto/rand.Reader). Tests pass a deterministic reader for known answers.
func GeneratePrivateKey(r io.Reader) (*PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [32]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, fmt.Errorf("generating private key: %w", err)
	}
	return NewPrivateKey(b[:])
}

// NewPrivateKey validates a 32-byte private key and clamps it, as libsignal does when it
// deserializes one, so that the stored scalar is the one X25519 and XEdDSA both use.
func NewPrivateKey(b []byte) (*PrivateKey, error) {
	if len(b) != PrivateKeySize {
		return nil, fmt.Errorf("%w: private key is %d bytes, want %d", ErrInvalidKey, len(b), PrivateKeySize)
	}
	k := new(PrivateKey)
	copy(k.k[:], b)
	k.k[0] &= 248
	k.k[31] &= 127
	k.k[31] |= 64
	dh, err := ecdh.X25519().NewPrivateKey(k.k[:])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	k.dh = dh
	k.pub = new(PublicKey)
	copy(k.pub.u[:], dh.PublicKey().Bytes())
	return k, nil
}

// Format prints a placeholder for every verb, so that a private key inside a struct
// printed with %v or %#v, or a log line, never shows its bytes. It is deliberately not a
// String method: nothing should turn a private key into text.
func (k *PrivateKey) Format(f fmt.State, verb rune) { io.WriteString(f, "curve.PrivateKey(redacted)") }

var _ fmt.Formatter = (*PrivateKey)(nil)

// Bytes returns a copy of the 32-byte clamped private key.
func (k *PrivateKey) Bytes() []byte { return append([]byte(nil), k.k[:]...) }

// PublicKey returns the matching public key.
func (k *PrivateKey) PublicKey() *PublicKey { return k.pub }

// Agree computes the X25519 shared secret with pub. An all-zero result (pub of small
// order) is an error: such a "secret" is known to everyone (RFC 7748, section 6.1).
func (k *PrivateKey) Agree(pub *PublicKey) ([]byte, error) {
	p, err := ecdh.X25519().NewPublicKey(pub.u[:])
	if err != nil {
		return nil, fmt.Errorf("agreement: %w", ErrInvalidKey)
	}
	s, err := k.dh.ECDH(p)
	if err != nil {
		return nil, fmt.Errorf("agreement: %w", ErrInvalidKey)
	}
	return s, nil
}

// hashPrefix1 domain-separates the nonce hash from the challenge hash (XEdDSA spec
// section 2.3: hash_1 prefixes 2^256 - 2 in little-endian, 0xFE then 31 bytes 0xFF).
var hashPrefix1 = func() [32]byte {
	var p [32]byte
	for i := range p {
		p[i] = 0xFF
	}
	p[0] = 0xFE
	return p
}()

// Sign makes an XEdDSA signature over msg. rand supplies the 64 bytes of nonce
// randomness the specification calls Z (nil means crypto/rand.Reader); the nonce also
// hashes in the private key and the message, so a weak rand does not leak the key.
func (k *PrivateKey) Sign(r io.Reader, msg []byte) ([]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	var z [64]byte
	if _, err := io.ReadFull(r, z[:]); err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	k.signOnce.Do(func() {
		a, err := edwards25519.NewScalar().SetBytesWithClamping(k.k[:])
		if err != nil {
			panic("curve: clamped scalar rejected: " + err.Error()) // 32 bytes always fit
		}
		k.a, k.bigA = a, new(edwards25519.Point).ScalarBaseMult(a).Bytes()
	})
	a, bigA := k.a, k.bigA
	signBit := bigA[31] & 0x80

	h := sha512.New()
	h.Write(hashPrefix1[:])
	h.Write(k.k[:])
	h.Write(msg)
	h.Write(z[:])
	var digest [64]byte
	rs, _ := edwards25519.NewScalar().SetUniformBytes(h.Sum(digest[:0]))
	bigR := new(edwards25519.Point).ScalarBaseMult(rs).Bytes()

	h.Reset()
	h.Write(bigR)
	h.Write(bigA)
	h.Write(msg)
	hs, _ := edwards25519.NewScalar().SetUniformBytes(h.Sum(digest[:0]))
	s := edwards25519.NewScalar().MultiplyAdd(hs, a, rs)

	sig := make([]byte, SignatureSize)
	copy(sig, bigR)
	copy(sig[32:], s.Bytes())
	// s < 2^253, so its top bit is free to carry the sign of the Edwards key.
	sig[63] = sig[63]&0x7F | signBit
	return sig, nil
}

// Verify reports whether sig is a valid XEdDSA signature by k over msg.
//
// It is stricter than libsignal in one way: s must be reduced modulo the group order.
// libsignal's signers always reduce s, so honest signatures verify; the check removes the
// malleability of adding the order to s.
func (k *PublicKey) Verify(msg, sig []byte) bool {
	if len(sig) != SignatureSize {
		return false
	}
	k.edOnce.Do(func() { k.ed = toEdwards(k.u[:]) })
	if k.ed == nil {
		return false
	}
	bigA, aEnc := k.ed.point, k.ed.enc
	if sig[63]&0x80 != 0 {
		bigA, aEnc = k.ed.neg, k.ed.negEnc
	}
	var s [32]byte
	copy(s[:], sig[32:])
	s[31] &= 0x7F
	return verifyEdwards(bigA, aEnc, msg, sig[:32], s[:])
}

// toEdwards maps a Montgomery u-coordinate to its Edwards point with x of sign 0 and
// that point's negation, or nil where the map is undefined or lands on no point.
func toEdwards(uBytes []byte) *edwardsKey {
	var u field.Element
	if _, err := u.SetBytes(uBytes); err != nil {
		return nil
	}
	// The birational map y = (u-1)/(u+1) is undefined at u = -1.
	one := new(field.Element).One()
	uPlus1 := new(field.Element).Add(&u, one)
	if uPlus1.Equal(new(field.Element).Zero()) == 1 {
		return nil
	}
	y := new(field.Element).Multiply(new(field.Element).Subtract(&u, one), new(field.Element).Invert(uPlus1))
	p, err := new(edwards25519.Point).SetBytes(y.Bytes())
	if err != nil {
		return nil
	}
	neg := new(edwards25519.Point).Negate(p)
	return &edwardsKey{point: p, neg: neg, enc: p.Bytes(), negEnc: neg.Bytes()}
}

// verifyEdwards is the Ed25519 verification equation R == [s]B - [H(R||A||M)]A shared by
// XEdDSA and, in tests, by the Wycheproof Ed25519 vectors. aEnc is A as it is hashed.
func verifyEdwards(bigA *edwards25519.Point, aEnc, msg, rEnc, sEnc []byte) bool {
	s, err := edwards25519.NewScalar().SetCanonicalBytes(sEnc)
	if err != nil {
		return false
	}
	h := sha512.New()
	h.Write(rEnc)
	h.Write(aEnc)
	h.Write(msg)
	var digest [64]byte
	hs, _ := edwards25519.NewScalar().SetUniformBytes(h.Sum(digest[:0]))
	minusA := new(edwards25519.Point).Negate(bigA)
	check := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(hs, minusA, s)
	return subtle.ConstantTimeCompare(check.Bytes(), rEnc) == 1
}
