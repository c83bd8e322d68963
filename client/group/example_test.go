package group_test

import (
	"fmt"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/client/group"
)

// A group's life as two clients see it: Alice creates it with Bob, adds Carol, then
// removes Bob. Each Update's Plan says what the client sends; here the changes are handed
// over directly instead of through 1:1 sessions.
func Example() {
	alice := uuid.MustParse("00000000-0000-4000-8000-00000000000a")
	bob := uuid.MustParse("00000000-0000-4000-8000-00000000000b")
	carol := uuid.MustParse("00000000-0000-4000-8000-00000000000c")

	g, u, err := group.Create(nil, alice, "climbing", []uuid.UUID{bob})
	if err != nil {
		panic(err)
	}
	// Bob's client receives the create over Alice's session.
	b, ub, err := group.New(bob, alice, u.Change)
	if err != nil {
		panic(err)
	}
	fmt.Println("bob sends his sender key to alice:", ub.Plan.SendDistributionTo[0] == alice)

	u, _ = g.Add(nil, carol)
	fmt.Println("alice sends carol the history:", u.Plan.SendHistoryTo[0] == carol)
	ub, _ = b.Receive(alice, u.Change)
	fmt.Println("bob sends carol his sender key:", ub.Plan.SendDistributionTo[0] == carol, "rotates:", ub.Plan.RotateMySenderKey)

	u, _ = g.Remove(nil, bob)
	fmt.Println("alice rotates after removing bob:", u.Plan.RotateMySenderKey)
	ub, _ = b.Receive(alice, u.Change)
	fmt.Println("bob has left:", ub.Plan.Left)
	fmt.Println("members:", len(g.State().Members), "epoch:", g.State().Epoch)

	// A non-admin's change is held and ignored by everyone, with a reason to show.
	c, _, _ := group.Join(carol, alice, g.History())
	rename := &group.Change{Group: g.ID(), Author: carol, Base: c.State().Revision, ID: group.ChangeID{1}, Kind: group.KindRename, Title: "mine"}
	ua, _ := g.Receive(carol, rename)
	fmt.Println("carol's rename:", ua.Outcome.Status, "-", ua.Outcome.Reason)
	// Output:
	// bob sends his sender key to alice: true
	// alice sends carol the history: true
	// bob sends carol his sender key: true rotates: false
	// alice rotates after removing bob: true
	// bob has left: true
	// members: 2 epoch: 1
	// carol's rename: rejected - only admins can change the group
}
