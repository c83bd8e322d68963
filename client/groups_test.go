package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/client"
	"github.com/bastionchat/bastion/client/group"
	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/sealed"
	"github.com/bastionchat/bastion/protocol/senderkey"
)

// sendLog keeps the multi-recipient requests a test server received, and answers the
// next ones with the errors queued in fail instead of passing them on.
type sendLog struct {
	mu   sync.Mutex
	reqs []api.MultiSendRequest
	fail []failure
	// delayFor, when set, takes that account's envelopes out of every multi-recipient
	// send and keeps them in delayed (with the request's headers) until release: how a
	// test makes one sender's envelopes reach a device after another sender's.
	delayFor uuid.UUID
	delayed  []delayedSend
	next     http.Handler
}

type delayedSend struct {
	header http.Header
	rc     api.Recipient
}

// delay makes the envelopes of sends to account wait until release; uuid.Nil ends that.
func (l *sendLog) delay(account uuid.UUID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.delayFor = account
}

// release hands the server the envelopes delay kept, in the order they were sent.
func (l *sendLog) release(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	ds := l.delayed
	l.delayed = nil
	l.mu.Unlock()
	for _, d := range ds {
		b, _ := json.Marshal(api.MultiSendRequest{Recipients: []api.Recipient{d.rc}})
		r := httptest.NewRequest(http.MethodPut, "/v1/messages", bytes.NewReader(b))
		r.Header = d.header.Clone()
		r.Header.Del("Content-Length")
		rec := httptest.NewRecorder()
		l.next.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			t.Fatalf("releasing a delayed send: %d %s", rec.Code, rec.Body)
		}
	}
}

// withhold takes l.delayFor's envelopes out of req; it reports whether it did.
func (l *sendLog) withhold(r *http.Request, req *api.MultiSendRequest) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.delayFor == uuid.Nil {
		return false
	}
	i := slices.IndexFunc(req.Recipients, func(rc api.Recipient) bool { return rc.Account == l.delayFor })
	if i < 0 {
		return false
	}
	l.delayed = append(l.delayed, delayedSend{header: r.Header.Clone(), rc: req.Recipients[i]})
	req.Recipients = slices.Delete(req.Recipients, i, i+1)
	return true
}

type failure struct {
	status int
	body   api.Error
}

func (l *sendLog) wrap(h http.Handler) http.Handler {
	l.next = h
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Path == "/v1/messages" {
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
			var req api.MultiSendRequest
			if json.Unmarshal(b, &req) == nil {
				l.mu.Lock()
				l.reqs = append(l.reqs, req)
				var f *failure
				if len(l.fail) > 0 {
					f = &l.fail[0]
					l.fail = l.fail[1:]
				}
				l.mu.Unlock()
				if f != nil {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(f.status)
					json.NewEncoder(w).Encode(f.body)
					return
				}
				if l.withhold(r, &req) {
					if len(req.Recipients) == 0 {
						// Everything was withheld: answer as the server would.
						w.Header().Set("Content-Type", "application/json")
						json.NewEncoder(w).Encode(api.SendResponse{ServerTime: time.Now().UnixMilli()})
						return
					}
					b, _ = json.Marshal(req)
					r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
					r.Header.Del("Content-Length")
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}

func (l *sendLog) failNext(fs ...failure) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fail = append(l.fail, fs...)
}

// envelopeIDs returns the envelope ids of req by account and device.
func envelopeIDs(req api.MultiSendRequest) map[string]uuid.UUID {
	out := map[string]uuid.UUID{}
	for _, rc := range req.Recipients {
		for _, m := range rc.Messages {
			out[protocol.Address{Name: rc.Account.String(), DeviceID: m.DeviceID}.String()] = m.ID
		}
	}
	return out
}

// since returns the requests received after the first n.
func (l *sendLog) since(n int) []api.MultiSendRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reqs[n:])
}

func (l *sendLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.reqs)
}

