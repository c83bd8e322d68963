package fingerprint

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/bastionchat/bastion/protocol/curve"
)

type vectorFile struct {
	Source  string `json:"source"`
	Vectors []struct {
		Name           string `json:"name"`
		Version        int    `json:"version"`
		Iterations     int    `json:"iterations"`
		AliceID        string `json:"alice_id"`
		AliceKey       string `json:"alice_key"`
		BobID          string `json:"bob_id"`
		BobKey         string `json:"bob_key"`
		Displayable    string `json:"displayable"`
		AliceScannable string `json:"alice_scannable"`
		BobScannable   string `json:"bob_scannable"`
	} `json:"vectors"`
	Encoding struct {
		Version    int    `json:"version"`
		LocalByte  string `json:"local_byte"`
		RemoteByte string `json:"remote_byte"`
		Scannable  string `json:"scannable"`
	} `json:"encoding"`
}

func loadVectors(t testing.TB) *vectorFile {
	t.Helper()
	b, err := os.ReadFile("testdata/libsignal_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Vectors) == 0 {
		t.Fatal("no vectors loaded")
	}
	return &v
}

func mustKey(t testing.TB, h string) *curve.PublicKey {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	k, err := curve.NewPublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustHex(t testing.TB, h string) []byte {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// libsignal's own vectors, through every path: both sides' displayable and scannable
// forms, and each side comparing the other's.
func TestLibsignalVectors(t *testing.T) {
	v := loadVectors(t)
	for _, tv := range v.Vectors {
		t.Run(tv.Name, func(t *testing.T) {
			ak, bk := mustKey(t, tv.AliceKey), mustKey(t, tv.BobKey)
			a, err := New(tv.Version, tv.Iterations, []byte(tv.AliceID), ak, []byte(tv.BobID), bk)
			if err != nil {
				t.Fatal(err)
			}
			b, err := New(tv.Version, tv.Iterations, []byte(tv.BobID), bk, []byte(tv.AliceID), ak)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				side       string
				f          *Fingerprint
				scannable  string
				otherBytes string
			}{{"alice", a, tv.AliceScannable, tv.BobScannable}, {"bob", b, tv.BobScannable, tv.AliceScannable}} {
				if got := c.f.Displayable(); got != tv.Displayable {
					t.Errorf("%s: Displayable() = %s, want %s", c.side, got, tv.Displayable)
				}
				if got := hex.EncodeToString(c.f.Scannable()); got != c.scannable {
					t.Errorf("%s: Scannable() = %s, want %s", c.side, got, c.scannable)
				}
				if ok, err := c.f.Compare(mustHex(t, c.otherBytes)); err != nil || !ok {
					t.Errorf("%s: Compare(other side) = %v, %v, want true", c.side, ok, err)
				}
				// Our own scannable form is not the other side's: it must not match.
				if ok, err := c.f.Compare(mustHex(t, c.scannable)); err != nil || ok {
					t.Errorf("%s: Compare(own scannable) = %v, %v, want false", c.side, ok, err)
				}
			}
		})
	}
}

func TestScannableEncoding(t *testing.T) {
	e := loadVectors(t).Encoding
	f := &Fingerprint{version: uint32(e.Version)}
	copy(f.local[:], bytes.Repeat(mustHex(t, e.LocalByte), 64))
	copy(f.remote[:], bytes.Repeat(mustHex(t, e.RemoteByte), 64))
	if got := hex.EncodeToString(f.Scannable()); got != e.Scannable {
		t.Errorf("Scannable() = %s, want %s", got, e.Scannable)
	}
}

func TestMismatches(t *testing.T) {
	keys := make([]*curve.PublicKey, 3)
	for i := range keys {
		k, err := curve.GeneratePrivateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k.PublicKey()
	}
	alice, bob, mallory := keys[0], keys[1], keys[2]
	aID, bID := []byte("alice-aci-16byte"), []byte("bob-aci-16-bytes")
	bobView, err := New(Version, 1024, bID, bob, aID, alice)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    func() (*Fingerprint, error)
		same bool
	}{
		{"honest", func() (*Fingerprint, error) { return New(Version, 1024, aID, alice, bID, bob) }, true},
		{"key substituted", func() (*Fingerprint, error) { return New(Version, 1024, aID, alice, bID, mallory) }, false},
		{"identifier differs", func() (*Fingerprint, error) { return New(Version, 1024, []byte("alice-aci-16bytf"), alice, bID, bob) }, false},
		{"iterations differ", func() (*Fingerprint, error) { return New(Version, 1023, aID, alice, bID, bob) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := tt.f()
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Displayable() == bobView.Displayable(); got != tt.same {
				t.Errorf("Displayable() equal = %v, want %v", got, tt.same)
			}
			if got := len(a.Displayable()); got != 60 || strings.Trim(a.Displayable(), "0123456789") != "" {
				t.Errorf("Displayable() = %q, want 60 digits", a.Displayable())
			}
			for _, c := range []struct {
				who    string
				f, oth *Fingerprint
			}{{"alice", a, bobView}, {"bob", bobView, a}} {
				if got, err := c.f.Compare(c.oth.Scannable()); err != nil || got != tt.same {
					t.Errorf("%s: Compare() = %v, %v, want %v", c.who, got, err, tt.same)
				}
			}
		})
	}
}

