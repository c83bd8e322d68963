package e2e

import (
	"bytes"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	_ "modernc.org/sqlite" // read the server's databases in the scans
)

// dbRow is one row of one table of a server database, its TEXT and BLOB cells as bytes
// (integers and reals are left out: no id, number or text is stored as one).
type dbRow struct {
	db, table string
	cells     [][]byte
}

// dbSnapshot is every row of every table of the SQLite databases (*.db) in a data
// directory, and each table's row count.
type dbSnapshot struct {
	counts map[string]int // "file.db/table" -> rows
	rows   []dbRow
}

// readDatabases opens each *.db file in dir read-only (the server may be running: its
// databases are in WAL mode, so a reader sees the last commit) and reads every table.
func readDatabases(t *testing.T, dir string) dbSnapshot {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.db"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no database in %s (%v)", dir, err)
	}
	snap := dbSnapshot{counts: map[string]int{}}
	for _, f := range files {
		readDatabase(t, f, &snap)
	}
	return snap
}

func readDatabase(t *testing.T, path string, snap *dbSnapshot) {
	t.Helper()
	dsn := (&url.URL{Scheme: "file", OmitHost: true, Path: path}).String() + "?mode=ro&_busy_timeout=10000"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	name := filepath.Base(path)
	tables, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatalf("%s: listing tables: %v", name, err)
	}
	var names []string
	for tables.Next() {
		var n string
		if err := tables.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := tables.Close(); err != nil {
		t.Fatal(err)
	}
	for _, table := range names {
		rows, err := db.Query(`SELECT * FROM "` + strings.ReplaceAll(table, `"`, `""`) + `"`)
		if err != nil {
			t.Fatalf("%s: reading %s: %v", name, table, err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		key := name + "/" + table
		snap.counts[key] = 0
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatalf("%s: reading %s: %v", name, table, err)
			}
			r := dbRow{db: name, table: table}
			for _, v := range vals {
				switch v := v.(type) {
				case []byte:
					r.cells = append(r.cells, slices.Clone(v))
				case string:
					r.cells = append(r.cells, []byte(v))
				}
			}
			snap.rows = append(snap.rows, r)
			snap.counts[key]++
		}
		if err := rows.Close(); err != nil {
			t.Fatalf("%s: reading %s: %v", name, table, err)
		}
	}
}

// account is how a server row could name a member: its account id (16 raw bytes, the
// canonical string, plain hex) or its phone number (the digits, with or without "+").
type account struct {
	number string
	id     uuid.UUID
}

func (a account) forms() [][]byte {
	return [][]byte{
		a.id[:],
		[]byte(a.id.String()),
		[]byte(strings.ToUpper(a.id.String())),
		[]byte(hex.EncodeToString(a.id[:])),
		[]byte(strings.TrimPrefix(a.number, "+")),
	}
}

// in reports whether any cell of r names a.
func (a account) in(r dbRow) bool {
	for _, c := range r.cells {
		for _, f := range a.forms() {
			if bytes.Contains(c, f) {
				return true
			}
		}
	}
	return false
}

// membershipRows returns the rows that name two or more of members: what a stored
// membership list (or a record of who was addressed together) would look like, in any
// table. A row naming one account (the accounts table, one device's keys or queue) is
// what a server without groups holds too.
func membershipRows(snap dbSnapshot, members []account) []string {
	var out []string
	for _, r := range snap.rows {
		var named []string
		for _, m := range members {
			if m.in(r) {
				named = append(named, m.number)
			}
		}
		if len(named) >= 2 {
			out = append(out, fmt.Sprintf("%s/%s names %d members", r.db, r.table, len(named)))
		}
	}
	return out
}

// grown returns the tables that hold more rows in after than in before.
func grown(before, after dbSnapshot) []string {
	var out []string
	for k, n := range after.counts {
		if n > before.counts[k] {
			out = append(out, fmt.Sprintf("%s (%d -> %d)", k, before.counts[k], n))
		}
	}
	slices.Sort(out)
	return out
}

