// Package e2e tests Bastion from the outside: it builds the real bastiond and bastion
// binaries once, runs the server on a loopback port with a temporary data directory,
// and drives two users through the command line. Afterwards it checks what the server
// kept: no plaintext that was sent may appear in its database files or its output, and
// no phone number in its log.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bastionchat/bastion/internal/reliability"
)

var binDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "bastion-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"github.com/bastionchat/bastion/cmd/bastiond", "github.com/bastionchat/bastion/cmd/bastion")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binaries:", err)
		return 1
	}
	binDir = dir
	return m.Run()
}

// server is a running bastiond.
type server struct {
	URL     string
	dataDir string
	cmd     *exec.Cmd
	log     *reliability.Buffer // standard output: the JSON log
	console *reliability.Buffer // standard error: the development SMS console
	done    chan error
}

// startServer runs bastiond on a free loopback port (it binds 127.0.0.1:0 and logs the
// address it got) with a fresh data directory. Rate limits are raised because every
// request in the test comes from one address.
func startServer(t *testing.T) *server {
	t.Helper()
	s := &server{dataDir: t.TempDir(), log: &reliability.Buffer{}, console: &reliability.Buffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(filepath.Join(binDir, "bastiond"), "serve", "--data", s.dataDir, "--listen", "127.0.0.1:0",
		"--rate-verify-ip", "1000/1h", "--rate-verify-prefix", "1000/1h", "--rate-verify-number", "1000/1h")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.console
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() { s.stop(t) })
	deadline := time.Now().Add(15 * time.Second)
	for s.URL == "" {
		for _, line := range strings.Split(s.log.String(), "\n") {
			var l struct{ Msg, Listen string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving" {
				s.URL = "http://" + l.Listen
			}
		}
		if s.URL != "" {
			break
		}
		select {
		case err := <-s.done:
			t.Fatalf("bastiond exited: %v\n%s%s", err, s.log, s.console)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("bastiond did not log its address:\n%s", s.log)
		}
	}
	return s
}

// stop shuts the server down gracefully (SIGTERM) and waits for it.
func (s *server) stop(t *testing.T) {
	if s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		t.Errorf("bastiond did not stop on SIGTERM")
		<-s.done
	}
}

// code returns the last development code printed for number.
func (s *server) code(t *testing.T, number string) string {
	t.Helper()
	re := regexp.MustCompile(`verification code for ` + regexp.QuoteMeta(number) + `: (\d{6})`)
	m := re.FindAllStringSubmatch(s.console.String(), -1)
	if len(m) == 0 {
		t.Fatalf("no code printed for %s", number)
	}
	return m[len(m)-1][1]
}

// user is one profile driven through the bastion command.
type user struct {
	t       *testing.T
	srv     *server
	profile string
	number  string
}

func newUser(t *testing.T, srv *server, name, number string) *user {
	return &user{t: t, srv: srv, profile: filepath.Join(t.TempDir(), name), number: number}
}

func (u *user) command(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, "bastion"), args...)
	cmd.Env = append(os.Environ(), "BASTION_SERVER="+u.srv.URL, "BASTION_PROFILE="+u.profile)
	return cmd
}

