package group

import (
	"testing"

	"github.com/google/uuid"
)

// bigGroup is a group of n members made by acct(1), with acct(2) an admin too.
func bigGroup(b *testing.B, n int) (*Group, *Change) {
	b.Helper()
	members := make([]uuid.UUID, n-1)
	for i := range members {
		members[i] = acct(i + 2)
	}
	g, u, err := Create(seeded(9), acct(1), "big", members)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := g.Promote(seeded(10), acct(2)); err != nil {
		b.Fatal(err)
	}
	return g, u.Change
}

// BenchmarkReceive1000 applies changes in order to a 1,000-member group, alternately
// removing and adding one member (each a new epoch every other change).
func BenchmarkReceive1000(b *testing.B) {
	g, _ := bigGroup(b, MaxMembers)
	r := seeded(11)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var err error
		if i%2 == 0 {
			_, err = g.Remove(r, acct(500))
		} else {
			_, err = g.Add(r, acct(500))
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRefold1000 receives a change that sorts before the last 100 applied ones, so
// the member folds the whole history (101 changes on 1,000 members) again.
func BenchmarkRefold1000(b *testing.B) {
	g, create := bigGroup(b, MaxMembers)
	r := seeded(12)
	base := g.State().Revision
	for i := range 100 {
		if _, err := g.Rename(r, "title "+string(rune('a'+i%26))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		c := &Change{Group: create.Group, Author: acct(2), Base: base, Kind: KindRename, Title: "late"}
		r.Read(c.ID[:])
		if _, err := g.Receive(c.Author, c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStateBytes1000(b *testing.B) {
	g, _ := bigGroup(b, MaxMembers)
	s := g.State()
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Bytes()
	}
	b.ReportMetric(float64(len(s.Bytes())), "bytes")
}

func BenchmarkNewState1000(b *testing.B) {
	g, _ := bigGroup(b, MaxMembers)
	enc := g.State().Bytes()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewState(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJoin1000 is a newcomer taking the history of a 1,000-member group.
func BenchmarkJoin1000(b *testing.B) {
	g, _ := bigGroup(b, MaxMembers-1)
	if _, err := g.Add(seeded(13), acct(5000)); err != nil {
		b.Fatal(err)
	}
	h := g.History()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Join(acct(5000), acct(1), h); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(h)), "bytes")
}
