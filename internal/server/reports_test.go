package server

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/internal/legal"
	"github.com/bastionchat/bastion/internal/phone"
	"github.com/bastionchat/bastion/internal/store"
)

// reportedChannel stores a channel with n text posts straight into the store (the
// channel endpoints are tested on their own) and returns its id and posts.
func reportedChannel(t *testing.T, st store.Channels, handle string, private bool, n int) (channel.ID, []*channel.Post) {
	t.Helper()
	ctx := context.Background()
	owner, err := channel.GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	g, err := channel.Create(owner, channel.Info{Handle: channel.Handle(handle), Title: "T", Private: private}, at, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := channel.NewVerifier(g)
	state, _ := v.MarshalBinary()
	if err := st.CreateChannel(ctx, store.Channel{ID: g.Channel(), Handle: handle, Private: private, Genesis: g.Bytes(),
		NewestHash: g.Hash(), State: state, CreatedAt: at}); err != nil {
		t.Fatal(err)
	}
	var posts []*channel.Post
	for i := range n {
		p, err := v.Next(owner, channel.Draft{Kind: channel.KindPost, Body: []byte("post number " + string(rune('1'+i))), Time: at})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Accept(p); err != nil {
			t.Fatal(err)
		}
		state, _ := v.MarshalBinary()
		if err := st.AppendChannelPost(ctx, store.ChannelPost{Channel: g.Channel(), Seq: p.Seq(), Post: p.Bytes()}, p.Hash(), state); err != nil {
			t.Fatal(err)
		}
		posts = append(posts, p)
	}
	return g.Channel(), posts
}

func reportPath(id channel.ID) string { return "/v1/channels/" + id.String() + "/reports" }

func TestReportAcceptedAndRefused(t *testing.T) {
	h := newHarness(t, nil)
	c := h.register("+14155550401", 0)
	ch, _ := reportedChannel(t, h.st, "public_news", false, 2)
	priv, _ := reportedChannel(t, h.st, "secret_club", true, 1)
	ok := api.ReportRequest{Seq: 2, Reason: api.ReportIllegal, Text: "Incites violence against a named person."}

	r := h.do("POST", reportPath(ch), ok, c)
	h.want(r, http.StatusAccepted, "", "report")
	id, err := uuid.Parse(decodeBody[api.ReportResponse](t, r).ID)
	if err != nil {
		t.Fatalf("report id: %v", err)
	}
	got, err := h.st.ChannelReport(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Channel != ch || got.Seq != 2 || got.Reason != api.ReportIllegal || got.Text != ok.Text || got.Status != store.ReportOpen {
		t.Errorf("stored report = %+v, want the request, open", got)
	}

	with := func(f func(*api.ReportRequest)) api.ReportRequest { q := ok; f(&q); return q }
	tests := []struct {
		name   string
		path   string
		body   any
		client *client
		status int
		code   string
	}{
		{"no credentials", reportPath(ch), ok, nil, http.StatusUnauthorized, api.CodeUnauthorized},
		{"channel id not hex", "/v1/channels/zz/reports", ok, c, http.StatusNotFound, api.CodeNotFound},
		{"unknown channel", reportPath(channel.ID{1}), ok, c, http.StatusNotFound, api.CodeNotFound},
		{"unknown post", reportPath(ch), with(func(q *api.ReportRequest) { q.Seq = 3 }), c, http.StatusNotFound, api.CodeNotFound},
		{"genesis", reportPath(ch), with(func(q *api.ReportRequest) { q.Seq = 0 }), c, http.StatusBadRequest, api.CodeBadRequest},
		{"bad reason", reportPath(ch), with(func(q *api.ReportRequest) { q.Reason = "dislike" }), c, http.StatusBadRequest, api.CodeBadRequest},
		{"no reason", reportPath(ch), with(func(q *api.ReportRequest) { q.Reason = "" }), c, http.StatusBadRequest, api.CodeBadRequest},
		{"empty text", reportPath(ch), with(func(q *api.ReportRequest) { q.Text = " \n" }), c, http.StatusBadRequest, api.CodeBadRequest},
		{"oversize text", reportPath(ch), with(func(q *api.ReportRequest) { q.Text = strings.Repeat("x", api.MaxReportText+1) }), c, http.StatusBadRequest, api.CodeBadRequest},
		{"unknown field", reportPath(ch), `{"seq":1,"reason":"terms","text":"t","reporter":"me"}`, c, http.StatusBadRequest, api.CodeBadJSON},
		{"private channel", reportPath(priv), with(func(q *api.ReportRequest) { q.Seq = 1 }), c, http.StatusBadRequest, api.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do("POST", tt.path, tt.body, tt.client)
			h.want(r, tt.status, tt.code, "POST "+tt.path)
		})
	}
	// The text limit is exactly api.MaxReportText.
	h.want(h.do("POST", reportPath(ch), with(func(q *api.ReportRequest) { q.Text = strings.Repeat("é", api.MaxReportText/2) }), c),
		http.StatusAccepted, "", "report at the text limit")
	all, _ := h.st.ChannelReports(context.Background(), "")
	if len(all) != 2 {
		t.Errorf("reports stored = %d, want the 2 accepted", len(all))
	}
}

func TestReportRateLimitPerAccount(t *testing.T) {
	h := newHarness(t, nil)
	a := h.register("+14155550402", 0)
	b := h.register("+14155550403", 0)
	ch1, _ := reportedChannel(t, h.st, "channel_one", false, 1)
	ch2, _ := reportedChannel(t, h.st, "channel_two", false, 1)
	req := api.ReportRequest{Seq: 1, Reason: api.ReportTerms, Text: "spam"}
	for i := range reportRate.N {
		ch := ch1
		if i%2 == 1 {
			ch = ch2
		}
		h.want(h.do("POST", reportPath(ch), req, a), http.StatusAccepted, "", "report within the limit")
	}
	// The bucket is the account's, whatever the channel.
	for _, ch := range []channel.ID{ch1, ch2} {
		r := h.do("POST", reportPath(ch), req, a)
		h.want(r, http.StatusTooManyRequests, api.CodeRateLimited, "report over the limit")
		if r.header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	h.want(h.do("POST", reportPath(ch1), req, b), http.StatusAccepted, "", "another account's report")
	h.clock.Advance(reportRate.Per)
	h.want(h.do("POST", reportPath(ch1), req, a), http.StatusAccepted, "", "report after the refill")
}

// TestReportStoresNoReporterIdentity scans every row of the reports table, and every
// table the report wrote to, for anything naming the reporter.
func TestReportStoresNoReporterIdentity(t *testing.T) {
	h := newHarness(t, nil)
	c := h.register("+14155550404", 0)
	ch, _ := reportedChannel(t, h.st, "scanned_news", false, 1)
	text := "This post names my neighbour's address."
	h.want(h.do("POST", reportPath(ch), api.ReportRequest{Seq: 1, Reason: api.ReportIllegal, Text: text}, c), http.StatusAccepted, "", "report")

	// newHarness put its database in another of this test's temporary directories.
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(t.TempDir()), "*", "bastion.db"))
	if len(files) != 1 {
		t.Fatalf("found databases %v, want the harness's one", files)
	}
	dsn := (&url.URL{Scheme: "file", OmitHost: true, Path: files[0]}).String() + "?mode=ro&_busy_timeout=10000"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT * FROM channel_reports`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	want := []string{"id", "channel", "seq", "reason", "text", "created_at", "status", "decided_at"}
	if !slices.Equal(cols, want) {
		t.Errorf("channel_reports columns = %v, want %v (a new column must not name the reporter)", cols, want)
	}
	e164, _ := phone.Normalise(c.number)
	identity := map[string][]byte{
		"account id":       c.account[:],
		"account id text":  []byte(c.account.String()),
		"number":           []byte(e164),
		"password":         []byte(c.password),
		"loopback address": []byte("127.0.0.1"),
		"device user":      []byte(c.user()),
		"identity key":     c.ik.PublicKey().Bytes(),
		"identity key b64": []byte(base64.StdEncoding.EncodeToString(c.ik.PublicKey().Bytes())),
	}
	n := 0
	for rows.Next() {
		n++
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var row []byte
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				row = append(row, v...)
			case string:
				row = append(row, v...)
			}
			row = append(row, 0)
		}
		if !bytes.Contains(row, []byte(text)) {
			t.Errorf("report row lacks its text: the scan reads the wrong rows")
		}
		for what, secret := range identity {
			if bytes.Contains(row, secret) {
				t.Errorf("channel_reports holds the reporter's %s", what)
			}
		}
	}
	if n != 1 {
		t.Errorf("channel_reports rows = %d, want 1", n)
	}
	// Nor does the rate limit's bucket, which lives in memory here, or the log.
	h.secret(c.account.String(), text)
}

// TestRestrictedPostNotice: a report decided on the desk puts a notice that anyone can
// fetch and check with the server's published key, naming the post by its hash; the
// counts reach the transparency report.
func TestRestrictedPostNotice(t *testing.T) {
	h := newLegalHarness(t)
	ctx := context.Background()
	c := h.register("+14155550405", 0)
	ch, posts := reportedChannel(t, h.st, "noticed_news", false, 2)

	h.want(h.do("GET", "/v1/channels/"+channel.ID{9}.String()+"/notices", nil, c), http.StatusNotFound, api.CodeNotFound, "notices of an unknown channel")
	h.want(h.do("GET", "/v1/channels/"+ch.String()+"/notices", nil, nil), http.StatusUnauthorized, api.CodeUnauthorized, "notices without credentials")
	empty := decodeBody[api.NoticesResponse](t, h.do("GET", "/v1/channels/"+ch.String()+"/notices", nil, c))
	if empty.Notices == nil || len(empty.Notices) != 0 {
		t.Errorf("notices before any action = %#v, want an empty list", empty.Notices)
	}

	r := h.do("POST", reportPath(ch), api.ReportRequest{Seq: 2, Reason: api.ReportIllegal, Text: "Holocaust denial."}, c)
	h.want(r, http.StatusAccepted, "", "report")
	id := uuid.MustParse(decodeBody[api.ReportResponse](t, r).ID)
	// The desk on this node took the report in at once: it is counted before review.
	rep := decodeBody[legal.Report](t, h.do("GET", "/v1/transparency", nil, nil))
	if len(rep.ChannelNotices) != 1 || rep.ChannelNotices[0].Received != 1 || rep.ChannelNotices[0].Pending != 1 {
		t.Errorf("transparency before review = %+v, want one notice pending", rep.ChannelNotices)
	}

	const statement = "Restricted in Germany: Holocaust denial is unlawful there (StGB 130(3)). Appeal: appeals@bastion.example"
	if _, err := h.desk.Decide(ctx, h.alice, id, legal.Decision{Action: legal.ActionRestricted, Country: "DE", Reason: statement}); err != nil {
		t.Fatal(err)
	}
	if got, _ := h.st.ChannelReport(ctx, id); got.Status != store.ReportRestricted {
		t.Errorf("report status = %q, want restricted", got.Status)
	}
	keyResp := decodeBody[LegalKeyResponse](t, h.do("GET", "/v1/legal/key", nil, nil))
	pub, _ := base64.StdEncoding.DecodeString(keyResp.Ed25519PublicKey)
	ns := decodeBody[api.NoticesResponse](t, h.do("GET", "/v1/channels/"+ch.String()+"/notices", nil, c))
	if len(ns.Notices) != 1 {
		t.Fatalf("notices = %d, want 1", len(ns.Notices))
	}
	n, err := channel.ParseNotice(ns.Notices[0])
	if err != nil {
		t.Fatal(err)
	}
	if !n.Verify(pub) {
		t.Error("notice does not verify under the server's published key")
	}
	if n.Post != posts[1].Hash() || n.Seq != 2 || n.Channel != ch || n.Action != channel.ActionRestrict || n.Jurisdiction != "DE" || n.Reason != statement {
		t.Errorf("notice = %+v, want a restriction in DE of post 2 by hash with the statement", n)
	}

	rep = decodeBody[legal.Report](t, h.do("GET", "/v1/transparency", nil, nil))
	if len(rep.ChannelNotices) != 1 {
		t.Fatalf("transparency channel notices = %+v, want one period", rep.ChannelNotices)
	}
	s := rep.ChannelNotices[0]
	if s.Received != 1 || s.Pending != 0 || s.Actions[legal.ActionRestricted] != 1 || s.RestrictedByCountry["DE"] != 1 || s.ByGround[api.ReportIllegal] != 1 {
		t.Errorf("transparency = %+v, want one illegal notice, restricted in DE", s)
	}
	page := string(h.do("GET", "/transparency", nil, nil).body)
	if !strings.Contains(page, `id="notices"`) || !strings.Contains(page, "DE: 1") {
		t.Error("transparency page lacks the notice counts")
	}
}
