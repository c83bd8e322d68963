package curve

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 7748, section 6.1: the X25519 Diffie-Hellman example.
func TestAgreeRFC7748(t *testing.T) {
	alice, err := NewPrivateKey(mustHex(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := NewPrivateKey(mustHex(t, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
	if err != nil {
		t.Fatal(err)
	}
	wantAlicePub := mustHex(t, "058520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
	wantBobPub := mustHex(t, "05de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
	if got := alice.PublicKey().Bytes(); !bytes.Equal(got, wantAlicePub) {
		t.Errorf("alice.PublicKey() = %x, want %x", got, wantAlicePub)
	}
	if got := bob.PublicKey().Bytes(); !bytes.Equal(got, wantBobPub) {
		t.Errorf("bob.PublicKey() = %x, want %x", got, wantBobPub)
	}
	want := mustHex(t, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
	for _, c := range []struct {
		name string
		priv *PrivateKey
		pub  *PublicKey
	}{{"alice", alice, bob.PublicKey()}, {"bob", bob, alice.PublicKey()}} {
		got, err := c.priv.Agree(c.pub)
		if err != nil {
			t.Fatalf("%s.Agree: %v", c.name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s.Agree() = %x, want %x", c.name, got, want)
		}
	}
}

func TestAgreeRejectsLowOrder(t *testing.T) {
	priv, err := GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	// u = 0 and u = 1 are points of small order: the shared secret would be all zeros.
	for _, u := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	} {
		pub, err := NewPublicKey(append([]byte{TypeDjb}, mustHex(t, u)...))
		if err != nil {
			t.Fatalf("NewPublicKey(%s): %v", u, err)
		}
		if s, err := priv.Agree(pub); err == nil {
			t.Errorf("Agree(low order %s) = %x, want error", u, s)
		}
	}
}

func TestNewPublicKeyRejects(t *testing.T) {
	good, _ := GeneratePrivateKey(nil)
	gb := good.PublicKey().Bytes()
	highBit := append([]byte(nil), gb...)
	highBit[32] |= 0x80
	wrongType := append([]byte(nil), gb...)
	wrongType[0] = 0x08
	// p = 2^255 - 19, the first non-canonical u.
	p := append([]byte{TypeDjb}, mustHex(t, "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")...)
	for name, b := range map[string][]byte{
		"empty":         nil,
		"short":         gb[:32],
		"long":          append(append([]byte(nil), gb...), 0),
		"wrong type":    wrongType,
		"high bit":      highBit,
		"non-canonical": p,
	} {
		if _, err := NewPublicKey(b); err == nil {
			t.Errorf("NewPublicKey(%s) = nil error, want error", name)
		}
	}
	if _, err := NewPublicKey(gb); err != nil {
		t.Errorf("NewPublicKey(good) = %v, want nil", err)
	}
}

func TestNewPrivateKeyClamps(t *testing.T) {
	raw := bytes.Repeat([]byte{0xFF}, 32)
	k, err := NewPrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	b := k.Bytes()
	if b[0]&7 != 0 || b[31]&0x80 != 0 || b[31]&0x40 == 0 {
		t.Errorf("NewPrivateKey(ff..).Bytes() = %x, not clamped", b)
	}
	if _, err := NewPrivateKey(raw[:31]); err == nil {
		t.Error("NewPrivateKey(31 bytes) = nil error, want error")
	}
}

func TestSignVerify(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{1})
	msgs := [][]byte{nil, []byte("x"), bytes.Repeat([]byte("bastion"), 100)}
	for i := 0; i < 64; i++ {
		priv, err := GeneratePrivateKey(rng)
		if err != nil {
			t.Fatal(err)
		}
		pub := priv.PublicKey()
		for _, msg := range msgs {
			sig, err := priv.Sign(rng, msg)
			if err != nil {
				t.Fatal(err)
			}
			if !pub.Verify(msg, sig) {
				t.Fatalf("Verify(own signature, key %d, msg %q) = false, want true", i, msg)
			}
			for bit := 0; bit < SignatureSize*8; bit += 7 {
				bad := append([]byte(nil), sig...)
				bad[bit/8] ^= 1 << (bit % 8)
				if pub.Verify(msg, bad) {
					t.Fatalf("Verify(signature with bit %d flipped) = true, want false", bit)
				}
			}
			if pub.Verify(append(msg, 0), sig) {
				t.Fatal("Verify(other message) = true, want false")
			}
			other, _ := GeneratePrivateKey(rng)
			if other.PublicKey().Verify(msg, sig) {
				t.Fatal("Verify(other key) = true, want false")
			}
		}
	}
}

func TestVerifyRejectsMalformed(t *testing.T) {
	priv, _ := GeneratePrivateKey(nil)
	sig, _ := priv.Sign(nil, []byte("m"))
	pub := priv.PublicKey()
	for name, s := range map[string][]byte{
		"short": sig[:63],
		"long":  append(append([]byte(nil), sig...), 0),
		"empty": nil,
	} {
		if pub.Verify([]byte("m"), s) {
			t.Errorf("Verify(%s signature) = true, want false", name)
		}
	}
	// s + L is the same point but a second encoding: refused (no malleability).
	l := mustHex(t, "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
	mall := append([]byte(nil), sig...)
	var carry uint16
	for i := 0; i < 32; i++ {
		sum := uint16(mall[32+i]) + uint16(l[i]) + carry
		if i == 31 {
			sum = uint16(mall[63]&0x7F) + uint16(l[i]) + carry
			mall[63] = byte(sum) | sig[63]&0x80
			break
		}
		mall[32+i] = byte(sum)
		carry = sum >> 8
	}
	if pub.Verify([]byte("m"), mall) {
		t.Error("Verify(s+L) = true, want false")
	}
	// u = -1 (p-1) has no Edwards image.
	minusOne, err := NewPublicKey(append([]byte{TypeDjb}, mustHex(t, "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")...))
	if err != nil {
		t.Fatal(err)
	}
	if minusOne.Verify([]byte("m"), sig) {
		t.Error("Verify(key u=-1) = true, want false")
	}
}

func TestEqual(t *testing.T) {
	a, _ := GeneratePrivateKey(nil)
	b, _ := GeneratePrivateKey(nil)
	a2, _ := NewPublicKey(a.PublicKey().Bytes())
	if !a.PublicKey().Equal(a2) {
		t.Error("Equal(same key) = false")
	}
	if a.PublicKey().Equal(b.PublicKey()) {
		t.Error("Equal(other key) = true")
	}
}

func FuzzNewPublicKey(f *testing.F) {
	k, _ := GeneratePrivateKey(rand.NewChaCha8([32]byte{2}))
	f.Add(k.PublicKey().Bytes())
	f.Add([]byte{TypeDjb})
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, err := NewPublicKey(b)
		if err != nil {
			return
		}
		if got := pub.Bytes(); !bytes.Equal(got, b) {
			t.Fatalf("NewPublicKey(%x).Bytes() = %x, want round trip", b, got)
		}
	})
}

func FuzzVerify(f *testing.F) {
	k, _ := GeneratePrivateKey(rand.NewChaCha8([32]byte{3}))
	sig, _ := k.Sign(nil, []byte("seed"))
	f.Add([]byte("seed"), sig)
	pub := k.PublicKey()
	f.Fuzz(func(t *testing.T, msg, sig []byte) {
		pub.Verify(msg, sig) // must not panic on any input
	})
}

func BenchmarkSign(b *testing.B) {
	k, _ := GeneratePrivateKey(nil)
	msg := make([]byte, 33)
	for b.Loop() {
		k.Sign(nil, msg)
	}
}

func BenchmarkVerify(b *testing.B) {
	k, _ := GeneratePrivateKey(nil)
	msg := make([]byte, 33)
	sig, _ := k.Sign(nil, msg)
	pub := k.PublicKey()
	for b.Loop() {
		pub.Verify(msg, sig)
	}
}

func BenchmarkAgree(b *testing.B) {
	k, _ := GeneratePrivateKey(nil)
	o, _ := GeneratePrivateKey(nil)
	for b.Loop() {
		k.Agree(o.PublicKey())
	}
}

func TestPrivateKeyNeverPrinted(t *testing.T) {
	k, _ := NewPrivateKey(bytes.Repeat([]byte{0x42}, 32))
	secretHex := hex.EncodeToString(k.Bytes())
	type holder struct{ Key *PrivateKey }
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q", "%d"} {
		for _, v := range []any{k, holder{k}, []*PrivateKey{k}} {
			out := fmt.Sprintf(verb, v)
			if strings.Contains(out, secretHex) || strings.Contains(out, "66 66") || strings.Contains(out, "0x42") || strings.Contains(out, "[66") {
				t.Errorf("Sprintf(%s, %T) = %q, shows key material", verb, v, out)
			}
			if !strings.Contains(out, "redacted") {
				t.Errorf("Sprintf(%s, %T) = %q, want the redacted placeholder", verb, v, out)
			}
		}
	}
}
