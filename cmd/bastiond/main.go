// Command bastiond is the Bastion server: it registers accounts by phone number, hands
// out prekey bundles and stores and forwards end-to-end encrypted envelopes, holding
// nothing it could decrypt. See docs/api.md for its API and DESIGN.md for what it stores.
//
// Usage:
//
//	bastiond serve [flags]
//	bastiond legal COMMAND [flags]   the lawful-request desk (docs/lawful-access.md)
//	bastiond market COMMAND [flags]  withdraw the service from a country, or restore it
//	bastiond admin reports [...]     review reports of public channel posts
//
// Every flag can also be given as a BASTION_* environment variable (--queue-ttl is
// BASTION_QUEUE_TTL); a flag on the command line wins. With no flags it serves plain
// HTTP on 127.0.0.1:8080 from SQLite in ./bastion-data, with the development SMS
// provider that prints codes on standard error. Logs are JSON on standard output.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/bastionchat/bastion/internal/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `bastiond is the Bastion server.

Usage:
  bastiond serve [flags]   run the server (bastiond serve --help lists the flags)
  bastiond legal COMMAND   the lawful-request desk (bastiond legal help)
  bastiond market COMMAND  withdraw the service from a country, or restore it
  bastiond admin reports   review reports of public channel posts (bastiond admin help)
  bastiond help            show this help
