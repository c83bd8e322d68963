package legal

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bastionchat/bastion/internal/translog"
	"github.com/bastionchat/bastion/internal/translog/translogtest"
)

func TestLogStorageConformance(t *testing.T) {
	translogtest.Run(t, func(t *testing.T) translog.Storage {
		db, err := Open(context.Background(), filepath.Join(t.TempDir(), "legal.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return logStorage{db.db}
	})
}

// TestReportRecomputesFromLog runs orders through the desk, verifies the legal log and
// recomputes the report from its entries alone: it must equal the desk's report and the
// figures the scenario implies.
func TestReportRecomputesFromLog(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// H1 2026, DE: one fulfilled (ack 3 h, effect 6 h), one rejected at intake, one
	// answered "not held", one pending. FR: one rejected by an operator after 10 h.
	f.disclose(t, order(nil))
	if _, err := f.desk.Intake(ctx, f.alice, order(func(o *Order) { o.LegalBasis = ""; o.CaseReference = "2" })); err != nil {
		t.Fatal(err)
	}
	if _, err := f.desk.Intake(ctx, f.alice, order(func(o *Order) { o.Categories = []string{"message_content"}; o.CaseReference = "3" })); err != nil {
		t.Fatal(err)
	}
	if _, err := f.desk.Intake(ctx, f.alice, order(func(o *Order) { o.CaseReference = "4" })); err != nil {
		t.Fatal(err)
	}
	fr, err := f.desk.Intake(ctx, f.alice, order(func(o *Order) { o.Jurisdiction = "FR"; o.CaseReference = "5" }))
	if err != nil {
		t.Fatal(err)
	}
	f.clock.add(10 * time.Hour)
	if _, err := f.desk.Reject(ctx, f.bob, fr.ID, "no jurisdiction over the service"); err != nil {
		t.Fatal(err)
	}
	// H2 2026, DE: one fulfilled.
	f.clock.t = time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)
	f.disclose(t, order(func(o *Order) { o.CaseReference = "6" }))
	if _, err := f.desk.Withdraw(ctx, f.alice, "KP", "The law of KP requires a backdoor.", false); err != nil {
		t.Fatal(err)
	}

	cp, entries, err := VerifyLog(ctx, OpenLocalLog(f.db, f.key), f.key.Public())
	if err != nil {
		t.Fatalf("VerifyLog = %v", err)
	}
	if cp.Size != 12 {
		t.Errorf("log size = %d, want 12 (6 received, 5 outcomes, 1 market)", cp.Size)
	}
	for _, e := range entries {
		for _, secret := range []string{numA, "Staatsanwaltschaft", "§ 100g", acctA.String(), "198.51.100.7", "123 Js"} {
			if bytes.Contains(e, []byte(secret)) {
				t.Errorf("log entry %s holds personal or order data %q", e, secret)
			}
		}
	}
	recomputed, err := ComputeReport(entries)
	if err != nil {
		t.Fatal(err)
	}
	served, err := f.desk.Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	served.GeneratedFrom = ReportSource{}
	if !reflect.DeepEqual(recomputed, served) {
		t.Errorf("report recomputed from the log differs:\n got %+v\nwant %+v", recomputed, served)
	}
	want := []PeriodStats{
		{Jurisdiction: "DE", Period: "2026-H2", Received: 1, Fulfilled: 1, AccountsNamed: 1, AccountsAffected: 1,
			CategoriesRequested:      map[string]int{"connection_log": 1, "phone_number": 1},
			CategoriesDisclosed:      map[string]int{"connection_log": 1, "phone_number": 1},
			MedianHoursToAcknowledge: 3, MedianHoursToEffect: 6},
		{Jurisdiction: "DE", Period: "2026-H1", Received: 4, Rejected: 1, Fulfilled: 1, NotHeld: 1, Pending: 1,
			AccountsNamed: 4, AccountsAffected: 1,
			CategoriesRequested: map[string]int{"connection_log": 3, "phone_number": 3, "message_content": 1},
			CategoriesDisclosed: map[string]int{"connection_log": 1, "phone_number": 1},
			// Three concluded: 3 h (approval), 0 h and 0 h (at intake): median 0.
			MedianHoursToAcknowledge: 0, MedianHoursToEffect: 0},
		{Jurisdiction: "FR", Period: "2026-H1", Received: 1, Rejected: 1, AccountsNamed: 1,
			CategoriesRequested: map[string]int{"connection_log": 1, "phone_number": 1}, CategoriesDisclosed: map[string]int{},
			MedianHoursToAcknowledge: 10, MedianHoursToEffect: 10},
	}
	if !reflect.DeepEqual(recomputed.Periods, want) {
		g, _ := json.MarshalIndent(recomputed.Periods, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("report periods =\n%s\nwant\n%s", g, w)
	}
	if len(recomputed.Markets) != 1 || recomputed.Markets[0].Country != "KP" || recomputed.Markets[0].Action != "withdraw" {
		t.Errorf("report markets = %+v, want the KP withdrawal", recomputed.Markets)
	}

	// A tampered entry no longer verifies.
	res, err := f.db.db.Exec(`UPDATE log_entries SET data = CAST(replace(CAST(data AS TEXT), '"FR"', '"DE"') AS BLOB) WHERE CAST(data AS TEXT) LIKE '%"FR"%'`)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 2 {
		t.Fatalf("tampered with %d entries, want 2", n)
	}
	if _, _, err := VerifyLog(ctx, OpenLocalLog(f.db, f.key), f.key.Public()); err == nil {
		t.Error("VerifyLog(tampered entry) = nil, want an error")
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{5}, 5}, {[]float64{9, 1, 5}, 5}, {[]float64{1, 2, 3, 10}, 2.5}, {[]float64{0.04, 0.06}, 0.1}}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestPeriod(t *testing.T) {
	tests := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "2026-H1"},
		{time.Date(2026, 6, 30, 23, 59, 59, 0, time.UTC), "2026-H1"},
		{time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC), "2026-H2"},
	}
	for _, tt := range tests {
		if got := Period(tt.in); got != tt.want {
			t.Errorf("Period(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestMarkets(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, ok, _ := f.db.Withdrawn(ctx, "RU"); ok {
		t.Fatal("Withdrawn(RU) before any withdrawal = true")
	}
	if _, err := f.desk.Withdraw(ctx, f.alice, "RU", "", false); err == nil {
		t.Error("Withdraw(no reason) = nil, want an error")
	}
	if _, err := f.desk.Withdraw(ctx, f.alice, "Russia", "x", false); err == nil {
		t.Error("Withdraw(not a code) = nil, want an error")
	}
	if _, err := f.desk.Withdraw(ctx, f.alice, "ru", "Demanded a backdoor.", false); err != nil {
		t.Fatal(err)
	}
	w, ok, err := f.db.Withdrawn(ctx, "RU")
	if err != nil || !ok || w.Reason != "Demanded a backdoor." || !w.WithdrawnAt.Equal(t0) {
		t.Errorf("Withdrawn(RU) = %+v, %v, %v; want the withdrawal", w, ok, err)
	}
	if _, err := f.desk.Withdraw(ctx, f.alice, "RU", "x", true); err == nil {
		t.Error("Withdraw(--close-existing) without a hook = nil, want an error")
	}
	if err := f.desk.Restore(ctx, f.bob, "RU"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := f.db.Withdrawn(ctx, "RU"); ok {
		t.Error("Withdrawn(RU) after restore = true")
	}
	if err := f.desk.Restore(ctx, f.bob, "RU"); err == nil {
		t.Error("Restore(not withdrawn) = nil, want an error")
	}
	h, _ := f.db.MarketHistory(ctx)
	if len(h) != 3 || h[0].Action != "withdraw" || h[2].Action != "restore" {
		t.Errorf("MarketHistory = %+v, want withdraw, withdraw, restore", h)
	}
}

func TestPageRenders(t *testing.T) {
	f := newFixture(t)
	f.disclose(t, order(nil))
	f.desk.Withdraw(context.Background(), f.alice, "KP", "Backdoor <law> & co", false)
	rep, err := f.desk.Report(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ws, _ := f.db.Withdrawals(context.Background())
	var b bytes.Buffer
	if err := RenderPage(&b, rep, ws); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{`<svg id="chart"`, `class="received" data-period="2026-H1" data-value="1"`,
		`<td>2026-H1</td><td>DE</td><td>1</td>`, `id="market-KP"`, "Backdoor &lt;law&gt; &amp; co"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "src=\"http", "href=\"http"} {
		if strings.Contains(page, bad) {
			t.Errorf("page holds %q: it must be self-contained", bad)
		}
	}
}

// TestImportFence: the desk reaches user data only through [Subscribers]; it must not
// import the store, the server, the protocol or the client.
func TestImportFence(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command(gobin, "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/bastionchat/bastion"
	forbidden := []string{mod + "/internal/store", mod + "/internal/server", mod + "/protocol", mod + "/client", mod + "/api"}
	for _, dep := range strings.Fields(string(out)) {
		if dep == mod {
			t.Errorf("internal/legal imports %s", dep)
		}
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("internal/legal imports %s", dep)
			}
		}
	}
}

func TestKeyFileMode(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateKey(dir)
	if err != nil || !k1.Public().Equal(k2.Public()) {
		t.Errorf("LoadOrCreateKey again = %v, same key %v; want the stored key", err, err == nil && k1.Public().Equal(k2.Public()))
	}
}

func TestWithdrawNeedsARealCountry(t *testing.T) {
	f := newFixture(t)
	for _, cc := range []string{"XX", "ZZ", "E", "DEU"} {
		if _, err := f.desk.Withdraw(context.Background(), f.alice, cc, "statement", false); err == nil {
			t.Errorf("Withdraw(%q) = nil, want an error", cc)
		}
	}
}

func TestDBFileMode(t *testing.T) {
	f := newFixture(t)
	fi, err := os.Stat(filepath.Join(f.dir, "legal.db"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("legal.db mode = %v, want 0600", fi.Mode().Perm())
	}
}

// TestSameOrderTwice: an order entered twice (same text, same hash) counts twice.
func TestSameOrderTwice(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, _ := f.desk.Intake(ctx, f.alice, order(nil))
	b, _ := f.desk.Intake(ctx, f.alice, order(nil))
	if a.OrderSHA256 != b.OrderSHA256 {
		t.Fatal("identical orders hash differently")
	}
	if _, err := f.desk.Reject(ctx, f.bob, b.ID, "duplicate"); err != nil {
		t.Fatal(err)
	}
	rep, err := f.desk.Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Periods) != 1 || rep.Periods[0].Received != 2 || rep.Periods[0].Rejected != 1 || rep.Periods[0].Pending != 1 {
		t.Errorf("report = %+v, want 2 received, 1 rejected, 1 pending", rep.Periods)
	}
}

// TestFlushAfterCrash: an entry left pending by a crash after its append is not appended
// twice; one left before its append is appended.
func TestFlushAfterCrash(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.desk.Intake(ctx, f.alice, order(nil))
	before, _ := f.desk.Log().Tree(ctx)
	es, err := f.desk.Log().Entries(ctx, 0, before.N)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.db.Exec(`INSERT INTO log_pending (data) VALUES (?)`, es[0]); err != nil {
		t.Fatal(err)
	}
	fresh, _ := LogEntry{Kind: KindMarket, Jurisdiction: "FR", Action: "withdraw", At: t0, Statement: "s"}.Encode()
	if _, err := f.db.db.Exec(`INSERT INTO log_pending (data) VALUES (?)`, fresh); err != nil {
		t.Fatal(err)
	}
	d2, err := NewDesk(ctx, Config{DB: f.db, Key: f.key, Categories: testCategories, Now: f.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := d2.Log().Tree(ctx)
	if after.N != before.N+1 {
		t.Errorf("log size after recovery = %d, want %d (the fresh entry only)", after.N, before.N+1)
	}
	var left int
	f.db.db.QueryRow(`SELECT count(*) FROM log_pending`).Scan(&left)
	if left != 0 {
		t.Errorf("pending entries after recovery = %d, want 0", left)
	}
}
