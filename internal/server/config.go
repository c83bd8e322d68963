package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config is everything bastiond serve can be told. [DefaultConfig] holds every default in
// one place; cmd/bastiond maps each field to a flag and a BASTION_* variable.
type Config struct {
	Listen  string // host:port
	DataDir string // SQLite database, key files, legal desk, autocert cache
	// Store selects the database: "" or "sqlite" for SQLite in DataDir (one node), or a
	// postgres:// (postgresql://) URL that several nodes share.
	Store string
	// NATS is the URL (comma-separated for a cluster) of the NATS server that carries
	// wake-ups between nodes; only with a PostgreSQL store. Empty: wake-ups stay in this
	// process.
	NATS string
	// LegalDesk runs the lawful-request desk (its own SQLite database in DataDir) in this
	// process. Of several nodes exactly one runs it; the others answer its endpoints
	// with 404 and do not see market withdrawals (docs/operations.md).
	LegalDesk      bool
	TLSCert        string // PEM certificate chain file
	TLSKey         string // PEM private key file
	AutocertDomain string // obtain certificates from Let's Encrypt for this name
	// InsecureHTTP allows plain HTTP on a non-loopback address (behind a TLS-terminating
	// proxy, say). Without it plain HTTP is refused anywhere but loopback.
	InsecureHTTP bool

	SMS                  string // "dev" or "webhook"
	SMSWebhookURL        string
	SMSWebhookSecretFile string // the HMAC secret, read from a file so it stays out of ps

	QueueTTL        time.Duration // queued envelopes older than this are deleted
	IPRetentionDays int           // connection-log window; 0 records nothing

	ShutdownTimeout time.Duration
	JanitorInterval time.Duration

	Limits Limits

	// DevConsole receives the development SMS provider's codes (nil: standard error).
	// Codes never go through the JSON log.
	DevConsole io.Writer
}

// Limits are the peer-facing limits and rate limits.
type Limits struct {
	MaxSendBytes   int64 // a whole PUT /v1/messages request body
	MaxWSMessage   int64 // one client WebSocket message; larger closes with 1009
	CodeLifetime   time.Duration
	CodeAttempts   int // wrong codes allowed per verification session
	MaxPreKeys     int // one-time keys of each kind per upload
	WSPingInterval time.Duration
	WSWriteTimeout time.Duration

	VerifyPerNumber Rate // code requests per phone number
	VerifyPerPrefix Rate // code requests per number block (against SMS pumping)
	VerifyPerIP     Rate // code requests per client address
	BundlePerPair   Rate // bundle fetches per (requester, target account)
	LookupPerAcct   Rate // directory lookups per requesting account
}

// DefaultConfig returns the defaults: SQLite in ./bastion-data, plain HTTP on loopback,
// the development SMS provider.
func DefaultConfig() Config {
	return Config{
		Listen:          "127.0.0.1:8080",
		DataDir:         "./bastion-data",
		LegalDesk:       true,
		SMS:             "dev",
		QueueTTL:        30 * 24 * time.Hour, // DESIGN.md: 30-day queue TTL
		IPRetentionDays: 7,
		ShutdownTimeout: 15 * time.Second,
		JanitorInterval: time.Minute,
		Limits: Limits{
			// 96 KiB envelopes, base64 (4/3) in JSON, to a handful of devices.
			MaxSendBytes: 4 << 20,
			// Clients only send acks; 64 KiB holds ~1,500 ids.
			MaxWSMessage: 64 << 10,
			CodeLifetime: 10 * time.Minute,
			// 5 guesses at 1 in 10^6 each, per session; sessions are rate limited per number.
			CodeAttempts:   5,
			MaxPreKeys:     100,
			WSPingInterval: 30 * time.Second,
			WSWriteTimeout: 10 * time.Second,

			VerifyPerNumber: Rate{N: 5, Per: time.Hour},
			// A block of 10,000 numbers: a pumping attack walks a premium range.
			VerifyPerPrefix: Rate{N: 20, Per: time.Hour},
			VerifyPerIP:     Rate{N: 20, Per: time.Hour},
			// A sender needs one bundle per contact per session setup; draining takes many.
			BundlePerPair: Rate{N: 10, Per: time.Hour},
			LookupPerAcct: Rate{N: 200, Per: time.Hour},
		},
	}
}

