package primitives

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
)

// RFC 5869 appendix A.1 (test case 1).
func TestHKDFRFC5869(t *testing.T) {
	ikm, _ := hex.DecodeString("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b")
	salt, _ := hex.DecodeString("000102030405060708090a0b0c")
	info, _ := hex.DecodeString("f0f1f2f3f4f5f6f7f8f9")
	want := "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
	got, err := HKDF(ikm, salt, info, 42)
	if err != nil {
		t.Fatalf("HKDF = %v", err)
	}
	if hex.EncodeToString(got) != want {
		t.Errorf("HKDF(A.1) = %x, want %s", got, want)
	}
	m := NewMAC()
	out := make([]byte, 42)
	m.HKDFInto(out, ikm, salt, info)
	if hex.EncodeToString(out) != want {
		t.Errorf("HKDFInto(A.1) = %x, want %s", out, want)
	}
}

// The reusable MAC and HKDFInto must agree with the standard library for every key
// and message length around the block boundaries.
func TestMACMatchesStdlib(t *testing.T) {
	m := NewMAC()
	for _, klen := range []int{0, 1, 31, 32, 63, 64, 65, 130} {
		for _, mlen := range []int{0, 1, 55, 64, 200} {
			key := bytes.Repeat([]byte{byte(klen + 1)}, klen)
			msg := bytes.Repeat([]byte{byte(mlen + 7)}, mlen)
			std := hmac.New(sha256.New, key)
			std.Write(msg)
			want := std.Sum(nil)
			if got := m.Sum32(key, msg[:mlen/2], msg[mlen/2:]); !bytes.Equal(got[:], want) {
				t.Errorf("Sum32(key %d, msg %d) = %x, want %x", klen, mlen, got, want)
			}
			if got := HMAC(key, msg); !bytes.Equal(got, want) {
				t.Errorf("HMAC(key %d, msg %d) = %x, want %x", klen, mlen, got, want)
			}
			for _, n := range []int{1, 32, 33, 80, 96} {
				wantK, err := hkdf.Key(sha256.New, msg, key, "info", n)
				if err != nil {
					t.Fatal(err)
				}
				out := make([]byte, n)
				salt := key
				if klen == 0 {
					salt = nil
				}
				m.HKDFInto(out, msg, salt, []byte("info"))
				if !bytes.Equal(out, wantK) {
					t.Errorf("HKDFInto(n %d, salt %d, ikm %d) = %x, want %x", n, klen, mlen, out, wantK)
				}
			}
		}
	}
}

func TestCBCRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	iv := bytes.Repeat([]byte{2}, 16)
	for _, n := range []int{0, 1, 15, 16, 17, 256} {
		pt := bytes.Repeat([]byte{'p'}, n)
		ct, err := EncryptCBC(key, iv, pt)
		if err != nil {
			t.Fatalf("EncryptCBC(%d) = %v", n, err)
		}
		if want := (n/16 + 1) * 16; len(ct) != want {
			t.Errorf("len(EncryptCBC(%d)) = %d, want %d", n, len(ct), want)
		}
		got, err := DecryptCBC(key, iv, ct)
		if err != nil || !bytes.Equal(got, pt) {
			t.Errorf("DecryptCBC(EncryptCBC(%d)) = %x, %v, want %x", n, got, err, pt)
		}
	}
}

func TestCBCBadPadding(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	iv := bytes.Repeat([]byte{2}, 16)
	ct, err := EncryptCBC(key, iv, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ct   []byte
	}{
		{"empty", nil},
		{"not a block multiple", ct[:15]},
		{"flipped last byte", func() []byte { c := bytes.Clone(ct); c[len(c)-1] ^= 1; return c }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecryptCBC(key, iv, tt.ct)
			if !errors.Is(err, ErrDecrypt) {
				t.Errorf("DecryptCBC(%s) = %x, %v, want ErrDecrypt", tt.name, got, err)
			}
		})
	}
	if _, err := DecryptCBC(key[:16], iv, ct); err == nil || errors.Is(err, ErrDecrypt) {
		t.Errorf("DecryptCBC(16-byte key) = %v, want a key-size error", err)
	}
}

func TestEqual(t *testing.T) {
	if !Equal([]byte("ab"), []byte("ab")) || Equal([]byte("ab"), []byte("ac")) || Equal([]byte("a"), []byte("ab")) {
		t.Error("Equal gives wrong answers")
	}
}
