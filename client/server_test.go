package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/bastionchat/bastion/internal/server"
	"github.com/bastionchat/bastion/internal/store/sqlite"
)

// testServer is a real bastiond request handler over a real SQLite store in a temp
// directory, on a loopback listener, with an SMS provider that hands codes to the test.
type testServer struct {
	URL   string
	sms   *codeSMS
	dir   string
	close func()
}

type codeSMS struct {
	mu    sync.Mutex
	codes map[string]string
}

func (c *codeSMS) SendCode(_ context.Context, number, code string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.codes[number] = code
	return nil
}

// Code returns the last code sent to number.
func (s *testServer) Code(number string) string {
	s.sms.mu.Lock()
	defer s.sms.mu.Unlock()
	return s.sms.codes[number]
}

// startServer starts a server for tb; it stops when tb ends.
func startServer(tb testing.TB) *testServer {
	tb.Helper()
	s, err := newServer()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// newServer starts a server in a new temp directory. Rate limits are raised: every
// request in a test comes from one address.
func newServer() (*testServer, error) { return newServerWith(nil) }

// newServerWith is newServer with the handler wrapped by wrap (nil: not wrapped).
func newServerWith(wrap func(http.Handler) http.Handler) (*testServer, error) {
	dir, err := os.MkdirTemp("", "bastion-client-test")
	if err != nil {
		return nil, err
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "bastion.db"), nil)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cfg := server.DefaultConfig()
	cfg.DataDir = dir
	l := &cfg.Limits
	l.VerifyPerIP.N, l.VerifyPerPrefix.N, l.VerifyPerNumber.N = 1000, 1000, 1000
	l.BundlePerPair.N = 1000
	sms := &codeSMS{codes: map[string]string{}}
	srv, err := server.New(cfg, server.Options{Store: st, SMS: sms})
	if err != nil {
		st.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	h := srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	ts := httptest.NewServer(h)
	return &testServer{URL: ts.URL, sms: sms, dir: dir, close: func() {
		ts.CloseClientConnections()
		ts.Close()
		st.Close()
		os.RemoveAll(dir)
	}}, nil
}

// Close stops the server and deletes its data.
func (s *testServer) Close() { s.close() }
