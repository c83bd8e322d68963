package client_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/client"
)

// raceWorld is four members of one group, Alice its admin, everyone's chain handed out.
func raceWorld(t *testing.T) (w *groupWorld, alice, bob, carol, dave *member, title string) {
	t.Helper()
	ctx := context.Background()
	w = newGroupWorld(t)
	alice = w.register("+14155550401")
	bob = w.register("+14155550402")
	carol = w.register("+14155550403")
	dave = w.register("+14155550404")
	title = "Harbour Rowing Eight"
	if _, err := alice.CreateGroup(ctx, title, []string{bob.number, carol.number, dave.number}); err != nil {
		t.Fatalf("CreateGroup() = %v", err)
	}
	settle(t, alice, bob, carol, dave)
	return w, alice, bob, carol, dave, title
}

// removeDaveLateForCarol has Alice remove Dave while Alice's envelopes to Carol wait
// (until w.sent.release); Bob and Dave receive the removal at once.
func removeDaveLateForCarol(t *testing.T, w *groupWorld, alice, bob, carol, dave *member, title string) {
	t.Helper()
	w.sent.delay(carol.acct.AccountID)
	if _, err := alice.RemoveFromGroup(context.Background(), title, []string{dave.number}); err != nil {
		t.Fatalf("RemoveFromGroup() = %v", err)
	}
	w.sent.delay(uuid.Nil)
	if msgs := receive(t, bob); !hasEvent(msgs, "removed ") {
		t.Fatalf("bob: Receive() after the removal = %q, want the removal", events(msgs))
	}
	if msgs := receive(t, dave); !hasEvent(msgs, "removed you") {
		t.Fatalf("dave: Receive() after the removal = %q, want the removal", events(msgs))
	}
}

func refusals(msgs []client.Message) []string {
	var out []string
	for _, m := range msgs {
		if m.Undecryptable {
			out = append(out, m.GroupEvent)
		}
	}
	return out
}

// TestGroupHeldUntilRemoval is the race of issue 8: Bob receives Alice's removal of Dave
// first and sends under the new epoch; Carol's queue holds Bob's sender key and message
// before the removal. Carol keeps the message, unread and unrefused, and reads it once
// the removal arrives. Dave, who computes the new distribution id from the removal he
// received, sends under it too: held the same way, and refused once the removal shows
// he is out.
func TestGroupHeldUntilRemoval(t *testing.T) {
	ctx := context.Background()
	w, alice, bob, carol, dave, title := raceWorld(t)
	removeDaveLateForCarol(t, w, alice, bob, carol, dave, title)
	before, err := carol.GroupStateForTest(ctx, title)
	if err != nil {
		t.Fatal(err)
	}

	const said = "new epoch, same boat"
	if _, err := bob.SendGroup(ctx, title, said); err != nil {
		t.Fatalf("bob: SendGroup() = %v", err)
	}
	if err := dave.SendGroupUncheckedForTest(ctx, title, []uuid.UUID{carol.acct.AccountID}, "let me back in"); err != nil {
		t.Fatalf("dave: unchecked send = %v", err)
	}
	if msgs := receive(t, carol); len(msgs) != 0 {
		t.Fatalf("carol: Receive() before the removal = %+v, want nothing shown yet (both held)", msgs)
	}

	w.sent.release(t)
	msgs := receive(t, carol)
	if got := groupTexts(msgs); len(got) != 1 || got[0] != said {
		t.Fatalf("carol: texts after the removal = %q, want [%q]", got, said)
	}
	if len(events(msgs)) == 0 || !strings.Contains(events(msgs)[0], "removed ") {
		t.Errorf("carol: events after the removal = %q, want the removal first", events(msgs))
	}
	for i, m := range msgs {
		if m.Text == said && (i == 0 || m.From != bob.acct.AccountID || m.Group == nil || m.Group.Title != title) {
			t.Errorf("carol: held message %+v shown at %d, want after the removal, from bob, in %q", m, i, title)
		}
	}
	if r := refusals(msgs); len(r) != 1 || !strings.Contains(r[0], dave.number) || !strings.Contains(r[0], "not a member") {
		t.Errorf("carol: refusals after the removal = %q, want dave's message refused as from a non-member", r)
	}
	after, err := carol.GroupStateForTest(ctx, title)
	if err != nil {
		t.Fatal(err)
	}
	if after.Epoch != before.Epoch+1 || after.IsMember(dave.acct.AccountID) {
		t.Errorf("carol: epoch %d (dave member %v), want %d without dave", after.Epoch, after.IsMember(dave.acct.AccountID), before.Epoch+1)
	}
	if msgs := receive(t, carol); len(msgs) != 0 {
		t.Errorf("carol: Receive() again = %+v, want nothing (nothing shown twice)", msgs)
	}
	// Bob's next message goes straight through.
	if _, err := bob.SendGroup(ctx, title, "and stroke"); err != nil {
		t.Fatal(err)
	}
	if got := groupTexts(receive(t, carol)); len(got) != 1 || got[0] != "and stroke" {
		t.Errorf("carol: texts = %q, want [\"and stroke\"]", got)
	}
}

