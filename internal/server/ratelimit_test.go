package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