// groupWorld is a server and registered members, each with its profile directory and
// debug log.
type groupWorld struct {
	t    *testing.T
	s    *testServer
	sent *sendLog
	logs []*bytes.Buffer
	dirs []string
	// clock, when set, is the clock of the members registered from then on.
	clock func() time.Time
}

func newGroupWorld(t *testing.T) *groupWorld {
	w := &groupWorld{t: t, sent: &sendLog{}}
	s, err := newServerWith(w.sent.wrap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	w.s = s
	return w
}

type member struct {
	*client.Client
	number string
	acct   client.Account
}

func (m *member) addr() protocol.Address {
	return protocol.Address{Name: m.acct.AccountID.String(), DeviceID: m.acct.DeviceID}
}

func (w *groupWorld) register(number string) *member {
	t := w.t
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "profile")
	var buf bytes.Buffer
	c, err := client.Open(ctx, dir, client.Options{Server: w.s.URL,
		Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &buf}, &slog.HandlerOptions{Level: slog.LevelDebug})), Now: w.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.RequestCode(ctx, number); err != nil {
		t.Fatalf("RequestCode(%s) = %v", number, err)
	}
	a, err := c.Verify(ctx, w.s.Code(number))
	if err != nil {
		t.Fatalf("Verify(%s) = %v", number, err)
	}
	w.logs, w.dirs = append(w.logs, &buf), append(w.dirs, dir)
	return &member{Client: c, number: number, acct: a}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func receive(t *testing.T, m *member) []client.Message {
	t.Helper()
	msgs, err := m.Receive(context.Background())
	if err != nil {
		t.Fatalf("%s: Receive() = %v", m.number, err)
	}
	return msgs
}

// texts returns the group messages' texts (events and refusals apart).
func groupTexts(msgs []client.Message) []string {
	var out []string
	for _, m := range msgs {
		if m.Group != nil && m.GroupEvent == "" && !m.Undecryptable {
			out = append(out, m.Text)
		}
	}
	return out
}

func events(msgs []client.Message) []string {
	var out []string
	for _, m := range msgs {
		if m.GroupEvent != "" {
			out = append(out, m.GroupEvent)
		}
	}
	return out
}

func hasEvent(msgs []client.Message, sub string) bool {
	return slices.ContainsFunc(events(msgs), func(e string) bool { return strings.Contains(e, sub) })
}

// settle lets every member receive until nobody gets anything new (changes sent while
// receiving go out at the end of each Receive).
func settle(t *testing.T, ms ...*member) map[*member][]client.Message {
	t.Helper()
	got := map[*member][]client.Message{}
	for round := 0; round < 6; round++ {
		quiet := true
		for _, m := range ms {
			msgs := receive(t, m)
			got[m] = append(got[m], msgs...)
			quiet = quiet && len(msgs) == 0
		}
		if quiet {
			return got
		}
	}
	t.Fatal("members still receiving after 6 rounds")
	return nil
}

