package group

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seeds adds the vectors in testdata to f.
func seeds(f *testing.F, names ...string) {
	for _, name := range names {
		raw, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		b, err := hex.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzState: NewState accepts exactly the canonical encodings: whatever it accepts
// re-encodes to the same bytes, and it never panics.
func FuzzState(f *testing.F) {
	seeds(f, "state.hex")
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := NewState(b)
		if err != nil {
			return
		}
		if !bytes.Equal(s.Bytes(), b) {
			t.Errorf("NewState(%x).Bytes() = %x", b, s.Bytes())
		}
	})
}

// FuzzChange: the same for NewChange, and a parsed change is valid.
func FuzzChange(f *testing.F) {
	seeds(f, "change.hex")
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := NewChange(b)
		if err != nil {
			return
		}
		if !bytes.Equal(c.Bytes(), b) {
			t.Errorf("NewChange(%x).Bytes() = %x", b, c.Bytes())
		}
		if err := c.validate(); err != nil {
			t.Errorf("NewChange accepted an invalid change: %v", err)
		}
	})
}

// FuzzHistory: a history that parses joins (for an account it invites), folds without
// panicking, and writes itself back byte for byte.
func FuzzHistory(f *testing.F) {
	seeds(f, "history.hex")
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := NewHistory(b)
		if err != nil {
			return
		}
		for _, c := range cs {
			if c.Author == cs[0].Author && len(c.Members) > 0 && (c.Kind == KindCreate || c.Kind == KindAdd) {
				g, _, err := Join(c.Members[0], c.Author, b)
				if err != nil {
					t.Fatalf("Join of a parsed history: %v", err)
				}
				if !bytes.Equal(g.History(), b) {
					t.Errorf("Join(%x).History() = %x", b, g.History())
				}
				if _, err := NewState(g.State().Bytes()); err != nil {
					t.Errorf("state of a parsed history does not parse: %v", err)
				}
				return
			}
		}
	})
}
