package group

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/google/uuid"
)

// Errors for changes a member does not hold at all (as opposed to changes it holds and
// rejects, see [Outcome]).
var (
	// ErrWrongAuthor: the change did not come over the author's own session.
	ErrWrongAuthor = errors.New("group: change not sent by its author")
	// ErrOtherGroup: the change belongs to another group.
	ErrOtherGroup = errors.New("group: change for another group")
	// ErrConflict: a second create, or a change id already held for a different change.
	ErrConflict = errors.New("group: conflicting change")
	// ErrTooManyChanges: the history holds MaxChanges, or MaxPending wait already.
	ErrTooManyChanges = errors.New("group: too many changes")
	// ErrNotInvited: a history that does not show its sender adding us.
	ErrNotInvited = errors.New("group: history does not show the sender adding us")
	// ErrNotMember, ErrNotAdmin and ErrLastAdmin refuse to make a change the others
	// would reject, or one that would leave the group without an admin.
	ErrNotMember = errors.New("group: not a member")
	ErrNotAdmin  = errors.New("group: not an admin")
	ErrLastAdmin = errors.New("group: the last admin must promote another member before leaving")
)

// Group is one member's replica of a group: the set of changes it holds and their fold.
//
// The rule that makes every member agree: the state is a function of the set of changes
// alone. The changes are sorted by (base revision, kind, author, change id), kinds ranked
// create < add < promote < rename < remove < leave; they are applied in that order, each
// checked against the state the ones before it produced (an admin-only change from a
// non-admin is rejected with a [Reason] and changes nothing else). A change whose base is
// above the revision reached so far waits, and so does everything after it. Folding a
// change, applied or rejected, sets the revision to max(revision, base+1). So two members
// holding the same set hold the same state, whatever order it arrived in; and a change
// made after its author folded another names a higher base, so it sorts after it.
//
// A Group is not safe for concurrent use. It has no I/O: the caller persists
// [Group.History] and sends what each [Update]'s Plan says.
type Group struct {
	me      uuid.UUID
	entries []*entry // sorted by Change.compare; entries[0] is the create
	byID    map[ChangeID]*entry
	folded  int // entries[:folded] are folded into f; the rest wait
	f       *fold
	state   *State // cache of f.state(), nil when stale
}

type entry struct {
	c   *Change
	out Outcome
}

// Update is what one change did to this member's replica.
type Update struct {
	Change    *Change
	Outcome   Outcome
	Duplicate bool   // the change was held already; nothing changed
	Before    *State // nil when the group is new to this member
	After     *State
	Plan      Plan
}

func (g *Group) snapshot() *State {
	if g.state == nil {
		g.state = g.f.state()
	}
	return g.state
}

// State returns the current state.
func (g *Group) State() *State { return g.snapshot().clone() }

// ID returns the group's id.
func (g *Group) ID() ID { return g.entries[0].c.Group }

// Outcome says what became of the change id, and whether the group holds it.
func (g *Group) Outcome(id ChangeID) (Outcome, bool) {
	e, ok := g.byID[id]
	if !ok {
		return Outcome{}, false
	}
	return e.out, true
}

// History returns every change held, in fold order: what a member stores, and what an
// admin sends a member it adds.
func (g *Group) History() []byte {
	cs := make([]*Change, len(g.entries))
	for i, e := range g.entries {
		cs[i] = e.c
	}
	return appendHistory(nil, cs)
}

// ChangesBy returns the changes author made, in fold order: what a member sends someone
// another admin added, so that the newcomer learns of every change concurrent with its
// add from the change's own author.
func (g *Group) ChangesBy(author uuid.UUID) []*Change {
	var cs []*Change
	for _, e := range g.entries {
		if e.c.Author == author {
			cs = append(cs, e.c.clone())
		}
	}
	return cs
}

// New starts me's replica from a create that arrived from the account from (or that
// me made).
func New(me, from uuid.UUID, create *Change) (*Group, Update, error) {
	return newReplica(me, from, create, false)
}

// start_ is New; local says the create was made here (by [Create]).
func newReplica(me, from uuid.UUID, create *Change, local bool) (*Group, Update, error) {
	if err := create.validate(); err != nil {
		return nil, Update{}, fmt.Errorf("group: invalid change: %w", err)
	}
	if create.Kind != KindCreate {
		return nil, Update{}, fmt.Errorf("group: a group starts with a create, not %s", create.Kind)
	}
	if from != create.Author {
		return nil, Update{}, ErrWrongAuthor
	}
	g := newGroup(me, create.clone())
	after := g.State()
	u := Update{Change: create.clone(), Outcome: Outcome{Status: StatusApplied}, After: after, Plan: g.plan(create, local, nil, after)}
	return g, u, nil
}