// TestGroupHeldBound: a group holds at most 256 messages; the 257th is refused at once,
// with a notice, and the 256 are read when the removal arrives.
func TestGroupHeldBound(t *testing.T) {
	if testing.Short() {
		t.Skip("257 sends")
	}
	ctx := context.Background()
	w, alice, bob, carol, dave, title := raceWorld(t)
	removeDaveLateForCarol(t, w, alice, bob, carol, dave, title)
	const n = 257
	for i := range n {
		if err := bob.SendGroupUncheckedForTest(ctx, title, []uuid.UUID{carol.acct.AccountID}, fmt.Sprint("stroke ", i)); err != nil {
			t.Fatalf("bob: send %d = %v", i, err)
		}
	}
	msgs := receive(t, carol)
	if r := refusals(msgs); len(msgs) != 1 || len(r) != 1 || !strings.Contains(r[0], "not under a sender key") {
		t.Fatalf("carol: Receive() of %d held messages = %d messages, refusals %q; want only the 257th refused", n, len(msgs), r)
	}
	w.sent.release(t)
	got := groupTexts(receive(t, carol))
	if len(got) != n-1 || got[0] != "stroke 0" || got[n-2] != fmt.Sprint("stroke ", n-2) {
		t.Fatalf("carol: %d texts after the removal (first %q), want %d in order", len(got), got[:min(1, len(got))], n-1)
	}
}

// testClock is a clock a test moves forward.
type testClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// TestGroupHeldExpires: a message held for 7 days becomes a refusal notice (it does not
// vanish); one held later still waits and is read when the removal arrives.
func TestGroupHeldExpires(t *testing.T) {
	ctx := context.Background()
	w := newGroupWorld(t)
	alice := w.register("+14155550411")
	bob := w.register("+14155550412")
	dave := w.register("+14155550414")
	clock := &testClock{}
	w.clock = clock.now
	carol := w.register("+14155550413")
	w.clock = nil
	const title = "Slow Post Society"
	if _, err := alice.CreateGroup(ctx, title, []string{bob.number, carol.number, dave.number}); err != nil {
		t.Fatalf("CreateGroup() = %v", err)
	}
	settle(t, alice, bob, carol, dave)
	removeDaveLateForCarol(t, w, alice, bob, carol, dave, title)

	if _, err := bob.SendGroup(ctx, title, "first, soon stale"); err != nil {
		t.Fatal(err)
	}
	if msgs := receive(t, carol); len(msgs) != 0 {
		t.Fatalf("carol: Receive() = %+v, want nothing (held)", msgs)
	}
	clock.advance(7*24*time.Hour + time.Minute)
	if _, err := bob.SendGroup(ctx, title, "second, still fresh"); err != nil {
		t.Fatal(err)
	}
	msgs := receive(t, carol)
	if r := refusals(msgs); len(msgs) != 1 || len(r) != 1 || !strings.Contains(r[0], bob.number) || !strings.Contains(r[0], "held") {
		t.Fatalf("carol: Receive() a week later = %+v, want the first message refused after waiting", msgs)
	}
	w.sent.release(t)
	if got := groupTexts(receive(t, carol)); len(got) != 1 || got[0] != "second, still fresh" {
		t.Fatalf("carol: texts after the removal = %q, want only the second", got)
	}
}

// TestGroupHeldChangesForUnknownGroup: Bob's rename reaches Carol before the history of
// Alice adding her; Carol keeps it and folds it in, as Bob's, once the history arrives.
func TestGroupHeldChangesForUnknownGroup(t *testing.T) {
	ctx := context.Background()
	w := newGroupWorld(t)
	alice := w.register("+14155550421")
	bob := w.register("+14155550422")
	carol := w.register("+14155550423")
	if _, err := alice.CreateGroup(ctx, "Old Name", []string{bob.number}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.PromoteInGroup(ctx, "Old Name", []string{bob.number}); err != nil {
		t.Fatal(err)
	}
	settle(t, alice, bob)
	w.sent.delay(carol.acct.AccountID)
	if _, err := alice.AddToGroup(ctx, "Old Name", []string{carol.number}); err != nil {
		t.Fatalf("AddToGroup() = %v", err)
	}
	w.sent.delay(uuid.Nil)
	if msgs := receive(t, bob); !hasEvent(msgs, "added ") {
		t.Fatalf("bob: events = %q, want carol added", events(msgs))
	}
	if _, err := bob.RenameGroup(ctx, "Old Name", "New Name"); err != nil {
		t.Fatalf("RenameGroup() = %v", err)
	}
	if msgs := receive(t, carol); len(msgs) != 0 {
		t.Fatalf("carol: Receive() before the history = %+v, want nothing yet", msgs)
	}
	if gs, err := carol.Groups(ctx); err != nil || len(gs) != 0 {
		t.Fatalf("carol: Groups() before the history = %+v, %v; want none", gs, err)
	}

	w.sent.release(t)
	msgs := receive(t, carol)
	if !hasEvent(msgs, "added you to the group") || !hasEvent(msgs, bob.number+" renamed the group to \"New Name\"") {
		t.Fatalf("carol: events = %q, want the add and then bob's rename", events(msgs))
	}
	settle(t, alice, bob, carol)
	want := groupDigest(t, bob, "New Name")
	for _, m := range []*member{alice, carol} {
		if d := groupDigest(t, m, "New Name"); d != want {
			t.Errorf("%s: digest %s, want bob's %s", m.number, d, want)
		}
	}
}