func TestCompareErrors(t *testing.T) {
	v := loadVectors(t).Vectors[1]
	ak, bk := mustKey(t, v.AliceKey), mustKey(t, v.BobKey)
	a, err := New(2, 5200, []byte(v.AliceID), ak, []byte(v.BobID), bk)
	if err != nil {
		t.Fatal(err)
	}
	good := mustHex(t, v.BobScannable)
	v1 := bytes.Clone(good)
	v1[1] = 1
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"version 1 against 2", v1, ErrVersionMismatch},
		{"empty", nil, ErrInvalidEncoding},
		{"truncated", good[:len(good)-1], ErrInvalidEncoding},
		{"trailing byte", append(bytes.Clone(good), 0), ErrInvalidEncoding},
		{"missing version", good[2:], ErrInvalidEncoding},
		{"missing remote", good[:2+36], ErrInvalidEncoding},
		{"local and remote swapped tags", swapTags(good), ErrInvalidEncoding},
		{"short content", encode(2, good[6:6+31], good[42:42+32]), ErrInvalidEncoding},
		{"long content", encode(2, append(bytes.Clone(good[6:6+32]), 0), good[42:42+32]), ErrInvalidEncoding},
		{"non-minimal version", append([]byte{0x08, 0x82, 0x00}, good[2:]...), ErrInvalidEncoding},
		{"version over 32 bits", append([]byte{0x08, 0x80, 0x80, 0x80, 0x80, 0x10}, good[2:]...), ErrInvalidEncoding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := a.Compare(tt.b); !errors.Is(err, tt.want) || got {
				t.Errorf("Compare(%x) = %v, %v, want false, %v", tt.b, got, err, tt.want)
			}
		})
	}
}

func swapTags(b []byte) []byte {
	c := bytes.Clone(b)
	c[2], c[2+36] = c[2+36], c[2]
	return c
}

func TestNewRejects(t *testing.T) {
	k, _ := curve.GeneratePrivateKey(nil)
	pub := k.PublicKey()
	tests := []struct {
		name                string
		version, iterations int
		l, r                *curve.PublicKey
	}{
		{"one iteration", 2, 1, pub, pub},
		{"zero iterations", 2, 0, pub, pub},
		{"too many iterations", 2, maxIterations + 1, pub, pub},
		{"negative version", -1, 5200, pub, pub},
		{"nil local key", 2, 5200, nil, pub},
		{"nil remote key", 2, 5200, pub, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if f, err := New(tt.version, tt.iterations, []byte("a"), tt.l, []byte("b"), tt.r); err == nil {
				t.Errorf("New(%d, %d, ...) = %v, nil, want error", tt.version, tt.iterations, f)
			}
		})
	}
}
