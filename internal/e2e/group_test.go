package e2e

import (
	"bytes"
	"database/sql"
	"encoding/hex"
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
