package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/acme/autocert"

	"github.com/bastionchat/bastion/internal/bus"
	"github.com/bastionchat/bastion/internal/store"
	"github.com/bastionchat/bastion/internal/store/postgres"
	"github.com/bastionchat/bastion/internal/store/sqlite"
	"github.com/bastionchat/bastion/internal/translog"
)

// Run serves cfg until ctx is done, then shuts down gracefully: it stops accepting,
// lets in-flight requests (sends among them) finish, closes WebSockets with 1001, and
// closes the store, which waits for its pending commit.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	sms, err := newSMS(cfg)
	if err != nil {
		return err
	}
	st, ktLog, err := openStore(ctx, cfg, logger.With("component", "store"))
	if err != nil {
		return err
	}
	defer st.Close()
	var notifier Notifier
	if cfg.NATS != "" {
		nb, err := bus.Connect(cfg.NATS, bus.Options{Logger: logger.With("component", "bus")})
		if err != nil {
			return fmt.Errorf("connecting to NATS: %w", err)
		}
		defer nb.Close()
		notifier = nb
	}
	certs, err := LoadCertificateKeys(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("loading sealed sender keys: %w", err)
	}
	ktKeys, err := LoadKTKeys(cfg.DataDir, KTOrigin(cfg.AutocertDomain))
	if err != nil {
		return fmt.Errorf("loading key transparency keys: %w", err)
	}
	rlKey, err := LoadRateLimitKey(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("loading rate limit key: %w", err)
	}
	// Shared buckets only on PostgreSQL: on SQLite there is one node, and a check in
	// the store would cost an fsync (ratelimit.go).
	var shared store.RateLimits
	if cfg.PostgresStore() {
		shared = st
	}
	s, err := New(cfg, Options{Store: st, SMS: sms, Notifier: notifier, Logger: logger, Certificates: certs,
		KT: KTOptions{Keys: ktKeys, Storage: ktLog}, RateLimitKey: rlKey, RateLimits: shared})
	if err != nil {
		return err
	}
	if cfg.LegalDesk {
		stopLegal, err := s.StartLegal(ctx)
		if err != nil {
			return fmt.Errorf("starting the legal desk: %w", err)
		}
		defer stopLegal()
	}

	hs := &http.Server{
		Handler: s.Handler(),
		// Against slow and half-open clients: a header must arrive within 10 s, a body
		// within 60 s; WebSockets set their own deadlines after the upgrade.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(&addrScrubber{log: logger}, "", 0),
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	switch {
	case cfg.TLSCert != "":
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("loading TLS certificate: %w", err)
		}
		hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, hs.TLSConfig)
	case cfg.AutocertDomain != "":
		// TLS-ALPN-01 challenges arrive on this listener, so it must be reachable on :443.
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			HostPolicy: autocert.HostWhitelist(cfg.AutocertDomain),
			Cache:      autocert.DirCache(filepath.Join(cfg.DataDir, "autocert")),
		}
		hs.TLSConfig = m.TLSConfig()
		hs.TLSConfig.MinVersion = tls.VersionTLS12
		ln = tls.NewListener(ln, hs.TLSConfig)
	}
	logger.Info("serving", "listen", ln.Addr().String(), "tls", cfg.TLS(), "sms", cfg.SMS,
		"store", storeKind(cfg), "nats", cfg.NATS != "", "legal_desk", cfg.LegalDesk,
		"queue_ttl", cfg.QueueTTL.String(), "ip_retention_days", cfg.IPRetentionDays)

	jctx, stopJanitor := context.WithCancel(context.Background())
	janitorDone := make(chan struct{})
	go func() { defer close(janitorDone); s.RunJanitor(jctx) }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	select {
	case err := <-serveErr:
		stopJanitor()
		<-janitorDone
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = errors.Join(hs.Shutdown(sctx), s.closeWebSockets(sctx))
	stopJanitor()
	<-janitorDone
	if cerr := st.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("closing store: %w", cerr))
	}
	if err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// closingStore is a store that Run closes on the way out.
type closingStore interface {
	store.Store
	Close() error
}

