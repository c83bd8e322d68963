package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/store"
)

type wsClient struct {
	t    testing.TB
	conn net.Conn
	r    io.Reader
}

func (h *harness) dial(c *client) *wsClient {
	h.t.Helper()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(c.user()+":"+c.password))
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {auth}}), Timeout: 5 * time.Second}
	conn, br, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(h.ts.URL, "http")+"/v1/websocket")
	if err != nil {
		h.t.Fatalf("dialing websocket: %v", err)
	}
	w := &wsClient{t: h.t, conn: conn, r: conn}
	if br != nil {
		w.r = br
	}
	h.t.Cleanup(func() { conn.Close() })
	return w
}

// frame reads the next server frame, answering pings. The deadline only keeps a broken
// test from hanging; it is not a timing assertion.
func (w *wsClient) frame() (ws.OpCode, []byte) {
	w.t.Helper()
	for {
		w.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		h, err := ws.ReadHeader(w.r)
		if err != nil {
			w.t.Fatalf("reading frame header: %v", err)
		}
		if h.Masked {
			w.t.Fatalf("server frame is masked")
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(w.r, p); err != nil {
			w.t.Fatalf("reading frame: %v", err)
		}
		if h.OpCode == ws.OpPing {
			wsutil.WriteClientMessage(w.conn, ws.OpPong, p)
			continue
		}
		return h.OpCode, p
	}
}

func (w *wsClient) next() api.Frame {
	w.t.Helper()
	op, p := w.frame()
	if op != ws.OpText {
		w.t.Fatalf("frame opcode = %v (%q), want text", op, p)
	}
	var f api.Frame
	if err := json.Unmarshal(p, &f); err != nil {
		w.t.Fatalf("decoding frame %s: %v", p, err)
	}
	return f
}

// envelopes reads frames until n envelopes have arrived, noting a queue_empty frame.
func (w *wsClient) envelopes(n int) (envs []api.Envelope, sawEmpty bool) {
	w.t.Helper()
	for len(envs) < n {
		f := w.next()
		switch f.Type {
		case api.FrameEnvelopes:
			envs = append(envs, f.Envelopes...)
		case api.FrameQueueEmpty:
			sawEmpty = true
		default:
			w.t.Fatalf("frame type = %q, want envelopes or queue_empty", f.Type)
		}
	}
	return envs, sawEmpty
}

func (w *wsClient) ack(envs ...api.Envelope) {
	w.t.Helper()
	f := api.Frame{Type: api.FrameAck}
	for _, e := range envs {
		f.IDs = append(f.IDs, e.ID)
	}
	p, _ := json.Marshal(f)
	if err := wsutil.WriteClientText(w.conn, p); err != nil {
		w.t.Fatalf("writing ack: %v", err)
	}
}

// closeCode reads until the server's close frame and returns its code.
func (w *wsClient) closeCode() ws.StatusCode {
	w.t.Helper()
	for {
		op, p := w.frame()
		if op == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(p)
			return code
		}
	}
}

// waitQueue polls the store until the device's queue has n envelopes.
func (h *harness) waitQueue(c *client, n int) {
	h.t.Helper()
	for range 500 {
		if len(h.pending(c, 1)) == n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("queue length = %d, want %d", len(h.pending(c, 1)), n)
}

func TestWebSocketDelivery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	bob := h.register("+14155550401", 0)
	alice := h.register("+14155550402", 0)
	var sent [][]byte
	for i := range 5 {
		body := []byte(fmt.Sprintf("ciphertext %d", i))
		sent = append(sent, body)
		h.want(h.send(alice, bob.account, envelope(1, bob.regID, body)), 200, "", "send")
	}

	w := h.dial(bob)
	got, sawEmpty := w.envelopes(5)
	for i, e := range got {
		if !bytes.Equal(e.Body, sent[i]) {
			t.Fatalf("envelope %d = %q, want %q (in send order)", i, e.Body, sent[i])
		}
	}
	if !sawEmpty {
		if f := w.next(); f.Type != api.FrameQueueEmpty {
			t.Fatalf("frame after the queue = %q, want queue_empty", f.Type)
		}
	}
	w.ack(got[:3]...)
	h.waitQueue(bob, 2)

	// Reconnecting drains what was not acked, in order.
	w.conn.Close()
	w = h.dial(bob)
	again, _ := w.envelopes(2)
	if again[0].ID != got[3].ID || again[1].ID != got[4].ID {
		t.Fatalf("after reconnect = %v, %v; want the two unacked %v, %v", again[0].ID, again[1].ID, got[3].ID, got[4].ID)
	}
	if f := w.next(); f.Type != api.FrameQueueEmpty {
		t.Fatalf("frame after the drain = %q, want queue_empty", f.Type)
	}
	w.ack(again...)
	h.waitQueue(bob, 0)

	// While connected, a new envelope is pushed at once.
	live := envelope(1, bob.regID, []byte("live"))
	h.want(h.send(alice, bob.account, live), 200, "", "send while connected")
	f := w.next()
	if f.Type != api.FrameEnvelopes || len(f.Envelopes) != 1 || f.Envelopes[0].ID != live.ID {
		t.Fatalf("pushed frame = %+v, want the live envelope", f)
	}
	if f.Envelopes[0].ServerTime != h.clock.Now().UnixMilli() {
		t.Errorf("server_time = %d, want %d", f.Envelopes[0].ServerTime, h.clock.Now().UnixMilli())
	}
	w.ack(f.Envelopes...)
	h.waitQueue(bob, 0)
}