`

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], getenv, stdout, stderr)
	case "legal":
		return legalCmd(args[1:], getenv, stdout, stderr)
	case "market":
		return marketCmd(args[1:], getenv, stdout, stderr)
	case "admin":
		return adminCmd(args[1:], getenv, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "bastiond: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// envName is the environment variable for a flag: --ip-retention-days is
// BASTION_IP_RETENTION_DAYS.
func envName(flagName string) string {
	return "BASTION_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func serveFlags(cfg *server.Config, logLevel *slog.Level) *flag.FlagSet {
	fs := flag.NewFlagSet("bastiond serve", flag.ContinueOnError)
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "`address` to listen on (host:port)")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data `directory`: the SQLite database, the key files every node shares, the legal desk and the certificate cache")
	fs.StringVar(&cfg.Store, "store", cfg.Store,
		"database: sqlite (in --data) or a postgres://user@host/db `URL` shared by several nodes")
	fs.StringVar(&cfg.NATS, "nats", cfg.NATS,
		"NATS `URL` (comma-separated for a cluster) carrying wake-ups between nodes; needs a postgres --store")
	fs.BoolVar(&cfg.LegalDesk, "legal-desk", cfg.LegalDesk,
		"run the lawful-request desk here; of several nodes exactly one does (set false on the others)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "TLS certificate chain `file` (PEM)")
	fs.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "TLS private key `file` (PEM)")
	fs.StringVar(&cfg.AutocertDomain, "autocert-domain", cfg.AutocertDomain,
		"get certificates for this `domain` from Let's Encrypt (TLS-ALPN-01: listen on :443)")
	fs.BoolVar(&cfg.InsecureHTTP, "insecure-http", cfg.InsecureHTTP,
		"allow plain HTTP on a non-loopback address (only behind a TLS-terminating proxy)")
	fs.StringVar(&cfg.SMS, "sms", cfg.SMS, "SMS `provider`: dev (prints codes on standard error) or webhook")
	fs.StringVar(&cfg.SMSWebhookURL, "sms-webhook-url", cfg.SMSWebhookURL, "`URL` the webhook provider POSTs {number, code, sent_at} to")
	fs.StringVar(&cfg.SMSWebhookSecretFile, "sms-webhook-secret-file", cfg.SMSWebhookSecretFile,
		"`file` holding the webhook's HMAC-SHA256 secret (at least 16 bytes)")
	fs.DurationVar(&cfg.QueueTTL, "queue-ttl", cfg.QueueTTL, "delete queued envelopes older than this `duration`")
	fs.IntVar(&cfg.IPRetentionDays, "ip-retention-days", cfg.IPRetentionDays,
		"keep the connection log (account, IP) this many `days`; 0 records nothing")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long a graceful shutdown may take")
	fs.DurationVar(&cfg.JanitorInterval, "janitor-interval", cfg.JanitorInterval, "how often retention is enforced")
	l := &cfg.Limits
	fs.Int64Var(&l.MaxSendBytes, "max-send-bytes", l.MaxSendBytes, "largest send request `bytes` (envelopes are 96 KiB each at most)")
	fs.Int64Var(&l.MaxWSMessage, "ws-max-message", l.MaxWSMessage, "largest client WebSocket message in `bytes`; larger closes with 1009")
	fs.DurationVar(&l.WSPingInterval, "ws-ping-interval", l.WSPingInterval, "WebSocket ping interval; two silent intervals close the connection")
	fs.DurationVar(&l.WSWriteTimeout, "ws-write-timeout", l.WSWriteTimeout, "drop a WebSocket peer that does not read a frame within this")
	fs.DurationVar(&l.CodeLifetime, "code-lifetime", l.CodeLifetime, "verification code lifetime")
	fs.IntVar(&l.CodeAttempts, "code-attempts", l.CodeAttempts, "wrong codes allowed per verification session")
	fs.IntVar(&l.MaxPreKeys, "max-prekeys", l.MaxPreKeys, "one-time prekeys of each kind per upload")
	fs.Var(&l.VerifyPerNumber, "rate-verify-number", "code requests per phone number (`N/duration`)")
	fs.Var(&l.VerifyPerPrefix, "rate-verify-prefix", "code requests per block of 10,000 numbers, against SMS pumping (`N/duration`)")
	fs.Var(&l.VerifyPerIP, "rate-verify-ip", "code requests per client address, IPv6 per /64 (`N/duration`)")
	fs.Var(&l.BundlePerPair, "rate-bundle-pair", "bundle fetches per requester and target account (`N/duration`)")
	fs.Var(&l.LookupPerAcct, "rate-lookup", "directory lookups per account (`N/duration`)")
	fs.TextVar(logLevel, "log-level", *logLevel, "log `level`: debug, info, warn or error")
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: bastiond serve [flags]\n\n")
		fmt.Fprintf(out, "Serves the Bastion API. Every flag can also be set with the environment variable\n")
		fmt.Fprintf(out, "shown after it; a flag on the command line wins. Logs are JSON on standard output.\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			name, help := flag.UnquoteUsage(f)
			fmt.Fprintf(out, "  --%s", f.Name)
			if name != "" {
				fmt.Fprintf(out, " %s", name)
			}
			fmt.Fprintf(out, "  (%s)\n    \t%s", envName(f.Name), help)
			if f.DefValue != "" && f.DefValue != "false" {
				fmt.Fprintf(out, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(out)
		})
	}
	return fs
}

// parseServe turns environment and arguments into a validated Config. errHelp means
// --help was shown.
func parseServe(args []string, getenv func(string) string, stderr io.Writer) (server.Config, slog.Level, error) {
	cfg := server.DefaultConfig()
	cfg.DevConsole = stderr
	level := slog.LevelInfo
	fs := serveFlags(&cfg, &level)
	fs.SetOutput(stderr)
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s: %w", envName(f.Name), err)
			}
		}
	})
	if envErr != nil {
		return cfg, level, envErr
	}
	if err := fs.Parse(args); err != nil {
		return cfg, level, err
	}
	if fs.NArg() > 0 {
		return cfg, level, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return cfg, level, cfg.Validate()
}

func serve(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, level, err := parseServe(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		// The flag package has already explained a bad flag; say the rest.
		if !strings.HasPrefix(err.Error(), "flag provided but not defined") && !strings.HasPrefix(err.Error(), "invalid value") {
			fmt.Fprintf(stderr, "bastiond serve: %v\n", err)
		}
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := server.Run(ctx, cfg, logger); err != nil {
		logger.Error("bastiond stopped", "err", err)
		return 1
	}
	return 0
}