// openStore opens the store cfg names and the key transparency log's storage in it.
func openStore(ctx context.Context, cfg Config, logger *slog.Logger) (closingStore, translog.Storage, error) {
	if cfg.PostgresStore() {
		st, err := postgres.Open(ctx, cfg.Store, logger)
		if err != nil {
			return nil, nil, err
		}
		return st, st.KTLog(), nil
	}
	st, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "bastion.db"), logger)
	if err != nil {
		return nil, nil, err
	}
	return st, st.KTLog(), nil
}

func storeKind(cfg Config) string {
	if cfg.PostgresStore() {
		return "postgres"
	}
	return "sqlite"
}

func newSMS(cfg Config) (SMS, error) {
	switch cfg.SMS {
	case "webhook":
		secret, err := os.ReadFile(cfg.SMSWebhookSecretFile)
		if err != nil {
			return nil, fmt.Errorf("reading SMS webhook secret: %w", err)
		}
		secret = []byte(strings.TrimSpace(string(secret)))
		if len(secret) < 16 {
			return nil, errors.New("SMS webhook secret is shorter than 16 bytes")
		}
		return NewWebhookSMS(cfg.SMSWebhookURL, secret), nil
	default:
		out := cfg.DevConsole
		if out == nil {
			out = os.Stderr
		}
		return NewDevSMS(out), nil
	}
}

// addrScrubber carries net/http's own error log ("TLS handshake error from 1.2.3.4:5")
// into slog with every address replaced, since logs never hold an IP.
type addrScrubber struct{ log *slog.Logger }

var addrRE = regexp.MustCompile(`\[[0-9a-fA-F:.%\w]*\](:\d+)?|\b\d{1,3}(\.\d{1,3}){3}(:\d+)?|\b[0-9a-fA-F]{0,4}(:[0-9a-fA-F]{0,4}){2,7}\b`)

func (a *addrScrubber) Write(p []byte) (int, error) {
	msg := addrRE.ReplaceAllString(strings.TrimSpace(string(p)), "[addr]")
	a.log.Warn("http server", "msg", msg)
	return len(p), nil
}

var _ io.Writer = (*addrScrubber)(nil)

// RunJanitor enforces retention every JanitorInterval until ctx is done: it expires
// envelopes past the queue TTL, prunes the connection log beyond its window (all of it
// when the window is 0 days), deletes expired verification sessions and forgets refilled
// rate-limit buckets.
func (s *Server) RunJanitor(ctx context.Context) {
	t := time.NewTicker(s.cfg.JanitorInterval)
	defer t.Stop()
	for {
		s.janitor(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) janitor(ctx context.Context) {
	now := s.now()
	if n, err := s.store.ExpireBefore(ctx, now.Add(-s.cfg.QueueTTL)); err != nil {
		s.logJanitor(ctx, "expiring envelopes", err)
	} else if n > 0 {
		s.metrics.expired.Add(float64(n))
		s.log.Info("expired envelopes", "count", n)
	}
	// With 0 days, rows stored under an earlier setting go too.
	cutoff := now.Add(-time.Duration(s.cfg.IPRetentionDays) * 24 * time.Hour)
	if s.cfg.IPRetentionDays == 0 {
		cutoff = now.Add(time.Hour)
	}
	if _, err := s.store.PruneConnections(ctx, cutoff); err != nil {
		s.logJanitor(ctx, "pruning connection log", err)
	}
	if _, err := s.store.PruneVerifications(ctx, now); err != nil {
		s.logJanitor(ctx, "pruning verifications", err)
	}
	for _, l := range []*limiter{s.verifyNumber, s.verifyPrefix, s.verifyIP, s.bundlePair, s.lookup} {
		l.sweep()
	}
	if s.lookup.shared != nil { // one table for every limiter
		if _, err := s.lookup.shared.PruneRateLimits(ctx, now); err != nil {
			s.logJanitor(ctx, "pruning rate limits", err)
		}
	}
}

func (s *Server) logJanitor(ctx context.Context, what string, err error) {
	if ctx.Err() == nil {
		s.log.Error("janitor", "task", what, "err", err)
	}
}
