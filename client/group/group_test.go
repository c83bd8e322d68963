package group

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/uuid"
)

// acct returns a fixed account id; ids sort by n.
func acct(n int) uuid.UUID {
	var u uuid.UUID
	u[0], u[1], u[15] = byte(n>>8), byte(n), 0xa0
	return u
}

// seeded is a deterministic source of randomness for change ids.
func seeded(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	return rand.NewChaCha8(s)
}

// mustCreate makes a group by acct(1) with the given other members.
func mustCreate(t testing.TB, r *rand.ChaCha8, members ...uuid.UUID) (*Group, *Change) {
	t.Helper()
	g, u, err := Create(r, acct(1), "friends", members)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return g, u.Change
}

// replica starts me's copy of the group from the create.
func replica(t testing.TB, me uuid.UUID, create *Change) *Group {
	t.Helper()
	g, _, err := New(me, create.Author, create)
	if err != nil {
		t.Fatalf("New(%v): %v", me, err)
	}
	return g
}

func receive(t testing.TB, g *Group, cs ...*Change) Update {
	t.Helper()
	var u Update
	for _, c := range cs {
		var err error
		if u, err = g.Receive(c.Author, c); err != nil {
			t.Fatalf("Receive(%s by %v): %v", c.Kind, c.Author, err)
		}
	}
	return u
}

func TestCreate(t *testing.T) {
	r := seeded(1)
	g, u, err := Create(r, acct(1), "friends", []uuid.UUID{acct(3), acct(2), acct(1), acct(2)})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	s := g.State()
	if want := []uuid.UUID{acct(1), acct(2), acct(3)}; !slices.Equal(s.Members, want) {
		t.Errorf("Members = %v, want %v", s.Members, want)
	}
	if want := []uuid.UUID{acct(1)}; !slices.Equal(s.Admins, want) {
		t.Errorf("Admins = %v, want %v", s.Admins, want)
	}
	if s.Title != "friends" || s.Revision != 1 || s.Epoch != 0 {
		t.Errorf("State = %q rev %d epoch %d, want \"friends\" rev 1 epoch 0", s.Title, s.Revision, s.Epoch)
	}
	if want := []uuid.UUID{acct(2), acct(3)}; !slices.Equal(u.Plan.SendChangeTo, want) || !slices.Equal(u.Plan.SendDistributionTo, want) || !u.Plan.RotateMySenderKey {
		t.Errorf("Create plan = %+v, want change and distribution to %v and a new chain", u.Plan, want)
	}
	if _, _, err := Create(r, acct(1), "", nil); err == nil {
		t.Errorf("Create with an empty title = nil error, want one")
	}
}

