// Package vrf implements the verifiable random function
// ECVRF-EDWARDS25519-SHA512-TAI of RFC 9381 (Sections 5 and 5.5).
//
// Key transparency uses it to turn a lookup key such as a phone number or a
// username into a log index: the server, which holds the [PrivateKey], proves
// that an index belongs to an input, and anyone holding the [PublicKey] checks
// that proof. What it protects: readers of the log cannot enumerate or test
// phone numbers against the published indexes without asking the server,
// and the server cannot show two different indexes for the same input
// (uniqueness) or an index that was not derived from the input (verifiability).
//
// What it does not protect: the server itself computes every index and so
// learns every input it is asked about; rate-limiting those questions is the
// caller's job. Encode-to-curve here is try-and-increment, whose running time
// depends on the input (RFC 9381 Section 5.4.1.1), so the time to prove
// reveals about one bit about alpha to someone who can time the server.
//
// Verification always runs ECVRF_validate_key (validate_key = TRUE, Section
// 5.4.5): public keys of small order are rejected, which gives the "full
// uniqueness" and "full collision resistance" properties of Section 3.
// Points are decoded strictly per RFC 8032 Section 5.1.3: a non-canonical
// encoding is invalid.
package vrf

import (
	cryptorand "crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"filippo.io/edwards25519"
)

// Sizes of the encodings, in bytes.
const (
	// SeedSize is the size of a private key seed (RFC 8032 secret key).
	SeedSize = 32
	// PublicKeySize is the size of an encoded public key.
	PublicKeySize = 32
	// ProofSize is ptLen + cLen + qLen = 32 + 16 + 32.
	ProofSize = 80
	// OutputSize is hLen, the size of beta (SHA-512).
	OutputSize = 64
)

const (
	suite     = 0x03 // suite_string of ECVRF-EDWARDS25519-SHA512-TAI
	cLen      = 16   // challenge length: 128 bits, Section 5.5
	ptLen     = 32
	qLen      = 32
	sepFront1 = 0x01 // encode_to_curve_domain_separator_front
	sepFront2 = 0x02 // challenge_generation_domain_separator_front
	sepFront3 = 0x03 // proof_to_hash_domain_separator_front
	sepBack   = 0x00 // every *_domain_separator_back
)

// ErrInvalidProof is returned by [PublicKey.Verify] for every proof that does
// not verify, whatever the reason, so that callers cannot learn which check
// failed.
var ErrInvalidProof = errors.New("vrf: invalid proof")

// PrivateKey is a VRF secret key. It has no String, text or JSON encoding on
// purpose; keep its seed with [PrivateKey.Seed] where secrets are kept.
type PrivateKey struct {
	// The secrets sit behind a pointer so that printing a key with %v
	// shows an address, not the seed.
	*secret
	pub PublicKey
}

type secret struct {
	seed   [SeedSize]byte
	x      *edwards25519.Scalar // secret scalar
	prefix [32]byte             // second half of SHA-512(seed), for nonces
}

// PublicKey is a validated VRF public key.
type PublicKey struct {
	y   *edwards25519.Point
	enc [PublicKeySize]byte // PK_string, also the encode_to_curve salt
}

// GenerateKey creates a private key from rand (crypto/rand.Reader if rand
// is nil).
func GenerateKey(rand io.Reader) (*PrivateKey, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	seed := make([]byte, SeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, fmt.Errorf("vrf: reading seed: %w", err)
	}
	return NewPrivateKey(seed)
}

// NewPrivateKey derives the key from a 32-byte seed as RFC 8032 Section
// 5.1.5 does for Ed25519 (the derivation Section 5.5 prescribes).
func NewPrivateKey(seed []byte) (*PrivateKey, error) {
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("vrf: seed is %d bytes, want %d", len(seed), SeedSize)
	}
	h := sha512.Sum512(seed)
	x, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		panic("vrf: clamping a 32-byte string failed: " + err.Error())
	}
	k := &PrivateKey{secret: &secret{x: x}}
	copy(k.seed[:], seed)
	copy(k.prefix[:], h[32:])
	k.pub.y = edwards25519.NewIdentityPoint().ScalarBaseMult(x)
	copy(k.pub.enc[:], k.pub.y.Bytes())
	// A clamped scalar is a multiple of the cofactor and nonzero modulo the
	// group order, so x*B always passes validate_key.
	return k, nil
}