func TestWebSocketLargeBacklog(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	bob := h.register("+14155550403", 0)
	const n = 300 // more than the in-flight window and several batches
	var ids []uuid.UUID
	var envs []*store.Envelope
	for i := range n {
		e := &store.Envelope{ID: uuid.New(), Account: bob.account, Device: 1, ServerTime: h.clock.Now(), Body: []byte(fmt.Sprint(i))}
		ids = append(ids, e.ID)
		envs = append(envs, e)
	}
	if err := h.st.Enqueue(context.Background(), envs); err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	w := h.dial(bob)
	var got []api.Envelope
	for len(got) < n {
		f := w.next()
		if f.Type == api.FrameEnvelopes {
			got = append(got, f.Envelopes...)
			w.ack(f.Envelopes...) // acks open the window for the rest
		}
	}
	for i := range got {
		if got[i].ID != ids[i] {
			t.Fatalf("envelope %d = %v, want %v (queue order)", i, got[i].ID, ids[i])
		}
	}
	h.waitQueue(bob, 0)
}

func TestWebSocketOversizedFrame(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	bob := h.register("+14155550405", 0)
	w := h.dial(bob)
	// Announce a 10 MiB frame; the server refuses it on the header alone.
	hdr := ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Mask: ws.NewMask(), Length: 10 << 20}
	if err := ws.WriteHeader(w.conn, hdr); err != nil {
		t.Fatalf("writing header: %v", err)
	}
	w.conn.Write(bytes.Repeat([]byte("x"), 4096))
	if code := w.closeCode(); code != ws.StatusMessageTooBig {
		t.Fatalf("close code = %d, want %d (message too big)", code, ws.StatusMessageTooBig)
	}
	// The server is still up: health, and a new connection delivers.
	h.want(h.do("GET", "/healthz", nil, nil), 200, "", "healthz after the oversized frame")
	alice := h.register("+14155550406", 0)
	h.want(h.send(alice, bob.account, envelope(1, bob.regID, []byte("after"))), 200, "", "send")
	w = h.dial(bob)
	if got, _ := w.envelopes(1); string(got[0].Body) != "after" {
		t.Fatalf("delivered %q, want %q", got[0].Body, "after")
	}
}

func TestWebSocketBadFrames(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	bob := h.register("+14155550407", 0)
	tests := []struct {
		name string
		send func(net.Conn) error
		want ws.StatusCode
	}{
		{"malformed JSON", func(c net.Conn) error { return wsutil.WriteClientText(c, []byte("{")) }, ws.StatusInvalidFramePayloadData},
		{"unknown field", func(c net.Conn) error { return wsutil.WriteClientText(c, []byte(`{"type":"ack","x":1}`)) }, ws.StatusInvalidFramePayloadData},
		{"unknown type", func(c net.Conn) error { return wsutil.WriteClientText(c, []byte(`{"type":"envelopes"}`)) }, ws.StatusUnsupportedData},
		{"unmasked frame", func(c net.Conn) error { return ws.WriteFrame(c, ws.NewTextFrame([]byte(`{"type":"ack"}`))) }, ws.StatusProtocolError},
		{"client close", func(c net.Conn) error {
			return wsutil.WriteClientMessage(c, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
		}, ws.StatusNormalClosure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := h.dial(bob)
			w.t = t
			if f := w.next(); f.Type != api.FrameQueueEmpty {
				t.Fatalf("first frame = %q, want queue_empty", f.Type)
			}
			if err := tt.send(w.conn); err != nil {
				t.Fatalf("writing: %v", err)
			}
			if code := w.closeCode(); code != tt.want {
				t.Errorf("close code = %d, want %d", code, tt.want)
			}
		})
	}
}