// scanFiles reports every needle found in any file of dir: the raw bytes of the database
// files and their WAL, so deleted rows that were not overwritten are searched too.
func scanFiles(t *testing.T, dir string, needles map[string][]byte) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no files in the data directory (%v)", err)
	}
	var found []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // a directory, or a file removed by a checkpoint meanwhile
		}
		for what, n := range needles {
			if bytes.Contains(b, n) {
				found = append(found, fmt.Sprintf("%s in %s", what, filepath.Base(f)))
			}
		}
	}
	slices.Sort(found)
	return found
}

// The scans must be able to fail: a membership row planted in a scratch database is found,
// in every form an account id or number could take, and rows naming one account are not.
func TestMembershipScanFindsPlantedRows(t *testing.T) {
	dir := t.TempDir()
	a := account{number: "+14155550170", id: uuid.New()}
	b := account{number: "+14155550171", id: uuid.New()}
	c := account{number: "+14155550172", id: uuid.New()}
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", OmitHost: true, Path: filepath.Join(dir, "x.db")}).String())
	if err != nil {
		t.Fatal(err)
	}
	stmts := []string{
		`CREATE TABLE accounts (id BLOB, number TEXT)`,
		`CREATE TABLE groups_raw (members BLOB)`,
		`CREATE TABLE groups_text (members TEXT)`,
		`CREATE TABLE groups_numbers (a TEXT, b TEXT)`,
	}
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []account{a, b, c} {
		if _, err := db.Exec(`INSERT INTO accounts VALUES (?, ?)`, m.id[:], m.number); err != nil {
			t.Fatal(err)
		}
	}
	before := dbSnapshot{counts: map[string]int{}}
	readDatabase(t, filepath.Join(dir, "x.db"), &before)
	if got := membershipRows(before, []account{a, b, c}); len(got) != 0 {
		t.Errorf("membershipRows(accounts only) = %q, want none", got)
	}
	inserts := []struct {
		q    string
		args []any
	}{
		{`INSERT INTO groups_raw VALUES (?)`, []any{append(slices.Clone(a.id[:]), c.id[:]...)}},
		{`INSERT INTO groups_text VALUES (?)`, []any{a.id.String() + "," + strings.ToUpper(b.id.String())}},
		{`INSERT INTO groups_numbers VALUES (?, ?)`, []any{b.number, strings.TrimPrefix(c.number, "+")}},
	}
	for _, in := range inserts {
		if _, err := db.Exec(in.q, in.args...); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	after := dbSnapshot{counts: map[string]int{}}
	readDatabase(t, filepath.Join(dir, "x.db"), &after)
	want := []string{
		"x.db/groups_numbers names 2 members",
		"x.db/groups_raw names 2 members",
		"x.db/groups_text names 2 members",
	}
	got := membershipRows(after, []account{a, b, c})
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("membershipRows(planted) = %q, want %q", got, want)
	}
	wantGrown := []string{"x.db/groups_numbers (0 -> 1)", "x.db/groups_raw (0 -> 1)", "x.db/groups_text (0 -> 1)"}
	if g := grown(before, after); !slices.Equal(g, wantGrown) {
		t.Errorf("grown = %q, want %q", g, wantGrown)
	}
	if f := scanFiles(t, dir, map[string][]byte{"c's number": []byte(c.number), "absent": []byte("not-there")}); !slices.Equal(f, []string{"c's number in x.db"}) {
		t.Errorf("scanFiles = %q, want c's number in x.db", f)
	}
}

// groupMessage is a line of "bastion receive --json" with the group fields.
type groupMessage struct {
	Text          string    `json:"text"`
	From          uuid.UUID `json:"from_account"`
	FromNumber    string    `json:"from_number"`
	Undecryptable bool      `json:"undecryptable"`
	GroupEvent    string    `json:"group_event"`
	Group         *struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	} `json:"group"`
}

