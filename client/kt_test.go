package client_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/client"
	"github.com/bastionchat/bastion/internal/server"
	"github.com/bastionchat/bastion/internal/store"
	"github.com/bastionchat/bastion/internal/store/sqlite"
	"github.com/bastionchat/bastion/internal/translog"
	"github.com/bastionchat/bastion/kt"
	"github.com/bastionchat/bastion/protocol/curve"
)

// ktServer is a real bastiond with its log in its SQLite store, whose operator the test
// plays: it holds the log's signing key and can put a tampering front before any
// client. Each profile talks to its own front (its own URL), so that the server can show
// different people different things, as a malicious one would.
type ktServer struct {
	t       *testing.T
	handler http.Handler
	st      *sqlite.Store
	signer  note.Signer
	dir     string
	sms     *codeSMS

	mu      sync.Mutex
	tampers map[string]func(w http.ResponseWriter, r *http.Request) bool // by front
	skew    time.Duration                                                // added to the profiles' clock
}

// now is the profiles' clock: the real one, moved on by advance.
func (s *ktServer) now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Now().Add(s.skew)
}

func (s *ktServer) advance(d time.Duration) {
	s.mu.Lock()
	s.skew += d
	s.mu.Unlock()
}

func newKTServer(t *testing.T) *ktServer {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "bastion.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := server.LoadKTKeys(dir, "kt.test/kt")
	if err != nil {
		t.Fatal(err)
	}
	skey, err := os.ReadFile(filepath.Join(dir, "kt-log.key"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.DefaultConfig()
	cfg.DataDir = dir
	l := &cfg.Limits
	l.VerifyPerIP.N, l.VerifyPerPrefix.N, l.VerifyPerNumber.N = 1000, 1000, 1000
	l.BundlePerPair.N = 1000
	sms := &codeSMS{codes: map[string]string{}}
	srv, err := server.New(cfg, server.Options{Store: st, SMS: sms, KT: server.KTOptions{Keys: keys, Storage: st.KTLog()}})
	if err != nil {
		t.Fatal(err)
	}
	s := &ktServer{t: t, handler: srv.Handler(), st: st, signer: signer, dir: dir, sms: sms,
		tampers: map[string]func(http.ResponseWriter, *http.Request) bool{}}
	t.Cleanup(func() { st.Close() })
	return s
}

// front returns the URL of a new front door to the server, tampered with by
// tamper(name) when one is set.
func (s *ktServer) front(name string) string {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		tamper := s.tampers[name]
		s.mu.Unlock()
		if tamper != nil && tamper(w, r) {
			return
		}
		s.handler.ServeHTTP(w, r)
	}))
	s.t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})
	return ts.URL
}

func (s *ktServer) tamper(name string, f func(w http.ResponseWriter, r *http.Request) bool) {
	s.mu.Lock()
	s.tampers[name] = f
	s.mu.Unlock()
}

// profile registers number in a new profile behind its own front.
func (s *ktServer) profile(name, number string) *client.Client {
	s.t.Helper()
	ctx := context.Background()
	c, err := client.Open(ctx, filepath.Join(s.dir, "profile-"+name), client.Options{Server: s.front(name), Now: s.now})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	if err := c.RequestCode(ctx, number); err != nil {
		s.t.Fatal(err)
	}
	s.sms.mu.Lock()
	code := s.sms.codes[number]
	s.sms.mu.Unlock()
	if _, err := c.Verify(ctx, code); err != nil {
		s.t.Fatal(err)
	}
	return c
}