// TestAuthorisation: only admins change the group, anyone leaves, and every member
// rejects a non-admin's change for the same reason.
func TestAuthorisation(t *testing.T) {
	r := seeded(2)
	_, create := mustCreate(t, r, acct(2), acct(3))
	base := uint64(1)
	mk := func(author int, k Kind, members ...uuid.UUID) *Change {
		c := &Change{Group: create.Group, Author: acct(author), Base: base, Kind: k, Members: members}
		if k == KindRename {
			c.Title = "renamed"
		}
		r.Read(c.ID[:])
		return c
	}
	tests := []struct {
		name   string
		change *Change
		want   Outcome
	}{
		{"admin adds", mk(1, KindAdd, acct(4)), Outcome{StatusApplied, ReasonNone}},
		{"member adds", mk(2, KindAdd, acct(4)), Outcome{StatusRejected, ReasonNotAdmin}},
		{"member removes", mk(2, KindRemove, acct(3)), Outcome{StatusRejected, ReasonNotAdmin}},
		{"member promotes self", mk(2, KindPromote, acct(2)), Outcome{StatusRejected, ReasonNotAdmin}},
		{"member renames", mk(3, KindRename), Outcome{StatusRejected, ReasonNotAdmin}},
		{"member leaves", mk(3, KindLeave), Outcome{StatusApplied, ReasonNone}},
		{"outsider leaves", mk(9, KindLeave), Outcome{StatusRejected, ReasonNotMember}},
		{"outsider adds", mk(9, KindAdd, acct(9)), Outcome{StatusRejected, ReasonNotMember}},
		{"admin adds a member", mk(1, KindAdd, acct(2)), Outcome{StatusRejected, ReasonNoEffect}},
		{"admin removes a stranger", mk(1, KindRemove, acct(8)), Outcome{StatusRejected, ReasonNoEffect}},
		{"admin promotes admin", mk(1, KindPromote, acct(1)), Outcome{StatusRejected, ReasonNoEffect}},
		{"admin renames", mk(1, KindRename), Outcome{StatusApplied, ReasonNone}},
		{"admin removes member", mk(1, KindRemove, acct(2)), Outcome{StatusApplied, ReasonNone}},
		{"admin promotes member", mk(1, KindPromote, acct(3)), Outcome{StatusApplied, ReasonNone}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, me := range []uuid.UUID{acct(1), acct(2), acct(3)} {
				g := replica(t, me, create)
				before := g.State()
				u := receive(t, g, tt.change)
				if u.Outcome != tt.want {
					t.Errorf("member %v: Receive(%s by %v).Outcome = %+v, want %+v", me, tt.change.Kind, tt.change.Author, u.Outcome, tt.want)
				}
				if tt.want.Status == StatusRejected {
					// Only the revision moves (the fold's clock).
					b := before.clone()
					b.Revision = u.After.Revision
					if !slices.Equal(u.After.Bytes(), b.Bytes()) {
						t.Errorf("member %v: rejected change changed the state", me)
					}
				}
				if got, _ := g.Outcome(tt.change.ID); got != tt.want {
					t.Errorf("Outcome(id) = %+v, want %+v", got, tt.want)
				}
			}
		})
	}
	if got := ReasonNotAdmin.String(); got != "only admins can change the group" {
		t.Errorf("ReasonNotAdmin.String() = %q", got)
	}
}

func TestReceiveRefuses(t *testing.T) {
	r := seeded(3)
	g, create := mustCreate(t, r, acct(2))
	ok := &Change{Group: create.Group, Author: acct(1), Base: 1, Kind: KindRename, Title: "x"}
	r.Read(ok.ID[:])
	other := *ok
	other.Group[0] ^= 1
	conflict := *ok
	conflict.Title = "y"
	second := *create
	second.ID[0] ^= 1
	bad := *ok
	bad.Title = ""
	tests := []struct {
		name string
		from uuid.UUID
		c    *Change
		want error
	}{
		{"relayed by a member", acct(2), ok, ErrWrongAuthor},
		{"other group", acct(1), &other, ErrOtherGroup},
		{"second create", acct(1), &second, ErrConflict},
		{"invalid", acct(1), &bad, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := g.Receive(tt.from, tt.c)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Receive = %v, want %v", err, tt.want)
			}
		})
	}
	receive(t, g, ok)
	if u := receive(t, g, ok); !u.Duplicate {
		t.Errorf("Receive of a held change: Duplicate = false, want true")
	}
	if _, err := g.Receive(acct(1), &conflict); !errors.Is(err, ErrConflict) {
		t.Errorf("Receive of another change with a held id = %v, want %v", err, ErrConflict)
	}
}

