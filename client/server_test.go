package client_test

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/bastionchat/bastion/internal/server"
	"github.com/bastionchat/bastion/internal/store/sqlite"
)

// testServer is a real bastiond request handler over a real SQLite store in a temp
// directory, on a loopback listener, with an SMS provider that hands codes to the test.
type testServer struct {
	URL string
	sms *codeSMS
	dir string
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

// startServer starts a server for tb; it stops when tb ends. Rate limits are raised:
// every request in a test comes from one address.
func startServer(tb testing.TB) *testServer {
	tb.Helper()
	dir := tb.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "bastion.db"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := server.DefaultConfig()
	cfg.DataDir = dir
	l := &cfg.Limits
	l.VerifyPerIP.N, l.VerifyPerPrefix.N, l.VerifyPerNumber.N = 1000, 1000, 1000
	l.BundlePerPair.N = 1000
	sms := &codeSMS{codes: map[string]string{}}
	srv, err := server.New(cfg, server.Options{Store: st, SMS: sms})
	if err != nil {
		tb.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	tb.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		st.Close()
	})
	return &testServer{URL: ts.URL, sms: sms, dir: dir}
}