// entries returns the real log's entries.
func (s *ktServer) entries() [][]byte {
	s.t.Helper()
	ctx := context.Background()
	tree, err := s.st.KTLog().ReadTree(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	es, err := s.st.KTLog().ReadEntries(ctx, 0, tree.N)
	if err != nil {
		s.t.Fatal(err)
	}
	return es
}

// fork returns a log signed by the server's key that shares the real log's entries so
// far and then goes its own way: the makings of a split view.
func (s *ktServer) fork() *translog.Log {
	s.t.Helper()
	f := translog.New(translog.NewMemStorage(), s.signer)
	if es := s.entries(); len(es) > 0 {
		if _, err := f.Append(context.Background(), es...); err != nil {
			s.t.Fatal(err)
		}
	}
	return f
}

// serveLog answers the log's endpoints from l instead of the real log.
func serveLog(l *translog.Log, w http.ResponseWriter, r *http.Request) bool {
	ctx := r.Context()
	q := r.URL.Query()
	num := func(k string) int64 {
		var n int64
		fmt.Sscan(q.Get(k), &n)
		return n
	}
	hs := func(h []tlog.Hash) [][]byte {
		out := [][]byte{}
		for i := range h {
			out = append(out, h[i][:])
		}
		return out
	}
	var v any
	switch r.URL.Path {
	case "/v1/kt/checkpoint":
		b, _ := l.Checkpoint(ctx)
		w.Write(b)
		return true
	case "/v1/kt/inclusion":
		p, err := l.InclusionProof(ctx, num("index"), num("size"))
		if err != nil {
			http.Error(w, `{"code":"not_found"}`, 404)
			return true
		}
		v = api.KTInclusionProof{Index: num("index"), Size: num("size"), Proof: hs(p)}
	case "/v1/kt/consistency":
		p, err := l.ConsistencyProof(ctx, num("old"), num("new"))
		if err != nil {
			http.Error(w, `{"code":"not_found"}`, 404)
			return true
		}
		v = api.KTConsistencyProof{Old: num("old"), New: num("new"), Proof: hs(p)}
	case "/v1/kt/entries":
		es, err := l.Entries(ctx, num("start"), num("end"))
		if err != nil {
			http.Error(w, `{"code":"not_found"}`, 404)
			return true
		}
		v = api.KTEntries{Start: num("start"), Entries: es}
	default:
		return false
	}
	json.NewEncoder(w).Encode(v)
	return true
}

// attackerBundle rewrites a bundle answer as the server would to intercept: every key
// replaced by the attacker's, signed by the attacker's identity key. binding, if not
// nil, replaces each device's log entry.
func attackerBundle(t *testing.T, s *ktServer, r *http.Request, ik *curve.PrivateKey, binding func(device uint32) *api.KTBinding) []byte {
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, r)
	var br api.BundleResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &br); err != nil {
		t.Errorf("decoding the real bundle: %v", err)
		return rec.Body.Bytes()
	}
	br.IdentityKey = ik.PublicKey().Bytes()
	resign := func(k *api.SignedPreKey) {
		k.Signature, _ = ik.Sign(rand.Reader, k.PublicKey)
	}
	for i := range br.Devices {
		d := &br.Devices[i]
		spk, _ := curve.GeneratePrivateKey(rand.Reader)
		d.SignedPreKey.PublicKey = spk.PublicKey().Bytes()
		resign(&d.SignedPreKey)
		resign(&d.KyberPreKey)
		d.PreKey = nil
		if binding != nil {
			d.KT = binding(d.DeviceID)
		}
	}
	b, _ := json.Marshal(br)
	return b
}