// run runs bastion with args and returns its output and exit code.
func (u *user) run(args ...string) (stdout, stderr string, code int) {
	u.t.Helper()
	cmd := u.command(args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		u.t.Fatalf("bastion %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// ok runs bastion with args and fails the test unless it exits 0.
func (u *user) ok(args ...string) string {
	u.t.Helper()
	out, errOut, code := u.run(args...)
	if code != 0 {
		u.t.Fatalf("bastion %s = exit %d, want 0\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// fails runs bastion with args and fails the test unless it exits 1 with wantErr in
// its standard error.
func (u *user) fails(wantErr string, args ...string) {
	u.t.Helper()
	out, errOut, code := u.run(args...)
	if code != 1 || !strings.Contains(errOut, wantErr) {
		u.t.Errorf("bastion %s = exit %d, stderr %q; want exit 1 and %q\nstdout: %s", strings.Join(args, " "), code, errOut, wantErr, out)
	}
}

func (u *user) register() {
	u.t.Helper()
	u.ok("register", u.number)
	u.ok("verify", u.srv.code(u.t, u.number))
}

type message struct {
	Text                string `json:"text"`
	FromNumber          string `json:"from_number"`
	SafetyNumberChanged bool   `json:"safety_number_changed"`
}

// receive runs "bastion receive --json" and returns the texts.
func (u *user) receive() []message {
	u.t.Helper()
	out := u.ok("receive", "--json")
	var msgs []message
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var m message
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			u.t.Fatalf("receive --json printed %q: %v", line, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func texts(ms []message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Text)
	}
	return out
}

func sameTexts(got []message, want ...string) bool {
	g := texts(got)
	if len(g) != len(want) {
		return false
	}
	for i := range g {
		if g[i] != want[i] {
			return false
		}
	}
	return true
}

// listener is a running "bastion listen --json".
type listener struct {
	cmd   *exec.Cmd
	lines chan message
	done  chan error
}

func (u *user) listen() *listener {
	u.t.Helper()
	cmd := u.command("listen", "--json")
	out, err := cmd.StdoutPipe()
	if err != nil {
		u.t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		u.t.Fatal(err)
	}
	l := &listener{cmd: cmd, lines: make(chan message, 16), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var m message
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				l.lines <- m
			}
		}
		close(l.lines)
		l.done <- cmd.Wait()
	}()
	u.t.Cleanup(func() { cmd.Process.Kill() })
	return l
}

// next waits for the next message the listener prints.
func (l *listener) next(t *testing.T) message {
	t.Helper()
	select {
	case m, ok := <-l.lines:
		if !ok {
			t.Fatalf("listen exited early: %v", <-l.done)
		}
		return m
	case <-time.After(20 * time.Second):
		t.Fatal("listen printed nothing within 20s")
	}
	return message{}
}

// stop interrupts the listener as Ctrl-C would and wants exit 0.
func (l *listener) stop(t *testing.T) {
	t.Helper()
	l.cmd.Process.Signal(os.Interrupt)
	for range l.lines {
	}
	if err := <-l.done; err != nil {
		t.Errorf("listen after an interrupt: %v, want exit 0", err)
	}
}

func TestTwoUsersChat(t *testing.T) {
	srv := startServer(t)
	alice := newUser(t, srv, "alice", "+14155550100")
	bob := newUser(t, srv, "bob", "+14155550101")
	alice.register()
	bob.register()

	// Every plaintext carries a marker the scans below look for.
	sent := []string{
		"e2e-secret-1: hello Bob, this waited on the server while you were offline",
		"e2e-secret-2: hi Alice, got it",
		"e2e-secret-3: streamed while Alice listens",
		"e2e-secret-4: to Bob's new device, after Alice trusted it",
		"e2e-secret-5: sent by Alice while her listen runs on the same profile",
	}

	// Bob is offline: the message waits in his queue until he receives.
	alice.ok("send", bob.number, sent[0])
	if got := bob.receive(); !sameTexts(got, sent[0]) || got[0].FromNumber != alice.number {
		t.Fatalf("bob receive = %+v, want %q from %s", got, sent[0], alice.number)
	}
	if got := bob.receive(); len(got) != 0 {
		t.Errorf("bob receive again = %+v, want nothing (acknowledged messages are gone)", got)
	}

	// Alice listens; Bob's messages arrive on her open connection.
	l := alice.listen()
	bob.ok("send", alice.number, sent[1])
	if m := l.next(t); m.Text != sent[1] || m.FromNumber != bob.number {
		t.Errorf("alice listen printed %+v, want %q from %s", m, sent[1], bob.number)
	}
	bob.ok("send", alice.number, sent[2])
	if m := l.next(t); m.Text != sent[2] {
		t.Errorf("alice listen printed %+v, want %q", m, sent[2])
	}
	// The same profile, used by a second process while the first listens.
	alice.ok("send", bob.number, sent[4])
	l.stop(t)
	if got := bob.receive(); !sameTexts(got, sent[4]) {
		t.Errorf("bob receive = %q, want %q", texts(got), sent[4])
	}
	if got := alice.receive(); len(got) != 0 {
		t.Errorf("alice receive after listen = %+v, want nothing", got)
	}

	an := alice.ok("safety-number", bob.number)
	bn := bob.ok("safety-number", alice.number)
	digits := regexp.MustCompile(`(\d{5} ){11}\d{5}`)
	if a, b := digits.FindString(an), digits.FindString(bn); a == "" || a != b {
		t.Errorf("safety numbers differ or are missing:\nalice: %s\nbob:   %s", an, bn)
	}

	// Error cases.
	carol := newUser(t, srv, "carol", "+14155550102")
	carol.ok("register", carol.number)
	wrong := "000000"
	if srv.code(t, carol.number) == wrong {
		wrong = "111111"
	}
	carol.fails("wrong verification code", "verify", wrong)
	alice.fails("not registered with Bastion", "send", "+14155550199", "hello?")
	offline := &user{t: t, srv: &server{URL: "http://127.0.0.1:1"}, profile: filepath.Join(t.TempDir(), "offline")}
	offline.fails("cannot reach the server", "register", "+14155550103")
	carol.fails("not registered", "send", alice.number, "before verifying")

	// Bob re-registers on a new device: a new identity key. Alice refuses to send to it
	// until she trusts it.
	bob2 := newUser(t, srv, "bob2", bob.number)
	bob2.register()
	alice.fails("identity key of "+bob.number+" changed", "send", bob.number, "not for the new key")
	if out := alice.ok("contacts"); !strings.Contains(out, "changed") {
		t.Errorf("alice contacts = %q, want bob shown as changed", out)
	}
	if an2 := alice.ok("safety-number", bob.number); digits.FindString(an2) == digits.FindString(an) {
		t.Errorf("safety number unchanged after bob's key changed: %s", an2)
	}
	alice.ok("trust", bob.number)
	alice.ok("send", bob.number, sent[3])
	if got := bob2.receive(); !sameTexts(got, sent[3]) {
		t.Errorf("bob2 receive = %q, want %q", texts(got), sent[3])
	}

	// What the server kept. The database files are scanned while it runs (the -wal
	// file holds the latest writes) and again after it stopped.
	scanData := func(when string) {
		files, err := filepath.Glob(filepath.Join(srv.dataDir, "*"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no files in the data directory (%v)", err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue // a directory, or a file removed by a checkpoint meanwhile
			}
			for _, p := range sent {
				if bytes.Contains(b, []byte(p)) || bytes.Contains(b, []byte(p[:16])) {
					t.Errorf("%s: plaintext %q found in %s", when, p, filepath.Base(f))
				}
			}
		}
	}
	scanData("running")
	srv.stop(t)
	scanData("stopped")
	logOut, console := srv.log.String(), srv.console.String()
	for _, p := range sent {
		if strings.Contains(logOut, p[:16]) || strings.Contains(console, p[:16]) {
			t.Errorf("plaintext %q found in the server's output", p)
		}
	}
	for _, n := range []string{alice.number, bob.number, carol.number, "+14155550199", "4155550"} {
		if strings.Contains(logOut, n) {
			t.Errorf("phone number %s found in the server's log", n)
		}
	}
	if !strings.Contains(logOut, `"msg":"serving"`) {
		t.Errorf("the server's log is missing; the scans above saw nothing:\n%s", logOut)
	}
}
