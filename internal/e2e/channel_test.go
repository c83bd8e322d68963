package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// channelEntry is a line of "bastion channel read --json".
type channelEntry struct {
	Seq      uint64 `json:"seq"`
	Kind     string `json:"kind"`
	Text     string `json:"text"`
	ByOwner  bool   `json:"by_owner"`
	Withheld *struct {
		Seq          uint64 `json:"seq"`
		Action       string `json:"action"`
		Jurisdiction string `json:"jurisdiction"`
		Reason       string `json:"reason"`
	} `json:"withheld"`
}

// readChannel runs "bastion channel read HANDLE --json" and returns the posts by seq.
func (u *user) readChannel(handle string) map[uint64]channelEntry {
	u.t.Helper()
	out := u.ok("channel", "read", handle, "--json")
	posts := map[uint64]channelEntry{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var e channelEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			u.t.Fatalf("channel read --json printed %q: %v", line, err)
		}
		posts[e.Seq] = e
	}
	return posts
}

// bastiond runs the server binary's operator commands against the server's data
// directory and returns standard output; it fails the test unless they exit 0.
func (s *server) bastiond(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "bastiond"), append(args, "--data", s.dataDir)...)
	cmd.Env = append(os.Environ(), "BASTION_DATA=", "BASTION_LEGAL_TOKEN=")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("bastiond %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.String()
}

// Issue 9's end-to-end proof with the real binaries: an owner creates a channel, readers in
// two countries follow it and read its posts, the German one reports a post, an operator
// restricts it on the desk in the US, and from then on US readers (one who had read it,
// one who follows only now) get the operator's signed statement of reasons instead of the
// post's body while German readers still read it; the owner receives the statement too,
// and no report row names the reporter.
func TestChannelOverCLI(t *testing.T) {
	srv := startServer(t)
	owner := newUser(t, srv, "owner", "+14155550130")
	us := newUser(t, srv, "us", "+14155550131")
	de := newUser(t, srv, "de", "+4915123456780")
	for _, u := range []*user{owner, us, de} {
		u.register()
	}
	token := filepath.Join(t.TempDir(), "op.token")
	if err := os.WriteFile(token, []byte(srv.bastiond(t, "legal", "operator", "add", "moderator")), 0o600); err != nil {
		t.Fatal(err)
	}

	const handle = "@e2enews"
	posts := []string{
		"e2e-channel-post-1: the bridge opens on Monday",
		"e2e-channel-post-2: a post the operator will restrict in the US",
		"e2e-channel-post-3: after the restriction",
	}
	owner.ok("channel", "create", handle, "E2E News", "--description", "posts for the end-to-end test")
	us.ok("channel", "follow", handle)
	de.ok("channel", "follow", handle)
	owner.ok("channel", "post", handle, posts[0])
	owner.ok("channel", "post", handle, posts[1])

	for _, u := range []*user{de, us} {
		got := u.readChannel(handle)
		for i, p := range posts[:2] {
			if e := got[uint64(i+1)]; e.Text != p || !e.ByOwner || e.Withheld != nil {
				t.Errorf("%s reads #%d = %+v, want %q by the owner", u.number, i+1, e, p)
			}
		}
	}

	// The German reader reports post 2; the operator restricts it in the US.
	var rep struct {
		Report string `json:"report"`
	}
	out := de.ok("channel", "report", handle, "2", "--reason", "illegal", "e2e-report: this breaks a US law", "--json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Report == "" {
		t.Fatalf("channel report --json printed %q (%v), want the report id", out, err)
	}
	if list := srv.bastiond(t, "admin", "reports", "list", "--token-file", token); !strings.Contains(list, rep.Report) {
		t.Fatalf("bastiond admin reports list = %q, want report %s", list, rep.Report)
	}
	statement := "e2e-statement: withheld in the US under a court order; appeal to the operator"
	srv.bastiond(t, "admin", "reports", "restrict", rep.Report, "--country", "US", "--reason", statement, "--token-file", token)
	if list := srv.bastiond(t, "admin", "reports", "list", "--token-file", token); strings.Contains(list, rep.Report) {
		t.Errorf("bastiond admin reports list after the decision = %q, want report %s gone from the open ones", list, rep.Report)
	}
	owner.ok("channel", "post", handle, posts[2])

	// US readers get the notice in place of post 2, the one who read it before the
	// restriction as well as one who follows only now; German readers still read it.
	us2 := newUser(t, srv, "us2", "+14155550132")
	us2.register()
	us2.ok("channel", "follow", handle)
	for _, u := range []*user{us, us2} {
		got := u.readChannel(handle)
		if e := got[1]; e.Text != posts[0] || e.Withheld != nil {
			t.Errorf("%s reads #1 = %+v, want %q", u.number, e, posts[0])
		}
		if e := got[2]; e.Withheld == nil || e.Withheld.Jurisdiction != "US" || e.Withheld.Reason != statement ||
			strings.Contains(e.Text, "e2e-channel-post-2") {
			t.Errorf("%s reads #2 = %+v, want it withheld in US with the statement %q and no body", u.number, e, statement)
		}
		if e := got[3]; e.Text != posts[2] || e.Withheld != nil {
			t.Errorf("%s reads #3 = %+v, want %q", u.number, e, posts[2])
		}
	}
	got := de.readChannel(handle)
	if e := got[3]; e.Text != posts[2] || e.Withheld != nil {
		t.Errorf("de reads #3 = %+v, want %q", e, posts[2])
	}
	de2 := newUser(t, srv, "de2", "+4915123456788")
	de2.register()
	de2.ok("channel", "follow", handle)
	if e := de2.readChannel(handle)[2]; e.Text != posts[1] || e.Withheld != nil {
		t.Errorf("a new German reader reads #2 = %+v, want %q", e, posts[1])
	}

	// The statement of reasons reaches the owner.
	var notice struct {
		Seq          uint64 `json:"seq"`
		Action       string `json:"action"`
		Jurisdiction string `json:"jurisdiction"`
		Reason       string `json:"reason"`
	}
	out = owner.ok("channel", "notices", handle, "--json")
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &notice); err != nil || notice.Seq != 2 ||
		notice.Jurisdiction != "US" || notice.Reason != statement {
		t.Errorf("owner channel notices = %q (%v), want the restriction of #2 in US with the statement", out, err)
	}

	// No report row, in the server's database or the desk's, names the reporter.
	srv.stop(t)
	snap := readDatabases(t, srv.dataDir)
	reporter := account{number: de.number}
	for _, r := range snap.rows {
		if r.db == "bastion.db" && r.table == "accounts" && len(r.cells) >= 2 && string(r.cells[1]) == de.number {
			copy(reporter.id[:], r.cells[0])
		}
	}
	if reporter.id == [16]byte{} {
		t.Fatalf("the reporter %s is not in the accounts table", de.number)
	}
	reportRows := 0
	for _, r := range snap.rows {
		if strings.Contains(r.table, "report") {
			reportRows++
			if reporter.in(r) {
				t.Errorf("%s/%s holds a row naming the reporter", r.db, r.table)
			}
		}
	}
	if reportRows == 0 {
		t.Errorf("no report row in any database; the reporter scan saw nothing")
	}

	// The server's log holds no phone number.
	logOut := srv.log.String()
	for _, u := range []*user{owner, us, us2, de, de2} {
		if strings.Contains(logOut, strings.TrimPrefix(u.number, "+")) {
			t.Errorf("phone number %s found in the server's log", u.number)
		}
	}
	if !strings.Contains(logOut, `"msg":"serving"`) {
		t.Errorf("the server's log is missing; the scan above saw nothing:\n%s", logOut)
	}
}
