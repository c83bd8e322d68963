// Package primitives is the small layer of symmetric cryptography under the Signal
// Protocol: HKDF-SHA256 (RFC 5869), HMAC-SHA256 (RFC 2104), AES-256-CBC with PKCS#7
// padding (NIST SP 800-38A, RFC 5652 section 6.3) and constant-time comparison.
//
// Everything here is a thin wrapper over Go's standard library (crypto/hkdf,
// crypto/hmac, crypto/sha256, crypto/aes, crypto/cipher, crypto/subtle); nothing is
// implemented from scratch. The wrappers fix the hash to SHA-256 and the key sizes to
// those libsignal uses, so callers cannot pick a weaker variant by accident.
//
// What it protects: the confidentiality and integrity of one message once the caller
// holds the right keys. What it does not: key management, nonce/IV uniqueness (the
// Double Ratchet derives a fresh key and IV for every message), replay.
package primitives

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
)

const (
	// KeySize is the size of an AES-256 key.
	KeySize = 32
	// IVSize is the size of an AES-CBC initialisation vector.
	IVSize = aes.BlockSize
	// MACSize is the size of a full HMAC-SHA256 tag.
	MACSize = sha256.Size
)

// ErrDecrypt is the one error DecryptCBC returns for a ciphertext it cannot open:
// wrong length, bad padding, anything. One opaque value, so that callers cannot
// become a padding oracle by reporting different failures differently.
var ErrDecrypt = errors.New("primitives: decryption failed")

// HKDF derives n bytes from secret with HKDF-SHA256. A nil salt means the RFC 5869
// default (a string of zeros), which is what libsignal passes for message keys.
func HKDF(secret, salt, info []byte, n int) ([]byte, error) {
	out, err := hkdf.Key(sha256.New, secret, salt, string(info), n)
	if err != nil {
		return nil, fmt.Errorf("hkdf: %w", err)
	}
	return out, nil
}

// HMAC returns the 32-byte HMAC-SHA256 of the concatenation of parts under key.
func HMAC(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// Equal reports whether a and b are equal, in time that depends only on their lengths.
func Equal(a, b []byte) bool {
	return subtle.ConstantTimeCompare(a, b) == 1
}

// EncryptCBC encrypts plaintext with AES-256-CBC under key and iv, after PKCS#7
// padding. The result is a new slice; plaintext is not modified.
func EncryptCBC(key, iv, plaintext []byte) ([]byte, error) {
	return AppendEncryptCBC(nil, key, iv, plaintext)
}

// AppendEncryptCBC is [EncryptCBC] appending the ciphertext to dst, so a hot path can
// reuse a buffer.
func AppendEncryptCBC(dst, key, iv, plaintext []byte) ([]byte, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("aes-cbc: key is %d bytes, want %d", len(key), KeySize)
	}
	if len(iv) != IVSize {
		return nil, fmt.Errorf("aes-cbc: iv is %d bytes, want %d", len(iv), IVSize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes-cbc: %w", err)
	}
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	total := len(plaintext) + pad
	start := len(dst)
	dst = grow(dst, total)
	out := dst[start : start+total]
	copy(out, plaintext)
	for i := len(plaintext); i < total; i++ {
		out[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(out, out)
	return dst, nil
}

// DecryptCBC decrypts an AES-256-CBC ciphertext and removes its PKCS#7 padding. Any
// failure caused by the ciphertext is [ErrDecrypt]; a key or IV of the wrong size is
// a caller bug and gets its own error.
func DecryptCBC(key, iv, ciphertext []byte) ([]byte, error) {
	return AppendDecryptCBC(nil, key, iv, ciphertext)
}

// AppendDecryptCBC is [DecryptCBC] appending the plaintext to dst.
func AppendDecryptCBC(dst, key, iv, ciphertext []byte) ([]byte, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("aes-cbc: key is %d bytes, want %d", len(key), KeySize)
	}
	if len(iv) != IVSize {
		return nil, fmt.Errorf("aes-cbc: iv is %d bytes, want %d", len(iv), IVSize)
	}
	if len(ciphertext) == 0 || len(ciphertext)%aes.BlockSize != 0 {
		return nil, ErrDecrypt
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes-cbc: %w", err)
	}
	start := len(dst)
	dst = grow(dst, len(ciphertext))
	out := dst[start : start+len(ciphertext)]
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, ciphertext)
	n, ok := unpad(out)
	if !ok {
		clear(out)
		return nil, ErrDecrypt
	}
	return dst[:start+n], nil
}

// unpad checks PKCS#7 padding in constant time (the MAC is checked before decryption
// in the protocol, but the primitive should not be an oracle on its own either).
func unpad(b []byte) (int, bool) {
	pad := int(b[len(b)-1])
	good := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, aes.BlockSize)
	for i := 1; i <= aes.BlockSize; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i, pad)
		match := subtle.ConstantTimeByteEq(b[len(b)-i], byte(pad))
		// Where i is inside the padding, the byte must equal pad.
		good &= subtle.ConstantTimeSelect(inPad, match, 1)
	}
	if good != 1 {
		return 0, false
	}
	return len(b) - pad, true
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// MAC is a reusable HMAC-SHA256 state for the hot path: one allocation for its
// lifetime instead of several per tag. Its zero value is not usable; use [NewMAC].
// A MAC is not safe for concurrent use.
type MAC struct {
	inner, outer hash.Hash
	ipad, opad   [sha256.BlockSize]byte
	sum, out     [sha256.Size]byte // scratch, so no result escapes to the heap
}