// Validate reports the first thing wrong with c.
func (c *Config) Validate() error {
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", c.Listen, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("listen address %q: bad port", c.Listen)
	}
	if c.DataDir == "" {
		return errors.New("data directory is empty")
	}
	switch {
	case c.Store == "" || c.Store == "sqlite":
		if c.NATS != "" {
			// A SQLite file cannot be shared between nodes, so there is nobody to wake.
			return errors.New("--nats needs a PostgreSQL --store: SQLite serves one node only")
		}
	case c.PostgresStore():
	default:
		return fmt.Errorf("unknown store %q (want sqlite or a postgres:// URL)", redactURL(c.Store))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if c.TLSCert != "" && c.AutocertDomain != "" {
		return errors.New("--tls-cert and --autocert-domain exclude each other")
	}
	if !c.TLS() && !c.InsecureHTTP && !isLoopback(host) {
		return fmt.Errorf("plain HTTP on %q is not loopback: give --tls-cert/--tls-key or --autocert-domain, or --insecure-http behind a TLS proxy", c.Listen)
	}
	switch c.SMS {
	case "dev":
	case "webhook":
		u, err := url.Parse(c.SMSWebhookURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("--sms webhook needs --sms-webhook-url, an http(s) URL")
		}
		if c.SMSWebhookSecretFile == "" {
			return errors.New("--sms webhook needs --sms-webhook-secret-file")
		}
	default:
		return fmt.Errorf("unknown SMS provider %q (want dev or webhook)", c.SMS)
	}
	if c.QueueTTL <= 0 {
		return errors.New("queue TTL must be positive")
	}
	if c.IPRetentionDays < 0 {
		return errors.New("IP retention days must be 0 or more")
	}
	if c.ShutdownTimeout <= 0 || c.JanitorInterval <= 0 {
		return errors.New("shutdown timeout and janitor interval must be positive")
	}
	l := c.Limits
	if l.MaxSendBytes < 1<<20 || l.MaxWSMessage < 1<<10 {
		return errors.New("send limit must be at least 1 MiB and WebSocket message limit at least 1 KiB")
	}
	if l.CodeLifetime <= 0 || l.CodeAttempts <= 0 || l.MaxPreKeys <= 0 {
		return errors.New("code lifetime, code attempts and prekeys per upload must be positive")
	}
	if l.WSPingInterval <= 0 || l.WSWriteTimeout <= 0 {
		return errors.New("WebSocket ping interval and write timeout must be positive")
	}
	for name, r := range map[string]Rate{
		"verify-per-number": l.VerifyPerNumber, "verify-per-prefix": l.VerifyPerPrefix,
		"verify-per-ip": l.VerifyPerIP, "bundle-per-pair": l.BundlePerPair, "lookup-per-account": l.LookupPerAcct,
	} {
		if r.N <= 0 || r.Per <= 0 {
			return fmt.Errorf("rate %s must be N/duration with N and duration positive", name)
		}
	}
	return nil
}

// PostgresStore reports whether c.Store names a PostgreSQL database.
func (c *Config) PostgresStore() bool {
	return strings.HasPrefix(c.Store, "postgres://") || strings.HasPrefix(c.Store, "postgresql://")
}

// redactURL drops anything after the scheme, since a store URL may carry a password.
func redactURL(s string) string {
	if scheme, _, ok := strings.Cut(s, "://"); ok {
		return scheme + "://..."
	}
	return s
}

// TLS reports whether the server terminates TLS itself.
func (c *Config) TLS() bool { return c.TLSCert != "" || c.AutocertDomain != "" }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// Rate is a rate limit: at most N events in any window of Per, refilled evenly. Its text
// form is "N/duration", e.g. "5/1h".
type Rate struct {
	N   int
	Per time.Duration
}

// ParseRate decodes "N/duration".
func ParseRate(s string) (Rate, error) {
	n, d, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want N/duration, e.g. 5/1h", s)
	}
	count, err := strconv.Atoi(n)
	if err != nil || count <= 0 {
		return Rate{}, fmt.Errorf("rate %q: count must be a positive integer", s)
	}
	per, err := time.ParseDuration(d)
	if err != nil || per <= 0 {
		return Rate{}, fmt.Errorf("rate %q: duration must be positive, e.g. 1h", s)
	}
	return Rate{N: count, Per: per}, nil
}

// String returns the "N/duration" form.
func (r Rate) String() string { return fmt.Sprintf("%d/%s", r.N, r.Per) }

// Set implements flag.Value.
func (r *Rate) Set(s string) error {
	v, err := ParseRate(s)
	if err != nil {
		return err
	}
	*r = v
	return nil
}
