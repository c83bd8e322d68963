package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bastionchat/bastion/internal/legal"
	"github.com/bastionchat/bastion/internal/server"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startServer runs the real server on a loopback port with its data in dataDir and
// returns its URL.
func startServer(t *testing.T, dataDir string) string {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.DataDir = dataDir
	cfg.Listen = "127.0.0.1:0"
	cfg.DevConsole = io.Discard
	logs := &syncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, cfg, slog.New(slog.NewJSONHandler(logs, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server.Run = %v", err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(logs.String(), "\n") {
			var l struct{ Msg, Listen string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving" {
				return "http://" + l.Listen
			}
		}
		select {
		case err := <-done:
			t.Fatalf("server stopped: %v\n%s", err, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("server did not start:\n%s", logs.String())
	return ""
}

// shellWords splits a command line as sh would for the plain commands in the docs:
// words, "double" and 'single' quotes, and a final "> file".
func shellWords(line string) (args []string, redirect string) {
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		args = append(args, cur.String())
	}
	if n := len(args); n >= 2 && args[n-2] == ">" {
		return args[:n-2], args[n-1]
	}
	return args, ""
}

// docBlocks returns the bodies of the fenced blocks of a language in a Markdown file.
func docBlocks(t *testing.T, doc, lang string) []string {
	t.Helper()
	var blocks []string
	var cur []string
	in := false
	for _, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case !in && trimmed == "```"+lang:
			in, cur = true, nil
		case in && trimmed == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n"))
		case in:
			cur = append(cur, line)
		}
	}
	return blocks
}

// TestLawfulAccessDocProcedure runs every command of docs/lawful-access.md's sh blocks,
// as printed, against a real server (started by the test instead of "bastiond serve").
func TestLawfulAccessDocProcedure(t *testing.T) {
	raw, err := os.ReadFile("../../docs/lawful-access.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	orders := docBlocks(t, doc, "json")
	if len(orders) == 0 {
		t.Fatal("docs/lawful-access.md has no order.json example")
	}
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("order.json", []byte(orders[0]), 0o600); err != nil {
		t.Fatal(err)
	}
	url := startServer(t, "bastion-data")
	getenv := env(nil)

	ran := 0
	for _, block := range docBlocks(t, doc, "sh") {
		for _, line := range strings.Split(block, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			// The doc's setup step builds the binaries and puts them on the PATH; this
			// test runs bastiond in-process instead, as it runs the server itself.
			if line == "go build -o bin/ ./cmd/bastiond ./cmd/bastion" || line == `export PATH="$PWD/bin:$PATH"` {
				continue
			}
			args, redirect := shellWords(line)
			if args[0] != "bastiond" {
				t.Fatalf("doc command %q does not start with bastiond", line)
			}
			if args[1] == "serve" {
				continue // the test runs the server
			}
			for i, a := range args {
				args[i] = strings.ReplaceAll(a, "http://127.0.0.1:8080", url)
			}
			var stdout, stderr bytes.Buffer
			if code := run(args[1:], getenv, &stdout, &stderr); code != 0 {
				t.Fatalf("%s\n= exit %d\nstdout: %s\nstderr: %s", line, code, stdout.String(), stderr.String())
			}
			if redirect != "" {
				if err := os.WriteFile(redirect, stdout.Bytes(), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ran++
		}
	}
	if ran < 12 {
		t.Errorf("ran %d commands from the doc, want the whole procedure", ran)
	}

	// The procedure leaves a verified package, a rejected order and a restored market.
	pkg, err := os.ReadFile("pkg.json")
	if err != nil {
		t.Fatal(err)
	}
	var p legal.Package
	if err := json.Unmarshal(pkg, &p); err != nil || len(p.Targets) != 1 || p.CategoriesNotHeld[0] != "message_content" {
		t.Errorf("pkg.json = %s (%v), want one target and message_content not given", pkg, err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"legal", "show", "2", "--token-file", "alice.token"}, getenv, &stdout, &stderr); code != 0 {
		t.Fatalf("legal show 2 = %d: %s", code, stderr.String())
	}
	var r legal.Record
	json.Unmarshal(stdout.Bytes(), &r)
	if r.Outcome != legal.OutcomeRejected {
		t.Errorf("order 2 outcome = %q, want rejected", r.Outcome)
	}
}

func TestLegalCommandErrors(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	url := startServer(t, data)
	tokFile := filepath.Join(dir, "alice.token")
	var out, errb bytes.Buffer
	if code := run([]string{"legal", "operator", "add", "alice", "--data", data}, env(nil), &out, &errb); code != 0 {
		t.Fatalf("operator add = %d: %s", code, errb.String())
	}
	os.WriteFile(tokFile, out.Bytes(), 0o600)
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"jurisdiction":"DE","date_issued":"2026-01-01","categories":["everything"]}`), 0o600)

	tests := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"no token", []string{"legal", "list", "--data", data}, nil, 1, "no operator token"},
		{"bad token", []string{"legal", "list", "--data", data}, map[string]string{"BASTION_LEGAL_TOKEN": "blo_nope"}, 1, "unknown operator token"},
		{"no server", []string{"legal", "list", "--data", dir, "--token-file", tokFile}, nil, 1, "is bastiond serve running"},
		{"unknown category", []string{"legal", "intake", "--file", filepath.Join(dir, "bad.json"), "--data", data, "--token-file", tokFile}, nil, 1, "unknown data category"},
		{"intake without file", []string{"legal", "intake", "--data", data, "--token-file", tokFile}, nil, 2, "--file"},
		{"reject without reason", []string{"legal", "reject", "1", "--data", data, "--token-file", tokFile}, nil, 2, "--reason"},
		{"bad id", []string{"legal", "approve", "x", "--data", data, "--token-file", tokFile}, nil, 2, "not a positive number"},
		{"missing order", []string{"legal", "approve", "7", "--data", data, "--token-file", tokFile}, nil, 1, "no such order"},
		{"unknown command", []string{"legal", "subpoena"}, nil, 2, "unknown command"},
		{"withdraw without reason", []string{"market", "withdraw", "DE", "--data", data, "--token-file", tokFile}, nil, 2, "--reason"},
		{"withdraw bad country", []string{"market", "withdraw", "XX", "--reason", "r", "--data", data, "--token-file", tokFile}, nil, 1, "phone numbers"},
		{"restore not withdrawn", []string{"market", "restore", "FR", "--data", data, "--token-file", tokFile}, nil, 1, "not withdrawn"},
		{"verify bad key", []string{"legal", "verify", filepath.Join(dir, "bad.json"), "--key", "AAAA"}, nil, 1, ""},
		{"log verify without a log", []string{"legal", "log", "verify", "--data", dir, "--key", "gXAiF42U3JEv60+SXDA9P0zsDwDOMY4FcH/YM81t78M="}, nil, 1, "no legal log here"},
		{"log verify wrong key", []string{"legal", "log", "verify", "--server", url, "--key", "gXAiF42U3JEv60+SXDA9P0zsDwDOMY4FcH/YM81t78M="}, nil, 1, "verif"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tt.args, env(tt.env), &out, &errb)
			if code != tt.code || !strings.Contains(errb.String(), tt.want) {
				t.Errorf("bastiond %s = %d %q, want %d with %q", strings.Join(tt.args, " "), code, errb.String(), tt.code, tt.want)
			}
		})
	}
}