// NewMAC returns a reusable HMAC-SHA256 state.
func NewMAC() *MAC {
	return &MAC{inner: sha256.New(), outer: sha256.New()}
}

// Init keys m for a new tag. Keys longer than the SHA-256 block are hashed first, as
// RFC 2104 section 2 says.
func (m *MAC) Init(key []byte) {
	var k [sha256.BlockSize]byte
	if len(key) > sha256.BlockSize {
		s := sha256.Sum256(key)
		copy(k[:], s[:])
	} else {
		copy(k[:], key)
	}
	for i := range k {
		m.ipad[i] = k[i] ^ 0x36
		m.opad[i] = k[i] ^ 0x5c
	}
	clear(k[:])
	m.inner.Reset()
	m.inner.Write(m.ipad[:])
}

// Write adds p to the message being authenticated.
func (m *MAC) Write(p []byte) { m.inner.Write(p) }

// Sum appends the tag to dst and leaves m needing a new [MAC.Init].
func (m *MAC) Sum(dst []byte) []byte {
	in := m.inner.Sum(m.sum[:0])
	m.outer.Reset()
	m.outer.Write(m.opad[:])
	m.outer.Write(in)
	return m.outer.Sum(dst)
}

// Sum32 is [MAC.Init], [MAC.Write] for each part and [MAC.Sum] into a fixed array.
func (m *MAC) Sum32(key []byte, parts ...[]byte) (out [32]byte) {
	m.Init(key)
	for _, p := range parts {
		m.inner.Write(p)
	}
	m.Sum(m.out[:0])
	return m.out
}

// HKDFInto fills out with HKDF-SHA256(secret, salt, info) using m for every HMAC, so
// it allocates nothing. len(out) must be at most 255*32 bytes.
func (m *MAC) HKDFInto(out, secret, salt, info []byte) {
	if len(out) > 255*sha256.Size {
		panic("primitives: HKDF output too long")
	}
	var zero [sha256.Size]byte
	if salt == nil {
		salt = zero[:]
	}
	prk := m.Sum32(salt, secret)
	var t [sha256.Size]byte
	var ctr [1]byte
	tLen := 0
	for done := 0; done < len(out); {
		ctr[0]++
		m.Init(prk[:])
		m.inner.Write(t[:tLen])
		m.inner.Write(info)
		m.inner.Write(ctr[:])
		m.Sum(t[:0])
		tLen = sha256.Size
		done += copy(out[done:], t[:])
	}
	clear(prk[:])
	clear(t[:])
}