// TestGroupLifecycle: three members talk; one is removed and provably cannot read what
// follows (no envelope reaches it, and its sender-key store fails on the message the
// others read); its own message afterwards is refused; added back, it reads new messages
// and not those sent while it was out. Neither the server's database nor any profile
// nor any log holds a title or a text in the clear.
func TestGroupLifecycle(t *testing.T) {
	ctx := context.Background()
	w := newGroupWorld(t)
	alice := w.register("+14155550201")
	bob := w.register("+14155550202")
	carol := w.register("+14155550203")
	all := []*member{alice, bob, carol}
	const title = "Ridge Climbers Quartz"

	g, err := alice.CreateGroup(ctx, title, []string{bob.number, carol.number})
	if err != nil {
		t.Fatalf("CreateGroup() = %v", err)
	}
	if len(g.Members) != 3 || !g.Admin {
		t.Fatalf("CreateGroup() = %+v, want 3 members with alice admin", g)
	}
	for _, m := range []*member{bob, carol} {
		msgs := receive(t, m)
		if len(msgs) != 1 || msgs[0].Group == nil || msgs[0].Group.Title != title || msgs[0].Group.ID != g.ID ||
			!strings.Contains(msgs[0].GroupEvent, alice.number+" created the group") {
			t.Fatalf("%s: Receive() after create = %+v, want one create event in %q", m.number, msgs, title)
		}
	}

	// Everyone talks; every other member reads every message once, with the group named.
	said := map[*member]string{alice: "first pitch anchored", bob: "belay is on", carol: "lowering off now"}
	for _, m := range all {
		r, err := m.SendGroup(ctx, title, said[m])
		if err != nil {
			t.Fatalf("%s: SendGroup() = %v", m.number, err)
		}
		if r.Devices != 2 {
			t.Errorf("%s: SendGroup().Devices = %d, want 2", m.number, r.Devices)
		}
	}
	got := settle(t, all...)
	for _, m := range all {
		var want []string
		for _, o := range all {
			if o != m {
				want = append(want, said[o])
			}
		}
		slices.Sort(want)
		have := groupTexts(got[m])
		slices.Sort(have)
		if !slices.Equal(have, want) {
			t.Errorf("%s read %q, want %q", m.number, have, want)
		}
		for _, msg := range got[m] {
			if msg.GroupEvent == "" && (msg.Group.Title != title || msg.FromNumber == "") {
				t.Errorf("%s: message %+v lacks its group title or sender number", m.number, msg)
			}
		}
	}

	// Alice removes Carol; Bob and Carol learn of it.
	if _, err := alice.RemoveFromGroup(ctx, g.ID[:8], []string{carol.number}); err != nil {
		t.Fatalf("RemoveFromGroup() = %v", err)
	}
	if msgs := receive(t, carol); !hasEvent(msgs, "removed you") {
		t.Fatalf("carol: Receive() after removal = %+v, want the removal event", events(msgs))
	}
	if msgs := receive(t, bob); !hasEvent(msgs, "removed "+carol.number) {
		t.Fatalf("bob: Receive() after removal = %+v, want the removal event", events(msgs))
	}
	mark := w.sent.len()
	const secret = "the crux is left of the bolt"
	if _, err := alice.SendGroup(ctx, title, secret); err != nil {
		t.Fatalf("SendGroup() after removal = %v", err)
	}
	var skm []byte
	for _, req := range w.sent.since(mark) {
		for _, rc := range req.Recipients {
			if rc.Account == carol.acct.AccountID {
				t.Errorf("a send after the removal addressed carol (%d envelopes)", len(rc.Messages))
			}
			if rc.Account != bob.acct.AccountID {
				continue
			}
			for _, env := range rc.Messages {
				typ, inner, err := bob.OpenSealedForTest(ctx, env.Body)
				if err == nil && typ == sealed.TypeSenderKey {
					skm = inner
				}
			}
		}
	}
	if skm == nil {
		t.Fatal("no sender-key message to bob after the removal")
	}
	// Carol holds every chain she was ever given, and none opens it.
	if pt, err := carol.SenderKeyDecryptForTest(ctx, alice.addr(), skm); !errors.Is(err, senderkey.ErrNoSenderKey) {
		t.Fatalf("carol decrypts the message sent after her removal: %q, %v; want ErrNoSenderKey", pt, err)
	}
	if msgs := receive(t, carol); len(msgs) != 0 {
		t.Fatalf("carol: Receive() after removal = %+v, want nothing", msgs)
	}
	if msgs := receive(t, bob); !slices.Equal(groupTexts(msgs), []string{secret}) {
		t.Fatalf("bob: Receive() = %q, want %q", groupTexts(msgs), secret)
	}
	// Bob, now on a new chain too, is not readable by Carol either.
	if _, err := bob.SendGroup(ctx, title, "bob after removal"); err != nil {
		t.Fatal(err)
	}
	if msgs := receive(t, alice); !slices.Equal(groupTexts(msgs), []string{"bob after removal"}) {
		t.Fatalf("alice: Receive() = %q, want bob's message", groupTexts(msgs))
	}

	// Carol's client refuses to send; a dishonest one that sends anyway is refused.
	if _, err := carol.SendGroup(ctx, title, "still here?"); !errors.Is(err, group.ErrNotMember) {
		t.Fatalf("carol: SendGroup() after removal = %v, want ErrNotMember", err)
	}
	if err := carol.SendGroupUncheckedForTest(ctx, title, []uuid.UUID{alice.acct.AccountID, bob.acct.AccountID}, "forged membership"); err != nil {
		t.Fatalf("carol: unchecked send = %v", err)
	}
	for _, m := range []*member{alice, bob} {
		msgs := receive(t, m)
		if len(groupTexts(msgs)) != 0 || len(msgs) != 1 || !msgs[0].Undecryptable || !strings.Contains(msgs[0].GroupEvent, "not a member") {
			t.Fatalf("%s: Receive() after a non-member's message = %+v, want one refusal and no text", m.number, msgs)
		}
	}

	// Added back, Carol reads what is sent from now on, not what was sent while she was out.
	if _, err := alice.AddToGroup(ctx, title, []string{carol.number}); err != nil {
		t.Fatalf("AddToGroup() = %v", err)
	}
	got = settle(t, all...)
	if !hasEvent(got[carol], "added you to the group") {
		t.Fatalf("carol: events after re-adding = %q", events(got[carol]))
	}
	if _, err := alice.SendGroup(ctx, title, "welcome back"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SendGroup(ctx, title, "hi again carol"); err != nil {
		t.Fatal(err)
	}
	got = settle(t, all...)
	have := groupTexts(got[carol])
	slices.Sort(have)
	if want := []string{"hi again carol", "welcome back"}; !slices.Equal(have, want) {
		t.Fatalf("carol after rejoining read %q, want %q", have, want)
	}
	digests := map[string]bool{}
	for _, m := range all {
		gi, err := m.Group(ctx, title)
		if err != nil {
			t.Fatal(err)
		}
		digests[gi.Digest] = true
	}
	if len(digests) != 1 {
		t.Errorf("members hold %d different states after rejoin, want 1", len(digests))
	}

	// Nothing in the clear: not on the server, not in any profile, not in any log.
	files := []string{}
	for _, d := range append([]string{w.s.dir}, w.dirs...) {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			files = append(files, filepath.Join(d, e.Name()))
		}
	}
	secrets := []string{title, secret, said[alice], said[bob], "welcome back"}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds %q in the clear", f, s)
			}
		}
	}
	for i, l := range w.logs {
		for _, s := range append(secrets, alice.number, bob.number, carol.number) {
			if strings.Contains(l.String(), s) {
				t.Errorf("log of member %d holds %q", i, s)
			}
		}
	}
}

