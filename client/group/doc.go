// Package group is the state machine of Bastion's end-to-end encrypted groups, kept by
// the members' clients: the group state, the group-control messages that change it, the
// rule by which concurrent changes converge, and the sender-key decisions each change
// calls for. It has no I/O and no clock: the client persists [Group.History], carries
// each [Change] inside its 1:1 sessions and executes each [Plan].
//
// It implements docs/groups.md (issue 8), Bastion's own design: Signal's groups keep an
// encrypted group state on the server, and Bastion keeps none there. Only the sender
// keys follow a spec, libsignal's, in package protocol/senderkey.
//
// A group is a 32-byte random id, a title, members and admins (account ids), a revision
// and a sender-key epoch with its distribution id ([State]). Its creator is its first
// admin. Admins add, remove and promote members and rename the group; any member leaves.
// Every member keeps the set of changes it received and folds them in one fixed order
// (see [Group]), so members holding the same changes hold the same state byte for byte
// ([State.Digest]), whatever order the changes arrived in; a change by a non-admin is
// held and rejected by every member alike, with a [Reason]. docs/groups.md explains the
// rule with a worked example.
//
// Sender keys (package protocol/senderkey) follow the state: when a member joins, the
// others send it their current chain; when one leaves or is removed, a new epoch begins
// with a new distribution id, and every remaining member makes a new chain for it
// ([PlanFor]), so the removed member cannot read what is sent after its removal.
//
// What it protects: the group's membership and title from the server (changes travel end
// to end; the server fans out ciphertext and keeps no group table), the integrity of
// changes (each comes over its author's own session, and a member refuses a change relayed
// by anyone else, except in the history an admin sends a member it adds), the
// confidentiality of messages sent after a member's removal, and agreement among members
// on who is in the group. What it does not: members see the member list and every
// change; an admin can remove anyone, and the history a newcomer receives is taken on the
// adding admin's word; a member's device keeps what it read while a member; a message
// sent by someone who has not yet seen a removal is still on the old chain, readable by the
// removed member until that sender catches up; and the timing and size of the
// fan-out are visible to the server.
package group