// Seed returns a copy of the 32-byte seed the key was derived from.
func (k *PrivateKey) Seed() []byte {
	s := k.seed
	return s[:]
}

// Public returns the public key.
func (k *PrivateKey) Public() *PublicKey {
	p := k.pub
	return &p
}

// Prove computes the VRF output beta (64 bytes) for alpha and the proof pi
// (80 bytes) that beta is right (RFC 9381 Sections 5.1 and 5.2).
func (k *PrivateKey) Prove(alpha []byte) (beta, pi []byte) {
	h := encodeToCurve(k.pub.enc[:], alpha)
	hString := h.Bytes()
	gamma := edwards25519.NewIdentityPoint().ScalarMult(k.x, h)

	// Nonce: RFC 8032 style, from the second half of SHA-512(SK) and H.
	nh := sha512.New()
	nh.Write(k.prefix[:])
	nh.Write(hString)
	kScalar, err := edwards25519.NewScalar().SetUniformBytes(nh.Sum(nil))
	if err != nil {
		panic("vrf: reducing a 64-byte hash failed: " + err.Error())
	}
	u := edwards25519.NewIdentityPoint().ScalarBaseMult(kScalar)
	v := edwards25519.NewIdentityPoint().ScalarMult(kScalar, h)
	c := challenge(k.pub.y, h, gamma, u, v)

	cScalar := challengeScalar(c)
	s := edwards25519.NewScalar().MultiplyAdd(cScalar, k.x, kScalar)

	pi = make([]byte, 0, ProofSize)
	pi = append(pi, gamma.Bytes()...)
	pi = append(pi, c[:]...)
	pi = append(pi, s.Bytes()...)
	return proofToHash(gamma), pi
}

// NewPublicKey decodes a 32-byte public key. It rejects encodings that are
// not canonical (RFC 8032 Section 5.1.3) and keys of small order
// (ECVRF_validate_key, RFC 9381 Section 5.4.5), for which a proof would not
// bind its output to its input.
func NewPublicKey(b []byte) (*PublicKey, error) {
	if len(b) != PublicKeySize {
		return nil, fmt.Errorf("vrf: public key is %d bytes, want %d", len(b), PublicKeySize)
	}
	y, err := stringToPoint(b)
	if err != nil {
		return nil, fmt.Errorf("vrf: public key: %w", err)
	}
	if edwards25519.NewIdentityPoint().MultByCofactor(y).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return nil, errors.New("vrf: public key has small order")
	}
	pk := &PublicKey{y: y}
	copy(pk.enc[:], b)
	return pk, nil
}

// Bytes returns a copy of the 32-byte encoding of the key.
func (pk *PublicKey) Bytes() []byte {
	b := pk.enc
	return b[:]
}

// Equal reports whether pk and other are the same key, in constant time.
func (pk *PublicKey) Equal(other *PublicKey) bool {
	return subtle.ConstantTimeCompare(pk.enc[:], other.enc[:]) == 1
}

// Verify checks that pi proves the VRF output for alpha under pk and returns
// that output, beta (RFC 9381 Section 5.3). Every failure is
// [ErrInvalidProof].
func (pk *PublicKey) Verify(alpha, pi []byte) (beta []byte, err error) {
	gamma, c, s, err := decodeProof(pi)
	if err != nil {
		return nil, ErrInvalidProof
	}
	h := encodeToCurve(pk.enc[:], alpha)
	negC := edwards25519.NewScalar().Negate(challengeScalar(c))
	// U = s*B - c*Y
	u := edwards25519.NewIdentityPoint().VarTimeDoubleScalarBaseMult(negC, pk.y, s)
	// V = s*H - c*Gamma
	v := edwards25519.NewIdentityPoint().VarTimeMultiScalarMult(
		[]*edwards25519.Scalar{s, negC}, []*edwards25519.Point{h, gamma})
	c2 := challenge(pk.y, h, gamma, u, v)
	if subtle.ConstantTimeCompare(c[:], c2[:]) != 1 {
		return nil, ErrInvalidProof
	}
	return proofToHash(gamma), nil
}

