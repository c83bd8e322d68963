package group

import (
	"crypto/sha256"
	"slices"

	"github.com/google/uuid"
)

// Status is what became of a change in the fold. The zero value is invalid.
type Status uint8

const (
	// StatusApplied: the change took effect.
	StatusApplied Status = iota + 1
	// StatusRejected: the change is held but has no effect; Outcome.Reason says why.
	StatusRejected
	// StatusPending: the change names a base revision this member has not reached yet;
	// it applies once the changes it builds on arrive.
	StatusPending
)

var statusNames = [...]string{"", "applied", "rejected", "pending"}

// String returns "applied", "rejected" or "pending".
func (s Status) String() string {
	if int(s) >= len(statusNames) || s == 0 {
		return "invalid"
	}
	return statusNames[s]
}

// Reason says why a change was rejected, in words a user interface can show. Every member
// holding the same changes rejects the same ones for the same reasons.
type Reason uint8

const (
	// ReasonNone: the change was not rejected.
	ReasonNone Reason = iota
	// ReasonNotMember: the author was not a member when the change applied.
	ReasonNotMember
	// ReasonNotAdmin: only admins may add, remove, promote or rename, and the author was
	// not one when the change applied.
	ReasonNotAdmin
	// ReasonNoEffect: the change would change nothing (adds only members, removes or
	// promotes only non-members, promotes only admins).
	ReasonNoEffect
	// ReasonGroupFull: the add would take the group past MaxMembers.
	ReasonGroupFull
)

var reasonText = [...]string{
	ReasonNone:      "",
	ReasonNotMember: "the author is not a member of the group",
	ReasonNotAdmin:  "only admins can change the group",
	ReasonNoEffect:  "the change has no effect",
	ReasonGroupFull: "the group is full",
}

// String returns the reason as a sentence fragment for a user interface.
func (r Reason) String() string {
	if int(r) >= len(reasonText) {
		return "unknown reason"
	}
	return reasonText[r]
}

// Outcome is what became of one change.
type Outcome struct {
	Status Status
	Reason Reason // set when Status is StatusRejected
}

// fold is the state being computed from the ordered changes, with sets for speed.
type fold struct {
	group    ID
	title    string
	revision uint64
	members  map[uuid.UUID]struct{}
	admins   map[uuid.UUID]struct{}
	epoch    uint64
	dist     uuid.UUID
}

// Labels of the distribution-id derivation: the first epoch's id from the group id, each
// later one from the one before and the change that ended it.
const (
	labelFirstDistribution = "Bastion group first distribution id v1\x00"
	labelNextDistribution  = "Bastion group next distribution id v1\x00"
)

// start returns the fold right after create.
func start(create *Change) *fold {
	f := &fold{
		group:    create.Group,
		title:    create.Title,
		revision: 1,
		members:  make(map[uuid.UUID]struct{}, len(create.Members)+1),
		admins:   map[uuid.UUID]struct{}{create.Author: {}},
	}
	f.members[create.Author] = struct{}{}
	for _, m := range create.Members {
		f.members[m] = struct{}{}
	}
	h := sha256.New()
	h.Write([]byte(labelFirstDistribution))
	h.Write(create.Group[:])
	f.dist = toUUID(h.Sum(nil))
	return f
}

// toUUID makes a version 8 (RFC 9562 custom) UUID of the first 16 bytes of a hash, so
// that the distribution id is a well-formed UUID as libsignal's API expects.
func toUUID(sum []byte) uuid.UUID {
	var u uuid.UUID
	copy(u[:], sum)
	u[6] = u[6]&0x0f | 0x80
	u[8] = u[8]&0x3f | 0x80
	return u
}

// rotate starts a new epoch because c took members out (or, refused for a full group,
// kept one out that a shorter history let in). The new distribution id depends on the old
// one, the change and who it took out, so two folds that took out different members, or
// the same members by different changes, never share an epoch's id.
func (f *fold) rotate(c *Change, out Outcome, removed []uuid.UUID) {
	h := sha256.New()
	h.Write([]byte(labelNextDistribution))
	h.Write(f.dist[:])
	h.Write([]byte{byte(out.Status), byte(out.Reason)})
	h.Write(c.ID[:])
	h.Write(c.Author[:])
	for _, m := range removed {
		h.Write(m[:])
	}
	f.dist = toUUID(h.Sum(nil))
	f.epoch++
}

// apply folds one change (never the create) into f and says what became of it. Rejected
// changes move the revision too: a change made after its author saw one, whatever became
// of it, then names a higher base and sorts after it, so a later promotion cannot make
// an earlier rejected change count.
func (f *fold) apply(c *Change) Outcome {
	out := f.effect(c)
	f.revision = max(f.revision, c.Base+1)
	return out
}

// effect applies c's effect to everything but the revision.
func (f *fold) effect(c *Change) Outcome {
	if _, ok := f.members[c.Author]; !ok {
		return Outcome{StatusRejected, ReasonNotMember}
	}
	if _, ok := f.admins[c.Author]; !ok && c.Kind != KindLeave {
		return Outcome{StatusRejected, ReasonNotAdmin}
	}
	applied := Outcome{Status: StatusApplied}
	switch c.Kind {
	case KindRename:
		f.title = c.Title
	case KindAdd:
		n := 0
		for _, m := range c.Members {
			if _, ok := f.members[m]; !ok {
				n++
			}
		}
		if n == 0 {
			return Outcome{StatusRejected, ReasonNoEffect}
		}
		if len(f.members)+n > memberLimit {
			out := Outcome{StatusRejected, ReasonGroupFull}
			f.rotate(c, out, nil)
			return out
		}
		for _, m := range c.Members {
			f.members[m] = struct{}{}
		}
	case KindPromote:
		n := 0
		for _, m := range c.Members {
			_, member := f.members[m]
			_, admin := f.admins[m]
			if member && !admin {
				f.admins[m] = struct{}{}
				n++
			}
		}
		if n == 0 {
			return Outcome{StatusRejected, ReasonNoEffect}
		}
	case KindRemove:
		var removed []uuid.UUID
		for _, m := range c.Members {
			if _, ok := f.members[m]; ok {
				delete(f.members, m)
				delete(f.admins, m)
				removed = append(removed, m)
			}
		}
		if len(removed) == 0 {
			return Outcome{StatusRejected, ReasonNoEffect}
		}
		f.rotate(c, applied, removed)
	case KindLeave:
		delete(f.members, c.Author)
		delete(f.admins, c.Author)
		f.rotate(c, applied, []uuid.UUID{c.Author})
	default:
		panic("group: fold of a change that is not valid") // validated before it is held
	}
	return applied
}

// state returns the fold as a State.
func (f *fold) state() *State {
	s := &State{
		Group:          f.group,
		Title:          f.title,
		Revision:       f.revision,
		Members:        make([]uuid.UUID, 0, len(f.members)),
		Admins:         make([]uuid.UUID, 0, len(f.admins)),
		Epoch:          f.epoch,
		DistributionID: f.dist,
	}
	for m := range f.members {
		s.Members = append(s.Members, m)
	}
	for a := range f.admins {
		s.Admins = append(s.Admins, a)
	}
	slices.SortFunc(s.Members, compareUUID)
	slices.SortFunc(s.Admins, compareUUID)
	return s
}

// memberLimit is MaxMembers; tests lower it to reach a full group with a few accounts.
var memberLimit = MaxMembers
