package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/bastionchat/bastion/internal/server"
	"github.com/bastionchat/bastion/internal/store/sqlite"
	"github.com/bastionchat/bastion/internal/translog"
	"github.com/bastionchat/bastion/kt"
)

// TestKTAlertsExitNonZero: "kt monitor" exits 1 and shows the alert when the server
// logged a device of the account that the account did not add, and "audit" exits 1
// when the entries it is served are not the ones the checkpoint commits to.
func TestKTAlertsExitNonZero(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "bastion.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys, err := server.LoadKTKeys(dir, "cli.test/kt")
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.DefaultConfig()
	cfg.DataDir = dir
	sms := &codeSMS{codes: map[string]string{}}
	srv, err := server.New(cfg, server.Options{Store: st, SMS: sms, KT: server.KTOptions{Keys: keys, Storage: st.KTLog()}})
	if err != nil {
		t.Fatal(err)
	}
	var corrupt atomic.Bool
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if corrupt.Load() && r.URL.Path == "/v1/kt/entries" {
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, r)
			w.Write(bytes.Replace(rec.Body.Bytes(), []byte(`"entries":["A`), []byte(`"entries":["B`), 1))
			return
		}
		srv.Handler().ServeHTTP(w, r)
	}))
	defer ts.Close()

	bastion := func(args ...string) (int, string) {
		var out bytes.Buffer
		env := map[string]string{"BASTION_SERVER": ts.URL}
		code := run(ctx, args, func(k string) string { return env[k] }, &out, &out)
		return code, out.String()
	}
	profile := filepath.Join(dir, "alice")
	if code, out := bastion("--profile", profile, "register", "+14155550150"); code != 0 {
		t.Fatalf("register = %d %s", code, out)
	}
	if code, out := bastion("--profile", profile, "verify", sms.code("+14155550150")); code != 0 {
		t.Fatalf("verify = %d %s", code, out)
	}
	if code, out := bastion("--profile", profile, "kt", "monitor"); code != 0 {
		t.Fatalf("kt monitor on an honest log = %d %s, want 0", code, out)
	}

	// The operator adds a ghost device to Alice's account, and logs it.
	skey, err := os.ReadFile(filepath.Join(dir, "kt-log.key"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	acct, err := st.AccountByNumber(ctx, "+14155550150")
	if err != nil {
		t.Fatal(err)
	}
	ghost, err := kt.Marshal(kt.DeviceBinding{Account: acct.ID, Device: 2, IdentityKey: [33]byte(acct.IdentityKey),
		State: kt.StateAdded, Sequence: 3, Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := translog.New(st.KTLog(), signer).Append(ctx, ghost); err != nil {
		t.Fatal(err)
	}
	code, out := bastion("--profile", profile, "kt", "monitor")
	if code != exitError || !strings.Contains(out, "ALERT ghost_device") {
		t.Fatalf("kt monitor after a ghost device = %d %q, want exit 1 and the alert", code, out)
	}
	t.Logf("bastion kt monitor:\n%s", out)
	if code, out := bastion("--profile", profile, "kt", "status"); code != 0 || !strings.Contains(out, "ALERT") {
		t.Errorf("kt status = %d %q, want the recorded alert", code, out)
	}

	auditor := filepath.Join(dir, "auditor")
	if code, out := bastion("--profile", auditor, "audit", "--server", ts.URL); code != 0 {
		t.Fatalf("audit of the served log = %d %s, want 0", code, out)
	}
	corrupt.Store(true)
	code, out = bastion("--profile", auditor, "audit", "--server", ts.URL)
	if code != exitError || !strings.Contains(out, "key transparency check failed") {
		t.Fatalf("audit with an altered entry = %d %q, want exit 1 and the reason", code, out)
	}
	t.Logf("bastion audit:\n%s", out)
}