// filler returns a valid entry about an account nobody has, to pad a forked log to the
// real one's size.
func filler(t *testing.T) []byte {
	b, err := kt.Marshal(kt.DeviceBinding{Account: uuid.New(), Device: 1, IdentityKey: [33]byte{0x05, 1}, State: kt.StateAdded, Sequence: 1, Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func isBundle(r *http.Request, account uuid.UUID) bool {
	return r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/v1/keys/"+account.String()+"/")
}

func whoami(t *testing.T, c *client.Client) client.Account {
	t.Helper()
	a, err := c.Whoami(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Attack 1: the server hands Alice a key of its own for Bob, and does not log it. On
// first contact, TOFU alone would accept it; key transparency refuses it.
func TestKTSwappedKeyNotLogged(t *testing.T) {
	ctx := context.Background()
	s := newKTServer(t)
	alice := s.profile("alice", "+14155550901")
	bob := s.profile("bob", "+14155550902")
	bobID := whoami(t, bob).AccountID
	attacker, _ := curve.GeneratePrivateKey(rand.Reader)

	for _, tc := range []struct {
		name    string
		binding func(uint32) *api.KTBinding
	}{
		{"binding kept, key swapped", nil},
		{"binding left out", func(uint32) *api.KTBinding { return nil }},
	} {
		s.tamper("alice", func(w http.ResponseWriter, r *http.Request) bool {
			if !isBundle(r, bobID) {
				return false
			}
			w.Write(attackerBundle(t, s, r, attacker, tc.binding))
			return true
		})
		_, err := alice.Send(ctx, "+14155550902", "hello")
		if !errors.Is(err, client.ErrKeyTransparency) {
			t.Fatalf("%s: Send() = %v, want ErrKeyTransparency", tc.name, err)
		}
		t.Logf("%s: alert shown to Alice: %v", tc.name, err)
	}

	// The honest server: the same send goes through, so the check above is the log's.
	s.tamper("alice", nil)
	if _, err := alice.Send(ctx, "+14155550902", "hello"); err != nil {
		t.Fatalf("Send() through the honest server = %v", err)
	}
	msgs, err := bob.Receive(ctx)
	if err != nil || len(msgs) != 1 || msgs[0].Text != "hello" {
		t.Fatalf("bob.Receive() = %v, %v; want the one message", msgs, err)
	}
}

// Attack 2: the server logs its key for Bob, but in a tree other than the one its
// checkpoint commits to, and serves the proof from that tree.
func TestKTProofFromAnotherTree(t *testing.T) {
	ctx := context.Background()
	s := newKTServer(t)
	alice := s.profile("alice", "+14155550911")
	bob := s.profile("bob", "+14155550912")
	bobAcct := whoami(t, bob)
	attacker, _ := curve.GeneratePrivateKey(rand.Reader)

	forked := s.fork()
	index := int64(len(s.entries()))
	entry, err := kt.Marshal(kt.DeviceBinding{Account: bobAcct.AccountID, Device: 1,
		IdentityKey: [33]byte(attacker.PublicKey().Bytes()), State: kt.StateChanged, Sequence: 3, Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := forked.Append(ctx, entry, filler(t)); err != nil {
		t.Fatal(err)
	}
	s.profile("carol", "+14155550913") // the real log grows by two as well

	s.tamper("alice", func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case isBundle(r, bobAcct.AccountID):
			w.Write(attackerBundle(t, s, r, attacker, func(uint32) *api.KTBinding {
				return &api.KTBinding{LogIndex: index, Entry: entry}
			}))
			return true
		case r.URL.Path == "/v1/kt/inclusion":
			return serveLog(forked, w, r) // a valid proof, for the wrong tree
		}
		return false
	})
	_, err = alice.Send(ctx, "+14155550912", "hello")
	if !errors.Is(err, client.ErrKeyTransparency) || !errors.Is(err, kt.ErrInvalidProof) {
		t.Fatalf("Send() = %v, want ErrKeyTransparency wrapping kt.ErrInvalidProof", err)
	}
	t.Logf("alert shown to Alice: %v", err)
}

// Attack 3: the server adds a device to Alice's account that she never linked, and logs
// it (it must, or nobody would accept its keys). Alice's monitor reports it.
func TestKTGhostDevice(t *testing.T) {
	ctx := context.Background()
	s := newKTServer(t)
	alice := s.profile("alice", "+14155550921")
	me := whoami(t, alice)
	if alerts, err := alice.KTMonitor(ctx); err != nil || len(alerts) != 0 {
		t.Fatalf("KTMonitor() on an honest log = %v, %v; want no alert", alerts, err)
	}

	if _, err := s.st.AddDevice(ctx, me.AccountID, store.Device{RegistrationID: 99, CredentialHash: make([]byte, 32), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	ghost, err := kt.Marshal(kt.DeviceBinding{Account: me.AccountID, Device: 2,
		IdentityKey: [33]byte(me.IdentityKey), State: kt.StateAdded, Sequence: 3, Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := translog.New(s.st.KTLog(), s.signer).Append(ctx, ghost); err != nil {
		t.Fatal(err)
	}

	alerts, err := alice.KTMonitor(ctx)
	if err != nil {
		t.Fatalf("KTMonitor() = %v", err)
	}
	if len(alerts) != 1 || alerts[0].Kind != "ghost_device" {
		t.Fatalf("KTMonitor() = %v, want one ghost_device alert", alerts)
	}
	t.Logf("alert shown to Alice: %v", alerts[0])
	stored, err := alice.KTAlerts(ctx)
	if err != nil || len(stored) != 1 {
		t.Errorf("KTAlerts() = %v, %v; want the alert kept", stored, err)
	}
	// A second run reads only new entries and does not repeat the alert.
	if again, err := alice.KTMonitor(ctx); err != nil || len(again) != 0 {
		t.Errorf("KTMonitor() again = %v, %v; want nothing new", again, err)
	}
}

// Attack 4: the server forks its log and shows Bob a version in which Alice has a ghost
// device, while Alice sees the honest one; both have the same size. The checkpoint
// Alice's message carries exposes the fork to Bob, and to an auditor given Bob's.
func TestKTFork(t *testing.T) {
	ctx := context.Background()
	s := newKTServer(t)
	alice := s.profile("alice", "+14155550931")
	bob := s.profile("bob", "+14155550932")
	me := whoami(t, alice)
	if _, err := bob.Send(ctx, "+14155550931", "hi Alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	forked := s.fork()
	ghost, _ := kt.Marshal(kt.DeviceBinding{Account: me.AccountID, Device: 2,
		IdentityKey: [33]byte(me.IdentityKey), State: kt.StateAdded, Sequence: 3, Time: time.Now()})
	if _, err := forked.Append(ctx, ghost, filler(t)); err != nil {
		t.Fatal(err)
	}
	s.profile("carol", "+14155550933") // the real log grows by two: same size, other hash
	s.tamper("bob", func(w http.ResponseWriter, r *http.Request) bool { return serveLog(forked, w, r) })

	// Bob's view holds together on its own: the forked log extends what he saw.
	if alerts, err := bob.KTMonitor(ctx); err != nil || len(alerts) != 0 {
		t.Fatalf("bob.KTMonitor() on the forked view = %v, %v; want no alert (it is consistent)", alerts, err)
	}
	// Alice's profile fetches a fresh checkpoint to carry once its own is ten minutes
	// old; until then the checkpoint it carries predates the fork and proves nothing.
	s.advance(11 * time.Minute)
	if _, err := alice.Send(ctx, "+14155550932", "hello again"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	alerts, err := bob.KTAlerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(alerts) != 1 || alerts[0].Kind != "fork" || len(alerts[0].Evidence) != 2 {
		t.Fatalf("bob's alerts = %v, want one fork alert with two checkpoints", alerts)
	}
	t.Logf("alert shown to Bob: %v", alerts[0])
	// The evidence is two checkpoints signed by the server for one size, two hashes.
	status, err := alice.KTStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := note.NewVerifier(status.LogKey)
	a, err1 := kt.VerifyCheckpoint(v, alerts[0].Evidence[0])
	b, err2 := kt.VerifyCheckpoint(v, alerts[0].Evidence[1])
	if err1 != nil || err2 != nil || a.Size != b.Size || a.Hash == b.Hash {
		t.Errorf("fork evidence = %v / %v (%v, %v), want two signed checkpoints of one size with different hashes", a, b, err1, err2)
	}

	// The auditor, given Bob's checkpoint, finds it against the real log.
	_, err = client.Audit(ctx, s.front("auditor"), client.AuditOptions{Checkpoints: [][]byte{alerts[0].Evidence[0], alerts[0].Evidence[1]}})
	if !errors.Is(err, client.ErrKeyTransparency) {
		t.Fatalf("Audit() with the forked checkpoint = %v, want ErrKeyTransparency", err)
	}
	t.Logf("auditor: %v", err)
}

func TestAudit(t *testing.T) {
	ctx := context.Background()
	s := newKTServer(t)
	s.profile("alice", "+14155550941")
	s.profile("bob", "+14155550942")
	url := s.front("auditor")
	rep, err := client.Audit(ctx, url, client.AuditOptions{})
	if err != nil {
		t.Fatalf("Audit() = %v", err)
	}
	if rep.Size != 4 || rep.Accounts != 2 || rep.Devices != 2 || rep.Lookups != 2 {
		t.Errorf("Audit() = %+v, want 4 entries: 2 accounts, 2 device and 2 lookup bindings", rep)
	}
	s.profile("alice2", "+14155550941") // a re-registration
	rep2, err := client.Audit(ctx, url, client.AuditOptions{LogKey: rep.LogKey, Previous: []byte(rep.Checkpoint)})
	if err != nil || rep2.Size != 5 || rep2.Checked != 1 {
		t.Fatalf("Audit(previous) = %+v, %v; want size 5 with the previous checkpoint checked", rep2, err)
	}

	// Each of these is an inconsistency the auditor must report.
	other, _, _ := note.GenerateKey(rand.Reader, "kt.test/kt")
	otherSigner, _ := note.NewSigner(other)
	rewritten := translog.New(translog.NewMemStorage(), otherSigner)
	rewritten.Append(ctx, []byte("x"))
	strangerNote, _ := rewritten.Checkpoint(ctx)
	dup := s.entries()[1] // a device binding logged twice
	for _, tc := range []struct {
		name   string
		opts   client.AuditOptions
		tamper func(w http.ResponseWriter, r *http.Request) bool
	}{
		{"another log key pinned", client.AuditOptions{LogKey: "kt.test/kt+00000000+AQ=="}, nil},
		{"checkpoint signed by another key", client.AuditOptions{Checkpoints: [][]byte{strangerNote}}, nil},
		{"an entry changed in transit", client.AuditOptions{}, func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != "/v1/kt/entries" {
				return false
			}
			rec := httptest.NewRecorder()
			s.handler.ServeHTTP(rec, r)
			var es api.KTEntries
			json.Unmarshal(rec.Body.Bytes(), &es)
			es.Entries[0][len(es.Entries[0])-1] ^= 1 // the time's last bit
			json.NewEncoder(w).Encode(es)
			return true
		}},
		{"history rewritten", client.AuditOptions{Previous: []byte(rep2.Checkpoint)}, func() func(http.ResponseWriter, *http.Request) bool {
			l := translog.New(translog.NewMemStorage(), s.signer)
			es := s.entries()
			l.Append(ctx, es[1], es[0])
			l.Append(ctx, es[2:]...)
			return func(w http.ResponseWriter, r *http.Request) bool { return serveLog(l, w, r) }
		}()},
		{"a device added twice", client.AuditOptions{}, func() func(http.ResponseWriter, *http.Request) bool {
			l := s.fork()
			l.Append(ctx, dup)
			return func(w http.ResponseWriter, r *http.Request) bool { return serveLog(l, w, r) }
		}()},
	} {
		s.tamper("auditor", tc.tamper)
		_, err := client.Audit(ctx, url, tc.opts)
		if !errors.Is(err, client.ErrKeyTransparency) {
			t.Errorf("%s: Audit() = %v, want ErrKeyTransparency", tc.name, err)
			continue
		}
		t.Logf("%s: %v", tc.name, err)
	}
	s.tamper("auditor", nil)
	if _, err := client.Audit(ctx, url, client.AuditOptions{}); err != nil {
		t.Errorf("Audit() of the honest log after the cases = %v", err)
	}
}

// A contact's changed key is trusted only if the log holds it: Bob re-registers, Alice
// sees the change, and her Trust checks the new key against the log first.
func TestKTTrustChecksTheLog(t *testing.T) {
	ctx := context.Background()
	s := newKTServer(t)
	alice := s.profile("alice", "+14155550951")
	bob := s.profile("bob", "+14155550952")
	if _, err := alice.Send(ctx, "+14155550952", "hi"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	bob2 := s.profile("bob2", "+14155550952") // Bob re-registers: a new identity key
	bobID := whoami(t, bob2).AccountID
	if _, err := bob2.Send(ctx, "+14155550951", "new phone"); err != nil {
		t.Fatal(err)
	}
	msgs, err := alice.Receive(ctx)
	if err != nil || len(msgs) != 1 || !msgs[0].SafetyNumberChanged {
		t.Fatalf("alice.Receive() = %+v, %v; want one message with a changed safety number", msgs, err)
	}

	// The server hides the new key's log entry: Alice's yes is not enough.
	s.tamper("alice", func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/v1/kt/account/"+bobID.String() {
			return false
		}
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, r)
		var ka api.KTAccount
		json.Unmarshal(rec.Body.Bytes(), &ka)
		for i := range ka.Devices {
			ka.Devices[i].LogIndex-- // the entry before: bob's old binding
		}
		json.NewEncoder(w).Encode(ka)
		return true
	})
	err = alice.Trust(ctx, "+14155550952")
	if !errors.Is(err, client.ErrKeyTransparency) {
		t.Fatalf("Trust() with the entry misplaced = %v, want ErrKeyTransparency", err)
	}
	t.Logf("alert shown to Alice: %v", err)
	if _, err := alice.Send(ctx, "+14155550952", "still untrusted?"); !errors.Is(err, client.ErrUntrustedIdentity) {
		t.Fatalf("Send() after a refused Trust = %v, want ErrUntrustedIdentity", err)
	}

	s.tamper("alice", nil)
	if err := alice.Trust(ctx, "+14155550952"); err != nil {
		t.Fatalf("Trust() through the honest server = %v", err)
	}
	if _, err := alice.Send(ctx, "+14155550952", "welcome back"); err != nil {
		t.Fatalf("Send() after Trust = %v", err)
	}
}
