package primitives_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"testing"

	"github.com/c2sp/wycheproof"

	"github.com/bastionchat/bastion/protocol/internal/primitives"
)

// Project Wycheproof's HKDF-SHA256, HMAC-SHA256 and AES-CBC-PKCS5 vectors (module
// github.com/c2sp/wycheproof, the version go.mod pins), every one through every path
// of this package that computes the function: the one-shot functions and the reusable
// MAC state, and for CBC the Append variants too.

func load(t *testing.T, name string, v any) {
	t.Helper()
	b, err := fs.ReadFile(wycheproof.TestVectors, name)
	if err != nil {
		t.Fatalf("reading Wycheproof %s: %v", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding Wycheproof %s: %v", name, err)
	}
}

func unhex(t *testing.T, id int, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("tcId %d: %v", id, err)
	}
	return b
}

func checkCount(t *testing.T, family string, ran, declared int, counts map[string]int) {
	t.Helper()
	if ran == 0 || ran != declared {
		t.Fatalf("ran %d Wycheproof %s vectors, the file declares %d", ran, family, declared)
	}
	t.Logf("Wycheproof %s: %d vectors: %v", family, ran, counts)
}

func TestWycheproofHKDFSHA256(t *testing.T) {
	var f struct {
		NumberOfTests int `json:"numberOfTests"`
		TestGroups    []struct {
			Tests []struct {
				ID      int      `json:"tcId"`
				Comment string   `json:"comment"`
				Flags   []string `json:"flags"`
				IKM     string   `json:"ikm"`
				Salt    string   `json:"salt"`
				Info    string   `json:"info"`
				Size    int      `json:"size"`
				OKM     string   `json:"okm"`
				Result  string   `json:"result"`
			} `json:"tests"`
		} `json:"testGroups"`
	}
	load(t, "hkdf_sha256_test.json", &f)
	counts := map[string]int{}
	ran := 0
	m := primitives.NewMAC()
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			ran++
			counts[tc.Result]++
			ikm, salt, info := unhex(t, tc.ID, tc.IKM), unhex(t, tc.ID, tc.Salt), unhex(t, tc.ID, tc.Info)
			want := unhex(t, tc.ID, tc.OKM)
			got, err := primitives.HKDF(ikm, salt, info, tc.Size)
			switch tc.Result {
			case "valid":
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("tcId %d (%s): HKDF = %x, %v, want %x", tc.ID, tc.Comment, got, err, want)
				}
			case "invalid":
				if err == nil {
					t.Errorf("tcId %d (%s): HKDF(size %d) = %x, want an error", tc.ID, tc.Comment, tc.Size, got)
				}
			default:
				t.Fatalf("tcId %d: result %q has no expected outcome here", tc.ID, tc.Result)
			}
			// The allocation-free path: same output, and a refused size is a panic (a
			// caller bug there: its callers ask for fixed sizes).
			out := make([]byte, tc.Size)
			panicked := func() (p bool) {
				defer func() { p = recover() != nil }()
				m.HKDFInto(out, ikm, salt, info)
				return false
			}()
			if tc.Result == "valid" && (panicked || !bytes.Equal(out, want)) {
				t.Errorf("tcId %d (%s): HKDFInto = %x (panicked %v), want %x", tc.ID, tc.Comment, out, panicked, want)
			}
			if tc.Result == "invalid" && !panicked {
				t.Errorf("tcId %d (%s): HKDFInto(size %d) did not refuse", tc.ID, tc.Comment, tc.Size)
			}
		}
	}
	checkCount(t, "HKDF-SHA256", ran, f.NumberOfTests, counts)
}

func TestWycheproofHMACSHA256(t *testing.T) {
	var f struct {
		NumberOfTests int `json:"numberOfTests"`
		TestGroups    []struct {
			KeySize int `json:"keySize"`
			TagSize int `json:"tagSize"`
			Tests   []struct {
				ID      int    `json:"tcId"`
				Comment string `json:"comment"`
				Key     string `json:"key"`
				Msg     string `json:"msg"`
				Tag     string `json:"tag"`
				Result  string `json:"result"`
			} `json:"tests"`
		} `json:"testGroups"`
	}
	load(t, "hmac_sha256_test.json", &f)
	counts := map[string]int{}
	ran := 0
	m := primitives.NewMAC()
	for _, g := range f.TestGroups {
		n := g.TagSize / 8 // a truncated tag is the leading bytes of the full one
		for _, tc := range g.Tests {
			ran++
			key, msg, tag := unhex(t, tc.ID, tc.Key), unhex(t, tc.ID, tc.Msg), unhex(t, tc.ID, tc.Tag)
			if tc.Result != "valid" && tc.Result != "invalid" {
				t.Fatalf("tcId %d: result %q has no expected outcome here", tc.ID, tc.Result)
			}
			if len(key)*8 != g.KeySize || len(tag) != n {
				t.Fatalf("tcId %d: key %d bits, tag %d bytes, group says %d and %d bits", tc.ID, len(key)*8, len(tag), g.KeySize, g.TagSize)
			}
			want := tc.Result == "valid"
			counts[tc.Result+", "+map[bool]string{true: "full tag", false: "truncated tag"}[n == primitives.MACSize]]++

			full := primitives.HMAC(key, msg)
			if got := primitives.Equal(full[:n], tag); got != want {
				t.Errorf("tcId %d (%s): HMAC(key %d bits)[:%d] matches = %v, want %v", tc.ID, tc.Comment, g.KeySize, n, got, want)
			}
			// In parts: the message split in two must give the same tag.
			half := len(msg) / 2
			if parts := primitives.HMAC(key, msg[:half], msg[half:]); !bytes.Equal(parts, full) {
				t.Errorf("tcId %d: HMAC in two parts = %x, want %x", tc.ID, parts, full)
			}
			reused := m.Sum32(key, msg)
			if got := primitives.Equal(reused[:n], tag); got != want {
				t.Errorf("tcId %d (%s): MAC.Sum32[:%d] matches = %v, want %v", tc.ID, tc.Comment, n, got, want)
			}
			m.Init(key)
			m.Write(msg)
			if got := primitives.Equal(m.Sum(nil)[:n], tag); got != want {
				t.Errorf("tcId %d (%s): MAC.Init/Write/Sum[:%d] matches = %v, want %v", tc.ID, tc.Comment, n, got, want)
			}
		}
	}
	checkCount(t, "HMAC-SHA256", ran, f.NumberOfTests, counts)
}

