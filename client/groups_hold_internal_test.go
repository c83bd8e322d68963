package client

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/client/group"
)

// TestPendingChangesBounds: changes for groups not held yet wait for at most 64 groups
// and 256 changes per group, and a group whose changes all waited a week makes room.
func TestPendingChangesBounds(t *testing.T) {
	ctx := context.Background()
	c, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := time.Now()
	from := uuid.New()
	newID := func() group.ID {
		var id group.ID
		rand.Read(id[:])
		return id
	}
	hold := func(id group.ID, count int, at time.Time) bool {
		t.Helper()
		ok, err := c.holdChanges(ctx, c.db, id, from, []byte{1}, count, at)
		if err != nil {
			t.Fatalf("holdChanges() = %v", err)
		}
		return ok
	}

	first := newID()
	for i := range maxPendingChanges {
		if !hold(first, 1, now) {
			t.Fatalf("holdChanges(change %d of one group) = false, want true", i)
		}
	}
	if hold(first, 1, now) {
		t.Errorf("holdChanges(change %d of one group) = true, want false", maxPendingChanges+1)
	}
	for i := 1; i < maxPendingGroups; i++ {
		if !hold(newID(), 1, now.Add(time.Hour)) {
			t.Fatalf("holdChanges(group %d) = false, want true", i+1)
		}
	}
	if hold(newID(), 1, now.Add(time.Hour)) {
		t.Errorf("holdChanges(group %d) = true, want false", maxPendingGroups+1)
	}
	// A week after the first group's changes, they are forgotten and a new group fits;
	// the others (an hour younger) still count.
	later := now.Add(heldTTL)
	if !hold(newID(), 1, later) {
		t.Errorf("holdChanges(new group, a week later) = false, want true")
	}
	if p, err := c.loadPending(ctx, c.db, first); err != nil || p != nil {
		t.Errorf("loadPending(expired group) = %d items, %v; want nothing", len(p.Items), err)
	}
	if hold(newID(), 1, later) {
		t.Errorf("holdChanges(another new group) = true, want false: the younger groups still count")
	}
}