// groupInfo is what "bastion group members --json" and the change commands print.
type groupInfo struct {
	ID       string `json:"id"`
	Title    string `json:"title"`
	Revision uint64 `json:"revision"`
	Epoch    uint64 `json:"epoch"`
	Member   bool   `json:"member"`
	Admin    bool   `json:"admin"`
	Digest   string `json:"digest"`
	Members  []struct {
		Account uuid.UUID `json:"account"`
		Number  string    `json:"number"`
		Admin   bool      `json:"admin"`
	} `json:"members"`
}

func (u *user) groupInfo(args ...string) groupInfo {
	u.t.Helper()
	out := u.ok(append(args, "--json")...)
	var g groupInfo
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &g); err != nil {
		u.t.Fatalf("bastion %s --json printed %q: %v", strings.Join(args, " "), out, err)
	}
	return g
}

// receiveGroup runs "bastion receive --json" and returns every line.
func (u *user) receiveGroup() []groupMessage {
	u.t.Helper()
	out := u.ok("receive", "--json")
	var msgs []groupMessage
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var m groupMessage
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			u.t.Fatalf("receive --json printed %q: %v", line, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// groupTexts returns the texts of the group messages in ms that belong to group id,
// sorted, and fails on any message that belongs to no group or that was refused.
func groupTexts(t *testing.T, who string, ms []groupMessage, id string) []string {
	t.Helper()
	var out []string
	for _, m := range ms {
		switch {
		case m.Undecryptable:
			t.Errorf("%s received an undecryptable or refused message: %+v", who, m)
		case m.Group == nil:
			t.Errorf("%s received a message outside any group: %+v", who, m)
		case m.Group.ID != id:
			t.Errorf("%s received a message of group %s, want %s", who, m.Group.ID, id)
		case m.Text != "":
			out = append(out, m.Text)
		}
	}
	slices.Sort(out)
	return out
}

// queuedEnvelope is one row of the server's envelope queue.
type queuedEnvelope struct {
	account, id []byte
	serverTime  int64
}

func queuedEnvelopes(t *testing.T, dir string) []queuedEnvelope {
	t.Helper()
	dsn := (&url.URL{Scheme: "file", OmitHost: true, Path: filepath.Join(dir, "bastion.db")}).String() + "?mode=ro&_busy_timeout=10000"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT account_id, id, server_time FROM envelopes`)
	if err != nil {
		t.Fatalf("reading the envelope queue: %v", err)
	}
	defer rows.Close()
	var out []queuedEnvelope
	for rows.Next() {
		var e queuedEnvelope
		if err := rows.Scan(&e.account, &e.id, &e.serverTime); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Issue 8's end-to-end proof: a three-member group over the real CLI and server. Every
// member reads the others' messages, a removed member receives nothing more, a rename
// reaches the remaining members only, and afterwards the server's database files and
// output hold no group title, no group id, no plaintext, and no row that names two
// members together.
func TestGroupOverCLI(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv, "alice", "+14155550120")
	bob := newUser(t, srv, "bob", "+14155550121")
	carol := newUser(t, srv, "carol", "+14155550122")
	for _, u := range []*user{alice, bob, carol} {
		u.register()
	}
	before := readDatabases(t, srv.dataDir)

	title := "e2e-group-title-1: the Tuesday climbing club"
	renamed := "e2e-group-title-2: the Wednesday climbing club"
	sent := []string{
		"e2e-group-secret-1: alice to the group",
		"e2e-group-secret-2: bob to the group",
		"e2e-group-secret-3: carol to the group",
		"e2e-group-secret-4: alice, after carol was removed",
		"e2e-group-secret-5: bob, after carol was removed",
		"e2e-group-secret-6: alice, after the rename",
		"e2e-group-secret-7: carol, trying after her removal",
	}

	g := alice.groupInfo("group", "create", title, bob.number, carol.number)
	if len(g.ID) != 64 || g.Title != title || len(g.Members) != 3 || !g.Admin {
		t.Fatalf("group create printed %+v; want a 64-hex id, the title, 3 members, alice admin", g)
	}
	id := g.ID
	for _, u := range []*user{bob, carol} {
		for _, m := range u.receiveGroup() {
			if m.Group == nil || m.Group.ID != id || m.Group.Title != title || m.Text != "" {
				t.Errorf("%s receive after the create = %+v; want events of group %s %q", u.number, m, id, title)
			}
		}
		if got := u.groupInfo("group", "members", id[:16]); got.Digest != g.Digest || got.Title != title {
			t.Errorf("%s group members = %q digest %s; want %q digest %s", u.number, got.Title, got.Digest, title, g.Digest)
		}
	}

	// Everyone sends; everyone reads the other two. Alice's message is queued for Bob's
	// and Carol's devices before either receives: the queue then holds one envelope per
	// device, and nothing in it ties them together but the moment they arrived.
	alice.ok("group", "send", id[:16], sent[0])
	queued := queuedEnvelopes(t, srv.dataDir)
	byID := map[string][][]byte{}
	for _, e := range queued {
		byID[string(e.id)] = append(byID[string(e.id)], e.account)
	}
	for _, accts := range byID {
		if len(accts) > 1 {
			t.Errorf("one envelope id is queued for %d accounts: the queue records who was addressed together", len(accts))
		}
	}
	if len(queued) < 2 {
		t.Errorf("the queue holds %d envelopes after a group send to two members, want at least 2", len(queued))
	}
	times := map[int64]int{}
	for _, e := range queued {
		times[e.serverTime]++
	}
	t.Logf("after one group send: %d envelopes queued under %d distinct server times "+
		"(the queue keeps each envelope's arrival time until it is acknowledged)", len(queued), len(times))

	bob.ok("group", "send", title, sent[1])
	carol.ok("group", "send", id[:8], sent[2])
	wantRead := map[*user][]string{alice: {sent[1], sent[2]}, bob: {sent[0], sent[2]}, carol: {sent[0], sent[1]}}
	for _, u := range []*user{alice, bob, carol} {
		if got := groupTexts(t, u.number, u.receiveGroup(), id); !slices.Equal(got, wantRead[u]) {
			t.Errorf("%s reads %q, want %q", u.number, got, wantRead[u])
		}
	}

	// Alice removes Carol. Carol learns it; after that she receives nothing, and her own
	// client refuses to send to the group.
	alice.ok("group", "remove", id[:16], carol.number)
	for _, u := range []*user{bob, carol} {
		if got := groupTexts(t, u.number, u.receiveGroup(), id); len(got) != 0 {
			t.Errorf("%s receive after the removal = %q, want only the event", u.number, got)
		}
	}
	if got := carol.groupInfo("group", "members", id[:16]); got.Member {
		t.Errorf("carol's group members after her removal: member %v, want false", got.Member)
	}
	alice.ok("group", "send", id[:16], sent[3])
	bob.ok("group", "send", id[:16], sent[4])
	carol.fails("not a member", "group", "send", id[:16], sent[6])
	if got := carol.receiveGroup(); len(got) != 0 {
		t.Errorf("carol receive after her removal = %+v, want nothing", got)
	}
	if got := groupTexts(t, bob.number, bob.receiveGroup(), id); !slices.Equal(got, []string{sent[3]}) {
		t.Errorf("bob reads %q, want %q", got, sent[3])
	}
	if got := groupTexts(t, alice.number, alice.receiveGroup(), id); !slices.Equal(got, []string{sent[4]}) {
		t.Errorf("alice reads %q, want %q", got, sent[4])
	}

	// A rename reaches Bob, not Carol.
	alice.ok("group", "rename", id[:16], renamed)
	alice.ok("group", "send", id[:16], sent[5])
	ms := bob.receiveGroup()
	if got := groupTexts(t, bob.number, ms, id); !slices.Equal(got, []string{sent[5]}) {
		t.Errorf("bob reads %q, want %q", got, sent[5])
	}
	for _, m := range ms {
		if m.Text == sent[5] && m.Group.Title != renamed {
			t.Errorf("bob's message after the rename shows group %q, want %q", m.Group.Title, renamed)
		}
	}
	if got := bob.groupInfo("group", "members", id[:16]); got.Title != renamed || got.Digest != alice.groupInfo("group", "members", id[:16]).Digest {
		t.Errorf("bob's group after the rename: %q, digest %s; want %q and alice's digest", got.Title, got.Digest, renamed)
	}
	if got := carol.receiveGroup(); len(got) != 0 {
		t.Errorf("carol receive after the rename = %+v, want nothing", got)
	}
	if got := carol.groupInfo("group", "members", id[:16]); got.Title != title {
		t.Errorf("carol's group after the rename: %q, want the old title %q", got.Title, title)
	}

	// What the server kept. The members' account ids, as the group states name them, must
	// be the ones in the accounts table: that is what the row scan looks for.
	num := map[uuid.UUID]string{}
	for _, r := range before.rows {
		if r.db == "bastion.db" && r.table == "accounts" && len(r.cells) >= 2 {
			if aid, err := uuid.FromBytes(r.cells[0]); err == nil {
				num[aid] = string(r.cells[1])
			}
		}
	}
	var members []account
	for _, m := range g.Members {
		if num[m.Account] == "" {
			t.Fatalf("member account %s is not in the server's accounts table; the row scan would look for the wrong ids", m.Account)
		}
		members = append(members, account{number: num[m.Account], id: m.Account})
	}
	rawID, err := hex.DecodeString(id)
	if err != nil {
		t.Fatal(err)
	}
	needles := map[string][]byte{
		"the group title":          []byte(title),
		"the new group title":      []byte(renamed),
		"the title's first 16":     []byte(title[:16]),
		"the group id":             rawID,
		"the group id in hex":      []byte(id),
		"the group id's 16 hex":    []byte(id[:16]),
		"a plaintext's first 16":   []byte(sent[0][:16]),
		"the removed member's try": []byte(sent[6]),
	}
	for i, p := range sent {
		needles[fmt.Sprintf("plaintext %d", i+1)] = []byte(p)
	}
	scan := func(when string) dbSnapshot {
		for _, f := range scanFiles(t, srv.dataDir, needles) {
			t.Errorf("%s: %s", when, f)
		}
		snap := readDatabases(t, srv.dataDir)
		for _, r := range membershipRows(snap, members) {
			t.Errorf("%s: a row holds a membership record: %s", when, r)
		}
		return snap
	}
	scan("running")
	srv.stop(t)
	after := scan("stopped")

	// Tables that grew while the group lived: only ones whose rows name one device or
	// none (the queue, the connection log, rate-limit buckets, the queue's sequence).
	allowed := []string{"bastion.db/envelopes", "bastion.db/sqlite_sequence", "bastion.db/connections",
		"bastion.db/rate_limits", "bastion.db/prekeys", "bastion.db/kyber_prekeys"}
	for _, g := range grown(before, after) {
		if !slices.ContainsFunc(allowed, func(a string) bool { return strings.HasPrefix(g, a+" ") }) {
			t.Errorf("table %s grew while the group was used", g)
		}
	}
	t.Logf("tables that grew while the group was used: %q", grown(before, after))

	logOut, console := srv.log.String(), srv.console.String()
	for what, n := range needles {
		if bytes.Contains([]byte(logOut), n) || bytes.Contains([]byte(console), n) {
			t.Errorf("%s found in the server's output", what)
		}
	}
	for _, u := range []*user{alice, bob, carol} {
		if strings.Contains(logOut, u.number) || strings.Contains(logOut, strings.TrimPrefix(u.number, "+")) {
			t.Errorf("phone number %s found in the server's log", u.number)
		}
	}
	// A log line naming two members would be a record of who talks to whom.
	for _, line := range strings.Split(logOut, "\n") {
		r := dbRow{db: "log", table: "line", cells: [][]byte{[]byte(line)}}
		if n := len(membershipRows(dbSnapshot{rows: []dbRow{r}}, members)); n > 0 {
			t.Errorf("a log line names two or more members: %.200s", line)
		}
	}
	if !strings.Contains(logOut, `"msg":"serving"`) {
		t.Errorf("the server's log is missing; the scans above saw nothing:\n%s", logOut)
	}
}
