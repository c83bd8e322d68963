package kem

import (
	"bytes"
	"errors"
	"testing"
)

func seed(b byte) []byte { return bytes.Repeat([]byte{b}, SeedSize) }

func TestRoundTrip(t *testing.T) {
	kp := NewKeyPairFromSeed(seed(1))
	ss, ct, err := kp.Public.Encapsulate(nil)
	if err != nil {
		t.Fatalf("Encapsulate = %v", err)
	}
	if len(ct) != CiphertextSize || ct[0] != TypeKyber1024 {
		t.Fatalf("Encapsulate ciphertext = %d bytes starting %#x, want %d starting 0x08", len(ct), ct[0], CiphertextSize)
	}
	got, err := kp.Private.Decapsulate(ct)
	if err != nil || !bytes.Equal(got, ss) {
		t.Fatalf("Decapsulate = %x, %v, want %x", got, err, ss)
	}
	// Implicit rejection: a flipped bit yields a different secret, not an error.
	bad := bytes.Clone(ct)
	bad[100] ^= 1
	got, err = kp.Private.Decapsulate(bad)
	if err != nil || bytes.Equal(got, ss) {
		t.Errorf("Decapsulate(tampered) = %x, %v, want another secret and no error", got, err)
	}
}

func TestSerialization(t *testing.T) {
	kp := NewKeyPairFromSeed(seed(2))
	if again := NewKeyPairFromSeed(seed(2)); !again.Public.Equal(kp.Public) {
		t.Errorf("NewKeyPairFromSeed is not deterministic")
	}
	pb := kp.Public.Bytes()
	if len(pb) != PublicKeySize || pb[0] != TypeKyber1024 {
		t.Fatalf("Public.Bytes() = %d bytes starting %#x", len(pb), pb[0])
	}
	pub, err := NewPublicKey(pb)
	if err != nil || !pub.Equal(kp.Public) {
		t.Fatalf("NewPublicKey(Bytes()) = %v", err)
	}
	sb := kp.Private.Bytes()
	priv, err := NewPrivateKey(sb)
	if err != nil {
		t.Fatalf("NewPrivateKey(Bytes()) = %v", err)
	}
	if !priv.PublicKey().Equal(kp.Public) || !bytes.Equal(priv.Bytes(), sb) {
		t.Errorf("NewPrivateKey(Bytes()) does not round trip")
	}
}

func TestInvalid(t *testing.T) {
	kp := NewKeyPairFromSeed(seed(3))
	pb := kp.Public.Bytes()
	notReduced := bytes.Clone(pb)
	notReduced[1], notReduced[2] = 0xff, 0xff // coefficient 0xfff > q
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"wrong type", append([]byte{0x07}, pb[1:]...)},
		{"ml-kem type", append([]byte{0x0a}, pb[1:]...)},
		{"short", pb[:len(pb)-1]},
		{"long", append(bytes.Clone(pb), 0)},
		{"not reduced", notReduced},
	}
	for _, tt := range tests {
		if _, err := NewPublicKey(tt.b); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("NewPublicKey(%s) = %v, want ErrInvalidKey", tt.name, err)
		}
	}
	if _, err := NewPrivateKey(kp.Private.Bytes()[:100]); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("NewPrivateKey(short) = %v, want ErrInvalidKey", err)
	}
	_, ct, _ := kp.Public.Encapsulate(nil)
	for _, bad := range [][]byte{nil, ct[1:], append([]byte{0x0a}, ct[1:]...), ct[:100]} {
		if _, err := kp.Private.Decapsulate(bad); !errors.Is(err, ErrInvalidCiphertext) {
			t.Errorf("Decapsulate(%d bytes) = %v, want ErrInvalidCiphertext", len(bad), err)
		}
	}
}
