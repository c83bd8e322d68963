package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/phone"
	"github.com/bastionchat/bastion/internal/store/sqlite"
	"github.com/bastionchat/bastion/protocol/curve"
)

// harness is a server over a real SQLite store in a temp dir, on a loopback listener,
// with a fake clock, an SMS provider that hands codes to the test, and a JSON log that
// the cleanup scans for anything a log must never hold.
type harness struct {
	t     testing.TB
	srv   *Server
	ts    *httptest.Server
	st    *sqlite.Store
	clock *fakeClock
	sms   *captureSMS
	logs  *syncBuffer

	mu      sync.Mutex
	secrets []string // strings that must never appear in the log
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type captureSMS struct {
	mu    sync.Mutex
	codes map[string]string
	fail  bool
}

func (c *captureSMS) SendCode(_ context.Context, number, code string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return fmt.Errorf("gateway down")
	}
	c.codes[number] = code
	return nil
}

func (c *captureSMS) code(number string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.codes[number]
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.DataDir = "unused"
	cfg.Limits.WSPingInterval = time.Hour // keepalive is tested on its own
	return cfg
}

func newHarness(t testing.TB, edit func(*Config)) *harness {
	t.Helper()
	cfg := testConfig()
	if edit != nil {
		edit(&cfg)
	}
	h := &harness{
		t:     t,
		clock: &fakeClock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)},
		sms:   &captureSMS{codes: map[string]string{}},
		logs:  &syncBuffer{},
	}
	logger := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := sqlite.Open(context.Background(), t.TempDir()+"/bastion.db", logger)
	if err != nil {
		t.Fatalf("sqlite.Open() = %v", err)
	}
	h.st = st
	srv, err := New(cfg, Options{Store: st, SMS: h.sms, Logger: logger, Now: h.clock.Now})
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	h.srv = srv
	h.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		h.ts.CloseClientConnections()
		h.ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.closeWebSockets(ctx); err != nil {
			t.Errorf("closeWebSockets() = %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("store Close() = %v", err)
		}
		h.scanLogs()
	})
	return h
}

// secret records a string the log must never contain.
func (h *harness) secret(s ...string) {
	h.mu.Lock()
	h.secrets = append(h.secrets, s...)
	h.mu.Unlock()
}

// scanLogs fails the test if the log holds a phone number, address, password, code,
// session id or key used in it.
func (h *harness) scanLogs() {
	logs := h.logs.String()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range append(h.secrets, "127.0.0.1", "::1") {
		if s != "" && strings.Contains(logs, s) {
			h.t.Errorf("server log contains %q; it must never hold phone numbers, addresses, secrets or keys", s)
		}
	}
	for _, s := range h.sms.codes {
		if strings.Contains(logs, `"`+s+`"`) {
			h.t.Errorf("server log contains verification code %q", s)
		}
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) apiError() api.Error {
	var e api.Error
	json.Unmarshal(r.body, &e)
	return e
}

// do sends body (raw if []byte or string, JSON otherwise) with c's credentials if c is
// not nil.
func (h *harness) do(method, path string, body any, c *client) response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		p, err := json.Marshal(b)
		if err != nil {
			h.t.Fatalf("json.Marshal() = %v", err)
		}
		rd = bytes.NewReader(p)
	}
	req, err := http.NewRequest(method, h.ts.URL+path, rd)
	if err != nil {
		h.t.Fatalf("NewRequest() = %v", err)
	}
	if c != nil {
		req.SetBasicAuth(c.user(), c.password)
	}
	resp, err := h.ts.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	p, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: p}
}

// want checks status and, for errors, the stable code.
func (h *harness) want(r response, status int, code string, what string) {
	h.t.Helper()
	if r.status != status {
		h.t.Fatalf("%s = %d %s, want %d", what, r.status, r.body, status)
	}
	if code != "" {
		if got := r.apiError().Code; got != code {
			h.t.Fatalf("%s code = %q, want %q (body %s)", what, got, code, r.body)
		}
	}
}

func decodeBody[T any](t testing.TB, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
	return v
}