func TestWebSocketPing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.Limits.WSPingInterval = 20 * time.Millisecond })
	bob := h.register("+14155550408", 0)
	w := h.dial(bob)
	w.next() // queue_empty
	// Read raw frames: a ping must come, and if we never answer, the server hangs up.
	sawPing := false
	for {
		w.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		hd, err := ws.ReadHeader(w.r)
		if err != nil {
			t.Fatalf("reading: %v (saw ping %v)", err, sawPing)
		}
		p := make([]byte, hd.Length)
		io.ReadFull(w.r, p)
		if hd.OpCode == ws.OpPing {
			sawPing = true
		}
		if hd.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(p)
			if !sawPing || code != ws.StatusGoingAway {
				t.Fatalf("close %d after ping %v, want 1001 after a ping", code, sawPing)
			}
			return
		}
	}
}

func TestWebSocketAuth(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	bob := h.register("+14155550409", 0)
	url := "ws" + strings.TrimPrefix(h.ts.URL, "http") + "/v1/websocket"
	for _, auth := range []string{"", "Basic " + base64.StdEncoding.EncodeToString([]byte(bob.user()+":wrong"))} {
		d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {auth}}), Timeout: 5 * time.Second}
		_, _, _, err := d.Dial(context.Background(), url)
		var se ws.StatusError
		if !errorsAs(err, &se) || int(se) != 401 {
			t.Errorf("dial with auth %q = %v, want status 401", auth, err)
		}
	}
}

func errorsAs(err error, se *ws.StatusError) bool {
	v, ok := err.(ws.StatusError)
	*se = v
	return ok
}

func TestConnectionLog(t *testing.T) {
	t.Parallel()
	for _, days := range []int{7, 0} {
		t.Run(fmt.Sprintf("retention %d days", days), func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.IPRetentionDays = days })
			bob := h.register("+14155550410", 0)
			w := h.dial(bob)
			w.next()
			conns, err := h.st.Connections(context.Background(), bob.account)
			if err != nil {
				t.Fatal(err)
			}
			want := 1
			if days == 0 {
				want = 0
			}
			if len(conns) != want {
				t.Fatalf("connection log rows = %d, want %d", len(conns), want)
			}
			if want == 1 && conns[0].IP.String() != "127.0.0.1" {
				t.Errorf("logged address = %v, want 127.0.0.1", conns[0].IP)
			}
			h.clock.Advance(time.Duration(days)*24*time.Hour + time.Minute)
			h.srv.janitor(context.Background())
			if conns, _ := h.st.Connections(context.Background(), bob.account); len(conns) != 0 {
				t.Errorf("rows after the retention window = %d, want 0", len(conns))
			}
		})
	}
}

func TestJanitorExpiresEnvelopes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.QueueTTL = 48 * time.Hour })
	bob := h.register("+14155550411", 0)
	alice := h.register("+14155550412", 0)
	h.want(h.send(alice, bob.account, envelope(1, bob.regID, []byte("old"))), 200, "", "send")
	h.clock.Advance(24 * time.Hour)
	h.want(h.send(alice, bob.account, envelope(1, bob.regID, []byte("new"))), 200, "", "send")
	h.clock.Advance(25 * time.Hour)
	h.srv.janitor(context.Background())
	if p := h.pending(bob, 1); len(p) != 1 || string(p[0].Body) != "new" {
		t.Fatalf("queue after the janitor = %d envelopes, want only the one younger than the TTL", len(p))
	}
	// Expired verification sessions go too.
	h.secret("+14155550413")
	r := h.do("POST", "/v1/verification", api.CreateVerificationRequest{Number: "+14155550413"}, nil)
	id := decodeBody[api.VerificationResponse](t, r).SessionID
	h.clock.Advance(time.Hour)
	h.srv.janitor(context.Background())
	if _, err := h.st.Verification(context.Background(), id); err == nil {
		t.Errorf("expired verification session survived the janitor")
	}
}

// TestReregistrationDisconnects: after a number is registered again, the old device's
// connection is closed, so it never receives what is queued for the new device 1.
func TestReregistrationDisconnects(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	old := h.register("+14155550420", 0)
	w := h.dial(old)
	w.next() // queue_empty
	h.register("+14155550420", 0)
	if code := w.closeCode(); code != ws.StatusPolicyViolation {
		t.Fatalf("old device's close code = %d, want 1008", code)
	}
}
