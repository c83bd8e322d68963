package curve

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"math/big"
	"slices"
	"testing"

	"filippo.io/edwards25519"
	"github.com/c2sp/wycheproof"
)

// Project Wycheproof's X25519 and Ed25519 vectors (module github.com/c2sp/wycheproof,
// the version go.mod pins), every one through the code paths that use them.

func loadWycheproof(t *testing.T, name string, v any) {
	t.Helper()
	b, err := fs.ReadFile(wycheproof.TestVectors, name)
	if err != nil {
		t.Fatalf("reading Wycheproof %s: %v", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding Wycheproof %s: %v", name, err)
	}
}

func hexField(t *testing.T, id int, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("tcId %d: %v", id, err)
	}
	return b
}

type xdhFile struct {
	NumberOfTests int `json:"numberOfTests"`
	TestGroups    []struct {
		Curve string `json:"curve"`
		Tests []struct {
			ID      int      `json:"tcId"`
			Comment string   `json:"comment"`
			Flags   []string `json:"flags"`
			Public  string   `json:"public"`
			Private string   `json:"private"`
			Shared  string   `json:"shared"`
			Result  string   `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

var p25519 = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))

// leInt reads a little-endian integer.
func leInt(b []byte) *big.Int {
	be := bytes.Clone(b)
	slices.Reverse(be)
	return new(big.Int).SetBytes(be)
}

func leBytes32(x *big.Int) []byte {
	b := make([]byte, 32)
	x.FillBytes(b)
	slices.Reverse(b)
	return b
}

// TestWycheproofX25519 runs x25519_test.json through NewPrivateKey, NewPublicKey and
// Agree. Our expected outcome differs from RFC 7748's for three classes, by design:
//
//   - u with the top bit set: RFC 7748 masks the bit; NewPublicKey refuses the
//     encoding (no honest key has it, and one key must have one encoding). The shared
//     secret is still checked through Agree with the masked u, which is the key the
//     vector means.
//   - u not reduced modulo 2^255-19: likewise refused by NewPublicKey, and checked
//     through Agree with u reduced.
//   - an all-zero shared secret (a public key of small order): Agree refuses it
//     (RFC 7748 section 6.1 allows this check, libsignal's protocol needs it).
//
// Every other vector must be accepted and agree on Wycheproof's shared secret.
func TestWycheproofX25519(t *testing.T) {
	var f xdhFile
	loadWycheproof(t, "x25519_test.json", &f)
	counts := map[string]int{}
	total := 0
	for _, g := range f.TestGroups {
		if g.Curve != "curve25519" {
			t.Fatalf("unexpected curve %q", g.Curve)
		}
		for _, tc := range g.Tests {
			total++
			pub := hexField(t, tc.ID, tc.Public)
			want := hexField(t, tc.ID, tc.Shared)
			priv, err := NewPrivateKey(hexField(t, tc.ID, tc.Private))
			if err != nil {
				t.Errorf("tcId %d: NewPrivateKey = %v", tc.ID, err)
				continue
			}
			if len(pub) != 32 {
				t.Errorf("tcId %d: public key of %d bytes", tc.ID, len(pub))
				continue
			}
			// What the vector means, as RFC 7748 decodes it: the top bit masked, then
			// reduced modulo p.
			masked := bytes.Clone(pub)
			masked[31] &= 0x7F
			u := leInt(masked)
			canonical := u.Cmp(p25519) < 0
			topBit := pub[31]&0x80 != 0
			zero := bytes.Equal(want, make([]byte, 32))

			k, err := NewPublicKey(append([]byte{TypeDjb}, pub...))
			class := "accepted"
			switch {
			case topBit:
				class = "top bit set: refused"
			case !canonical:
				class = "non-canonical u: refused"
			}
			if class != "accepted" {
				if err == nil {
					t.Errorf("tcId %d (%s): NewPublicKey(%x) = nil error, want refusal", tc.ID, tc.Comment, pub)
				}
				k = new(PublicKey)
				copy(k.u[:], leBytes32(new(big.Int).Mod(u, p25519)))
			} else if err != nil {
				t.Errorf("tcId %d (%s): NewPublicKey(%x) = %v, want success", tc.ID, tc.Comment, pub, err)
				continue
			}
			got, err := priv.Agree(k)
			switch {
			case zero:
				class += ", zero shared secret: refused"
				if err == nil {
					t.Errorf("tcId %d (%s): Agree(%x) = %x, want refusal of a zero secret", tc.ID, tc.Comment, pub, got)
				}
			case err != nil:
				t.Errorf("tcId %d (%s): Agree(%x) = %v, want %x", tc.ID, tc.Comment, pub, err, want)
			case !bytes.Equal(got, want):
				t.Errorf("tcId %d (%s): Agree(%x) = %x, want %x", tc.ID, tc.Comment, pub, got, want)
			}
			counts[class]++
		}
	}
	if total == 0 || total != f.NumberOfTests {
		t.Fatalf("ran %d X25519 vectors, file says %d", total, f.NumberOfTests)
	}
	t.Logf("Wycheproof X25519: %d vectors: %v", total, counts)
}

type eddsaFile struct {
	NumberOfTests int `json:"numberOfTests"`
	TestGroups    []struct {
		PublicKey struct {
			Curve string `json:"curve"`
			PK    string `json:"pk"`
		} `json:"publicKey"`
		Tests []struct {
			ID      int      `json:"tcId"`
			Comment string   `json:"comment"`
			Flags   []string `json:"flags"`
			Msg     string   `json:"msg"`
			Sig     string   `json:"sig"`
			Result  string   `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// TestWycheproofEd25519 runs ed25519_test.json through verifyEdwards, the Ed25519
// verification equation that XEdDSA's Verify ends in. As Ed25519 does, a signature
// must be 64 bytes and A a valid point encoding; A is hashed as it was encoded.
func TestWycheproofEd25519(t *testing.T) {
	var f eddsaFile
	loadWycheproof(t, "ed25519_test.json", &f)
	counts := map[string]int{}
	total := 0
	for _, g := range f.TestGroups {
		if g.PublicKey.Curve != "edwards25519" {
			t.Fatalf("unexpected curve %q", g.PublicKey.Curve)
		}
		pk, err := hex.DecodeString(g.PublicKey.PK)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range g.Tests {
			total++
			msg := hexField(t, tc.ID, tc.Msg)
			sig := hexField(t, tc.ID, tc.Sig)
			got := false
			if a, err := new(edwards25519.Point).SetBytes(pk); err == nil && len(pk) == 32 && len(sig) == SignatureSize {
				got = verifyEdwards(a, pk, msg, sig[:32], sig[32:])
			}
			want := tc.Result == "valid"
			if tc.Result != "valid" && tc.Result != "invalid" {
				t.Fatalf("tcId %d: result %q has no expected outcome here", tc.ID, tc.Result)
			}
			if got != want {
				t.Errorf("tcId %d (%s, %v): verify = %v, want %v", tc.ID, tc.Comment, tc.Flags, got, want)
			}
			counts[tc.Result]++
		}
	}
	if total == 0 || total != f.NumberOfTests {
		t.Fatalf("ran %d Ed25519 vectors, file says %d", total, f.NumberOfTests)
	}
	t.Logf("Wycheproof Ed25519: %d vectors: %v", total, counts)
}