// TestWycheproofAESCBC runs aes_cbc_pkcs5_test.json. The package is AES-256 only (the
// only size libsignal uses), so the 128- and 192-bit vectors must be refused as a
// caller error, never mistaken for a bad ciphertext; the 256-bit ones must encrypt to
// Wycheproof's ciphertext and decrypt back, and every bad padding is [primitives.ErrDecrypt].
func TestWycheproofAESCBC(t *testing.T) {
	var f struct {
		NumberOfTests int `json:"numberOfTests"`
		TestGroups    []struct {
			KeySize int `json:"keySize"`
			IVSize  int `json:"ivSize"`
			Tests   []struct {
				ID      int      `json:"tcId"`
				Comment string   `json:"comment"`
				Flags   []string `json:"flags"`
				Key     string   `json:"key"`
				IV      string   `json:"iv"`
				Msg     string   `json:"msg"`
				CT      string   `json:"ct"`
				Result  string   `json:"result"`
			} `json:"tests"`
		} `json:"testGroups"`
	}
	load(t, "aes_cbc_pkcs5_test.json", &f)
	counts := map[string]int{}
	ran, ran256 := 0, 0
	prefix := []byte("kept")
	for _, g := range f.TestGroups {
		for _, tc := range g.Tests {
			ran++
			key, iv := unhex(t, tc.ID, tc.Key), unhex(t, tc.ID, tc.IV)
			msg, ct := unhex(t, tc.ID, tc.Msg), unhex(t, tc.ID, tc.CT)
			if tc.Result != "valid" && tc.Result != "invalid" {
				t.Fatalf("tcId %d: result %q has no expected outcome here", tc.ID, tc.Result)
			}
			if g.KeySize != 256 {
				counts["refused key size"]++
				if got, err := primitives.EncryptCBC(key, iv, msg); err == nil {
					t.Errorf("tcId %d: EncryptCBC(%d-bit key) = %x, want refusal", tc.ID, g.KeySize, got)
				}
				if got, err := primitives.DecryptCBC(key, iv, ct); err == nil || errors.Is(err, primitives.ErrDecrypt) {
					t.Errorf("tcId %d: DecryptCBC(%d-bit key) = %x, %v, want a key-size error", tc.ID, g.KeySize, got, err)
				}
				continue
			}
			ran256++
			counts["256-bit "+tc.Result]++
			if tc.Result == "valid" {
				if got, err := primitives.EncryptCBC(key, iv, msg); err != nil || !bytes.Equal(got, ct) {
					t.Errorf("tcId %d (%s): EncryptCBC = %x, %v, want %x", tc.ID, tc.Comment, got, err, ct)
				}
				if got, err := primitives.AppendEncryptCBC(bytes.Clone(prefix), key, iv, msg); err != nil || !bytes.Equal(got, append(bytes.Clone(prefix), ct...)) {
					t.Errorf("tcId %d (%s): AppendEncryptCBC = %x, %v, want prefix || %x", tc.ID, tc.Comment, got, err, ct)
				}
				if got, err := primitives.DecryptCBC(key, iv, ct); err != nil || !bytes.Equal(got, msg) {
					t.Errorf("tcId %d (%s): DecryptCBC = %x, %v, want %x", tc.ID, tc.Comment, got, err, msg)
				}
				if got, err := primitives.AppendDecryptCBC(bytes.Clone(prefix), key, iv, ct); err != nil || !bytes.Equal(got, append(bytes.Clone(prefix), msg...)) {
					t.Errorf("tcId %d (%s): AppendDecryptCBC = %x, %v, want prefix || %x", tc.ID, tc.Comment, got, err, msg)
				}
				continue
			}
			if got, err := primitives.DecryptCBC(key, iv, ct); !errors.Is(err, primitives.ErrDecrypt) {
				t.Errorf("tcId %d (%s, %v): DecryptCBC = %x, %v, want ErrDecrypt", tc.ID, tc.Comment, tc.Flags, got, err)
			}
			if got, err := primitives.AppendDecryptCBC(bytes.Clone(prefix), key, iv, ct); !errors.Is(err, primitives.ErrDecrypt) {
				t.Errorf("tcId %d (%s, %v): AppendDecryptCBC = %x, %v, want ErrDecrypt", tc.ID, tc.Comment, tc.Flags, got, err)
			}
		}
	}
	if ran256 == 0 {
		t.Fatal("no 256-bit AES-CBC vectors loaded")
	}
	checkCount(t, "AES-CBC-PKCS5", ran, f.NumberOfTests, counts)
}