// TestGroupConcurrentChanges: two admins add members at once and every member converges on
// the same state; a non-admin's change is held and rejected by every member; a change
// relayed in an admin's name by someone else is refused.
func TestGroupConcurrentChanges(t *testing.T) {
	ctx := context.Background()
	w := newGroupWorld(t)
	alice := w.register("+14155550301")
	bob := w.register("+14155550302")
	carol := w.register("+14155550303")
	dave := w.register("+14155550304")
	erin := w.register("+14155550305")

	g, err := alice.CreateGroup(ctx, "Route Setters", []string{bob.number, carol.number})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.PromoteInGroup(ctx, g.ID, []string{bob.number}); err != nil {
		t.Fatal(err)
	}
	settle(t, alice, bob, carol)

	// The local checks: a non-admin and the last admin are stopped before anything is sent.
	if _, err := carol.RenameGroup(ctx, g.ID, "Carol's"); !errors.Is(err, group.ErrNotAdmin) {
		t.Fatalf("carol: RenameGroup() = %v, want ErrNotAdmin", err)
	}
	if _, err := carol.Group(ctx, "Nope Group"); !errors.Is(err, client.ErrUnknownGroup) {
		t.Fatalf("Group(unknown) = %v, want ErrUnknownGroup", err)
	}

	// Alice adds Dave while Bob adds Erin; neither has seen the other's change.
	if _, err := alice.AddToGroup(ctx, g.ID, []string{dave.number}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.AddToGroup(ctx, g.ID, []string{erin.number}); err != nil {
		t.Fatal(err)
	}
	everyone := []*member{alice, bob, carol, dave, erin}
	settle(t, everyone...)
	want := groupDigest(t, alice, g.ID)
	for _, m := range everyone {
		gi, err := m.Group(ctx, g.ID)
		if err != nil {
			t.Fatalf("%s: Group() = %v", m.number, err)
		}
		if gi.Digest != want || len(gi.Members) != 5 {
			t.Errorf("%s: Group() = digest %s with %d members, want %s with 5", m.number, gi.Digest[:12], len(gi.Members), want[:12])
		}
	}

	// Everyone reads everyone after the concurrent adds.
	if _, err := erin.SendGroup(ctx, g.ID, "erin here"); err != nil {
		t.Fatal(err)
	}
	if _, err := dave.SendGroup(ctx, g.ID, "dave here"); err != nil {
		t.Fatal(err)
	}
	got := settle(t, everyone...)
	for _, m := range everyone {
		n := 2
		if m == dave || m == erin {
			n = 1
		}
		if len(groupTexts(got[m])) != n {
			t.Errorf("%s read %q, want %d messages", m.number, groupTexts(got[m]), n)
		}
	}

	// Carol, not an admin, sends a rename anyway: every member holds and rejects it.
	st, err := carol.GroupStateForTest(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	others := []uuid.UUID{alice.acct.AccountID, bob.acct.AccountID, dave.acct.AccountID, erin.acct.AccountID}
	rename := &group.Change{Group: st.Group, Author: carol.acct.AccountID, Base: st.Revision, ID: group.ChangeID{1, 2, 3}, Kind: group.KindRename, Title: "Carol's Crew"}
	if err := carol.SendGroupChangeForTest(ctx, rename, others); err != nil {
		t.Fatal(err)
	}
	// And relays a removal of Bob in Alice's name: refused, since Alice did not send it.
	forged := &group.Change{Group: st.Group, Author: alice.acct.AccountID, Base: st.Revision, ID: group.ChangeID{4, 5, 6}, Kind: group.KindRemove, Members: []uuid.UUID{bob.acct.AccountID}}
	if err := carol.SendGroupChangeForTest(ctx, forged, others); err != nil {
		t.Fatal(err)
	}
	got = settle(t, everyone...)
	for _, m := range []*member{alice, bob, dave, erin} {
		if !hasEvent(got[m], "rename rejected: only admins can change the group") {
			t.Errorf("%s: events %q, want the rename rejected", m.number, events(got[m]))
		}
		if !hasEvent(got[m], "was refused: only its author can send a change") {
			t.Errorf("%s: events %q, want the forged removal refused", m.number, events(got[m]))
		}
		gi, err := m.Group(ctx, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		if gi.Title != "Route Setters" || len(gi.Members) != 5 {
			t.Errorf("%s: after the rejected changes the group is %q with %d members, want unchanged", m.number, gi.Title, len(gi.Members))
		}
	}
	// Every member that holds the rejected rename agrees.
	want = groupDigest(t, alice, g.ID)
	for _, m := range []*member{bob, dave, erin} {
		if d := groupDigest(t, m, g.ID); d != want {
			t.Errorf("%s: digest %s after the rejected rename, want %s", m.number, d[:12], want[:12])
		}
	}

	// The last admin cannot leave; after promoting someone, she can.
	if _, err := alice.RemoveFromGroup(ctx, g.ID, []string{bob.number}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.LeaveGroup(ctx, g.ID); !errors.Is(err, group.ErrLastAdmin) {
		t.Fatalf("LeaveGroup() by the last admin = %v, want ErrLastAdmin", err)
	}
}

func groupDigest(t *testing.T, m *member, ref string) string {
	t.Helper()
	gi, err := m.Group(context.Background(), ref)
	if err != nil {
		t.Fatalf("%s: Group() = %v", m.number, err)
	}
	return gi.Digest
}

// TestGroupSendCorrections: when the server answers a multi-recipient send with wrong
// device lists (409, 410), the client fixes every account listed and sends again with the
// same envelope ids, so each member gets the message once; an account the server no
// longer knows is dropped from the send.
func TestGroupSendCorrections(t *testing.T) {
	ctx := context.Background()
	w := newGroupWorld(t)
	alice := w.register("+14155550401")
	bob := w.register("+14155550402")
	carol := w.register("+14155550403")
	g, err := alice.CreateGroup(ctx, "Retries", []string{bob.number, carol.number})
	if err != nil {
		t.Fatal(err)
	}
	settle(t, alice, bob, carol)
	// Sessions and sender keys are in place: the next send is one request.
	if _, err := alice.SendGroup(ctx, g.ID, "warm up"); err != nil {
		t.Fatal(err)
	}
	settle(t, alice, bob, carol)

	ghost := uuid.New()
	w.sent.failNext(
		failure{http.StatusConflict, api.Error{Code: api.CodeMismatchedDevices, Message: "mismatch",
			Accounts: []api.AccountMismatch{{Account: bob.acct.AccountID, ExtraDevices: []uint32{9}}, {Account: ghost, Unknown: true}}}},
		failure{http.StatusGone, api.Error{Code: api.CodeStaleDevices, Message: "stale",
			Accounts: []api.AccountMismatch{{Account: carol.acct.AccountID, StaleDevices: []uint32{carol.acct.DeviceID}}}}},
	)
	mark := w.sent.len()
	if _, err := alice.SendGroup(ctx, g.ID, "sent once"); err != nil {
		t.Fatalf("SendGroup() with corrections = %v", err)
	}
	reqs := w.sent.since(mark)
	if len(reqs) != 3 {
		t.Fatalf("SendGroup() made %d requests, want 3 (two corrected)", len(reqs))
	}
	first := envelopeIDs(reqs[0])
	for i, req := range reqs[1:] {
		if got := envelopeIDs(req); !maps.Equal(got, first) {
			t.Errorf("request %d envelope ids = %v, want those of the first, %v", i+2, got, first)
		}
	}
	got := settle(t, alice, bob, carol)
	for _, m := range []*member{bob, carol} {
		if have := groupTexts(got[m]); !slices.Equal(have, []string{"sent once"}) {
			t.Errorf("%s read %q, want the message once", m.number, have)
		}
	}

	// Too many corrections: the send fails and says so.
	var fs []failure
	for range 4 {
		fs = append(fs, failure{http.StatusConflict, api.Error{Code: api.CodeMismatchedDevices,
			Accounts: []api.AccountMismatch{{Account: bob.acct.AccountID, ExtraDevices: []uint32{9}}}}})
	}
	w.sent.failNext(fs...)
	var ae *client.APIError
	if _, err := alice.SendGroup(ctx, g.ID, "never"); !errors.As(err, &ae) || ae.Body.Code != api.CodeMismatchedDevices {
		t.Fatalf("SendGroup() with endless corrections = %v, want the 409", err)
	}
}

// TestGroupListen: a listening member gets group messages and events as they arrive.
func TestGroupListen(t *testing.T) {
	ctx := context.Background()
	w := newGroupWorld(t)
	alice := w.register("+14155550501")
	bob := w.register("+14155550502")
	lctx, cancel := context.WithCancel(ctx)
	got := make(chan client.Message, 8)
	done := make(chan error, 1)
	go func() {
		done <- bob.Listen(lctx, func(m client.Message) error { got <- m; return nil })
	}()
	if _, err := alice.CreateGroup(ctx, "Listeners", []string{bob.number}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendGroup(ctx, "Listeners", "are you listening"); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for len(seen) < 2 {
		var m client.Message
		select {
		case m = <-got:
		case <-time.After(time.Minute): // a guard against hanging, not a measurement
			t.Fatalf("Listen() handed %q and then nothing", seen)
		}
		if m.Group == nil || m.Group.Title != "Listeners" {
			t.Fatalf("Listen() handed %+v, want a message of the group", m)
		}
		seen = append(seen, m.GroupEvent+m.Text)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Listen() = %v", err)
	}
	if !strings.Contains(seen[0], "created the group") || seen[1] != "are you listening" {
		t.Errorf("Listen() handed %q, want the create and then the message", seen)
	}
}

// BenchmarkSendGroup measures SendGroup to a group of 32 members (one device each) on the
// in-process server: one sender-key encryption, 31 sealings and one multi-recipient
// request per message, sessions and sender keys already in place. It reports the time per
// recipient device too.
func BenchmarkSendGroup(b *testing.B) {
	const n = 32
	ctx := context.Background()
	s, err := newServer()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	w := &groupWorld{s: s, sent: &sendLog{}}
	var numbers []string
	var ms []*member
	for i := range n {
		num := fmt.Sprintf("+1415555%04d", 7000+i)
		ms = append(ms, w.registerB(b, num))
		numbers = append(numbers, num)
	}
	g, err := ms[0].CreateGroup(ctx, "bench", numbers[1:])
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ms[0].SendGroup(ctx, g.ID, "warm up"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := ms[0].SendGroup(ctx, g.ID, "a message of ordinary length for a group"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/(n-1), "µs/device")
}

// registerB is register for a benchmark.
func (w *groupWorld) registerB(b *testing.B, number string) *member {
	b.Helper()
	ctx := context.Background()
	c, err := client.Open(ctx, filepath.Join(b.TempDir(), "profile"), client.Options{Server: w.s.URL})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if err := c.RequestCode(ctx, number); err != nil {
		b.Fatal(err)
	}
	a, err := c.Verify(ctx, w.s.Code(number))
	if err != nil {
		b.Fatal(err)
	}
	return &member{Client: c, number: number, acct: a}
}

// TestGroupNames: a group is named by its exact title when only one group has it, or by
// at least 8 hex digits of its id.
func TestGroupNames(t *testing.T) {
	ctx := context.Background()
	w := newGroupWorld(t)
	alice := w.register("+14155550601")
	bob := w.register("+14155550602")
	a, err := alice.CreateGroup(ctx, "Twins", []string{bob.number})
	if err != nil {
		t.Fatal(err)
	}
	b, err := alice.CreateGroup(ctx, "Twins", []string{bob.number})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ref  string
		want string // group id, or "" for an error
		err  error
	}{
		{"Twins", "", client.ErrAmbiguousGroup},
		{a.ID, a.ID, nil},
		{a.ID[:8], a.ID, nil},
		{strings.ToUpper(b.ID[:12]), b.ID, nil},
		{a.ID[:7], "", client.ErrUnknownGroup},
		{"twins", "", client.ErrUnknownGroup},
		{"", "", client.ErrUnknownGroup},
	}
	for _, tt := range tests {
		g, err := alice.Group(ctx, tt.ref)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("Group(%q) = %v, want %v", tt.ref, err, tt.err)
			}
			continue
		}
		if err != nil || g.ID != tt.want {
			t.Errorf("Group(%q) = %s, %v; want %s", tt.ref, g.ID, err, tt.want)
		}
	}
	gs, err := bob.Groups(ctx)
	if err != nil || len(gs) != 0 {
		t.Fatalf("bob.Groups() before receiving = %v, %v; want none", gs, err)
	}
	receive(t, bob)
	if gs, err := bob.Groups(ctx); err != nil || len(gs) != 2 || !gs[0].Member || gs[0].Admin {
		t.Fatalf("bob.Groups() = %+v, %v; want two groups, member, not admin", gs, err)
	}
}