func newGroup(me uuid.UUID, create *Change) *Group {
	e := &entry{c: create, out: Outcome{Status: StatusApplied}}
	return &Group{
		me:      me,
		entries: []*entry{e},
		byID:    map[ChangeID]*entry{create.ID: e},
		folded:  1,
		f:       start(create),
	}
}

// Join starts me's replica from the history an admin (from) sent when it added me. The
// history's other changes are taken on from's word: their authors' sessions did not carry
// them. It must hold an add of me (or the create listing me) made by from.
func Join(me, from uuid.UUID, history []byte) (*Group, Update, error) {
	cs, err := NewHistory(history)
	if err != nil {
		return nil, Update{}, err
	}
	if !invites(cs, from, me) {
		return nil, Update{}, ErrNotInvited
	}
	g := newGroup(me, cs[0])
	if err := g.merge(cs[1:]); err != nil {
		return nil, Update{}, err
	}
	after := g.State()
	return g, Update{Change: cs[0].clone(), Outcome: Outcome{Status: StatusApplied}, After: after, Plan: g.plan(nil, false, nil, after)}, nil
}

func invites(cs []*Change, from, me uuid.UUID) bool {
	for _, c := range cs {
		if c.Author == from && (c.Kind == KindAdd || c.Kind == KindCreate) {
			if _, ok := slices.BinarySearchFunc(c.Members, me, compareUUID); ok {
				return true
			}
		}
	}
	return false
}

// Merge adds the changes of a history an admin (from) sent, for instance when it added
// me again; like [Join], on from's word. Update.Change is nil.
func (g *Group) Merge(from uuid.UUID, history []byte) (Update, error) {
	cs, err := NewHistory(history)
	if err != nil {
		return Update{}, err
	}
	if cs[0].Group != g.ID() {
		return Update{}, ErrOtherGroup
	}
	if !invites(cs, from, g.me) {
		return Update{}, ErrNotInvited
	}
	before := g.State()
	if err := g.merge(cs); err != nil {
		return Update{}, err
	}
	after := g.State()
	return Update{Before: before, After: after, Plan: g.plan(nil, false, before, after)}, nil
}

// merge adds changes of this group, skipping those held, and folds once.
func (g *Group) merge(cs []*Change) error {
	var add []*entry
	for _, c := range cs {
		dup, err := g.check(c)
		if err != nil {
			return err
		}
		if !dup {
			e := &entry{c: c.clone()}
			add = append(add, e)
			g.byID[c.ID] = e
		}
	}
	if len(g.entries)+len(add) > MaxChanges {
		for _, e := range add {
			delete(g.byID, e.c.ID)
		}
		return ErrTooManyChanges
	}
	g.entries = append(g.entries, add...)
	slices.SortFunc(g.entries, func(a, b *entry) int { return a.c.compare(b.c) })
	g.refold()
	return nil
}

// check validates c against what g holds: nil and false for a new change, nil and true
// for one held already.
func (g *Group) check(c *Change) (bool, error) {
	if err := c.validate(); err != nil {
		return false, fmt.Errorf("group: invalid change: %w", err)
	}
	if c.Group != g.ID() {
		return false, ErrOtherGroup
	}
	if e, ok := g.byID[c.ID]; ok {
		if !bytes.Equal(e.c.Bytes(), c.Bytes()) {
			return false, ErrConflict
		}
		return true, nil
	}
	if c.Kind == KindCreate {
		return false, ErrConflict
	}
	return false, nil
}

// Receive takes a change that arrived over the 1:1 session of the account from, folds it
// in and says what it did. A change from anyone but its author is refused
// (ErrWrongAuthor): a member cannot put words in an admin's mouth. A change held already
// is a duplicate and changes nothing.
func (g *Group) Receive(from uuid.UUID, c *Change) (Update, error) {
	return g.receive(from, c, false)
}

// receive is Receive; local says the change was made here, by one of the methods below,
// and so is this replica's to send.
func (g *Group) receive(from uuid.UUID, c *Change, local bool) (Update, error) {
	dup, err := g.check(c)
	if err != nil {
		return Update{}, err
	}
	if from != c.Author {
		return Update{}, ErrWrongAuthor
	}
	// The cached snapshot is never changed once made, and the cache lets go of it when
	// the fold moves on, so it can be handed out as Before without a copy.
	before := g.snapshot()
	if dup {
		e := g.byID[c.ID]
		return Update{Change: c.clone(), Outcome: e.out, Duplicate: true, Before: before.clone(), After: before.clone()}, nil
	}
	if len(g.entries) >= MaxChanges || len(g.entries)-g.folded >= MaxPending && c.Base > g.f.revision {
		return Update{}, ErrTooManyChanges
	}
	e := &entry{c: c.clone()}
	p, _ := slices.BinarySearchFunc(g.entries, e, func(a, b *entry) int { return a.c.compare(b.c) })
	g.entries = slices.Insert(g.entries, p, e)
	g.byID[c.ID] = e
	if p < g.folded {
		g.refold() // it sorts before changes already applied: fold again from the create
	} else {
		g.advance()
	}
	after := g.State()
	return Update{Change: c.clone(), Outcome: e.out, Before: before, After: after, Plan: g.plan(c, local, before, after)}, nil
}

