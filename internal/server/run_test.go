package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/store"
)

// TestRunServesAndShutsDown drives Run as bastiond does: a real listener, SQLite in a
// temp dir, the dev SMS console. A thousand half-open connections do not keep a client from
// registering, and shutdown closes WebSockets with 1001 and returns nil.
func TestRunServesAndShutsDown(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	console := &syncBuffer{}
	cfg.DevConsole = console
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, logger) }()

	var addr string
	re := regexp.MustCompile(`"msg":"serving","listen":"([^"]+)"`)
	for range 500 {
		if m := re.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if addr == "" {
		t.Fatalf("Run did not log its address; log:\n%s", logs.String())
	}
	base := "http://" + addr

	// Half-open connections: a partial request header each, never finished.
	var halfOpen []net.Conn
	for range 1000 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		halfOpen = append(halfOpen, c)
		c.Write([]byte("POST /v1/verification HTTP/1.1\r\nHost: x\r\n"))
	}

	post := func(method, path string, body any, user, pass string) (int, []byte) {
		t.Helper()
		p, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(p))
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	const number = "+14155550601"
	status, body := post("POST", "/v1/verification", api.CreateVerificationRequest{Number: number}, "", "")
	if status != 200 {
		t.Fatalf("create verification = %d %s", status, body)
	}
	var v api.VerificationResponse
	json.Unmarshal(body, &v)
	m := regexp.MustCompile(`code for \+14155550601: (\d{6})`).FindStringSubmatch(console.String())
	if m == nil || !strings.Contains(console.String(), "DEVELOPMENT ONLY") {
		t.Fatalf("dev console = %q, want the banner and the code", console.String())
	}
	if status, body := post("PUT", "/v1/verification/"+v.SessionID+"/code", api.SubmitCodeRequest{Code: m[1]}, "", ""); status != 200 {
		t.Fatalf("submit code = %d %s", status, body)
	}
	ik := newIdentity(t)
	k := keys(t, ik, 1, 1)
	status, body = post("POST", "/v1/accounts", api.RegisterRequest{SessionID: v.SessionID, IdentityKey: ik.PublicKey().Bytes(),
		RegistrationID: 1, SignedPreKey: *k.SignedPreKey, KyberLastResort: *k.KyberLastResort}, "", "")
	if status != 200 {
		t.Fatalf("register = %d %s", status, body)
	}
	var reg api.RegisterResponse
	json.Unmarshal(body, &reg)
	user := reg.AccountID.String() + ".1"

	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+reg.Password))
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {auth}}), Timeout: 5 * time.Second}
	conn, br, _, err := d.Dial(context.Background(), "ws://"+addr+"/v1/websocket")
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	defer conn.Close()
	w := &wsClient{t: t, conn: conn, r: conn}
	if br != nil {
		w.r = br
	}
	if f := w.next(); f.Type != api.FrameQueueEmpty {
		t.Fatalf("first frame = %q, want queue_empty", f.Type)
	}

	// (Shutdown would wait 5 s for connections that never sent a request.)
	for _, c := range halfOpen {
		c.Close()
	}
	cancel()
	if code := w.closeCode(); code != ws.StatusGoingAway {
		t.Errorf("close code at shutdown = %d, want 1001", code)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run() = %v, want nil after a graceful shutdown", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("Run did not return after cancel")
	}
	// The listen address is the operator's own; every other line is scanned.
	scanned := regexp.MustCompile(`(?m)^.*"msg":"serving".*$`).ReplaceAllString(logs.String(), "")
	for _, s := range []string{number, "127.0.0.1", reg.Password, m[1], v.SessionID} {
		if strings.Contains(scanned, s) {
			t.Errorf("server log contains %q", s)
		}
	}
	if !strings.Contains(logs.String(), `"msg":"request"`) {
		t.Errorf("server log has no request lines; the scan above proves nothing")
	}
}