// client is a registered device as a test drives it.
type client struct {
	account  uuid.UUID
	device   uint32
	password string
	ik       *curve.PrivateKey
	regID    uint32
	number   string
}

func (c *client) user() string { return fmt.Sprintf("%s.%d", c.account, c.device) }

func sign(t testing.TB, ik *curve.PrivateKey, id uint32, pub []byte) api.SignedPreKey {
	t.Helper()
	sig, err := ik.Sign(rand.Reader, pub)
	if err != nil {
		t.Fatalf("Sign() = %v", err)
	}
	return api.SignedPreKey{KeyID: id, PublicKey: pub, Signature: sig}
}

func ecKey(t testing.TB) []byte {
	t.Helper()
	k, err := curve.GeneratePrivateKey(rand.Reader)
	if err != nil {
		t.Fatalf("GeneratePrivateKey() = %v", err)
	}
	return k.PublicKey().Bytes()
}

// kyberKey is a well-formed serialized Kyber-1024 public key as far as the server can
// tell (it checks type byte, length and signature, not the lattice).
func kyberKey() []byte {
	k := make([]byte, kyberKeySize)
	rand.Read(k)
	k[0] = kyberKeyType
	return k
}

// keys returns an upload for ik with n one-time keys of each kind, ids from base.
func keys(t testing.TB, ik *curve.PrivateKey, base uint32, n int) api.SetKeysRequest {
	t.Helper()
	spk := sign(t, ik, base, ecKey(t))
	lr := sign(t, ik, base, kyberKey())
	req := api.SetKeysRequest{SignedPreKey: &spk, KyberLastResort: &lr}
	for i := range n {
		req.PreKeys = append(req.PreKeys, api.PreKey{KeyID: base + 1 + uint32(i), PublicKey: ecKey(t)})
		req.KyberPreKeys = append(req.KyberPreKeys, sign(t, ik, base+1+uint32(i), kyberKey()))
	}
	return req
}

// verify runs the code flow for number and returns the verified session id.
func (h *harness) verify(number string) string {
	h.t.Helper()
	h.secret(number)
	r := h.do("POST", "/v1/verification", api.CreateVerificationRequest{Number: number}, nil)
	h.want(r, 200, "", "create verification")
	v := decodeBody[api.VerificationResponse](h.t, r)
	h.secret(v.SessionID)
	e164, err := phone.Normalise(number)
	if err != nil {
		h.t.Fatalf("phone.Normalise(%q) = %v", number, err)
	}
	h.secret(e164)
	r = h.do("PUT", "/v1/verification/"+v.SessionID+"/code", api.SubmitCodeRequest{Code: h.sms.code(e164)}, nil)
	h.want(r, 200, "", "submit code")
	return v.SessionID
}

// register creates an account for number with n one-time prekeys of each kind.
func (h *harness) register(number string, n int) *client {
	h.t.Helper()
	session := h.verify(number)
	ik, err := curve.GeneratePrivateKey(rand.Reader)
	if err != nil {
		h.t.Fatal(err)
	}
	k := keys(h.t, ik, 1, n)
	req := api.RegisterRequest{
		SessionID: session, IdentityKey: ik.PublicKey().Bytes(), RegistrationID: 1234,
		SignedPreKey: *k.SignedPreKey, KyberLastResort: *k.KyberLastResort,
		PreKeys: k.PreKeys, KyberPreKeys: k.KyberPreKeys,
	}
	r := h.do("POST", "/v1/accounts", req, nil)
	h.want(r, 200, "", "register")
	resp := decodeBody[api.RegisterResponse](h.t, r)
	h.secret(resp.Password, base64.StdEncoding.EncodeToString(ik.PublicKey().Bytes()))
	return &client{account: resp.AccountID, device: resp.DeviceID, password: resp.Password, ik: ik, regID: 1234, number: number}
}

func newIdentity(t testing.TB) *curve.PrivateKey {
	t.Helper()
	ik, err := curve.GeneratePrivateKey(rand.Reader)
	if err != nil {
		t.Fatalf("GeneratePrivateKey() = %v", err)
	}
	return ik
}
