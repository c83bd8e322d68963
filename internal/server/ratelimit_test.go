package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bastionchat/bastion/api"
)

// TestSharedRateLimits: servers given one store.RateLimits and one key enforce one limit
// between them, as nodes on one PostgreSQL do; a server with another key does not meet
// their buckets.
func TestSharedRateLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	cfg := testConfig()
	cfg.Limits.VerifyPerNumber = Rate{N: 2, Per: time.Hour}
	key := bytes.Repeat([]byte{7}, 32)
	node := func(key []byte) http.Handler {
		s, err := New(cfg, Options{Store: h.st, SMS: h.sms, Now: h.clock.Now, RateLimitKey: key, RateLimits: h.st})
		if err != nil {
			t.Fatalf("New() = %v", err)
		}
		return s.Handler()
	}
	a, b, other := node(key), node(key), node(bytes.Repeat([]byte{8}, 32))
	post := func(n http.Handler) *httptest.ResponseRecorder {
		body := strings.NewReader(jsonString(api.CreateVerificationRequest{Number: "+14155550130"}))
		w := httptest.NewRecorder()
		n.ServeHTTP(w, httptest.NewRequest("POST", "/v1/verification", body))
		return w
	}
	for i, n := range []http.Handler{a, b} {
		if w := post(n); w.Code != 200 {
			t.Fatalf("request %d = %d %s, want 200", i, w.Code, w.Body)
		}
	}
	for name, n := range map[string]http.Handler{"a": a, "b": b} {
		w := post(n)
		secs, err := strconv.Atoi(w.Header().Get("Retry-After"))
		if w.Code != http.StatusTooManyRequests || err != nil || secs <= 0 || secs > 1800 {
			t.Errorf("third request on node %s = %d, Retry-After %q; want 429, (0, 1800]", name, w.Code, w.Header().Get("Retry-After"))
		}
	}
	if w := post(other); w.Code != 200 {
		t.Errorf("request on a node with another key = %d, want 200", w.Code)
	}
	// A window later the shared bucket is full again.
	h.clock.Advance(2 * time.Hour)
	if w := post(a); w.Code != 200 {
		t.Errorf("request after the window = %d, want 200", w.Code)
	}
}

// TestSharedCodeAttempts: wrong codes guessed at once on two nodes sharing limits are, in
// all, capped at CodeAttempts, and the right code after them is refused.
func TestSharedCodeAttempts(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	cfg := testConfig()
	key := bytes.Repeat([]byte{7}, 32)
	var nodes []http.Handler
	for range 2 {
		s, err := New(cfg, Options{Store: h.st, SMS: h.sms, Now: h.clock.Now, RateLimitKey: key, RateLimits: h.st})
		if err != nil {
			t.Fatalf("New() = %v", err)
		}
		nodes = append(nodes, s.Handler())
	}
	do := func(n http.Handler, method, path string, body any) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		n.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(jsonString(body))))
		return w
	}
	const number = "+14155550140"
	w := do(nodes[0], "POST", "/v1/verification", api.CreateVerificationRequest{Number: number})
	var v api.VerificationResponse
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &v) != nil {
		t.Fatalf("POST /v1/verification = %d %s, want 200", w.Code, w.Body)
	}
	code := h.sms.code(number)
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	path := "/v1/verification/" + v.SessionID + "/code"
	const guesses = 16
	var incorrect atomic.Int32
	var wg sync.WaitGroup
	for i := range guesses {
		wg.Go(func() {
			if w := do(nodes[i%2], "PUT", path, api.SubmitCodeRequest{Code: wrong}); w.Code == http.StatusForbidden {
				incorrect.Add(1)
			}
		})
	}
	wg.Wait()
	// Each 403 is a guess that was compared. Racing nodes may both count attempt k and
	// answer 403 where one would answer 429, but never compare more than the cap.
	if got, limit := incorrect.Load(), int32(cfg.Limits.CodeAttempts); got > limit {
		t.Errorf("%d concurrent wrong codes on two nodes got %d \"incorrect code\" answers, want at most %d", guesses, got, limit)
	}
	if w := do(nodes[1], "PUT", path, api.SubmitCodeRequest{Code: code}); w.Code != http.StatusTooManyRequests {
		t.Errorf("right code after the cap = %d %s, want 429", w.Code, w.Body)
	}
}

func TestLoadRateLimitKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k1, err := LoadRateLimitKey(dir)
	if err != nil || len(k1) != 32 {
		t.Fatalf("LoadRateLimitKey(new dir) = %x, %v; want 32 bytes", k1, err)
	}
	fi, err := os.Stat(filepath.Join(dir, RateLimitKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stat %s = %v, %v; want mode 0600", RateLimitKeyFile, fi, err)
	}
	if k2, err := LoadRateLimitKey(dir); err != nil || !bytes.Equal(k2, k1) {
		t.Errorf("LoadRateLimitKey() again = %x, %v; want %x", k2, err, k1)
	}
	if err := os.WriteFile(filepath.Join(dir, RateLimitKeyFile), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRateLimitKey(dir); err == nil {
		t.Errorf("LoadRateLimitKey(5-byte file) = nil error, want one")
	}
}

// BenchmarkLimiterInMemory is one check of the in-memory limiter, to set beside the
// store's BenchmarkTakeToken (sqlite and postgres packages).
func BenchmarkLimiterInMemory(b *testing.B) {
	l := newLimiter(Rate{N: 1 << 30, Per: time.Hour}, []byte("key"), time.Now)
	part := []byte("+14155550100")
	for b.Loop() {
		l.allow(part)
	}
}