func TestBuilders(t *testing.T) {
	r := seeded(4)
	g, create := mustCreate(t, r, acct(2))
	b := replica(t, acct(2), create)
	if _, err := b.Add(r, acct(3)); !errors.Is(err, ErrNotAdmin) {
		t.Errorf("non-admin Add = %v, want %v", err, ErrNotAdmin)
	}
	if _, err := g.Leave(r); !errors.Is(err, ErrLastAdmin) {
		t.Errorf("last admin Leave = %v, want %v", err, ErrLastAdmin)
	}
	steps := []func() (Update, error){
		func() (Update, error) { return g.Add(r, acct(3)) },
		func() (Update, error) { return g.Promote(r, acct(2)) },
		func() (Update, error) { return g.Rename(r, "family") },
		func() (Update, error) { return g.Remove(r, acct(3)) },
		func() (Update, error) { return g.Leave(r) },
	}
	for i, step := range steps {
		u, err := step()
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if u.Outcome.Status != StatusApplied {
			t.Fatalf("step %d (%s): outcome %+v", i, u.Change.Kind, u.Outcome)
		}
		if !slices.Contains(u.Plan.SendChangeTo, acct(2)) {
			t.Errorf("step %d (%s): SendChangeTo = %v, want it to include %v", i, u.Change.Kind, u.Plan.SendChangeTo, acct(2))
		}
		receive(t, b, u.Change)
	}
	s := b.State()
	if want := []uuid.UUID{acct(2)}; !slices.Equal(s.Members, want) || !slices.Equal(s.Admins, want) || s.Title != "family" {
		t.Errorf("State after the steps = %+v, want %v alone, admin, title family", s, want)
	}
	if !slices.Equal(g.State().Bytes(), s.Bytes()) {
		t.Errorf("the two replicas differ")
	}
	if _, err := g.Rename(r, "back"); !errors.Is(err, ErrNotMember) {
		t.Errorf("Rename after leaving = %v, want %v", err, ErrNotMember)
	}
}

