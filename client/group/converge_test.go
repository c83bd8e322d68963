package group

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/uuid"
)

// TestConvergence is the property the fold exists for: random sets of concurrent changes,
// made by accounts that each saw a random part of the history (so with stale bases,
// changes from non-admins and non-members, and bases from the future), delivered in
// random orders to several members, leave every member with the same state and the same
// outcome for every change. Along the way it checks the invariants the sender-key plan
// rests on: a member never drops out of the list without the epoch's distribution id
// changing, admins are members, and every state round-trips through its encoding.
func TestConvergence(t *testing.T) {
	cases := 3000
	if testing.Short() || raceEnabled {
		cases = 300
	}
	defer func(n int) { memberLimit = n }(memberLimit)
	for seed := range uint64(cases) {
		rng := rand.New(rand.NewPCG(seed, 0x67726f7570))
		// A quarter of the cases use a tiny group limit, so that full-group rejections,
		// which can take a member out of a longer history's state, are exercised too.
		memberLimit = MaxMembers
		if seed%4 == 0 {
			memberLimit = 3 + rng.IntN(3)
		}
		convergeCase(t, seed, rng)
		if t.Failed() {
			t.Fatalf("seed %d failed", seed)
		}
	}
}

func convergeCase(t *testing.T, seed uint64, rng *rand.Rand) {
	const accounts = 7
	ids := make([]uuid.UUID, accounts)
	for i := range ids {
		ids[i] = acct(i + 1)
	}
	cr := seeded(seed)
	var initial []uuid.UUID
	for _, id := range ids[1:] {
		if rng.IntN(2) == 0 {
			initial = append(initial, id)
		}
	}
	initial = initial[:min(len(initial), memberLimit-1)]
	creator, u, err := Create(cr, ids[0], "g", initial)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	create := u.Change
	all := []*Change{create}

	// Every account keeps a replica (non-members too, so that they author changes every
	// member must reject) and a record of which changes it has seen.
	authors := make([]*Group, accounts)
	seen := make([]map[ChangeID]bool, accounts)
	authors[0] = creator
	for i := range authors {
		if i > 0 {
			authors[i] = replica(t, ids[i], create)
		}
		seen[i] = map[ChangeID]bool{create.ID: true}
	}
	steps := 4 + rng.IntN(14)
	for range steps {
		a := rng.IntN(accounts)
		// It catches up on a random part of what exists, in a random order.
		for _, i := range rng.Perm(len(all)) {
			c := all[i]
			if !seen[a][c.ID] && rng.IntN(3) > 0 {
				deliver(t, authors[a], ids[a], c)
				seen[a][c.ID] = true
			}
		}
		c := randomChange(rng, cr, authors[a].State(), ids[a], ids)
		deliver(t, authors[a], ids[a], c)
		seen[a][c.ID] = true
		all = append(all, c)
	}

	// Observers: members-to-be that receive everything in a random order.
	var want []byte
	var wantOutcomes []Outcome
	for o := range 4 {
		me := ids[rng.IntN(accounts)]
		g := replica(t, me, create)
		for _, i := range rng.Perm(len(all) - 1) {
			deliver(t, g, me, all[i+1])
		}
		// Duplicates change nothing.
		deliver(t, g, me, all[rng.IntN(len(all))])
		got := g.State().Bytes()
		outcomes := make([]Outcome, len(all))
		for i, c := range all {
			outcomes[i], _ = g.Outcome(c.ID)
		}
		if o == 0 {
			want, wantOutcomes = got, outcomes
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("seed %d: observer %d state\n%x\nwant\n%x", seed, o, got, want)
		}
		if !slices.Equal(outcomes, wantOutcomes) {
			t.Errorf("seed %d: observer %d outcomes %v, want %v", seed, o, outcomes, wantOutcomes)
		}
	}
	// A member that received part of the changes and then the whole history from the
	// creator ends in the same place, and so does a newcomer taking the history at once.
	if len(initial) > 0 {
		g := replica(t, initial[0], create)
		for _, i := range rng.Perm(len(all) - 1)[:rng.IntN(len(all))] {
			deliver(t, g, initial[0], all[i+1])
		}
		if _, err := g.Merge(ids[0], creatorWithAll(t, create, all).History()); err != nil {
			t.Fatalf("seed %d: Merge: %v", seed, err)
		}
		if !slices.Equal(g.State().Bytes(), want) {
			t.Errorf("seed %d: state after Merge differs", seed)
		}
		g, _, err := Join(initial[0], ids[0], creatorWithAll(t, create, all).History())
		if err != nil {
			t.Fatalf("seed %d: Join: %v", seed, err)
		}
		if !slices.Equal(g.State().Bytes(), want) {
			t.Errorf("seed %d: state from the history differs", seed)
		}
	}
}

// deliver has g receive c and checks the invariants on the way.
func deliver(t *testing.T, g *Group, me uuid.UUID, c *Change) {
	t.Helper()
	u, err := g.Receive(c.Author, c)
	if err != nil {
		t.Fatalf("Receive(%s by %v base %d): %v", c.Kind, c.Author, c.Base, err)
	}
	if gone := minus(u.Before.Members, u.After.Members); len(gone) > 0 && u.Before.DistributionID == u.After.DistributionID {
		t.Errorf("%v dropped out of the member list but the distribution id stayed %v", gone, u.After.DistributionID)
	}
	if u.Before.DistributionID != u.After.DistributionID && u.After.IsMember(me) && !u.Plan.RotateMySenderKey {
		t.Errorf("new epoch without a rotation in the plan")
	}
	for _, a := range u.After.Admins {
		if !u.After.IsMember(a) {
			t.Errorf("admin %v is not a member", a)
		}
	}
	back, err := NewState(u.After.Bytes())
	if err != nil || !slices.Equal(back.Bytes(), u.After.Bytes()) {
		t.Errorf("NewState(state.Bytes()) = %v, want the state back", err)
	}
}

// randomChange makes a change by author from its view s: mostly sensible ones, some from
// a stale or future base, some it has no right to make.
func randomChange(rng *rand.Rand, cr *rand.ChaCha8, s *State, author uuid.UUID, ids []uuid.UUID) *Change {
	c := &Change{Group: s.Group, Author: author, Base: s.Revision, Kind: Kind(2 + rng.IntN(int(kindEnd)-2))}
	switch rng.IntN(10) {
	case 0:
		c.Base = 1 + rng.Uint64N(s.Revision) // stale
	case 1:
		c.Base = s.Revision + 1 + rng.Uint64N(2) // from a future this account never saw
	}
	switch c.Kind {
	case KindRename:
		c.Title = []string{"a", "b", "c"}[rng.IntN(3)]
	case KindAdd, KindPromote, KindRemove:
		for len(c.Members) == 0 {
			for _, id := range ids {
				if rng.IntN(3) == 0 {
					c.Members = append(c.Members, id)
				}
			}
		}
	}
	cr.Read(c.ID[:])
	return c
}

// creatorWithAll is a replica holding every change.
func creatorWithAll(t *testing.T, create *Change, all []*Change) *Group {
	g := replica(t, create.Author, create)
	for _, c := range all[1:] {
		if _, err := g.Receive(c.Author, c); err != nil {
			t.Fatalf("Receive: %v", err)
		}
	}
	return g
}
