package sqlite

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bastionchat/bastion/internal/store"
	"github.com/google/uuid"
)

// crashChildEnv, when set to a database path, turns TestCrash into the child that writes
// until it is killed.
const crashChildEnv = "BASTION_SQLITE_CRASH_CHILD"

const (
	crashNumber = "+14155550199"
	crashKeys   = 1500 // one-time EC and Kyber prekeys uploaded before the first round
)

// TestCrash kills a process that enqueues envelopes and takes bundles with SIGKILL at
// random moments, several times, and then checks the promises a crash must not break:
// every envelope whose Enqueue returned nil is queued, once; no one-time prekey was handed
// out twice, and none handed out is still stored.
func TestCrash(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	if testing.Short() {
		t.Skip("kills and restarts a child process several times")
	}
	path := filepath.Join(t.TempDir(), "bastion.db")
	ctx := context.Background()
	s, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	acct, _, err := s.Register(ctx, crashNumber, make([]byte, 33), store.Device{ID: 1, RegistrationID: 1, CredentialHash: make([]byte, 32)})
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	sp := store.SignedPreKey{ID: 1, PublicKey: make([]byte, 33), Signature: make([]byte, 64)}
	lr := store.SignedPreKey{ID: 1, PublicKey: make([]byte, 1569), Signature: make([]byte, 64)}
	up := store.KeyUpload{SignedPreKey: &sp, LastResortKyber: &lr}
	for id := range uint32(crashKeys) {
		up.PreKeys = append(up.PreKeys, store.PreKey{ID: id, PublicKey: make([]byte, 33)})
		up.KyberPreKeys = append(up.KyberPreKeys, store.SignedPreKey{ID: id, PublicKey: make([]byte, 1569), Signature: make([]byte, 64)})
	}
	if err := s.SetKeys(ctx, acct.ID, 1, up); err != nil {
		t.Fatalf("SetKeys() = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	acked := map[uuid.UUID]bool{}
	handedEC, handedKy := map[uint32]int{}, map[uint32]int{}
	const rounds = 5
	for round := range rounds {
		// The first round may die anywhere, opening and recovering included; the others
		// are killed while writing, at a random moment after the child is ready.
		lines := runCrashChild(t, path, round == 0, time.Duration(rand.IntN(300))*time.Millisecond)
		var envs, bundles int
		for _, line := range lines {
			f := strings.Fields(line)
			switch {
			case len(f) == 2 && f[0] == "E":
				id, err := uuid.Parse(f[1])
				if err != nil {
					t.Fatalf("child line %q: %v", line, err)
				}
				acked[id] = true
				envs++
			case len(f) == 3 && f[0] == "B":
				ec, err1 := strconv.ParseUint(f[1], 10, 32)
				ky, err2 := strconv.ParseUint(f[2], 10, 32)
				if err1 != nil || err2 != nil {
					t.Fatalf("child line %q: bad key ids", line)
				}
				handedEC[uint32(ec)]++
				handedKy[uint32(ky)]++
				bundles++
			case len(f) >= 1 && f[0] == "ready":
			default:
				t.Fatalf("child line %q: unexpected", line)
			}
		}
		t.Logf("round %d: %d envelopes and %d bundles acknowledged before the kill", round, envs, bundles)
	}
	if len(acked) == 0 || len(handedEC) == 0 {
		t.Fatalf("children acknowledged %d envelopes and %d bundles; the test needs some of each", len(acked), len(handedEC))
	}

	s, err = Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("Open() after the crashes = %v", err)
	}
	defer s.Close()
	var check string
	if err := s.rdb.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check = %q, %v; want ok", check, err)
	}
	queued, err := s.Pending(ctx, acct.ID, 1, 0, 1<<30)
	if err != nil {
		t.Fatalf("Pending() = %v", err)
	}
	seen := map[uuid.UUID]bool{}
	for _, e := range queued {
		if seen[e.ID] {
			t.Errorf("envelope %v queued twice", e.ID)
		}
		seen[e.ID] = true
	}
	lost := 0
	for id := range acked {
		if !seen[id] {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged envelopes lost across %d kills", lost, len(acked), rounds)
	}
	for _, c := range []struct {
		name   string
		table  string
		handed map[uint32]int
	}{
		{"EC", "prekeys", handedEC},
		{"Kyber", "kyber_prekeys", handedKy},
	} {
		for id, n := range c.handed {
			if n > 1 {
				t.Errorf("one-time %s prekey %d handed out %d times", c.name, id, n)
			}
		}
		rows, err := s.rdb.Query("SELECT key_id FROM " + c.table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id uint32
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			if c.handed[id] > 0 {
				t.Errorf("one-time %s prekey %d was handed out and is still stored", c.name, id)
			}
		}
		rows.Close()
	}
}

// runCrashChild starts the child, SIGKILLs it d after it starts (fromStart) or after it
// says it is ready, and returns what it printed.
func runCrashChild(t *testing.T, path string, fromStart bool, d time.Duration) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrash$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting child: %v", err)
	}
	kill := func() { cmd.Process.Signal(syscall.SIGKILL) }
	var timer *time.Timer
	if fromStart {
		timer = time.AfterFunc(d, kill)
	}
	var lines []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if sc.Text() == "ready" && timer == nil {
			timer = time.AfterFunc(d, kill)
		}
		lines = append(lines, sc.Text())
	}
	if timer != nil {
		timer.Stop()
	}
	if err := cmd.Wait(); err == nil {
		t.Logf("child exited before the kill")
	}
	return lines
}

// crashChild writes until killed: enqueuers print "E <id>" once Enqueue returned nil,
// bundle takers "B <ec id> <kyber id>" once TakeBundle did. Each line is one write(2) of
// under PIPE_BUF bytes, so a kill never leaves half a line.
func crashChild(path string) {
	ctx := context.Background()
	s, err := Open(ctx, path, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		os.Exit(2)
	}
	acct, err := s.AccountByNumber(ctx, crashNumber)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: account:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		os.Stdout.WriteString(fmt.Sprintf(format, args...))
	}
	say("ready\n")
	deadline := time.Now().Add(20 * time.Second) // in case the parent is gone
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			body := make([]byte, 256)
			for time.Now().Before(deadline) {
				envs := make([]*store.Envelope, 1+rand.IntN(3))
				for i := range envs {
					envs[i] = &store.Envelope{ID: uuid.New(), Account: acct.ID, Device: 1, ServerTime: time.Now(), Body: body}
				}
				if err := s.Enqueue(ctx, envs); err != nil {
					fmt.Fprintln(os.Stderr, "child: enqueue:", err)
					os.Exit(2)
				}
				var b strings.Builder
				for _, e := range envs {
					fmt.Fprintf(&b, "E %s\n", e.ID)
				}
				say("%s", b.String())
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				b, err := s.TakeBundle(ctx, acct.ID, 1)
				if err != nil {
					fmt.Fprintln(os.Stderr, "child: take bundle:", err)
					os.Exit(2)
				}
				if b.PreKey == nil || b.KyberLastResort {
					return // out of one-time keys
				}
				say("B %d %d\n", b.PreKey.ID, b.KyberPreKey.ID)
			}
		})
	}
	wg.Wait()
	s.Close()
	os.Exit(0)
}
