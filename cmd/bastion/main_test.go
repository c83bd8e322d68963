package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bastionchat/bastion/internal/reliability"
	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	// The scripts run "bastion" as a subprocess: this test binary, dispatched to main.
	testscript.Main(m, map[string]func(){"bastion": main})
}

// TestScripts runs testdata/*.txtar. Each script gets its own real bastiond: the binary,
// built once here, serving on a loopback port it picks (exported as BASTION_SERVER)
// from a data directory in the script's work directory, its development SMS console
// read by the devcode command.
func TestScripts(t *testing.T) {
	bin, err := reliability.Build(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:   "testdata",
		Setup: func(env *testscript.Env) error { return startServer(env, bin) },
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"devcode":    cmdDevcode,
			"samedigits": cmdSameDigits,
		},
	})
}

// startServer runs bastiond for one script and stops it (SIGTERM) when the script ends.
// Rate limits are raised: every request comes from 127.0.0.1.
func startServer(env *testscript.Env, bin string) error {
	logOut, console := &reliability.Buffer{}, &reliability.Buffer{}
	cmd := exec.Command(bin, "serve", "--data", filepath.Join(env.WorkDir, ".server"), "--listen", "127.0.0.1:0",
		"--rate-verify-ip", "1000/1h", "--rate-verify-prefix", "1000/1h", "--rate-verify-number", "1000/1h")
	cmd.Stdout, cmd.Stderr = logOut, console
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	env.Defer(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	// bastiond logs the address it bound as {"msg":"serving","listen":"127.0.0.1:N"}.
	for deadline := time.Now().Add(15 * time.Second); ; {
		for _, line := range strings.Split(logOut.String(), "\n") {
			var l struct{ Msg, Listen string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving" {
				env.Setenv("BASTION_SERVER", "http://"+l.Listen)
				env.Setenv("BASTION_PROFILE", filepath.Join(env.WorkDir, "default-profile"))
				env.Values["console"] = console
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("bastiond exited:\n%s%s", logOut, console)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bastiond did not log its address:\n%s", logOut)
		}
	}
}

// devcode +PHONE VAR sets $VAR to the last verification code bastiond printed for
// PHONE; "devcode -wrong +PHONE VAR" to a code that is not it.
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
	re := regexp.MustCompile(`verification code for ` + regexp.QuoteMeta(args[0]) + `: (\d{6})`)
	m := re.FindAllStringSubmatch(ts.Value("console").(*reliability.Buffer).String(), -1)
	if len(m) == 0 {
		ts.Fatalf("bastiond printed no code for %s", args[0])
	}
	code := m[len(m)-1][1]
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

// codeSMS is an SMS provider for tests that run the server in process: it hands the
// codes to the test.
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