// ProofToHash returns beta for a proof without verifying it (RFC 9381
// Section 5.2). Use it only on proofs that were verified already, or that
// the caller made with [PrivateKey.Prove].
func ProofToHash(pi []byte) ([]byte, error) {
	gamma, _, _, err := decodeProof(pi)
	if err != nil {
		return nil, err
	}
	return proofToHash(gamma), nil
}

// decodeProof is ECVRF_decode_proof (Section 5.4.4).
func decodeProof(pi []byte) (gamma *edwards25519.Point, c [cLen]byte, s *edwards25519.Scalar, err error) {
	if len(pi) != ProofSize {
		return nil, c, nil, fmt.Errorf("vrf: proof is %d bytes, want %d", len(pi), ProofSize)
	}
	gamma, err = stringToPoint(pi[:ptLen])
	if err != nil {
		return nil, c, nil, fmt.Errorf("vrf: proof gamma: %w", err)
	}
	copy(c[:], pi[ptLen:ptLen+cLen])
	// SetCanonicalBytes rejects s >= q, as step 8 requires.
	s, err = edwards25519.NewScalar().SetCanonicalBytes(pi[ptLen+cLen:])
	if err != nil {
		return nil, c, nil, fmt.Errorf("vrf: proof scalar: %w", err)
	}
	return gamma, c, s, nil
}

// stringToPoint decodes a point strictly as RFC 8032 Section 5.1.3 does.
// edwards25519.Point.SetBytes also accepts y >= p and a negative zero x;
// both re-encode differently, so comparing the re-encoding rejects them.
func stringToPoint(b []byte) (*edwards25519.Point, error) {
	p, err := edwards25519.NewIdentityPoint().SetBytes(b)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(p.Bytes(), b) != 1 {
		return nil, errors.New("non-canonical point encoding")
	}
	return p, nil
}

// encodeToCurve is ECVRF_encode_to_curve_try_and_increment (Section
// 5.4.1.1) with interpret_hash_value_as_a_point(s) = string_to_point(s[0..31]).
func encodeToCurve(salt, alpha []byte) *edwards25519.Point {
	// Each attempt succeeds with probability about 1/2, so reaching 256
	// attempts has probability about 2^-256.
	for ctr := 0; ctr < 256; ctr++ {
		h := sha512.New()
		h.Write([]byte{suite, sepFront1})
		h.Write(salt)
		h.Write(alpha)
		h.Write([]byte{byte(ctr), sepBack})
		sum := h.Sum(nil)
		p, err := stringToPoint(sum[:32])
		if err != nil {
			continue
		}
		p.MultByCofactor(p)
		if p.Equal(edwards25519.NewIdentityPoint()) == 1 {
			continue
		}
		return p
	}
	panic("vrf: try-and-increment found no point in 256 attempts")
}

// challenge is ECVRF_challenge_generation (Section 5.4.3), truncated to cLen.
func challenge(points ...*edwards25519.Point) [cLen]byte {
	h := sha512.New()
	h.Write([]byte{suite, sepFront2})
	for _, p := range points {
		h.Write(p.Bytes())
	}
	h.Write([]byte{sepBack})
	var c [cLen]byte
	copy(c[:], h.Sum(nil))
	return c
}

// challengeScalar reads the 16-byte little-endian challenge as a scalar;
// it is below 2^128 < q, so it is always canonical.
func challengeScalar(c [cLen]byte) *edwards25519.Scalar {
	var b [32]byte
	copy(b[:], c[:])
	s, err := edwards25519.NewScalar().SetCanonicalBytes(b[:])
	if err != nil {
		panic("vrf: 128-bit challenge not canonical: " + err.Error())
	}
	return s
}

// proofToHash is steps 4 to 7 of ECVRF_proof_to_hash (Section 5.2).
func proofToHash(gamma *edwards25519.Point) []byte {
	h := sha512.New()
	h.Write([]byte{suite, sepFront3})
	h.Write(edwards25519.NewIdentityPoint().MultByCofactor(gamma).Bytes())
	h.Write([]byte{sepBack})
	return h.Sum(nil)
}
