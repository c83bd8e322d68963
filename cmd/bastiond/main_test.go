package main

import (
	"flag"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bastionchat/bastion/internal/server"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseServe(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(server.Config, slog.Level) bool
		err   string
	}{
		{"defaults", nil, nil, func(c server.Config, l slog.Level) bool {
			d := server.DefaultConfig()
			return c.Listen == "127.0.0.1:8080" && c.DataDir == "./bastion-data" && c.SMS == "dev" &&
				c.QueueTTL == 720*time.Hour && c.IPRetentionDays == 7 && c.Limits.VerifyPerNumber == d.Limits.VerifyPerNumber && l == slog.LevelInfo
		}, ""},
		{"flags", []string{"--listen", "127.0.0.1:9", "--queue-ttl", "48h", "--ip-retention-days", "0", "--rate-bundle-pair", "3/1m", "--log-level", "debug"}, nil,
			func(c server.Config, l slog.Level) bool {
				return c.Listen == "127.0.0.1:9" && c.QueueTTL == 48*time.Hour && c.IPRetentionDays == 0 &&
					c.Limits.BundlePerPair == server.Rate{N: 3, Per: time.Minute} && l == slog.LevelDebug
			}, ""},
		{"environment", nil, map[string]string{"BASTION_DATA": "/var/lib/bastion", "BASTION_CODE_ATTEMPTS": "3", "BASTION_INSECURE_HTTP": "true", "BASTION_LISTEN": ":8080"},
			func(c server.Config, _ slog.Level) bool {
				return c.DataDir == "/var/lib/bastion" && c.Limits.CodeAttempts == 3 && c.InsecureHTTP && c.Listen == ":8080"
			}, ""},
		{"flag wins over environment", []string{"--data", "/srv/b"}, map[string]string{"BASTION_DATA": "/var/lib/bastion"},
			func(c server.Config, _ slog.Level) bool { return c.DataDir == "/srv/b" }, ""},
		{"bad environment value", nil, map[string]string{"BASTION_QUEUE_TTL": "a month"}, nil, "BASTION_QUEUE_TTL"},
		{"plain HTTP off loopback", []string{"--listen", ":8080"}, nil, nil, "not loopback"},
		{"webhook needs a URL", []string{"--sms", "webhook"}, nil, nil, "sms-webhook-url"},
		{"postgres and NATS", []string{"--store", "postgres://bastion@127.0.0.1/bastion", "--nats", "nats://127.0.0.1:4222", "--legal-desk=false"}, nil,
			func(c server.Config, _ slog.Level) bool {
				return c.Store == "postgres://bastion@127.0.0.1/bastion" && c.NATS == "nats://127.0.0.1:4222" && !c.LegalDesk
			}, ""},
		{"store from environment", nil, map[string]string{"BASTION_STORE": "postgresql:///bastion", "BASTION_NATS": "nats://127.0.0.1:4222"},
			func(c server.Config, _ slog.Level) bool {
				return c.PostgresStore() && c.NATS == "nats://127.0.0.1:4222" && c.LegalDesk
			}, ""},
		{"explicit sqlite", []string{"--store", "sqlite"}, nil,
			func(c server.Config, _ slog.Level) bool { return !c.PostgresStore() }, ""},
		{"NATS with SQLite", []string{"--nats", "nats://127.0.0.1:4222"}, nil, nil, "needs a PostgreSQL --store"},
		{"unknown store", []string{"--store", "mysql://u:secret@h/db"}, nil, nil, "mysql://..."},
		{"stray argument", []string{"now"}, nil, nil, "unexpected argument"},
		{"unknown flag", []string{"--frobnicate"}, nil, nil, "not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			cfg, level, err := parseServe(tt.args, env(tt.env), &stderr)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseServe(%q) = %v, want an error containing %q", tt.args, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseServe(%q) = %v", tt.args, err)
			}
			if !tt.check(cfg, level) {
				t.Errorf("parseServe(%q) = %+v, level %v; not what the flags and environment say", tt.args, cfg, level)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := run([]string{"serve", "--help"}, env(nil), &stdout, &stderr); code != 0 {
		t.Fatalf("bastiond serve --help exit = %d, want 0", code)
	}
	help := stderr.String()
	// Every flag is listed with its environment variable.
	fs := serveFlags(new(server.Config), new(slog.Level))
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(help, "--"+f.Name) || !strings.Contains(help, envName(f.Name)) {
			t.Errorf("--help lacks --%s or %s", f.Name, envName(f.Name))
		}
	})
	for _, tt := range []struct {
		args []string
		code int
	}{{nil, 2}, {[]string{"help"}, 0}, {[]string{"frobnicate"}, 2}, {[]string{"serve", "--listen", "0.0.0.0:80"}, 2}} {
		if code := run(tt.args, env(nil), &stdout, &stderr); code != tt.code {
			t.Errorf("bastiond %q exit = %d, want %d", tt.args, code, tt.code)
		}
	}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{"listen": "BASTION_LISTEN", "ip-retention-days": "BASTION_IP_RETENTION_DAYS", "sms-webhook-secret-file": "BASTION_SMS_WEBHOOK_SECRET_FILE"} {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}