// refold folds every change again from the create.
func (g *Group) refold() {
	g.f = start(g.entries[0].c)
	g.folded = 1
	g.advance()
}

// advance folds the waiting changes in order until one names a base revision not reached.
func (g *Group) advance() {
	g.state = nil
	for _, e := range g.entries[g.folded:] {
		e.out = Outcome{Status: StatusPending}
	}
	for g.folded < len(g.entries) {
		e := g.entries[g.folded]
		if e.c.Base > g.f.revision {
			break // a gap: this change builds on changes not held yet, and so does every later one
		}
		e.out = g.f.apply(e.c)
		g.folded++
	}
}

// plan completes PlanFor with the messages that carry changes. Only the replica that made
// a change sends it: one of me's other devices receiving it sends nothing again.
func (g *Group) plan(c *Change, local bool, before, after *State) Plan {
	p := PlanFor(g.me, before, after)
	if p.Left && (before == nil || !before.IsMember(g.me)) {
		return p
	}
	mine := local && g.byID[c.ID].out.Status == StatusApplied
	if mine {
		// Everyone who was or is a member hears of it: a removed member learns it was removed.
		p.SendChangeTo = others(g.me, union(membersOf(before), after.Members))
	}
	if p.Left {
		return p
	}
	joined := others(g.me, minus(after.Members, membersOf(before)))
	if before == nil || !before.IsMember(g.me) {
		return p // we are the newcomer: nobody to tell
	}
	if mine && c.Kind == KindAdd {
		p.SendHistoryTo = joined
	} else {
		p.SendMyChangesTo = joined
	}
	return p
}

// Create makes a new group with me as its first admin and members as the other first
// members, reading randomness from r (crypto/rand when nil). Update.Change is the create
// to send to every member (Update.Plan.SendChangeTo).
func Create(r io.Reader, me uuid.UUID, title string, members []uuid.UUID) (*Group, Update, error) {
	id, err := GenerateID(r)
	if err != nil {
		return nil, Update{}, err
	}
	c := &Change{Group: id, Author: me, Kind: KindCreate, Title: title, Members: others(me, sortedUUIDs(members))}
	if err := readChangeID(r, c); err != nil {
		return nil, Update{}, err
	}
	return newReplica(me, me, c, true)
}

func readChangeID(r io.Reader, c *Change) error {
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, c.ID[:]); err != nil {
		return fmt.Errorf("generating change id: %w", err)
	}
	return nil
}

// propose makes a change by me on the current state, applies it and returns the update.
func (g *Group) propose(r io.Reader, kind Kind, title string, members []uuid.UUID) (Update, error) {
	s := g.snapshot()
	if !s.IsMember(g.me) {
		return Update{}, ErrNotMember
	}
	if kind != KindLeave && !s.IsAdmin(g.me) {
		return Update{}, ErrNotAdmin
	}
	if kind == KindLeave && len(s.Admins) == 1 && s.IsAdmin(g.me) && len(s.Members) > 1 {
		return Update{}, ErrLastAdmin
	}
	c := &Change{Group: g.ID(), Author: g.me, Base: s.Revision, Kind: kind, Title: title, Members: sortedUUIDs(members)}
	if err := readChangeID(r, c); err != nil {
		return Update{}, err
	}
	return g.receive(g.me, c, true)
}

// Rename sets the title. Admins only. Randomness for the change id comes from r
// (crypto/rand when nil), as in every method that makes a change; the returned Update
// says whom to send it to.
func (g *Group) Rename(r io.Reader, title string) (Update, error) {
	return g.propose(r, KindRename, title, nil)
}

// Add adds members. Admins only.
func (g *Group) Add(r io.Reader, members ...uuid.UUID) (Update, error) {
	return g.propose(r, KindAdd, "", members)
}

// Remove removes members. Admins only.
func (g *Group) Remove(r io.Reader, members ...uuid.UUID) (Update, error) {
	return g.propose(r, KindRemove, "", members)
}

// Promote makes members admins. Admins only.
func (g *Group) Promote(r io.Reader, members ...uuid.UUID) (Update, error) {
	return g.propose(r, KindPromote, "", members)
}

// Leave takes me out of the group. The last admin of a group with other members must
// promote one first (ErrLastAdmin): a group without admins can no longer change.
func (g *Group) Leave(r io.Reader) (Update, error) {
	return g.propose(r, KindLeave, "", nil)
}
