package legal

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// testCategories mirrors the shape of the data inventory's categories (the server's
// adapter test checks the real inventory goes through the same path).
var testCategories = []Category{
	{ID: "phone_number", Name: "Phone number", Held: true, Disclosable: true},
	{ID: "connection_log", Name: "Connection log", Held: true, Disclosable: true},
	{ID: "account_keys", Name: "Keys", Held: true},
	{ID: "message_content", Name: "Message content"},
	{ID: "contacts", Name: "Contacts"},
	{ID: "groups", Name: "Groups"},
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeSubs is a [Subscribers] that counts its lookups.
type fakeSubs struct {
	mu      sync.Mutex
	numbers map[string]uuid.UUID
	conns   map[uuid.UUID][]Connection
	lookups int
}

func (f *fakeSubs) AccountByNumber(ctx context.Context, number string) (uuid.UUID, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	a, ok := f.numbers[number]
	return a, ok, nil
}

func (f *fakeSubs) Connections(ctx context.Context, a uuid.UUID) ([]Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	return f.conns[a], nil
}

type sentNotice struct {
	account uuid.UUID
	body    []byte
}

type fakeNotifier struct {
	mu   sync.Mutex
	sent []sentNotice
}

func (f *fakeNotifier) NotifyAccount(ctx context.Context, a uuid.UUID, b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, sentNotice{a, b})
	return nil
}

func (f *fakeNotifier) count() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.sent) }

type fixture struct {
	desk       *Desk
	db         *DB
	key        *SigningKey
	clock      *clock
	subs       *fakeSubs
	notes      *fakeNotifier
	alice, bob Operator
	dir        string
}

const (
	numA = "+4915123456789"
	numB = "+33612345678"
)

