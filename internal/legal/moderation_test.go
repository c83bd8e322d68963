package legal

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/channel"
)

// fakeChannels is a [Channels] over maps, as the server's store adapter behaves.
type fakeChannels struct {
	mu      sync.Mutex
	posts   map[channel.ID]map[uint64][]byte
	notices map[channel.ID][][]byte
	reports []ChannelReport
}

func newFakeChannels() *fakeChannels {
	return &fakeChannels{posts: map[channel.ID]map[uint64][]byte{}, notices: map[channel.ID][][]byte{}}
}

func (f *fakeChannels) ChannelReports(_ context.Context, status string) ([]ChannelReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ChannelReport
	for _, r := range f.reports {
		if status == "" || r.Status == status {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeChannels) ChannelReport(_ context.Context, id uuid.UUID) (ChannelReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.reports {
		if r.ID == id {
			return r, nil
		}
	}
	return ChannelReport{}, fmt.Errorf("report %s: %w", id, ErrNoReport)
}

func (f *fakeChannels) DecideChannelReport(_ context.Context, id uuid.UUID, status string, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.reports {
		if r.ID == id {
			if r.Status != ReportOpen {
				return ErrDecided
			}
			f.reports[i].Status, f.reports[i].Decided = status, at
			return nil
		}
	}
	return ErrNoReport
}

func (f *fakeChannels) ChannelPost(_ context.Context, ch channel.ID, seq uint64) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.posts[ch][seq]
	if !ok {
		return nil, fmt.Errorf("post %d: %w", seq, ErrNoReport)
	}
	return p, nil
}

func (f *fakeChannels) ChannelNotices(_ context.Context, ch channel.ID) ([][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.notices[ch]...), nil
}

func (f *fakeChannels) PutChannelNotice(_ context.Context, n *channel.Notice, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notices[n.Channel] = append(f.notices[n.Channel], n.Bytes())
	return nil
}

func (f *fakeChannels) report(ch channel.ID, seq uint64, reason string, at time.Time) uuid.UUID {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := uuid.New()
	f.reports = append(f.reports, ChannelReport{ID: id, Channel: ch, Seq: seq, Reason: reason, Text: "why", Received: at, Status: ReportOpen})
	return id
}

func (f *fakeChannels) status(id uuid.UUID) string {
	r, _ := f.ChannelReport(context.Background(), id)
	return r.Status
}

// modFixture is a desk with channels: one channel with posts 1 (a post) and 2 (a
// delegation, which cannot be withheld).
type modFixture struct {
	*fixture
	chans *fakeChannels
	ch    channel.ID
	post1 *channel.Post
}

func newModFixture(t *testing.T) *modFixture {
	t.Helper()
	f := newFixture(t)
	chans := newFakeChannels()
	var err error
	f.desk, err = NewDesk(context.Background(), Config{DB: f.db, Key: f.key, Now: f.clock.now, Channels: chans})
	if err != nil {
		t.Fatal(err)
	}
	owner, _ := channel.GenerateSigningKey(nil)
	admin, _ := channel.GenerateSigningKey(nil)
	g, err := channel.Create(owner, channel.Info{Handle: "daily_news", Title: "News"}, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := channel.NewVerifier(g)
	p1, err := v.Next(owner, channel.Draft{Kind: channel.KindPost, Body: []byte("a post someone objects to"), Time: t0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Accept(p1); err != nil {
		t.Fatal(err)
	}
	p2, err := v.Next(owner, channel.Delegation{Key: admin.Public(), From: 3}.Draft(t0))
	if err != nil {
		t.Fatal(err)
	}
	chans.posts[g.Channel()] = map[uint64][]byte{0: g.Bytes(), 1: p1.Bytes(), 2: p2.Bytes()}
	return &modFixture{fixture: f, chans: chans, ch: g.Channel(), post1: p1}
}

func TestDecideRestrictSignsNotice(t *testing.T) {
	f := newModFixture(t)
	ctx := context.Background()
	id := f.chans.report(f.ch, 1, GroundIllegal, t0.Add(-3*time.Hour))
	rec, err := f.desk.Decide(ctx, f.alice, id, Decision{Action: ActionRestricted, Country: "de", Reason: "Unlawful under German law (StGB 130). Appeal: appeals@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != ReportRestricted || rec.Action != ActionRestricted || rec.Jurisdiction != "DE" || rec.Operator != "alice" || rec.Number != 1 {
		t.Errorf("Decide(restrict) = %+v, want restricted in DE by alice, report 1", rec.ReportSummary)
	}
	if got := f.chans.status(id); got != ReportRestricted {
		t.Errorf("store status = %q, want %q", got, ReportRestricted)
	}
	raw := f.chans.notices[f.ch]
	if len(raw) != 1 {
		t.Fatalf("notices stored = %d, want 1", len(raw))
	}
	n, err := channel.ParseNotice(raw[0])
	if err != nil {
		t.Fatal(err)
	}
	if !n.Verify(f.key.Public()) {
		t.Error("notice does not verify under the server key")
	}
	other, _ := channel.GenerateSigningKey(nil)
	if n.Verify(other.Public().Bytes()) {
		t.Error("notice verifies under another key")
	}
	if n.Post != f.post1.Hash() || n.Channel != f.ch || n.Seq != 1 || n.Action != channel.ActionRestrict || n.Jurisdiction != "DE" {
		t.Errorf("notice = %+v, want a restriction in DE of post 1 by its hash", n)
	}
	if !strings.Contains(n.Reason, "StGB 130") {
		t.Errorf("notice reason = %q, want the statement of reasons", n.Reason)
	}
	// What a subscriber does: the withheld post with the notice is accepted.
	g, _ := channel.ParsePost(f.chans.posts[f.ch][0])
	sub, _ := channel.NewVerifier(g)
	sub.SetOperatorKey(f.key.Public())
	if _, err := sub.AcceptWithheld(f.post1.Withhold(), n); err != nil {
		t.Errorf("AcceptWithheld(post 1, notice) = %v, want nil", err)
	}
	if len(rec.Notices) != 1 || rec.Notices[0].Reason != n.Reason || !rec.Actioned {
		t.Errorf("record notices = %+v, want the one notice", rec.Notices)
	}
}

func TestDecideRules(t *testing.T) {
	f := newModFixture(t)
	ctx := context.Background()
	rep := func(seq uint64) uuid.UUID { return f.chans.report(f.ch, seq, GroundTerms, t0) }
	const why = "Spam, against the terms section 3."

	tests := []struct {
		name       string
		id         uuid.UUID
		dec        Decision
		wantErr    error  // errors.Is
		wantText   string // in the error
		wantAction string
	}{
		{"unknown report", uuid.New(), Decision{Action: ActionDismissed, Reason: why}, ErrNoReport, "", ""},
		{"unknown action", rep(1), Decision{Action: "ban", Reason: why}, nil, "unknown action", ""},
		{"restrict without country", rep(1), Decision{Action: ActionRestricted, Reason: why}, nil, "country code", ""},
		{"restrict in a code with no numbers", rep(1), Decision{Action: ActionRestricted, Country: "XX", Reason: why}, nil, "phone numbers", ""},
		{"remove with a country", rep(1), Decision{Action: ActionRemoved, Country: "DE", Reason: why}, nil, "only to a restriction", ""},
		{"remove without statement", rep(1), Decision{Action: ActionRemoved, Reason: "  "}, nil, "statement of reasons", ""},
		{"statement too long", rep(1), Decision{Action: ActionRemoved, Reason: strings.Repeat("x", channel.MaxReasonLen+1)}, nil, "statement of reasons", ""},
		{"dismiss without reason", rep(1), Decision{Action: ActionDismissed}, nil, "needs a reason", ""},
		{"delegation cannot be withheld", rep(2), Decision{Action: ActionRemoved, Reason: why}, nil, "only posts and edits", ""},
		{"post that does not exist", f.chans.report(f.ch, 9, GroundIllegal, t0), Decision{Action: ActionRemoved, Reason: why}, ErrNoReport, "", ""},
		{"dismiss", rep(1), Decision{Action: ActionDismissed, Reason: "lawful satire"}, nil, "", ActionDismissed},
		{"restrict in DE", rep(1), Decision{Action: ActionRestricted, Country: "DE", Reason: why}, nil, "", ActionRestricted},
		{"restrict in DE again", rep(1), Decision{Action: ActionRestricted, Country: "DE", Reason: why}, ErrDecided, "duplicate", ""},
		{"restrict in FR as well", rep(1), Decision{Action: ActionRestricted, Country: "FR", Reason: why}, nil, "", ActionRestricted},
		{"dismiss after an action is a duplicate", rep(1), Decision{Action: ActionDismissed, Reason: "already restricted"}, nil, "", ActionDuplicate},
		{"remove", rep(1), Decision{Action: ActionRemoved, Reason: why}, nil, "", ActionRemoved},
		{"remove again", rep(1), Decision{Action: ActionRemoved, Reason: why}, ErrDecided, "already removed", ""},
		{"restrict a removed post", rep(1), Decision{Action: ActionRestricted, Country: "IT", Reason: why}, ErrDecided, "already removed", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := f.desk.Decide(ctx, f.bob, tt.id, tt.dec)
			switch {
			case tt.wantAction != "":
				if err != nil || rec.Action != tt.wantAction {
					t.Fatalf("Decide(%+v) = %q, %v; want %q", tt.dec, rec.Action, err, tt.wantAction)
				}
			case err == nil:
				t.Fatalf("Decide(%+v) = nil, want an error", tt.dec)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("Decide(%+v) = %v, want %v", tt.dec, err, tt.wantErr)
			case !strings.Contains(err.Error(), tt.wantText):
				t.Errorf("Decide(%+v) = %v, want it to say %q", tt.dec, err, tt.wantText)
			}
			if tt.wantAction == "" && tt.id != uuid.Nil {
				if s := f.chans.status(tt.id); s != "" && s != ReportOpen {
					t.Errorf("refused decision left the report %q, want open", s)
				}
			}
		})
	}
	// A decided report cannot be decided again.
	id := rep(1)
	if _, err := f.desk.Decide(ctx, f.alice, id, Decision{Action: ActionDismissed, Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.desk.Decide(ctx, f.bob, id, Decision{Action: ActionDismissed, Reason: "r"}); !errors.Is(err, ErrDecided) {
		t.Errorf("Decide(decided report) = %v, want ErrDecided", err)
	}
	// Restrictions in DE and FR and one removal: three notices on post 1.
	if n := len(f.chans.notices[f.ch]); n != 3 {
		t.Errorf("notices stored = %d, want 3", n)
	}
}

func TestReportsCountedInTransparencyReport(t *testing.T) {
	f := newModFixture(t)
	ctx := context.Background()
	a := f.chans.report(f.ch, 1, GroundIllegal, t0.Add(-4*time.Hour))
	b := f.chans.report(f.ch, 1, GroundIllegal, t0.Add(-2*time.Hour))
	c := f.chans.report(f.ch, 1, GroundTerms, t0.Add(-1*time.Hour))
	f.chans.report(f.ch, 1, GroundTerms, t0) // stays open

	list, err := f.desk.Reports(ctx, false)
	if err != nil || len(list) != 4 {
		t.Fatalf("Reports(open) = %d, %v; want 4", len(list), err)
	}
	for i, s := range list {
		if s.Number != int64(i+1) || s.Status != ReportOpen || s.Actioned {
			t.Errorf("Reports()[%d] = %+v, want number %d, open, not actioned", i, s, i+1)
		}
	}
	if _, err := f.desk.Decide(ctx, f.alice, a, Decision{Action: ActionRestricted, Country: "DE", Reason: "illegal in DE"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.desk.Decide(ctx, f.alice, b, Decision{Action: ActionDismissed, Reason: "same post"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.desk.Decide(ctx, f.bob, c, Decision{Action: ActionRemoved, Reason: "spam"}); err != nil {
		t.Fatal(err)
	}
	list, _ = f.desk.Reports(ctx, false)
	if len(list) != 1 || !list[0].Actioned {
		t.Errorf("Reports(open) after decisions = %+v, want the one open report, actioned", list)
	}
	all, _ := f.desk.Reports(ctx, true)
	if len(all) != 4 || all[1].Action != ActionDuplicate || all[1].Status != ReportDismissed {
		t.Errorf("Reports(all) = %+v, want 4 with report 2 a duplicate", all)
	}

	rep, err := f.desk.Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.ChannelNotices) != 1 {
		t.Fatalf("report channel notices = %+v, want one period", rep.ChannelNotices)
	}
	got := rep.ChannelNotices[0]
	want := NoticeStats{
		Period: Period(t0), Received: 4, Pending: 1,
		ByGround: map[string]int{"illegal": 2, "terms": 2},
		Actions:  map[string]int{"restricted": 1, "duplicate": 1, "removed": 1},
		ActionsByGround: map[string]map[string]int{
			"illegal": {"restricted": 1, "duplicate": 1},
			"terms":   {"removed": 1},
		},
		RestrictedByCountry: map[string]int{"DE": 1},
		MedianHoursToDecide: 2, // 4, 2 and 1 hours
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("channel notices = %+v, want %+v", got, want)
	}
	// The log holds no post, text or statement.
	es, _ := f.desk.Log().Entries(ctx, 0, 7)
	for _, e := range es {
		for _, secret := range []string{f.ch.String(), "why", "illegal in DE", "same post", f.post1.Hash().String()} {
			if strings.Contains(string(e), secret) {
				t.Errorf("log entry %s holds %q", e, secret)
			}
		}
	}
	var page strings.Builder
	if err := RenderPage(&page, rep, nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`id="notices"`, "illegal: 2", "DE: 1", "terms removed: 1"} {
		if !strings.Contains(page.String(), s) {
			t.Errorf("page lacks %q", s)
		}
	}
}

func TestReportsWithoutChannels(t *testing.T) {
	f := newFixture(t)
	if _, err := f.desk.Reports(context.Background(), false); err == nil {
		t.Error("Reports on a desk without channels = nil, want an error")
	}
}

func TestModerationAdminSocket(t *testing.T) {
	f := newModFixture(t)
	ctx := context.Background()
	sock := filepath.Join(f.dir, SocketFile)
	stop, err := f.desk.ServeAdmin(ctx, sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	tok, _ := AddOperator(ctx, f.db, "carol", f.clock.now())
	c := NewClient(sock, tok)
	id := f.chans.report(f.ch, 1, GroundIllegal, t0)

	if _, err := NewClient(sock, "blo_wrong").Reports(ctx, false); err == nil || !strings.Contains(err.Error(), "unknown operator") {
		t.Errorf("Reports(bad token) = %v, want unknown operator", err)
	}
	if _, err := NewClient(sock, "blo_wrong").Decide(ctx, id.String(), Decision{Action: ActionRemoved, Reason: "r"}); err == nil {
		t.Error("Decide(bad token) = nil, want an error")
	}
	if s := f.chans.status(id); s != ReportOpen {
		t.Errorf("after a refused decision the report is %q, want open", s)
	}
	list, err := c.Reports(ctx, false)
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("Reports = %+v, %v; want the one report", list, err)
	}
	rec, err := c.ShowReport(ctx, id.String())
	if err != nil || rec.Text != "why" || rec.Post == nil || rec.Post.Body != "a post someone objects to" || rec.Post.Hash != f.post1.Hash().String() {
		t.Errorf("ShowReport = %+v, %v; want the report with its post", rec, err)
	}
	if _, err := c.ShowReport(ctx, "nope"); err == nil || !strings.Contains(err.Error(), "no such report") {
		t.Errorf("ShowReport(bad id) = %v, want no such report", err)
	}
	rec, err = c.Decide(ctx, id.String(), Decision{Action: ActionRemoved, Reason: "Removed: terrorist content, Regulation (EU) 2021/784."})
	if err != nil || rec.Status != ReportRemoved || rec.Operator != "carol" {
		t.Fatalf("Decide(remove) = %+v, %v; want removed by carol", rec.ReportSummary, err)
	}
	if _, err := c.Decide(ctx, id.String(), Decision{Action: ActionRemoved, Reason: "again"}); err == nil || !strings.Contains(err.Error(), "already decided") {
		t.Errorf("Decide(decided) = %v, want already decided", err)
	}
}

func TestComputeReportChannelEntries(t *testing.T) {
	at := t0
	dec := t0.Add(time.Hour)
	entry := func(e LogEntry) []byte {
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	recv := func(n int64) []byte {
		return entry(LogEntry{Kind: KindNotice, Report: n, Ground: GroundIllegal, Received: at})
	}
	act := func(n int64, action, country string) []byte {
		return entry(LogEntry{Kind: KindModeration, Report: n, Ground: GroundIllegal, Action: action, Jurisdiction: country, Received: at, Concluded: &dec})
	}
	tests := []struct {
		name    string
		entries [][]byte
		wantErr string
	}{
		{"received and restricted", [][]byte{recv(1), act(1, ActionRestricted, "DE")}, ""},
		{"received twice", [][]byte{recv(1), recv(1)}, "received twice"},
		{"not numbered", [][]byte{recv(0)}, "not numbered"},
		{"decided never received", [][]byte{act(1, ActionRemoved, "")}, "never received"},
		{"decided twice", [][]byte{recv(1), act(1, ActionRemoved, ""), act(1, ActionDismissed, "")}, "decided twice"},
		{"unknown action", [][]byte{recv(1), act(1, "banned", "")}, "unknown action"},
		{"restriction without country", [][]byte{recv(1), act(1, ActionRestricted, "")}, "without a country"},
		{"decision without date", [][]byte{recv(1), entry(LogEntry{Kind: KindModeration, Report: 1, Action: ActionRemoved, Received: at})}, "without its date"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := ComputeReport(tt.entries)
			if tt.wantErr == "" {
				if err != nil || len(rep.ChannelNotices) != 1 || rep.ChannelNotices[0].RestrictedByCountry["DE"] != 1 || rep.ChannelNotices[0].MedianHoursToDecide != 1 {
					t.Errorf("ComputeReport = %+v, %v; want one restriction in DE after 1 hour", rep.ChannelNotices, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ComputeReport = %v, want an error saying %q", err, tt.wantErr)
			}
		})
	}
}
