package vrf

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"testing"

	"filippo.io/edwards25519"
)

// vector is one example of RFC 9381 Appendix B.3, with its intermediate
// values; see testdata/rfc9381_b3.json for the source.
type vector struct {
	Name    string `json:"name"`
	SK      string `json:"sk"`
	PK      string `json:"pk"`
	Alpha   string `json:"alpha"`
	X       string `json:"x"`
	Ctr     int    `json:"ctr"`
	H       string `json:"h"`
	KString string `json:"k_string"`
	K       string `json:"k"`
	U       string `json:"u"`
	V       string `json:"v"`
	Pi      string `json:"pi"`
	Beta    string `json:"beta"`
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	data, err := os.ReadFile("testdata/rfc9381_b3.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Source  string   `json:"source"`
		Vectors []vector `json:"vectors"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Vectors) != 3 {
		t.Fatalf("loaded %d vectors, want the 3 of RFC 9381 B.3", len(doc.Vectors))
	}
	return doc.Vectors
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVectors runs every RFC 9381 B.3 example through every path: key
// derivation, encode-to-curve, nonce, proving, proof-to-hash and verifying.
func TestVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			alpha := unhex(t, v.Alpha)
			sk, err := NewPrivateKey(unhex(t, v.SK))
			if err != nil {
				t.Fatalf("NewPrivateKey(%s) error: %v", v.SK, err)
			}
			if got := hex.EncodeToString(sk.Public().Bytes()); got != v.PK {
				t.Errorf("Public() = %s, want %s", got, v.PK)
			}
			// The RFC prints x as the clamped integer, before reduction mod q.
			digest := sha512.Sum512(unhex(t, v.SK))
			digest[0] &= 248
			digest[31] &= 127
			digest[31] |= 64
			if got := hex.EncodeToString(digest[:32]); got != v.X {
				t.Errorf("clamped secret = %s, want %s", got, v.X)
			}
			wantX, err := edwards25519.NewScalar().SetBytesWithClamping(unhex(t, v.X))
			if err != nil {
				t.Fatal(err)
			}
			if sk.x.Equal(wantX) != 1 {
				t.Errorf("secret scalar = %x, want %s mod q", sk.x.Bytes(), v.X)
			}
			if got := hex.EncodeToString(sk.Seed()); got != v.SK {
				t.Errorf("Seed() = %s, want %s", got, v.SK)
			}

			h := encodeToCurve(unhex(t, v.PK), alpha)
			if got := hex.EncodeToString(h.Bytes()); got != v.H {
				t.Errorf("encodeToCurve = %s, want %s", got, v.H)
			}
			if got := ctrFor(unhex(t, v.PK), alpha); got != v.Ctr {
				t.Errorf("try-and-increment ctr = %d, want %d", got, v.Ctr)
			}
			k, err := edwards25519.NewScalar().SetUniformBytes(unhex(t, v.KString))
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(k.Bytes()); got != v.K {
				t.Errorf("k = %s, want %s", got, v.K)
			}
			if got := hex.EncodeToString(edwards25519.NewIdentityPoint().ScalarBaseMult(k).Bytes()); got != v.U {
				t.Errorf("k*B = %s, want %s", got, v.U)
			}
			if got := hex.EncodeToString(edwards25519.NewIdentityPoint().ScalarMult(k, h).Bytes()); got != v.V {
				t.Errorf("k*H = %s, want %s", got, v.V)
			}

			beta, pi := sk.Prove(alpha)
			if got := hex.EncodeToString(pi); got != v.Pi {
				t.Errorf("Prove(%q) pi = %s, want %s", v.Alpha, got, v.Pi)
			}
			if got := hex.EncodeToString(beta); got != v.Beta {
				t.Errorf("Prove(%q) beta = %s, want %s", v.Alpha, got, v.Beta)
			}

			pk, err := NewPublicKey(unhex(t, v.PK))
			if err != nil {
				t.Fatalf("NewPublicKey(%s) error: %v", v.PK, err)
			}
			got, err := pk.Verify(alpha, unhex(t, v.Pi))
			if err != nil {
				t.Fatalf("Verify(%q, pi) error: %v", v.Alpha, err)
			}
			if hex.EncodeToString(got) != v.Beta {
				t.Errorf("Verify(%q, pi) = %x, want %s", v.Alpha, got, v.Beta)
			}
			got, err = ProofToHash(unhex(t, v.Pi))
			if err != nil || hex.EncodeToString(got) != v.Beta {
				t.Errorf("ProofToHash(pi) = %x, %v, want %s", got, err, v.Beta)
			}
			if !pk.Equal(sk.Public()) {
				t.Errorf("NewPublicKey(%s).Equal(sk.Public()) = false, want true", v.PK)
			}
		})
	}
}

// ctrFor repeats the try-and-increment loop to report the counter at which
// it stopped, which the RFC lists for each example.
func ctrFor(salt, alpha []byte) int {
	want := encodeToCurve(salt, alpha)
	for ctr := 0; ctr < 256; ctr++ {
		sum := sha512Sum(append(append(append([]byte{suite, sepFront1}, salt...), alpha...), byte(ctr), sepBack))
		p, err := stringToPoint(sum[:32])
		if err != nil {
			continue
		}
		if p.MultByCofactor(p).Equal(want) == 1 {
			return ctr
		}
	}
	return -1
}

func sha512Sum(b []byte) [64]byte { return sha512.Sum512(b) }

func TestVerifyRejects(t *testing.T) {
	vs := loadVectors(t)
	v := vs[1]
	alpha := unhex(t, v.Alpha)
	pi := unhex(t, v.Pi)
	pk, err := NewPublicKey(unhex(t, v.PK))
	if err != nil {
		t.Fatal(err)
	}
	otherPK, err := NewPublicKey(unhex(t, vs[2].PK))
	if err != nil {
		t.Fatal(err)
	}

	// Every single-bit flip of the proof must fail.
	for i := range pi {
		for bit := 0; bit < 8; bit++ {
			bad := bytes.Clone(pi)
			bad[i] ^= 1 << bit
			if beta, err := pk.Verify(alpha, bad); !errors.Is(err, ErrInvalidProof) {
				t.Fatalf("Verify(alpha, pi with byte %d bit %d flipped) = %x, %v, want ErrInvalidProof", i, bit, beta, err)
			}
		}
	}

	sBig := unhex(t, v.Pi)
	// s + q is the same scalar modulo q but not canonical: step 8 rejects it.
	s := new(big.Int).SetBytes(reverse(sBig[48:]))
	s.Add(s, groupOrder())
	if s.BitLen() <= 256 {
		copy(sBig[48:], reverse(leftPad(s.Bytes(), 32)))
	}

	tests := []struct {
		name  string
		pk    *PublicKey
		alpha []byte
		pi    []byte
	}{
		{"wrong key", otherPK, alpha, pi},
		{"wrong alpha", pk, []byte("73"), pi},
		{"empty alpha", pk, nil, pi},
		{"short proof", pk, alpha, pi[:79]},
		{"long proof", pk, alpha, append(bytes.Clone(pi), 0)},
		{"empty proof", pk, alpha, nil},
		{"s not reduced", pk, alpha, sBig},
		{"proof for another input", pk, alpha, unhex(t, vs[2].Pi)},
		{"zero proof", pk, alpha, make([]byte, ProofSize)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if beta, err := tt.pk.Verify(tt.alpha, tt.pi); !errors.Is(err, ErrInvalidProof) {
				t.Errorf("Verify(%x, %x) = %x, %v, want ErrInvalidProof", tt.alpha, tt.pi, beta, err)
			}
		})
	}
}

func groupOrder() *big.Int {
	q, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	return q
}

func fieldPrime() *big.Int {
	p := new(big.Int).Lsh(big.NewInt(1), 255)
	return p.Sub(p, big.NewInt(19))
}

func reverse(b []byte) []byte {
	r := make([]byte, len(b))
	for i := range b {
		r[len(b)-1-i] = b[i]
	}
	return r
}

func leftPad(b []byte, n int) []byte {
	return append(make([]byte, n-len(b)), b...)
}

// leEncode encodes y little-endian in 32 bytes with the sign bit of x set
// as given.
func leEncode(y *big.Int, signX bool) []byte {
	b := reverse(leftPad(y.Bytes(), 32))
	if signX {
		b[31] |= 0x80
	}
	return b
}

// TestNewPublicKeyRejects covers validate_key (the bad_pk list of RFC 9381
// Section 5.4.5, each with both signs of x) and strict decoding.
func TestNewPublicKeyRejects(t *testing.T) {
	p := fieldPrime()
	badY2, _ := new(big.Int).SetString("2707385501144840649318225287225658788936804267575313519463743609750303402022", 10)
	ys := []*big.Int{
		big.NewInt(0),
		big.NewInt(1),
		badY2,
		new(big.Int).Sub(p, badY2),
		new(big.Int).Sub(p, big.NewInt(1)),
		new(big.Int).Set(p),
		new(big.Int).Add(p, big.NewInt(1)),
	}
	for _, y := range ys {
		for _, sign := range []bool{false, true} {
			enc := leEncode(y, sign)
			if pk, err := NewPublicKey(enc); err == nil {
				t.Errorf("NewPublicKey(%x) = %x, want error (small order)", enc, pk.Bytes())
			}
		}
	}

	// A valid key's y plus p is a non-canonical encoding of the same point,
	// when it fits in 255 bits.
	vs := loadVectors(t)
	for _, v := range vs {
		enc := unhex(t, v.PK)
		sign := enc[31]&0x80 != 0
		raw := bytes.Clone(enc)
		raw[31] &= 0x7f
		y := new(big.Int).SetBytes(reverse(raw))
		y.Add(y, p)
		if y.BitLen() > 255 {
			continue
		}
		nc := leEncode(y, sign)
		if pk, err := NewPublicKey(nc); err == nil {
			t.Errorf("NewPublicKey(%x) = %x, want error (non-canonical)", nc, pk.Bytes())
		}
	}

	// A point off the curve: y = 2 has no x.
	off := leEncode(big.NewInt(2), false)
	if _, err := edwards25519.NewIdentityPoint().SetBytes(off); err == nil {
		t.Fatalf("test setup: y=2 decodes, pick another")
	}
	for _, b := range [][]byte{off, nil, make([]byte, 31), make([]byte, 33)} {
		if pk, err := NewPublicKey(b); err == nil {
			t.Errorf("NewPublicKey(%x) = %x, want error", b, pk.Bytes())
		}
	}
}

func TestGenerateKeyRoundTrip(t *testing.T) {
	sk, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	sk2, err := NewPrivateKey(sk.Seed())
	if err != nil {
		t.Fatal(err)
	}
	if !sk.Public().Equal(sk2.Public()) {
		t.Fatalf("NewPrivateKey(Seed()).Public() = %x, want %x", sk2.Public().Bytes(), sk.Public().Bytes())
	}
	pk, err := NewPublicKey(sk.Public().Bytes())
	if err != nil {
		t.Fatalf("NewPublicKey(generated) error: %v", err)
	}
	for _, alpha := range [][]byte{nil, []byte("+15555550100"), bytes.Repeat([]byte{0xff}, 1000)} {
		beta, pi := sk.Prove(alpha)
		got, err := pk.Verify(alpha, pi)
		if err != nil || !bytes.Equal(got, beta) {
			t.Errorf("Verify(%q, Prove(%q)) = %x, %v, want %x", alpha, alpha, got, err, beta)
		}
		beta2, pi2 := sk.Prove(alpha)
		if !bytes.Equal(pi, pi2) || !bytes.Equal(beta, beta2) {
			t.Errorf("Prove(%q) is not deterministic", alpha)
		}
	}
	if _, err := NewPrivateKey(make([]byte, 31)); err == nil {
		t.Errorf("NewPrivateKey(31 bytes) error = nil, want error")
	}
	if _, err := GenerateKey(bytes.NewReader(make([]byte, 5))); err == nil {
		t.Errorf("GenerateKey(short reader) error = nil, want error")
	}
}

// FuzzVerify feeds arbitrary proofs to the parser and verifier. A proof
// either fails cleanly or, when it decodes, re-encodes to the same bytes;
// one that verifies yields the same beta as ProofToHash.
func FuzzVerify(f *testing.F) {
	vs := loadVectors(f)
	pks := make([]*PublicKey, len(vs))
	for i, v := range vs {
		pk, err := NewPublicKey(unhex(f, v.PK))
		if err != nil {
			f.Fatal(err)
		}
		pks[i] = pk
		f.Add(uint8(i), unhex(f, v.Alpha), unhex(f, v.Pi))
	}
	f.Add(uint8(0), []byte{}, make([]byte, ProofSize))
	f.Fuzz(func(t *testing.T, which uint8, alpha, pi []byte) {
		pk := pks[int(which)%len(pks)]
		gamma, c, s, err := decodeProof(pi)
		if err == nil {
			re := append(append(gamma.Bytes(), c[:]...), s.Bytes()...)
			if !bytes.Equal(re, pi) {
				t.Fatalf("decodeProof(%x) re-encodes to %x", pi, re)
			}
		}
		beta, verr := pk.Verify(alpha, pi)
		if verr != nil {
			if !errors.Is(verr, ErrInvalidProof) {
				t.Fatalf("Verify error = %v, want ErrInvalidProof", verr)
			}
			return
		}
		if err != nil {
			t.Fatalf("Verify accepted %x that decodeProof rejects: %v", pi, err)
		}
		h, err := ProofToHash(pi)
		if err != nil || !bytes.Equal(h, beta) {
			t.Fatalf("ProofToHash(%x) = %x, %v, want %x", pi, h, err, beta)
		}
	})
}

func BenchmarkProve(b *testing.B) {
	sk, err := GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	alpha := []byte("bastion kt lookup v1\x00\x01+15555550100")
	for b.Loop() {
		sk.Prove(alpha)
	}
}

func BenchmarkVerify(b *testing.B) {
	sk, err := GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	alpha := []byte("bastion kt lookup v1\x00\x01+15555550100")
	_, pi := sk.Prove(alpha)
	pk := sk.Public()
	for b.Loop() {
		if _, err := pk.Verify(alpha, pi); err != nil {
			b.Fatal(err)
		}
	}
}

func TestPrivateKeyDoesNotPrintSeed(t *testing.T) {
	seed := bytes.Repeat([]byte{0xab}, SeedSize)
	sk, err := NewPrivateKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%x"} {
		out := fmt.Sprintf(format, sk)
		if strings.Contains(out, "171 171 171") || strings.Contains(out, "abababab") || strings.Contains(out, "0xab, 0xab") {
			t.Errorf("Sprintf(%q, key) = %q, shows the seed", format, out)
		}
	}
}
