package group

import (
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
)

var update = flag.Bool("update", false, "rewrite testdata/*.hex from the current encoder")

// goldenGroup is a fixed group with a few changes: the source of the vectors in testdata.
func goldenGroup(t testing.TB) *Group {
	t.Helper()
	r := seeded(42)
	g, _, err := Create(r, acct(1), "Ünïcode title", []uuid.UUID{acct(2), acct(3)})
	if err != nil {
		t.Fatal(err)
	}
	steps := []func() (Update, error){
		func() (Update, error) { return g.Promote(r, acct(2)) },
		func() (Update, error) { return g.Add(r, acct(4), acct(5)) },
		func() (Update, error) { return g.Remove(r, acct(3)) },
		func() (Update, error) { return g.Rename(r, "renamed") },
	}
	for _, s := range steps {
		if _, err := s(); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// TestGolden pins the encodings: testdata/*.hex were written by this encoder (go test
// -update) and must parse, and re-encode to the same bytes, through every parser.
func TestGolden(t *testing.T) {
	g := goldenGroup(t)
	cs, err := NewHistory(g.History())
	if err != nil {
		t.Fatal(err)
	}
	vectors := map[string][]byte{
		"state.hex":   g.State().Bytes(),
		"history.hex": g.History(),
		"change.hex":  cs[len(cs)-1].Bytes(),
	}
	for name, enc := range vectors {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(path, []byte(hex.EncodeToString(enc)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want, err := hex.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(enc, want) {
			t.Errorf("%s: encoding changed:\n%x\nwant\n%x", name, enc, want)
		}
		var back []byte
		switch name {
		case "state.hex":
			s, err := NewState(want)
			if err != nil {
				t.Fatalf("NewState(%s): %v", name, err)
			}
			back = s.Bytes()
		case "change.hex":
			c, err := NewChange(want)
			if err != nil {
				t.Fatalf("NewChange(%s): %v", name, err)
			}
			back = c.Bytes()
		case "history.hex":
			j, _, err := Join(acct(4), acct(1), want)
			if err != nil {
				t.Fatalf("Join(%s): %v", name, err)
			}
			back = j.History()
			if !slices.Equal(j.State().Bytes(), g.State().Bytes()) {
				t.Errorf("state from %s differs", name)
			}
		}
		if !slices.Equal(back, want) {
			t.Errorf("%s: round trip = %x, want %x", name, back, want)
		}
	}
}

// TestStrictParsers: every way to spell a value other than the canonical one is refused.
func TestStrictParsers(t *testing.T) {
	g := goldenGroup(t)
	state := g.State().Bytes()
	cs, _ := NewHistory(g.History())
	change := cs[2].Bytes() // an add
	mutate := func(b []byte, f func([]byte) []byte) []byte { return f(slices.Clone(b)) }
	tests := []struct {
		name  string
		parse func([]byte) error
		in    []byte
	}{
		{"empty state", parseState, nil},
		{"state version 2", parseState, mutate(state, func(b []byte) []byte { b[0] = 2; return b })},
		{"state trailing byte", parseState, append(slices.Clone(state), 0)},
		{"state unknown field", parseState, append(slices.Clone(state), 8<<3, 1)},
		{"state fields out of order", parseState, swapFirstFields(state)},
		{"state truncated", parseState, state[:len(state)-1]},
		{"state zero varint", parseState, []byte{1, 3 << 3, 0}},
		{"state non-minimal varint", parseState, overlongRevision()},
		{"state admin not member", parseState, stateWith(func(s *State) { s.Admins = []uuid.UUID{acct(9)} })},
		{"state unsorted members", parseState, stateWith(func(s *State) { s.Members[0], s.Members[1] = s.Members[1], s.Members[0] })},
		{"state repeated member", parseState, stateWith(func(s *State) { s.Members[1] = s.Members[0] })},
		{"state nil member", parseState, stateWith(func(s *State) { s.Members[0] = uuid.Nil; s.Admins = nil })},
		{"state long title", parseState, stateWith(func(s *State) { s.Title = strings.Repeat("x", MaxTitle+1) })},
		{"state invalid UTF-8 title", parseState, stateWith(func(s *State) { s.Title = "\xff" })},
		{"state short group id", parseState, []byte{1, 1<<3 | 2, 1, 0}},
		{"change trailing byte", parseChange, append(slices.Clone(change), 0)},
		{"change without kind", parseChange, changeWith(cs[2], func(c *Change) { c.Kind = 0 })},
		{"change unknown kind", parseChange, changeWith(cs[2], func(c *Change) { c.Kind = kindEnd })},
		{"add without members", parseChange, changeWith(cs[2], func(c *Change) { c.Members = nil })},
		{"add with title", parseChange, changeWith(cs[2], func(c *Change) { c.Title = "t" })},
		{"add at base 0", parseChange, changeWith(cs[2], func(c *Change) { c.Base = 0 })},
		{"add without author", parseChange, changeWith(cs[2], func(c *Change) { c.Author = uuid.Nil })},
		{"add without id", parseChange, changeWith(cs[2], func(c *Change) { c.ID = ChangeID{} })},
		{"create listing its author", parseChange, changeWith(cs[0], func(c *Change) { c.Members = []uuid.UUID{c.Author} })},
		{"create at base 1", parseChange, changeWith(cs[0], func(c *Change) { c.Base = 1 })},
		{"leave with members", parseChange, changeWith(cs[2], func(c *Change) { c.Kind = KindLeave })},
		{"rename without title", parseChange, changeWith(cs[2], func(c *Change) { c.Kind = KindRename; c.Members = nil })},
		{"history empty", parseHistory, []byte{1}},
		{"history without create", parseHistory, appendHistory(nil, cs[1:])},
		{"history out of order", parseHistory, appendHistory(nil, []*Change{cs[0], cs[2], cs[1]})},
		{"history with two creates", parseHistory, appendHistory(nil, []*Change{cs[0], changeOf(cs[0], func(c *Change) { c.ID[0]++ })})},
		{"history repeated change id", parseHistory, appendHistory(nil, []*Change{cs[0], cs[1], changeOf(cs[2], func(c *Change) { c.ID = cs[1].ID })})},
		{"history repeated change", parseHistory, appendHistory(nil, []*Change{cs[0], cs[1], cs[1]})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.parse(tt.in); !errors.Is(err, ErrInvalidEncoding) {
				t.Errorf("parse(%x) = %v, want %v", tt.in, err, ErrInvalidEncoding)
			}
		})
	}
}

func parseState(b []byte) error   { _, err := NewState(b); return err }
func parseChange(b []byte) error  { _, err := NewChange(b); return err }
func parseHistory(b []byte) error { _, err := NewHistory(b); return err }

func stateWith(f func(*State)) []byte {
	s := &State{Title: "t", Revision: 3, Members: []uuid.UUID{acct(1), acct(2)}, Admins: []uuid.UUID{acct(1)}, DistributionID: acct(7)}
	f(s)
	return s.Bytes()
}

func changeOf(c *Change, f func(*Change)) *Change {
	d := c.clone()
	f(d)
	return d
}

func changeWith(c *Change, f func(*Change)) []byte {
	d := c.clone()
	f(d)
	return d.Bytes()
}

// swapFirstFields puts the state's second field (the title) before its first.
func swapFirstFields(b []byte) []byte {
	// version, then field 1: tag, length 32, 32 bytes; then field 2: tag, length, title.
	f1 := b[1 : 1+2+32]
	l2 := int(b[1+2+32+1])
	f2 := b[1+2+32 : 1+2+32+2+l2]
	out := []byte{b[0]}
	out = append(out, f2...)
	out = append(out, f1...)
	return append(out, b[1+2+32+2+l2:]...)
}

// overlongRevision is a valid state with its revision (3) spelled in two bytes.
func overlongRevision() []byte {
	b := stateWith(func(*State) {})
	// version, field 1 (tag, length, 32 bytes), field 2 (tag, length, "t"), field 3 tag.
	const at = 1 + 34 + 3 + 1
	if b[at-1] != 3<<3 || b[at] != 3 {
		panic("state layout changed")
	}
	return slices.Concat(b[:at], []byte{0x83, 0x00}, b[at+1:])
}