// TestImportFence: the server links no session, ratchet or client code. Checking a
// prekey signature (protocol/curve) and issuing sealed-sender certificates
// (protocol/certificate, which imports only curve) is the only cryptography it shares
// with clients; it never links protocol/sealed, so it cannot open a sealed envelope.
func TestImportFence(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/bastionchat/bastion/cmd/bastiond").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/bastionchat/bastion/"
	for _, p := range strings.Fields(string(out)) {
		rel, ok := strings.CutPrefix(p, mod)
		if !ok {
			continue
		}
		if rel == "protocol" || (strings.HasPrefix(rel, "protocol/") && rel != "protocol/curve" && rel != "protocol/certificate") ||
			strings.HasPrefix(rel, "client") || strings.HasPrefix(rel, "interop") {
			t.Errorf("bastiond depends on %s; the server must not link client or session code", p)
		}
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	bob := h.register("+14155550602", 0)
	alice := h.register("+14155550603", 0)
	h.want(h.send(alice, bob.account, envelope(1, bob.regID, []byte("x"))), 200, "", "send")
	w := h.dial(bob)
	got, _ := w.envelopes(1)
	w.ack(got...)
	h.waitQueue(bob, 0)
	r := h.do("GET", "/metrics", nil, nil)
	h.want(r, 200, "", "GET /metrics")
	for _, want := range []string{
		`bastion_envelopes_queued_total 1`,
		`bastion_websocket_connections 1`,
		`bastion_http_requests_total{code="200",route="PUT /v1/messages/{account}"} 1`,
		`bastion_http_request_duration_seconds_count{route="POST /v1/accounts"} 2`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Delivered is counted once the ack is processed, which waitQueue saw in the store.
	for range 100 {
		if strings.Contains(string(h.do("GET", "/metrics", nil, nil).body), "bastion_envelopes_delivered_total 1") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("metrics lack bastion_envelopes_delivered_total 1")
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	r := h.do("GET", "/healthz", nil, nil)
	if r.status != 200 || string(r.body) != "ok\n" {
		t.Errorf("GET /healthz = %d %q, want 200 ok", r.status, r.body)
	}
}

// TestLogsHoldNoPersonalData runs failure paths too (an internal error, a refused
// send, a rate limit) with debug logging on, and checks the log is not empty and holds
// no number, address, secret, code or key. Every other test runs the same scan on its
// own log when it ends.
func TestLogsHoldNoPersonalData(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.Limits.VerifyPerNumber = Rate{N: 1, Per: time.Hour} })
	bob := h.register("+14155550604", 3)
	alice := h.register("+14155550605", 0)
	h.do("POST", "/v1/verification", api.CreateVerificationRequest{Number: "+14155550604"}, nil) // rate limited
	h.send(alice, bob.account, envelope(2, 1, []byte("secret body")))                            // 409
	h.do("GET", "/v1/keys/"+bob.account.String()+"/*", nil, alice)
	h.do("POST", "/v1/directory", api.LookupRequest{Number: "+14155550604"}, alice)
	h.sms.fail = true
	h.do("POST", "/v1/verification", api.CreateVerificationRequest{Number: "+14155550606"}, nil) // 503
	h.secret("+14155550606", "secret body", bob.account.String(), alice.account.String())
	if !strings.Contains(h.logs.String(), `"level":"ERROR"`) || !strings.Contains(h.logs.String(), `"msg":"request"`) {
		t.Fatalf("log lacks the error and request lines the scan needs:\n%s", h.logs.String())
	}
}

func TestInventory(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	r := h.do("GET", "/v1/inventory", nil, nil)
	h.want(r, 200, "", "GET /v1/inventory")
	var inv store.DataInventory
	if err := json.Unmarshal(r.body, &inv); err != nil {
		t.Fatalf("decoding inventory: %v", err)
	}
	want := store.Inventory()
	if len(inv.Fields) != len(want.Fields) || len(inv.Fields) == 0 {
		t.Fatalf("served inventory has %d fields, want the %d shipped", len(inv.Fields), len(want.Fields))
	}
	if _, ok := inv.Field("connections", "ip"); !ok {
		t.Errorf("served inventory lacks connections.ip")
	}
}