// TestConcurrent: the cases the rule exists for, delivered in every order.
func TestConcurrent(t *testing.T) {
	r := seeded(5)
	_, create := mustCreate(t, r, acct(2), acct(3), acct(4))
	mk := func(author int, base uint64, k Kind, members ...uuid.UUID) *Change {
		c := &Change{Group: create.Group, Author: acct(author), Base: base, Kind: k, Members: members}
		if k == KindRename {
			c.Title = "title by " + acct(author).String()[:4]
		}
		r.Read(c.ID[:])
		return c
	}
	promote := mk(1, 1, KindPromote, acct(2)) // acct(2) is an admin from revision 2
	tests := []struct {
		name        string
		changes     []*Change
		wantMembers []uuid.UUID
		wantAdmins  []uuid.UUID
	}{
		{"two admins add", []*Change{promote, mk(1, 2, KindAdd, acct(5)), mk(2, 2, KindAdd, acct(6))},
			[]uuid.UUID{acct(1), acct(2), acct(3), acct(4), acct(5), acct(6)}, []uuid.UUID{acct(1), acct(2)}},
		{"remove wins over a concurrent add", []*Change{promote, mk(1, 2, KindRemove, acct(3)), mk(2, 2, KindAdd, acct(3), acct(5))},
			[]uuid.UUID{acct(1), acct(2), acct(4), acct(5)}, []uuid.UUID{acct(1), acct(2)}},
		{"remove wins over a concurrent promote", []*Change{promote, mk(1, 2, KindRemove, acct(3)), mk(2, 2, KindPromote, acct(3))},
			[]uuid.UUID{acct(1), acct(2), acct(4)}, []uuid.UUID{acct(1), acct(2)}},
		{"admins remove each other: the lower id goes first", []*Change{promote, mk(1, 2, KindRemove, acct(2)), mk(2, 2, KindRemove, acct(1))},
			[]uuid.UUID{acct(1), acct(3), acct(4)}, []uuid.UUID{acct(1)}},
		{"a later change waits for its base", []*Change{promote, mk(2, 2, KindAdd, acct(5)), mk(2, 3, KindPromote, acct(5))},
			[]uuid.UUID{acct(1), acct(2), acct(3), acct(4), acct(5)}, []uuid.UUID{acct(1), acct(2), acct(5)}},
		{"a non-admin's concurrent add is ignored", []*Change{mk(1, 1, KindAdd, acct(5)), mk(3, 1, KindAdd, acct(6))},
			[]uuid.UUID{acct(1), acct(2), acct(3), acct(4), acct(5)}, []uuid.UUID{acct(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var first []byte
			for perm := range permutations(len(tt.changes)) {
				g := replica(t, acct(4), create)
				for _, i := range perm {
					receive(t, g, tt.changes[i])
				}
				s := g.State()
				if !slices.Equal(s.Members, tt.wantMembers) || !slices.Equal(s.Admins, tt.wantAdmins) {
					t.Errorf("order %v: members %v admins %v, want %v and %v", perm, s.Members, s.Admins, tt.wantMembers, tt.wantAdmins)
				}
				if first == nil {
					first = s.Bytes()
				} else if !slices.Equal(first, s.Bytes()) {
					t.Errorf("order %v: state differs from the first order's", perm)
				}
			}
		})
	}
}

// permutations yields every ordering of 0..n-1.
func permutations(n int) func(func([]int) bool) {
	return func(yield func([]int) bool) {
		p := make([]int, n)
		for i := range p {
			p[i] = i
		}
		var gen func(k int) bool
		gen = func(k int) bool {
			if k == n {
				return yield(slices.Clone(p))
			}
			for i := k; i < n; i++ {
				p[k], p[i] = p[i], p[k]
				if !gen(k + 1) {
					return false
				}
				p[k], p[i] = p[i], p[k]
			}
			return true
		}
		gen(0)
	}
}

func TestJoin(t *testing.T) {
	r := seeded(6)
	a, create := mustCreate(t, r, acct(2))
	b := replica(t, acct(2), create)
	u, err := a.Add(r, acct(3))
	if err != nil {
		t.Fatal(err)
	}
	if want := []uuid.UUID{acct(3)}; !slices.Equal(u.Plan.SendHistoryTo, want) {
		t.Errorf("adder's SendHistoryTo = %v, want %v", u.Plan.SendHistoryTo, want)
	}
	ub := receive(t, b, u.Change)
	if want := []uuid.UUID{acct(3)}; !slices.Equal(ub.Plan.SendMyChangesTo, want) || !slices.Equal(ub.Plan.SendDistributionTo, want) || ub.Plan.RotateMySenderKey {
		t.Errorf("other member's plan = %+v, want my changes and distribution to %v, no rotation", ub.Plan, want)
	}
	if _, _, err := Join(acct(3), acct(2), a.History()); !errors.Is(err, ErrNotInvited) {
		t.Errorf("Join with history from a non-adder = %v, want %v", err, ErrNotInvited)
	}
	c, uc, err := Join(acct(3), acct(1), a.History())
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	if !slices.Equal(c.State().Bytes(), a.State().Bytes()) {
		t.Errorf("joined state differs from the adder's")
	}
	if want := []uuid.UUID{acct(1), acct(2)}; !uc.Plan.RotateMySenderKey || !slices.Equal(uc.Plan.SendDistributionTo, want) {
		t.Errorf("newcomer's plan = %+v, want a chain sent to %v", uc.Plan, want)
	}
	// Remove and add again: the old replica merges the new history.
	ur, _ := a.Remove(r, acct(3))
	receive(t, c, ur.Change)
	if !c.State().IsMember(acct(1)) || c.State().IsMember(acct(3)) {
		t.Errorf("removed member's state = %v, want it without itself", c.State().Members)
	}
	a.Add(r, acct(3))
	um, err := c.Merge(acct(1), a.History())
	if err != nil {
		t.Fatalf("Merge: %v", err)
	}
	if !um.Plan.RotateMySenderKey || !slices.Equal(c.State().Bytes(), a.State().Bytes()) {
		t.Errorf("after Merge: plan %+v, states equal %v; want a new chain and equal states", um.Plan, slices.Equal(c.State().Bytes(), a.State().Bytes()))
	}
}

// TestRejectedStaysRejected: an admin who saw a non-admin's change rejected and then
// promotes that member does not make the rejected change count.
func TestRejectedStaysRejected(t *testing.T) {
	r := seeded(8)
	a, create := mustCreate(t, r, acct(2))
	bad := &Change{Group: create.Group, Author: acct(2), Base: 1, Kind: KindRename, Title: "mine now"}
	r.Read(bad.ID[:])
	receive(t, a, bad)
	u, err := a.Promote(r, acct(2))
	if err != nil {
		t.Fatal(err)
	}
	for perm := range permutations(2) {
		g := replica(t, acct(2), create)
		cs := []*Change{bad, u.Change}
		receive(t, g, cs[perm[0]], cs[perm[1]])
		if out, _ := g.Outcome(bad.ID); out != (Outcome{StatusRejected, ReasonNotAdmin}) || g.State().Title != "friends" {
			t.Errorf("order %v: rename by a non-admin = %+v, title %q; want rejected, title kept", perm, out, g.State().Title)
		}
	}
}

// TestWorkedExample is the example of docs/groups.md, in every delivery order.
func TestWorkedExample(t *testing.T) {
	r := seeded(9)
	A, B, C, D, E := acct(1), acct(2), acct(3), acct(4), acct(5)
	alice, create := mustCreate(t, r, B, C)
	up, err := alice.Promote(r, B)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(author uuid.UUID, k Kind, members ...uuid.UUID) *Change {
		c := &Change{Group: create.Group, Author: author, Base: 2, Kind: k, Members: members}
		if k == KindRename {
			c.Title = "carol's"
		}
		r.Read(c.ID[:])
		return c
	}
	concurrent := []*Change{mk(A, KindAdd, D), mk(B, KindAdd, C, E), mk(C, KindRename), mk(B, KindRemove, C)}
	for perm := range permutations(len(concurrent)) {
		g := replica(t, E, create)
		receive(t, g, up.Change)
		for _, i := range perm {
			receive(t, g, concurrent[i])
		}
		s := g.State()
		if want := []uuid.UUID{A, B, D, E}; !slices.Equal(s.Members, want) {
			t.Errorf("order %v: members %v, want %v", perm, s.Members, want)
		}
		if want := []uuid.UUID{A, B}; !slices.Equal(s.Admins, want) || s.Title != "friends" || s.Revision != 3 || s.Epoch != 1 {
			t.Errorf("order %v: admins %v title %q revision %d epoch %d, want %v, friends, 3, 1", perm, s.Admins, s.Title, s.Revision, s.Epoch, want)
		}
		if out, _ := g.Outcome(concurrent[2].ID); out.Reason != ReasonNotAdmin {
			t.Errorf("order %v: Carol's rename %+v, want rejected as not admin", perm, out)
		}
	}
}

// TestOtherDevice: a change made on another of my devices arrives over my own account's
// session; this device applies it and does not send it again.
func TestOtherDevice(t *testing.T) {
	r := seeded(10)
	phone, u, err := Create(r, acct(1), "friends", []uuid.UUID{acct(2)})
	if err != nil {
		t.Fatal(err)
	}
	laptop, ul, err := New(acct(1), acct(1), u.Change)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Plan.SendChangeTo) == 0 || len(ul.Plan.SendChangeTo) != 0 {
		t.Errorf("create: maker sends to %v, other device to %v; want only the maker to send", u.Plan.SendChangeTo, ul.Plan.SendChangeTo)
	}
	ua, err := phone.Add(r, acct(3))
	if err != nil {
		t.Fatal(err)
	}
	ub := receive(t, laptop, ua.Change)
	if len(ub.Plan.SendChangeTo) != 0 || len(ub.Plan.SendHistoryTo) != 0 {
		t.Errorf("other device's plan %+v, want no change or history to send", ub.Plan)
	}
	if !slices.Equal(ub.Plan.SendDistributionTo, []uuid.UUID{acct(3)}) {
		t.Errorf("other device's SendDistributionTo = %v, want the newcomer (its own chain)", ub.Plan.SendDistributionTo)
	}
}
