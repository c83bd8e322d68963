package main

import (
	"bufio"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/bastionchat/bastion/internal/server"
	"github.com/bastionchat/bastion/internal/store/sqlite"
)

func TestMain(m *testing.M) {
	// The scripts run "bastion" as a subprocess: this test binary, dispatched to main.
	testscript.Main(m, map[string]func(){"bastion": main})
}

// TestScripts runs testdata/*.txtar. Each script gets its own server: bastiond's request
// handler (internal/server) over the real SQLite store in the script's work directory,
// on a loopback port exported as BASTION_SERVER. The binary's own main (flags, Run,
// listening) is exercised by internal/e2e; here the server runs in the test process so
// that the scripts can read its development codes with the devcode command.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:   "testdata",
		Setup: setupServer,
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"devcode":    cmdDevcode,
			"samedigits": cmdSameDigits,
		},
	})
}

type codeSMS struct {
	mu    sync.Mutex
	codes map[string]string
}

func (c *codeSMS) SendCode(_ context.Context, number, code string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.codes[number] = code
	return nil
}

func (c *codeSMS) code(number string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.codes[number]
}

func setupServer(env *testscript.Env) error {
	dir := filepath.Join(env.WorkDir, ".server")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "bastion.db"), nil)
	if err != nil {
		return err
	}
	cfg := server.DefaultConfig()
	cfg.DataDir = dir
	l := &cfg.Limits
	// Every request comes from 127.0.0.1.
	l.VerifyPerIP.N, l.VerifyPerPrefix.N, l.VerifyPerNumber.N = 1000, 1000, 1000
	sms := &codeSMS{codes: map[string]string{}}
	srv, err := server.New(cfg, server.Options{Store: st, SMS: sms})
	if err != nil {
		st.Close()
		return err
	}
	ts := httptest.NewServer(srv.Handler())
	env.Defer(func() {
		ts.CloseClientConnections()
		ts.Close()
		st.Close()
	})
	env.Setenv("BASTION_SERVER", ts.URL)
	env.Setenv("BASTION_PROFILE", filepath.Join(env.WorkDir, "default-profile"))
	env.Values["sms"] = sms
	return nil
}

// devcode +PHONE VAR sets $VAR to the last verification code sent to PHONE;
// "devcode -wrong +PHONE VAR" to a code that is not it.
func cmdDevcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! devcode")
	}
	wrong := len(args) > 0 && args[0] == "-wrong"
	if wrong {
		args = args[1:]
	}
	if len(args) != 2 {
		ts.Fatalf("usage: devcode [-wrong] +PHONE VAR")
	}
	code := ts.Value("sms").(*codeSMS).code(args[0])
	if code == "" {
		ts.Fatalf("no code was sent to %s", args[0])
	}
	if wrong {
		if code == "000000" {
			code = "111111"
		} else {
			code = "000000"
		}
	}
	ts.Setenv(args[1], code)
}

// samedigits FILE1 FILE2 checks that both files hold the same 60-digit safety number
// (12 groups of 5 digits on one line), and that they hold one.
func cmdSameDigits(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: samedigits FILE1 FILE2")
	}
	a, b := safetyLine(ts, args[0]), safetyLine(ts, args[1])
	if a == "" || b == "" {
		ts.Fatalf("no safety number in %s or %s", args[0], args[1])
	}
	if (a == b) == neg {
		ts.Fatalf("safety numbers %q and %q: equal = %v, want %v", a, b, a == b, !neg)
	}
}

func safetyLine(ts *testscript.TestScript, file string) string {
	sc := bufio.NewScanner(strings.NewReader(ts.ReadFile(file)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 12 {
			continue
		}
		ok := true
		for _, g := range f {
			ok = ok && len(g) == 5 && strings.Trim(g, "0123456789") == ""
		}
		if ok {
			return sc.Text()
		}
	}
	return ""
}
