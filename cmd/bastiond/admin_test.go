package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/internal/legal"
	"github.com/bastionchat/bastion/internal/store"
	"github.com/bastionchat/bastion/internal/store/sqlite"
)

// seedReports writes a public channel with two posts and reports of them into the
// running server's database, as the report endpoint would (that endpoint has its own
// tests in internal/server).
func seedReports(t *testing.T, data string, reasons ...string) (channel.ID, []*channel.Post, []uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(data, "bastion.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	owner, _ := channel.GenerateSigningKey(nil)
	now := time.Now().UTC()
	g, err := channel.Create(owner, channel.Info{Handle: "reported_news", Title: "Reported"}, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := channel.NewVerifier(g)
	state, _ := v.MarshalBinary()
	if err := st.CreateChannel(ctx, store.Channel{ID: g.Channel(), Handle: "reported_news", Genesis: g.Bytes(), NewestHash: g.Hash(), State: state, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	var posts []*channel.Post
	for _, body := range []string{"an unlawful post", "a lawful post"} {
		p, err := v.Next(owner, channel.Draft{Kind: channel.KindPost, Body: []byte(body), Time: now})
		if err != nil {
			t.Fatal(err)
		}
		v.Accept(p)
		state, _ := v.MarshalBinary()
		if err := st.AppendChannelPost(ctx, store.ChannelPost{Channel: g.Channel(), Seq: p.Seq(), Post: p.Bytes()}, p.Hash(), state); err != nil {
			t.Fatal(err)
		}
		posts = append(posts, p)
	}
	var ids []uuid.UUID
	for i, reason := range reasons {
		id := uuid.New()
		if err := st.AddChannelReport(ctx, store.ChannelReport{ID: id, Channel: g.Channel(), Seq: 1, Reason: reason,
			Text: "report text", CreatedAt: now.Add(time.Duration(i) * time.Second).Truncate(time.Second), Status: store.ReportOpen}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return g.Channel(), posts, ids
}

// TestAdminReportsCommands runs "bastiond admin reports" against a running server with
// a real operator token: list, show, restrict, the duplicate, remove, and the counts on
// the public report.
func TestAdminReportsCommands(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	url := startServer(t, data)
	getenv := env(nil)
	tokFile := filepath.Join(dir, "op.token")
	var out, errb bytes.Buffer
	if code := run([]string{"legal", "operator", "add", "erin", "--data", data}, getenv, &out, &errb); code != 0 {
		t.Fatalf("operator add = %d: %s", code, errb.String())
	}
	os.WriteFile(tokFile, out.Bytes(), 0o600)
	ch, posts, ids := seedReports(t, data, "illegal", "illegal", "terms")

	bastiond := func(args ...string) (string, string, int) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(append(append([]string{"admin", "reports"}, args...), "--data", data, "--token-file", tokFile), getenv, &stdout, &stderr)
		return stdout.String(), stderr.String(), code
	}
	mustRun := func(args ...string) string {
		t.Helper()
		stdout, stderr, code := bastiond(args...)
		if code != 0 {
			t.Fatalf("bastiond admin reports %s = %d: %s", strings.Join(args, " "), code, stderr)
		}
		return stdout
	}

	list := mustRun()
	for _, id := range ids {
		if !strings.Contains(list, id.String()) {
			t.Errorf("list lacks report %s:\n%s", id, list)
		}
	}
	var rec legal.ReportRecord
	json.Unmarshal([]byte(mustRun("show", ids[0].String())), &rec)
	if rec.Post == nil || rec.Post.Body != "an unlawful post" || rec.Reason != "illegal" || rec.Number == 0 {
		t.Errorf("show = %+v, want the report with its post", rec)
	}

	statement := "Unlawful in Germany (StGB 86a). Appeal: appeals@example.org"
	mustRun("restrict", ids[0].String(), "--country", "DE", "--reason", statement)
	mustRun("dismiss", ids[1].String(), "--reason", "same post, already restricted")
	mustRun("remove", ids[2].String(), "--reason", "Removed: against the terms, section 2.")

	all := mustRun("list", "--all")
	if !strings.Contains(all, "duplicate") || !strings.Contains(all, "restricted") || !strings.Contains(all, "removed") {
		t.Errorf("list --all = \n%s\nwant the three decisions", all)
	}
	if open := mustRun("list"); strings.Count(open, "\n") != 1 {
		t.Errorf("list after the decisions = \n%s\nwant only the header", open)
	}

	// The notices are in the store, signed by the server's key over the post's hash.
	st, err := sqlite.Open(context.Background(), filepath.Join(data, "bastion.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := st.ChannelNotices(context.Background(), ch)
	st.Close()
	if err != nil || len(ns) != 2 {
		t.Fatalf("notices = %d, %v; want the restriction and the removal", len(ns), err)
	}
	var key struct {
		Ed25519PublicKey []byte `json:"ed25519_public_key"`
	}
	if err := getJSON(context.Background(), url, "/v1/legal/key", &key); err != nil {
		t.Fatal(err)
	}
	for _, sn := range ns {
		n, err := channel.ParseNotice(sn.Notice)
		if err != nil || !n.Verify(ed25519.PublicKey(key.Ed25519PublicKey)) || n.Post != posts[0].Hash() {
			t.Errorf("notice %+v (%v) does not verify under the server key over post 1's hash", n, err)
		}
	}

	var rep legal.Report
	if err := getJSON(context.Background(), url, "/v1/transparency", &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.ChannelNotices) != 1 {
		t.Fatalf("transparency = %+v, want one period of channel notices", rep.ChannelNotices)
	}
	s := rep.ChannelNotices[0]
	if s.Received != 3 || s.Actions["restricted"] != 1 || s.Actions["duplicate"] != 1 || s.Actions["removed"] != 1 || s.RestrictedByCountry["DE"] != 1 {
		t.Errorf("transparency channel notices = %+v, want 3 received: restricted in DE, duplicate, removed", s)
	}
	// The operator's log verifier recomputes the same counts from the public log.
	var vout, verr bytes.Buffer
	if code := run([]string{"legal", "log", "verify", "--server", url, "--data", data}, getenv, &vout, &verr); code != 0 {
		t.Fatalf("legal log verify = %d: %s", code, verr.String())
	}
	if !strings.Contains(vout.String(), `"notices_received": 3`) {
		t.Errorf("legal log verify output lacks the channel notices:\n%s", vout.String())
	}

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name string
			args []string
			env  map[string]string
			code int
			want string
		}{
			{"bad token", []string{"admin", "reports", "--data", data}, map[string]string{"BASTION_LEGAL_TOKEN": "blo_nope"}, 1, "unknown operator token"},
			{"no token", []string{"admin", "reports", "list", "--data", data}, nil, 1, "no operator token"},
			{"decided already", []string{"admin", "reports", "dismiss", ids[0].String(), "--reason", "r", "--data", data, "--token-file", tokFile}, nil, 1, "already decided"},
			{"unknown report", []string{"admin", "reports", "show", uuid.NewString(), "--data", data, "--token-file", tokFile}, nil, 1, "no such report"},
			{"not a uuid", []string{"admin", "reports", "show", "7", "--data", data, "--token-file", tokFile}, nil, 2, "not a UUID"},
			{"restrict without country", []string{"admin", "reports", "restrict", ids[0].String(), "--reason", "r", "--data", data, "--token-file", tokFile}, nil, 2, "--country"},
			{"remove without reason", []string{"admin", "reports", "remove", ids[0].String(), "--data", data, "--token-file", tokFile}, nil, 2, "--reason"},
			{"country on remove", []string{"admin", "reports", "remove", ids[0].String(), "--country", "DE", "--reason", "r", "--data", data, "--token-file", tokFile}, nil, 2, "only to restrict"},
			{"unknown subcommand", []string{"admin", "reports", "ban", "--data", data, "--token-file", tokFile}, nil, 2, "unknown command"},
			{"unknown command", []string{"admin", "users"}, nil, 2, "unknown command"},
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
	})
	var help bytes.Buffer
	if code := run([]string{"admin", "help"}, getenv, &help, io.Discard); code != 0 || !strings.Contains(help.String(), "reports restrict ID --country CC") {
		t.Errorf("admin help = %d %q", code, help.String())
	}
}
