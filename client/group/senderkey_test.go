package group

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/senderkey"
)

// member is one simulated client: its replica of the group and its sender-key store.
type member struct {
	id    uuid.UUID
	g     *Group
	store *senderkey.MemoryStore
}

func addr(id uuid.UUID) protocol.Address { return protocol.Address{Name: id.String(), DeviceID: 1} }

// world executes plans the way a client would, with direct calls standing in for 1:1
// sessions: it is the harness of the sender-key tests.
type world struct {
	t       *testing.T
	members map[uuid.UUID]*member
}

func (w *world) execute(m *member, u Update) {
	w.t.Helper()
	ctx := context.Background()
	p := u.Plan
	if len(p.SendDistributionTo) > 0 {
		dm, err := senderkey.Create(ctx, m.store, addr(m.id), u.After.DistributionID)
		if err != nil {
			w.t.Fatalf("senderkey.Create: %v", err)
		}
		for _, to := range p.SendDistributionTo {
			got, err := senderkey.NewDistributionMessage(dm.Bytes())
			if err != nil {
				w.t.Fatal(err)
			}
			if err := senderkey.Process(ctx, w.members[to].store, addr(m.id), got); err != nil {
				w.t.Fatalf("senderkey.Process: %v", err)
			}
		}
	}
	for _, to := range p.SendChangeTo {
		r := w.members[to]
		if r.g == nil {
			continue // not a member yet: it gets the history from whoever adds it
		}
		ur, err := r.g.Receive(m.id, u.Change)
		if err != nil {
			w.t.Fatalf("Receive: %v", err)
		}
		w.execute(r, ur)
	}
	for _, to := range p.SendHistoryTo {
		r := w.members[to]
		var ur Update
		var err error
		if r.g == nil {
			r.g, ur, err = Join(r.id, m.id, m.g.History())
		} else {
			ur, err = r.g.Merge(m.id, m.g.History())
		}
		if err != nil {
			w.t.Fatalf("history: %v", err)
		}
		w.execute(r, ur)
	}
	for _, to := range p.SendMyChangesTo {
		for _, c := range m.g.ChangesBy(m.id) {
			ur, err := w.members[to].g.Receive(m.id, c)
			if err != nil {
				w.t.Fatalf("Receive: %v", err)
			}
			w.execute(w.members[to], ur)
		}
	}
}

func (w *world) send(from uuid.UUID, text string) []byte {
	w.t.Helper()
	m := w.members[from]
	ct, err := senderkey.Encrypt(context.Background(), m.store, addr(from), m.g.State().DistributionID, []byte(text))
	if err != nil {
		w.t.Fatalf("Encrypt: %v", err)
	}
	return ct
}

func (w *world) read(to, from uuid.UUID, ct []byte) (string, error) {
	pt, err := senderkey.Decrypt(context.Background(), w.members[to].store, addr(from), ct)
	return string(pt), err
}

func (w *world) mustRead(to, from uuid.UUID, ct []byte, want string) {
	w.t.Helper()
	if got, err := w.read(to, from, ct); err != nil || got != want {
		w.t.Errorf("%v reads %v's message: %q, %v; want %q", to, from, got, err, want)
	}
}

// TestSenderKeyLifecycle runs the plans against the real sender keys: three members talk,
// one is removed and cannot read what follows, then is added again and can read from then
// on, but still not what was sent while it was out.
func TestSenderKeyLifecycle(t *testing.T) {
	r := seeded(7)
	a, b, c := acct(1), acct(2), acct(3)
	w := &world{t: t, members: map[uuid.UUID]*member{}}
	for _, id := range []uuid.UUID{a, b, c} {
		w.members[id] = &member{id: id, store: senderkey.NewMemoryStore()}
	}
	g, u, err := Create(r, a, "three", []uuid.UUID{b, c})
	if err != nil {
		t.Fatal(err)
	}
	w.members[a].g = g
	var joined []Update
	for _, id := range []uuid.UUID{b, c} {
		gm, um, err := New(id, a, u.Change)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		w.members[id].g = gm
		joined = append(joined, um)
	}
	w.execute(w.members[a], u)
	for i, id := range []uuid.UUID{b, c} {
		w.execute(w.members[id], joined[i])
	}
	for _, from := range []uuid.UUID{a, b, c} {
		ct := w.send(from, "hello from "+from.String())
		for _, to := range []uuid.UUID{a, b, c} {
			if to != from {
				w.mustRead(to, from, ct, "hello from "+from.String())
			}
		}
	}
	oldDist := g.State().DistributionID

	// Remove c.
	u, err = g.Remove(r, c)
	if err != nil {
		t.Fatal(err)
	}
	if !u.Plan.RotateMySenderKey {
		t.Errorf("remover's plan %+v, want a rotation", u.Plan)
	}
	w.execute(w.members[a], u)
	if !w.members[c].g.State().IsMember(b) || w.members[c].g.State().IsMember(c) {
		t.Errorf("removed member did not learn of its removal")
	}
	if w.members[b].g.State().DistributionID == oldDist {
		t.Fatalf("distribution id unchanged after a removal")
	}
	whileOut := w.send(a, "after the removal")
	fromB := w.send(b, "b after the removal")
	w.mustRead(b, a, whileOut, "after the removal")
	w.mustRead(a, b, fromB, "b after the removal")
	for _, m := range []struct {
		from uuid.UUID
		ct   []byte
	}{{a, whileOut}, {b, fromB}} {
		if got, err := w.read(c, m.from, m.ct); !errors.Is(err, senderkey.ErrNoSenderKey) {
			t.Errorf("removed member reads a message sent after its removal: %q, %v; want %v", got, err, senderkey.ErrNoSenderKey)
		}
	}
	// Even told the new distribution id, the old chain does not open the new messages:
	// they are on a chain the removed member never received.
	rec, err := w.members[c].store.LoadSenderKey(context.Background(), addr(a), oldDist)
	if err != nil || rec == nil {
		t.Fatalf("removed member lost its old chain: %v", err)
	}
	if err := w.members[c].store.StoreSenderKey(context.Background(), addr(a), w.members[a].g.State().DistributionID, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := w.read(c, a, whileOut); err == nil {
		t.Errorf("the old chain decrypts a message sent after the removal")
	}

	// Add c again.
	u, err = g.Add(r, c)
	if err != nil {
		t.Fatal(err)
	}
	w.execute(w.members[a], u)
	for _, id := range []uuid.UUID{a, b, c} {
		if !w.members[id].g.State().IsMember(c) {
			t.Errorf("%v does not see the rejoin", id)
		}
	}
	back := w.send(a, "welcome back")
	w.mustRead(c, a, back, "welcome back")
	w.mustRead(b, a, back, "welcome back")
	if _, err := w.read(c, a, whileOut); err == nil {
		t.Errorf("the re-added member reads a message sent while it was out")
	}
	fromC := w.send(c, "glad to be back")
	w.mustRead(a, c, fromC, "glad to be back")
	w.mustRead(b, c, fromC, "glad to be back")
	fromB = w.send(b, "hi c")
	w.mustRead(c, b, fromB, "hi c")
}
