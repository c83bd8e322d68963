package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/legal"
)

// legalHarness is a harness with the desk attached, and two operators.
type legalHarness struct {
	*harness
	desk       *legal.Desk
	key        *legal.SigningKey
	alice, bob legal.Operator
}

func newLegalHarness(t *testing.T) *legalHarness {
	t.Helper()
	h := newHarness(t, nil)
	ctx := context.Background()
	dir := t.TempDir()
	db, err := legal.Open(ctx, filepath.Join(dir, "legal.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	key, err := legal.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	desk, err := h.srv.newDesk(ctx, db, key)
	if err != nil {
		t.Fatal(err)
	}
	lh := &legalHarness{harness: h, desk: desk, key: key}
	for _, name := range []string{"alice", "bob"} {
		tok, err := legal.AddOperator(ctx, db, name, h.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		op, err := desk.Authenticate(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if name == "alice" {
			lh.alice = op
		} else {
			lh.bob = op
		}
	}
	return lh
}

func orderJSON(number string, categories ...string) []byte {
	b, _ := json.Marshal(legal.Order{
		IssuingAuthority: "Procureur de la République", Court: "Tribunal judiciaire de Paris", Jurisdiction: "FR",
		LegalBasis: "Art. 60-1 CPP", CaseReference: "PQ 26/001", DateIssued: "2026-10-30",
		Targets: []string{number}, Categories: categories,
	})
	return b
}

func TestWithdrawnMarketRefusesRegistration(t *testing.T) {
	h := newLegalHarness(t)
	ctx := context.Background()
	const de = "+4915123456789"
	h.secret(de)
	if _, err := h.desk.Withdraw(ctx, h.alice, "DE", "A law requires us to scan messages; we will not.", false); err != nil {
		t.Fatal(err)
	}
	r := h.do("POST", "/v1/verification", map[string]string{"number": de}, nil)
	h.want(r, http.StatusUnavailableForLegalReasons, CodeMarketWithdrawn, "verification from a withdrawn market")
	if msg := r.apiError().Message; !strings.Contains(msg, "/transparency#market-DE") || !strings.Contains(msg, "scan messages") {
		t.Errorf("refusal message = %q, want the statement and its link", msg)
	}
	if h.sms.code(de) != "" {
		t.Error("a code was sent to a number from a withdrawn market")
	}
	// Other markets are unaffected.
	h.register("+14155550301", 0)

	page := h.do("GET", "/transparency", nil, nil)
	h.want(page, 200, "", "GET /transparency")
	if !strings.Contains(string(page.body), `id="market-DE"`) {
		t.Errorf("transparency page lacks the withdrawal")
	}
	m := decodeBody[MarketsResponse](t, h.do("GET", "/v1/markets", nil, nil))
	if len(m.Withdrawn) != 1 || m.Withdrawn[0].Country != "DE" || m.Withdrawn[0].Reason == "" {
		t.Errorf("/v1/markets = %+v, want DE with its reason", m)
	}

	if err := h.desk.Restore(ctx, h.bob, "DE"); err != nil {
		t.Fatal(err)
	}
	h.register(de, 0)
	m = decodeBody[MarketsResponse](t, h.do("GET", "/v1/markets", nil, nil))
	if len(m.Withdrawn) != 0 || len(m.History) != 2 {
		t.Errorf("/v1/markets after restore = %+v, want none withdrawn and two events", m)
	}
}

// TestWithdrawalStopsVerifiedSession: a session whose code was verified before the
// withdrawal cannot register after it.
func TestWithdrawalStopsVerifiedSession(t *testing.T) {
	h := newLegalHarness(t)
	ctx := context.Background()
	const fr = "+33612345678"
	h.secret(fr)
	session := h.verify(fr)
	if _, err := h.desk.Withdraw(ctx, h.alice, "FR", "We will not build a backdoor.", false); err != nil {
		t.Fatal(err)
	}
	ik := newIdentity(t)
	k := keys(t, ik, 1, 0)
	r := h.do("POST", "/v1/accounts", api.RegisterRequest{
		SessionID: session, IdentityKey: ik.PublicKey().Bytes(), RegistrationID: 1234,
		SignedPreKey: *k.SignedPreKey, KyberLastResort: *k.KyberLastResort,
	}, nil)
	h.want(r, http.StatusUnavailableForLegalReasons, CodeMarketWithdrawn, "register after the withdrawal")
	if _, err := h.st.AccountByNumber(ctx, fr); err == nil {
		t.Error("the account was created despite the withdrawal")
	}
}

// TestDisclosureThroughServer runs an order against the real store: the real inventory
// answers "not held", the package holds the connection log, and the notice reaches the
// account's device queue as a server-originated envelope.
func TestDisclosureThroughServer(t *testing.T) {
	h := newLegalHarness(t)
	ctx := context.Background()
	const num = "+14155550302"
	c := h.register(num, 0)
	ip := netip.MustParseAddr("203.0.113.9")
	h.secret(num, ip.String())
	if err := h.st.RecordConnection(ctx, c.account, ip, h.clock.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}

	for _, cat := range []string{"message_content", "contacts", "groups", "channels_followed", "message_metadata"} {
		r, err := h.desk.Intake(ctx, h.alice, orderJSON(num, cat))
		if err != nil {
			t.Fatal(err)
		}
		if r.Outcome != legal.OutcomeNotHeld || len(r.Reasons) != 1 || r.Reasons[0].Reason != "not held" {
			t.Errorf("order for %s = %s %v, want not held", cat, r.Outcome, r.Reasons)
		}
	}

	r, err := h.desk.Intake(ctx, h.alice, orderJSON(num, "phone_number", "connection_log", "message_content"))
	if err != nil {
		t.Fatal(err)
	}
	h.desk.Approve(ctx, h.alice, r.ID)
	h.desk.Approve(ctx, h.bob, r.ID)
	pkg, sig, err := h.desk.Disclose(ctx, h.bob, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	var p legal.Package
	json.Unmarshal(pkg, &p)
	if len(p.Targets) != 1 || len(p.Targets[0].Connections) != 1 || p.Targets[0].Connections[0].IP != ip.String() {
		t.Errorf("package targets = %+v, want the one connection", p.Targets)
	}
	keyResp := decodeBody[LegalKeyResponse](t, h.do("GET", "/v1/legal/key", nil, nil))
	pub, _ := base64.StdEncoding.DecodeString(keyResp.Ed25519PublicKey)
	if err := legal.VerifyPackage(pub, pkg, sig); err != nil {
		t.Errorf("package does not verify with the served key: %v", err)
	}

	envs, err := h.st.Pending(ctx, c.account, c.device, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) != 1 {
		t.Fatalf("queued for the device = %d envelopes, want the notice", len(envs))
	}
	var n legal.UserNotice
	if err := json.Unmarshal(openNotice(t, pub, envs[0].Body), &n); err != nil || n.Type != "legal_notice" || n.From != "operator" ||
		n.IssuingAuthority != "Procureur de la République" {
		t.Errorf("queued notice = %s (%v), want a legal notice from the operator", envs[0].Body, err)
	}
}

// httpLog reads the legal log from the public endpoints.
type httpLog struct{ h *legalHarness }

func (l httpLog) Checkpoint(ctx context.Context) ([]byte, error) {
	r := l.h.do("GET", "/v1/legal/checkpoint", nil, nil)
	if r.status != 200 {
		return nil, fmt.Errorf("checkpoint: %d", r.status)
	}
	return r.body, nil
}

func (l httpLog) Entries(ctx context.Context, start, end int64) ([][]byte, error) {
	r := l.h.do("GET", fmt.Sprintf("/v1/legal/entries?start=%d&end=%d", start, end), nil, nil)
	if r.status != 200 {
		return nil, fmt.Errorf("entries: %d %s", r.status, r.body)
	}
	return decodeBody[LegalEntriesResponse](l.h.t, r).Entries, nil
}

func TestTransparencyReportRecomputesFromServedLog(t *testing.T) {
	h := newLegalHarness(t)
	ctx := context.Background()
	c := h.register("+14155550303", 0)
	_ = c
	h.desk.Intake(ctx, h.alice, orderJSON("+14155550303", "message_content"))
	r, _ := h.desk.Intake(ctx, h.alice, orderJSON("+14155550303", "phone_number"))
	h.clock.Advance(2 * time.Hour)
	h.desk.Approve(ctx, h.alice, r.ID)
	h.desk.Approve(ctx, h.bob, r.ID)
	h.clock.Advance(time.Hour)
	if _, _, err := h.desk.Disclose(ctx, h.alice, r.ID); err != nil {
		t.Fatal(err)
	}

	served := decodeBody[legal.Report](t, h.do("GET", "/v1/transparency", nil, nil))
	_, entries, err := legal.VerifyLog(ctx, httpLog{h}, h.key.Public())
	if err != nil {
		t.Fatalf("VerifyLog(served) = %v", err)
	}
	re, err := legal.ComputeReport(entries)
	if err != nil {
		t.Fatal(err)
	}
	if len(served.Periods) != 1 || len(re.Periods) != 1 {
		t.Fatalf("periods served %d, recomputed %d; want 1", len(served.Periods), len(re.Periods))
	}
	s, g := served.Periods[0], re.Periods[0]
	if s.Received != 2 || s.Fulfilled != 1 || s.NotHeld != 1 || s.AccountsAffected != 1 || s.MedianHoursToEffect != 1.5 {
		t.Errorf("served report = %+v, want 2 received, 1 fulfilled, 1 not held, 1 account, median effect 1.5 h", s)
	}
	sj, _ := json.Marshal(s)
	gj, _ := json.Marshal(g)
	if string(sj) != string(gj) {
		t.Errorf("served report %s differs from the one recomputed from the log %s", sj, gj)
	}
	if served.GeneratedFrom.TreeSize != int64(len(entries)) {
		t.Errorf("report generated from %d entries, log has %d", served.GeneratedFrom.TreeSize, len(entries))
	}
}

func TestLegalEndpointsWithoutDesk(t *testing.T) {
	h := newHarness(t, nil)
	for _, p := range []string{"/v1/transparency", "/transparency", "/v1/markets", "/v1/legal/checkpoint"} {
		h.want(h.do("GET", p, nil, nil), 404, "not_found", p)
	}
	h.register("+4915123456780", 0) // no desk, no market check
}

func TestWithdrawCloseExisting(t *testing.T) {
	h := newLegalHarness(t)
	ctx := context.Background()
	de := h.register("+4915123456701", 0)
	us := h.register("+14155550304", 0)
	h.secret(de.number, us.number)
	wde, wus := h.dial(de), h.dial(us)
	wde.next() // queue_empty
	wus.next()
	if _, err := h.desk.Withdraw(ctx, h.alice, "DE", "Scanning law.", true); err != nil {
		t.Fatal(err)
	}
	// An envelope pushed but not acked before the close is also still pending: count
	// each id once.
	var bodies [][]byte
	seen := map[uuid.UUID]bool{}
	add := func(id uuid.UUID, body []byte) {
		if !seen[id] {
			seen[id] = true
			bodies = append(bodies, body)
		}
	}
	for {
		op, p := wde.frame()
		if op == ws.OpClose {
			if code, _ := ws.ParseCloseFrameData(p); code != ws.StatusPolicyViolation {
				t.Errorf("close code = %d, want 1008", code)
			}
			break
		}
		var f api.Frame
		json.Unmarshal(p, &f)
		for _, e := range f.Envelopes {
			add(e.ID, e.Body)
		}
	}
	// The notice was queued before the close: pushed on this connection, or waiting.
	pending, err := h.st.Pending(ctx, de.account, de.device, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range pending {
		add(e.ID, e.Body)
	}
	pub := h.srv.legal.PublicKey()
	if len(bodies) != 1 || !strings.Contains(string(openNotice(t, pub, bodies[0])), `"type":"market_withdrawn"`) {
		t.Errorf("DE device got %q, want one market notice", bodies)
	}
	if us, _ := h.st.Pending(ctx, us.account, us.device, 0, 10); len(us) != 0 {
		t.Errorf("US device got %d envelopes, want none", len(us))
	}
}

// TestTransparencyPageInBrowser renders /transparency in headless Chromium and checks that
// the chart's bars are painted and the figures are in the DOM. It skips when no Chromium
// is installed, unless BASTION_REQUIRE_BROWSER=1 (CI installs Debian's chromium).
func TestTransparencyPageInBrowser(t *testing.T) {
	var browser string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		if os.Getenv("BASTION_REQUIRE_BROWSER") == "1" {
			t.Fatal("BASTION_REQUIRE_BROWSER=1 but no chromium is installed")
		}
		t.Skip("no chromium installed (set BASTION_REQUIRE_BROWSER=1 to make this an error)")
	}
	h := newLegalHarness(t)
	ctx := context.Background()
	h.register("+14155550305", 0)
	r, _ := h.desk.Intake(ctx, h.alice, orderJSON("+14155550305", "phone_number", "connection_log"))
	h.desk.Approve(ctx, h.alice, r.ID)
	h.desk.Approve(ctx, h.bob, r.ID)
	if _, _, err := h.desk.Disclose(ctx, h.bob, r.ID); err != nil {
		t.Fatal(err)
	}
	r2, _ := h.desk.Intake(ctx, h.alice, orderJSON("+14155550306", "phone_number"))
	h.desk.Reject(ctx, h.bob, r2.ID, "no judge")
	if _, err := h.desk.Withdraw(ctx, h.alice, "RU", "A backdoor law.", false); err != nil {
		t.Fatal(err)
	}

	chrome := func(args ...string) []byte {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		// --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start; the
		// page is our own.
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--user-data-dir=" + t.TempDir(), "--window-size=1000,1000"}
		cmd := exec.CommandContext(cctx, browser, append(base, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", browser, args, err, stderr.String())
		}
		return out
	}
	url := h.ts.URL + "/transparency"
	dom := string(chrome("--dump-dom", url))
	for _, want := range []string{`<svg id="chart"`, `class="received" data-period="2026-H2" data-value="2"`,
		`class="rejected" data-period="2026-H2" data-value="1"`, `class="fulfilled" data-period="2026-H2" data-value="1"`,
		`<td>2026-H2</td><td>FR</td><td>2</td><td>1</td><td>1</td>`, `id="market-RU"`, "A backdoor law."} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %q", want)
		}
	}

	shot := filepath.Join(t.TempDir(), "page.png")
	chrome("--screenshot="+shot, url)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// Each bar is 16 px wide and 80 to 160 px tall: over 1,000 pixels of its colour,
	// where the legend's glyph alone has about 100.
	colours := map[string][3]uint8{"received": {0x4a, 0x6f, 0xa5}, "rejected": {0xc0, 0x50, 0x4d}, "fulfilled": {0x4f, 0x9a, 0x55}}
	counts := map[string]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			for name, c := range colours {
				if near(r>>8, c[0]) && near(g>>8, c[1]) && near(bl>>8, c[2]) {
					counts[name]++
				}
			}
		}
	}
	for name := range colours {
		if counts[name] < 1000 {
			t.Errorf("screenshot has %d pixels of the %s bar colour, want a painted bar (> 1000)", counts[name], name)
		}
	}
}

func near(v uint32, c uint8) bool { return v+3 >= uint32(c) && v <= uint32(c)+3 }

// openNotice checks that body is a server notice signed by pub and returns the notice.
func openNotice(t *testing.T, pub ed25519.PublicKey, body []byte) []byte {
	t.Helper()
	var sn api.ServerNotice
	if err := json.Unmarshal(body, &sn); err != nil {
		t.Fatalf("queued body %q is not a server notice: %v", body, err)
	}
	if !ed25519.Verify(pub, append([]byte(api.NoticeContext), sn.Notice...), sn.Signature) {
		t.Fatalf("server notice signature does not verify with the server's key")
	}
	tampered := append([]byte(api.NoticeContext), sn.Notice...)
	tampered[len(tampered)-2] ^= 1
	if ed25519.Verify(pub, tampered, sn.Signature) {
		t.Fatalf("server notice signature verifies over an altered notice")
	}
	return sn.Notice
}

// TestWithdrawalReachesEveryNode: the desk runs on one node; another node on the same
// store (which has no desk) must refuse registrations from a withdrawn country too, and
// accept them again once restored. A mirror lost in a crash is rebuilt at desk start.
func TestWithdrawalReachesEveryNode(t *testing.T) {
	h := newLegalHarness(t)
	ctx := context.Background()
	nodeB, err := New(testConfig(), Options{Store: h.st, SMS: h.sms, Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tsB := httptest.NewServer(nodeB.Handler())
	t.Cleanup(tsB.Close)
	const de = "+4915123456788"
	h.secret(de)
	requestCode := func() (int, string) {
		t.Helper()
		resp, err := http.Post(tsB.URL+"/v1/verification", "application/json", strings.NewReader(`{"number":"`+de+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if _, err := h.desk.Withdraw(ctx, h.alice, "DE", "We will not scan messages.", false); err != nil {
		t.Fatal(err)
	}
	if code, body := requestCode(); code != http.StatusUnavailableForLegalReasons || !strings.Contains(body, CodeMarketWithdrawn) ||
		!strings.Contains(body, "We will not scan messages.") {
		t.Errorf("node without the desk: code request from DE = %d %s, want 451 %s with the statement", code, body, CodeMarketWithdrawn)
	}

	// Lose the mirror (a crash between the desk's commit and the mirror write), then
	// start the desk again: it puts the withdrawal back.
	if err := h.st.ClearMarketWithdrawal(ctx, "DE"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.newDesk(ctx, h.desk.DB(), h.key); err != nil {
		t.Fatal(err)
	}
	if code, _ := requestCode(); code != http.StatusUnavailableForLegalReasons {
		t.Errorf("after the desk restarted: code request from DE = %d, want 451", code)
	}

	if err := h.desk.Restore(ctx, h.bob, "DE"); err != nil {
		t.Fatal(err)
	}
	if code, body := requestCode(); code/100 != 2 {
		t.Errorf("after restore: code request from DE on the other node = %d %s, want success", code, body)
	}
}
