package client

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/server"
	"github.com/bastionchat/bastion/internal/store/sqlite"
)

// These tests look inside the SDK: they drain prekeys, move the clock and interrupt a
// delivery half-way, against a real server handler on a real SQLite store.

type smsCodes struct {
	mu    sync.Mutex
	codes map[string]string
}

func (s *smsCodes) SendCode(_ context.Context, number, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[number] = code
	return nil
}

type harness struct {
	t   *testing.T
	url string
	sms *smsCodes
}

func newHarness(t *testing.T) *harness {
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "bastion.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.DefaultConfig()
	cfg.DataDir = dir
	l := &cfg.Limits
	l.VerifyPerIP.N, l.VerifyPerPrefix.N, l.VerifyPerNumber.N, l.BundlePerPair.N = 1000, 1000, 1000, 1000
	sms := &smsCodes{codes: map[string]string{}}
	srv, err := server.New(cfg, server.Options{Store: st, SMS: sms})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ts.CloseClientConnections(); ts.Close(); st.Close() })
	return &harness{t: t, url: ts.URL, sms: sms}
}

// clock is a settable clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (h *harness) register(number string, now func() time.Time) *Client {
	h.t.Helper()
	ctx := context.Background()
	c, err := Open(ctx, h.t.TempDir(), Options{Server: h.url, Now: now})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	if err := c.RequestCode(ctx, number); err != nil {
		h.t.Fatal(err)
	}
	h.sms.mu.Lock()
	code := h.sms.codes[number]
	h.sms.mu.Unlock()
	if _, err := c.Verify(ctx, code); err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (c *Client) preKeyCount(t *testing.T) api.PreKeyCount {
	t.Helper()
	var n api.PreKeyCount
	if err := c.api.do(context.Background(), "GET", "/v1/keys", c.cred(), nil, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestReplenishAndRotate(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	alice := h.register("+14155550161", clk.now)
	bob := h.register("+14155550162", clk.now)
	if n := bob.preKeyCount(t); n.Count != preKeyBatch || n.KyberCount != preKeyBatch {
		t.Fatalf("after registering: %+v, want %d of each", n, preKeyBatch)
	}

	// Alice drains Bob's one-time keys down to below the refill mark.
	drain := preKeyBatch - preKeyRefill + 1
	var last api.BundleResponse
	for range drain {
		if err := alice.api.do(ctx, "GET", "/v1/keys/"+bob.acc.AccountID.String()+"/1", alice.cred(), nil, &last); err != nil {
			t.Fatal(err)
		}
	}
	if n := bob.preKeyCount(t); n.Count != preKeyBatch-drain {
		t.Fatalf("after draining: %+v, want %d", n, preKeyBatch-drain)
	}
	if err := bob.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if n := bob.preKeyCount(t); n.Count != preKeyBatch || n.KyberCount != preKeyBatch {
		t.Errorf("after Maintain: %+v, want %d of each", n, preKeyBatch)
	}
	oldSigned := last.Devices[0].SignedPreKey.KeyID

	// A session started before the rotation keeps working after it.
	if _, err := alice.Send(ctx, "+14155550162", "before rotation"); err != nil {
		t.Fatal(err)
	}
	clk.advance(SignedPreKeyRotation + time.Hour)
	if err := bob.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	var br api.BundleResponse
	if err := alice.api.do(ctx, "GET", "/v1/keys/"+bob.acc.AccountID.String()+"/1", alice.cred(), nil, &br); err != nil {
		t.Fatal(err)
	}
	if got := br.Devices[0].SignedPreKey.KeyID; got == oldSigned {
		t.Errorf("signed prekey id after rotation = %d, want a new one", got)
	}
	var kept int
	bob.db.QueryRow("SELECT COUNT(*) FROM signed_prekeys").Scan(&kept)
	if kept != 2 {
		t.Errorf("signed prekeys kept after one rotation = %d, want 2 (the old one for in-flight messages)", kept)
	}
	msgs, err := bob.Receive(ctx)
	if err != nil || len(msgs) != 1 || msgs[0].Text != "before rotation" {
		t.Fatalf("bob.Receive() = %+v, %v; want the message made with the old signed prekey", msgs, err)
	}

	// A grace period later another rotation runs; the first key, replaced a grace
	// period ago, goes; the one it was replaced by (a week younger) stays for now.
	clk.advance(SignedPreKeyGrace)
	if err := bob.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	var old int
	bob.db.QueryRow("SELECT COUNT(*) FROM signed_prekeys").Scan(&kept)
	bob.db.QueryRow("SELECT COUNT(*) FROM signed_prekeys WHERE id = ?", oldSigned).Scan(&old)
	if kept != 2 || old != 0 {
		t.Errorf("after the grace period: %d signed prekeys kept, the first one %d times; want 2 and 0", kept, old)
	}
}

// rawDelivery connects as c and returns the envelopes the server pushes first, without
// acknowledging them: a device that crashes right after the delivery.
func rawDelivery(t *testing.T, c *Client) []api.Envelope {
	t.Helper()
	u := "ws" + c.api.base.String()[len("http"):] + "/v1/websocket"
	req := &http.Request{Header: http.Header{}}
	cred := c.cred()
	req.SetBasicAuth(cred.user, cred.password)
	conn, br, _, err := ws.Dialer{Header: ws.HandshakeHeaderHTTP(req.Header)}.Dial(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Frames the server sent right after the handshake may sit in br.
	var rw io.ReadWriter = conn
	if br != nil {
		rw = struct {
			io.Reader
			io.Writer
		}{io.MultiReader(br, conn), conn}
	}
	var envs []api.Envelope
	for {
		b, err := wsutil.ReadServerText(rw)
		if err != nil {
			t.Fatal(err)
		}
		var f api.Frame
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		if f.Type == api.FrameQueueEmpty {
			return envs
		}
		envs = append(envs, f.Envelopes...)
	}
}

func TestCrashBetweenDeliveryAndAck(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	alice := h.register("+14155550171", nil)
	bob := h.register("+14155550172", nil)
	for _, text := range []string{"one", "two"} {
		if _, err := alice.Send(ctx, "+14155550172", text); err != nil {
			t.Fatal(err)
		}
	}

	// Crash after delivery, before storing: nothing stored, nothing acknowledged.
	if envs := rawDelivery(t, bob); len(envs) != 2 {
		t.Fatalf("delivered %d envelopes, want 2", len(envs))
	}
	// Crash after storing the first, before acknowledging it.
	envs := rawDelivery(t, bob)
	if len(envs) != 2 {
		t.Fatalf("delivered again %d envelopes, want 2", len(envs))
	}
	root, err := bob.trustRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stored, err := bob.handleEnvelope(ctx, root, envs[0]); err != nil || !stored {
		t.Fatalf("handleEnvelope() = %v, %v; want stored", stored, err)
	}

	// The next run gets both messages, each once: the first from the profile (its
	// redelivery dropped by id), the second from the server.
	msgs, err := bob.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, m := range msgs {
		texts = append(texts, m.Text)
	}
	if len(texts) != 2 || texts[0] != "one" || texts[1] != "two" {
		t.Errorf("bob.Receive() = %q, want [one two]", texts)
	}
	if msgs, _ := bob.Receive(ctx); len(msgs) != 0 {
		t.Errorf("bob.Receive() again = %d messages, want none", len(msgs))
	}
}

// A message whose session is lost is not dropped in silence: the user is told which
// contact to ask for it again.
func TestUndecryptableNotice(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	alice := h.register("+14155550201", nil)
	bob := h.register("+14155550202", nil)
	if _, err := alice.Send(ctx, "+14155550202", "one"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.db.Exec("DELETE FROM sessions"); err != nil { // Bob's device lost its state
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, "+14155550202", "two"); err != nil {
		t.Fatal(err)
	}
	msgs, err := bob.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || !msgs[0].Undecryptable || msgs[0].Text != "" || msgs[0].From != alice.acc.AccountID || msgs[0].FromNumber != "+14155550201" {
		t.Fatalf("bob.Receive() = %+v, want one undecryptable notice from alice", msgs)
	}
}

// A profile made by the first schema is upgraded when opened.
func TestSchemaUpgrade(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"ALTER TABLE messages DROP COLUMN undecryptable", "DROP TABLE groups",
		"DROP TABLE channels", "DROP TABLE channel_posts", "PRAGMA user_version = 1"} {
		if _, err := c.db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	c, err = Open(ctx, dir, Options{})
	if err != nil {
		t.Fatalf("Open(schema 1) = %v", err)
	}
	defer c.Close()
	var v, n, tables int
	c.db.QueryRow("PRAGMA user_version").Scan(&v)
	c.db.QueryRow("SELECT COUNT(*) FROM pragma_table_info('messages') WHERE name = 'undecryptable'").Scan(&n)
	c.db.QueryRow("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('groups', 'channels', 'channel_posts')").Scan(&tables)
	if v != schemaVersion || n != 1 || tables != 3 {
		t.Errorf("after upgrade: version %d, undecryptable column %d, group and channel tables %d; want %d, 1 and 3", v, n, tables, schemaVersion)
	}
}
