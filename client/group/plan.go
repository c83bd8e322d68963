package group

import (
	"slices"

	"github.com/google/uuid"
)

// Plan is what the member me must send after a change, as the client executes it. It
// names accounts; the client sends to every device of each, and sends what goes to
// everyone (a change, a new chain) to me's own other devices as well.
type Plan struct {
	// Left: me is not a member of the new state. Send nothing more to the group.
	Left bool
	// RotateMySenderKey: make a new sender-key chain under After.DistributionID
	// (senderkey.Create makes one when none is stored for it) and send only on it from
	// now on. Set when the epoch changed (someone left or was removed, so nothing sent
	// from now on may be readable with an older chain) and when me has just joined.
	RotateMySenderKey bool
	// SendDistributionTo: the accounts that need me's current distribution message for
	// After.DistributionID: everyone after a rotation, only newcomers otherwise.
	SendDistributionTo []uuid.UUID
	// SendChangeTo: this replica made the change (with [Create] or a [Group] method);
	// send it to every account that was or is a member.
	SendChangeTo []uuid.UUID
	// SendHistoryTo: me added these accounts; send them [Group.History].
	SendHistoryTo []uuid.UUID
	// SendMyChangesTo: someone else added these accounts; send them me's own changes
	// ([Group.ChangesBy]), so that they learn of changes concurrent with their add.
	SendMyChangesTo []uuid.UUID
}

// PlanFor decides the sender-key part of a [Plan] for the member me going from before (nil
// when the group is new to me) to after:
//
//   - me not a member of after: Left, nothing to send;
//   - me new to the group, or the distribution id changed: rotate, and send the new
//     chain to every other member;
//   - otherwise: send the current chain to the members that are new.
//
// A member who leaves or is removed holds only chains of earlier epochs, and the
// distribution id of every epoch after its removal is new, so the chains every remaining
// member makes for it are new too: nothing sent after the removal can be read with what
// the removed member holds.
func PlanFor(me uuid.UUID, before, after *State) Plan {
	if after == nil || !after.IsMember(me) {
		return Plan{Left: true}
	}
	var p Plan
	if before == nil || !before.IsMember(me) || before.DistributionID != after.DistributionID ||
		len(minus(before.Members, after.Members)) > 0 {
		// The last condition never holds alone (every way out of the member list starts a
		// new epoch; the property tests check it), but if it did, rotating is the safe side.
		p.RotateMySenderKey = true
		p.SendDistributionTo = others(me, after.Members)
		return p
	}
	p.SendDistributionTo = others(me, minus(after.Members, before.Members))
	return p
}

func membersOf(s *State) []uuid.UUID {
	if s == nil {
		return nil
	}
	return s.Members
}

// minus returns the sorted ids in a and not in b (both sorted).
func minus(a, b []uuid.UUID) []uuid.UUID {
	var out []uuid.UUID
	for _, id := range a {
		if _, ok := slices.BinarySearchFunc(b, id, compareUUID); !ok {
			out = append(out, id)
		}
	}
	return out
}

// union returns the sorted ids in a or b (both sorted).
func union(a, b []uuid.UUID) []uuid.UUID {
	return sortedUUIDs(append(slices.Clone(a), b...))
}

// others returns ids without me.
func others(me uuid.UUID, ids []uuid.UUID) []uuid.UUID {
	out := make([]uuid.UUID, 0, len(ids))
	for _, id := range ids {
		if id != me {
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