var (
	acctA = uuid.MustParse("11111111-1111-4111-8111-111111111111")
	t0    = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(ctx, filepath.Join(dir, "legal.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	key, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, key: key, clock: &clock{t: t0}, notes: &fakeNotifier{}, dir: dir}
	f.subs = &fakeSubs{
		numbers: map[string]uuid.UUID{numA: acctA},
		conns: map[uuid.UUID][]Connection{acctA: {
			{IP: netip.MustParseAddr("198.51.100.7"), FirstSeen: t0.Add(-72 * time.Hour), LastSeen: t0.Add(-2 * time.Hour)},
			{IP: netip.MustParseAddr("2001:db8::1"), FirstSeen: t0.Add(-30 * 24 * time.Hour), LastSeen: t0.Add(-20 * 24 * time.Hour)}, // outside 7 days
		}},
	}
	f.desk, err = NewDesk(ctx, Config{
		DB: db, Key: key, Subscribers: f.subs, Notifier: f.notes, Categories: testCategories,
		Retention: 7 * 24 * time.Hour, Now: f.clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.alice = f.operator(t, "alice")
	f.bob = f.operator(t, "bob")
	return f
}

func (f *fixture) operator(t testing.TB, name string) Operator {
	t.Helper()
	tok, err := AddOperator(context.Background(), f.db, name, f.clock.now())
	if err != nil {
		t.Fatal(err)
	}
	op, err := f.desk.Authenticate(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

func order(mod func(o *Order)) []byte {
	o := Order{
		IssuingAuthority: "Staatsanwaltschaft Berlin", Court: "Amtsgericht Tiergarten", Jurisdiction: "DE",
		LegalBasis: "§ 100g StPO", CaseReference: "123 Js 456/26", DateIssued: "2026-02-27",
		Targets: []string{numA}, Categories: []string{"phone_number", "connection_log"},
	}
	if mod != nil {
		mod(&o)
	}
	b, _ := json.Marshal(o)
	return b
}

func TestMessageContentIsNotHeld(t *testing.T) {
	for _, cats := range [][]string{{"message_content"}, {"message_content", "contacts", "groups"}, {"account_keys"}} {
		t.Run(strings.Join(cats, "+"), func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			r, err := f.desk.Intake(ctx, f.alice, order(func(o *Order) { o.Categories = cats }))
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != StatusConcluded || r.Outcome != OutcomeNotHeld {
				t.Errorf("Intake(%v) = %s/%s, want %s/%s", cats, r.Status, r.Outcome, StatusConcluded, OutcomeNotHeld)
			}
			if len(r.Reasons) != len(cats) {
				t.Errorf("Intake(%v) reasons = %v, want one per category", cats, r.Reasons)
			}
			for _, rs := range r.Reasons {
				if want := "not held"; cats[0] != "account_keys" && rs.Reason != want {
					t.Errorf("reason for %s = %q, want %q", rs.Subject, rs.Reason, want)
				}
			}
			if len(r.Disclosed) != 0 {
				t.Errorf("Intake(%v) disclosed %v, want nothing", cats, r.Disclosed)
			}
			// Nothing is disclosable after approvals either, and nothing was looked up.
			f.desk.Approve(ctx, f.alice, r.ID)
			f.desk.Approve(ctx, f.bob, r.ID)
			if pkg, _, err := f.desk.Disclose(ctx, f.alice, r.ID); err == nil || pkg != nil {
				t.Errorf("Disclose(not held) = %d bytes, %v; want an error and no package", len(pkg), err)
			}
			if f.subs.lookups != 0 {
				t.Errorf("subscriber lookups = %d, want 0", f.subs.lookups)
			}
			if f.notes.count() != 0 {
				t.Errorf("notices sent = %d, want 0", f.notes.count())
			}
		})
	}
}

func TestInvalidOrdersAreRejectedWithReason(t *testing.T) {
	tests := []struct {
		name string
		mod  func(o *Order)
		want string
	}{
		{"no legal basis", func(o *Order) { o.LegalBasis = " " }, "no legal basis"},
		{"no authority", func(o *Order) { o.IssuingAuthority = "" }, "no issuing authority"},
		{"no target", func(o *Order) { o.Targets = nil }, "no target"},
		{"empty targets", func(o *Order) { o.Targets = []string{"", " "} }, "no target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			r, err := f.desk.Intake(context.Background(), f.alice, order(tt.mod))
			if err != nil {
				t.Fatal(err)
			}
			if r.Outcome != OutcomeRejected || !slices.ContainsFunc(r.Reasons, func(x Reason) bool { return strings.Contains(x.Reason, tt.want) }) {
				t.Errorf("Intake(%s) = %s %v, want rejected with %q", tt.name, r.Outcome, r.Reasons, tt.want)
			}
			if f.subs.lookups != 0 {
				t.Errorf("lookups = %d, want 0", f.subs.lookups)
			}
		})
	}
}

func TestParseOrderErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"unknown category", string(order(func(o *Order) { o.Categories = []string{"message_contents"} })), "unknown data category"},
		{"bad country", string(order(func(o *Order) { o.Jurisdiction = "Germany" })), "ISO 3166-1"},
		{"bad date", string(order(func(o *Order) { o.DateIssued = "27.02.2026" })), "date_issued"},
		{"bad deferral", string(order(func(o *Order) { o.NotifyAfter = "soon" })), "notify_after"},
		{"no category", string(order(func(o *Order) { o.Categories = nil })), "no data category"},
		{"unknown field", `{"issuing_authority":"x","judge":"y"}`, "unknown field"},
		{"trailing", string(order(nil)) + "{}", "trailing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseOrder([]byte(tt.in), testCategories)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseOrder(%s) = %v, want error containing %q", tt.name, err, tt.want)
			}
		})
	}
}

func TestOneOperatorCannotApproveAlone(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r, err := f.desk.Intake(ctx, f.alice, order(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.desk.Disclose(ctx, f.alice, r.ID); !errors.Is(err, ErrNeedsApproval) {
		t.Fatalf("Disclose(no approval) = %v, want ErrNeedsApproval", err)
	}
	if _, err := f.desk.Approve(ctx, f.alice, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.desk.Approve(ctx, f.alice, r.ID); !errors.Is(err, ErrAlreadyApproved) {
		t.Fatalf("Approve(same operator twice) = %v, want ErrAlreadyApproved", err)
	}
	if _, _, err := f.desk.Disclose(ctx, f.alice, r.ID); !errors.Is(err, ErrNeedsApproval) {
		t.Fatalf("Disclose(one approval) = %v, want ErrNeedsApproval", err)
	}
	if f.subs.lookups != 0 {
		t.Fatalf("lookups before two approvals = %d, want 0", f.subs.lookups)
	}
	got, err := f.desk.Approve(ctx, f.bob, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusApproved || !reflect.DeepEqual(got.Approvals, []string{"alice", "bob"}) {
		t.Fatalf("after two approvals: %s %v, want approved by alice and bob", got.Status, got.Approvals)
	}
	if _, _, err := f.desk.Disclose(ctx, f.bob, r.ID); err != nil {
		t.Fatalf("Disclose(two approvals) = %v", err)
	}
	if _, err := f.desk.Approve(ctx, f.bob, r.ID); !errors.Is(err, ErrConcluded) {
		t.Errorf("Approve(concluded) = %v, want ErrConcluded", err)
	}
	if _, err := f.desk.Reject(ctx, f.bob, r.ID, "late"); !errors.Is(err, ErrConcluded) {
		t.Errorf("Reject(concluded) = %v, want ErrConcluded", err)
	}
}

func TestRejectRecordsReason(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r, _ := f.desk.Intake(ctx, f.alice, order(nil))
	if _, err := f.desk.Reject(ctx, f.bob, r.ID, " "); err == nil {
		t.Error("Reject(no reason) = nil, want an error")
	}
	got, err := f.desk.Reject(ctx, f.bob, r.ID, "order not signed by a judge")
	if err != nil {
		t.Fatal(err)
	}
	if got.Outcome != OutcomeRejected || !strings.Contains(got.Reasons[len(got.Reasons)-1].Reason, "not signed by a judge") {
		t.Errorf("Reject = %s %v, want rejected with the reason", got.Outcome, got.Reasons)
	}
	if _, _, err := f.desk.Disclose(ctx, f.alice, r.ID); err == nil {
		t.Error("Disclose(rejected) = nil, want an error")
	}
}

// disclose runs an order through intake, two approvals and disclosure.
func (f *fixture) disclose(t testing.TB, raw []byte) (Record, []byte, []byte) {
	t.Helper()
	ctx := context.Background()
	r, err := f.desk.Intake(ctx, f.alice, raw)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != StatusPending {
		t.Fatalf("Intake status = %s (%v), want pending", r.Status, r.Reasons)
	}
	f.clock.add(3 * time.Hour)
	if _, err := f.desk.Approve(ctx, f.alice, r.ID); err != nil {
		t.Fatal(err)
	}
	f.clock.add(2 * time.Hour)
	if _, err := f.desk.Approve(ctx, f.bob, r.ID); err != nil {
		t.Fatal(err)
	}
	f.clock.add(time.Hour)
	pkg, sig, err := f.desk.Disclose(ctx, f.bob, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	r, err = f.desk.Show(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	return r, pkg, sig
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestPackageHasExactlyTheAllowedFields is the schema test: a disclosure package holds
// these fields and no other, per target only the phone number and the connection log.
func TestPackageHasExactlyTheAllowedFields(t *testing.T) {
	f := newFixture(t)
	r, pkg, sig := f.disclose(t, order(func(o *Order) {
		o.Targets = []string{numA, numB, "12345"}
		o.Categories = []string{"phone_number", "connection_log", "message_content"}
	}))
	var doc map[string]any
	if err := json.Unmarshal(pkg, &doc); err != nil {
		t.Fatal(err)
	}
	wantTop := []string{"categories_disclosed", "categories_not_given", "generated_at", "issuing_authority",
		"order_reference", "order_sha256", "retention_days", "targets", "version"}
	if got := keys(doc); !reflect.DeepEqual(got, wantTop) {
		t.Errorf("package fields = %v, want %v", got, wantTop)
	}
	targets := doc["targets"].([]any)
	if len(targets) != 2 {
		t.Fatalf("package targets = %d, want 2 (the invalid number is not answered)", len(targets))
	}
	for _, x := range targets {
		tg := x.(map[string]any)
		if got, want := keys(tg), []string{"connections", "phone_number", "registered"}; !reflect.DeepEqual(got, want) {
			t.Errorf("target fields = %v, want %v", got, want)
		}
		for _, c := range tg["connections"].([]any) {
			if got, want := keys(c.(map[string]any)), []string{"first_seen", "ip", "last_seen"}; !reflect.DeepEqual(got, want) {
				t.Errorf("connection fields = %v, want %v", got, want)
			}
		}
	}
	var p Package
	if err := json.Unmarshal(pkg, &p); err != nil {
		t.Fatal(err)
	}
	if p.Targets[0].PhoneNumber != numA || !p.Targets[0].Registered || len(p.Targets[0].Connections) != 1 ||
		p.Targets[0].Connections[0].IP != "198.51.100.7" {
		t.Errorf("target A = %+v, want registered with the one connection inside the window", p.Targets[0])
	}
	if p.Targets[1].PhoneNumber != numB || p.Targets[1].Registered || len(p.Targets[1].Connections) != 0 {
		t.Errorf("target B = %+v, want unregistered, no connections", p.Targets[1])
	}
	if !reflect.DeepEqual(p.CategoriesNotHeld, []string{"message_content"}) || p.OrderSHA256 != r.OrderSHA256 {
		t.Errorf("package = %+v, want message_content not given and the order's hash", p)
	}
	if r.Outcome != OutcomePartial || len(r.Reasons) != 3 {
		t.Errorf("outcome = %s %v, want partially fulfilled with 3 reasons (category, unregistered, invalid)", r.Outcome, r.Reasons)
	}

	if err := VerifyPackage(f.key.Public(), pkg, sig); err != nil {
		t.Errorf("VerifyPackage(good) = %v", err)
	}
	bad := []byte(strings.Replace(string(pkg), "198.51.100.7", "198.51.100.8", 1))
	if err := VerifyPackage(f.key.Public(), bad, sig); err == nil {
		t.Error("VerifyPackage(altered) = nil, want an error")
	}
	other, _ := LoadOrCreateKey(t.TempDir())
	if err := VerifyPackage(other.Public(), pkg, sig); err == nil {
		t.Error("VerifyPackage(other key) = nil, want an error")
	}
	// A second disclose returns the same package, and looks nothing up again.
	n := f.subs.lookups
	pkg2, _, err := f.desk.Disclose(context.Background(), f.alice, r.ID)
	if err != nil || string(pkg2) != string(pkg) || f.subs.lookups != n {
		t.Errorf("Disclose again = %v, same=%v, lookups %d->%d; want the stored package", err, string(pkg2) == string(pkg), n, f.subs.lookups)
	}
}

func TestDeferralHoldsNoticeUntilItsDate(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r, _, _ := f.disclose(t, order(func(o *Order) { o.NotifyAfter = "2026-06-01" }))
	if n := f.notes.count(); n != 0 {
		t.Fatalf("notices sent before the deferral ends = %d, want 0", n)
	}
	if len(r.Notices) != 1 || !r.Notices[0].Due.Equal(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)) || r.Notices[0].Sent != nil {
		t.Fatalf("notices = %+v, want one due 2026-06-01, unsent", r.Notices)
	}
	f.clock.t = time.Date(2026, 5, 31, 23, 59, 59, 0, time.UTC)
	if n, err := f.desk.DeliverDueNotices(ctx); n != 0 || err != nil {
		t.Fatalf("DeliverDueNotices(a second early) = %d, %v; want 0", n, err)
	}
	f.clock.add(time.Second)
	if n, err := f.desk.DeliverDueNotices(ctx); n != 1 || err != nil {
		t.Fatalf("DeliverDueNotices(on the date) = %d, %v; want 1", n, err)
	}
	if n, _ := f.desk.DeliverDueNotices(ctx); n != 0 {
		t.Errorf("DeliverDueNotices(again) = %d, want 0", n)
	}
	sent := f.notes.sent[0]
	var notice UserNotice
	if err := json.Unmarshal(sent.body, &notice); err != nil {
		t.Fatal(err)
	}
	if sent.account != acctA || notice.From != "operator" || notice.IssuingAuthority != "Staatsanwaltschaft Berlin" ||
		notice.LegalBasis != "§ 100g StPO" || !reflect.DeepEqual(notice.CategoriesDisclosed, []string{"connection_log", "phone_number"}) {
		t.Errorf("notice = %s to %v, want who asked, the basis and the categories, to account A", sent.body, sent.account)
	}
}

func TestNoticeWithoutDeferralGoesAtDisclosure(t *testing.T) {
	f := newFixture(t)
	f.disclose(t, order(nil))
	if n := f.notes.count(); n != 1 {
		t.Errorf("notices sent at disclosure = %d, want 1", n)
	}
}

func TestNoConnectionsWithZeroRetention(t *testing.T) {
	f := newFixture(t)
	f.desk.retention = 0
	_, pkg, _ := f.disclose(t, order(nil))
	var p Package
	json.Unmarshal(pkg, &p)
	if len(p.Targets) != 1 || len(p.Targets[0].Connections) != 0 {
		t.Errorf("package with 0-day retention = %+v, want no connections", p.Targets)
	}
}
