package postgres

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/bastionchat/bastion/internal/pgtest"
	"github.com/bastionchat/bastion/internal/store"
	"github.com/google/uuid"
)

// TestCrashKeepsAcknowledged kills PostgreSQL (SIGKILL to every server process) while
// senders enqueue, restarts it, and checks that every envelope whose Enqueue returned nil
// is there: the store acknowledges only what PostgreSQL has committed. Durability against
// a host crash is PostgreSQL's (fsync, synchronous_commit, which Open checks), not
// something a test on a throwaway cluster can show.
func TestCrashKeepsAcknowledged(t *testing.T) {
	ctx := context.Background()
	c := pgtest.NewCluster(t)
	dsn, err := c.NewDatabase(ctx)
	if err != nil {
		t.Fatalf("NewDatabase() = %v", err)
	}
	s, err := Open(ctx, dsn, nil)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	defer s.Close()
	acct, _, err := s.Register(ctx, "+14155550196", []byte{5, 1}, store.Device{ID: 1, RegistrationID: 1, CredentialHash: []byte{1}})
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}

	const senders = 16
	var (
		mu    sync.Mutex
		acked []uuid.UUID
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	enough := make(chan struct{})
	var once sync.Once
	for range senders {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				e := &store.Envelope{ID: uuid.New(), Account: acct.ID, Device: 1, ServerTime: time.Now(), Body: []byte("ciphertext")}
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				err := s.Enqueue(cctx, []*store.Envelope{e})
				cancel()
				if err != nil {
					continue // the crash: not acknowledged, may or may not be stored
				}
				mu.Lock()
				acked = append(acked, e.ID)
				if len(acked) >= 200 {
					once.Do(func() { close(enough) })
				}
				mu.Unlock()
			}
		})
	}
	select {
	case <-enough:
	case <-time.After(30 * time.Second):
		t.Fatalf("fewer than 200 envelopes acknowledged in 30 s")
	}
	c.Crash() // mid-load: senders are inside Enqueue right now
	close(stop)
	wg.Wait()
	if err := c.Restart(); err != nil {
		t.Fatalf("Restart() = %v", err)
	}

	after, err := Open(ctx, dsn, nil)
	if err != nil {
		t.Fatalf("Open() after the crash = %v", err)
	}
	defer after.Close()
	stored := map[uuid.UUID]bool{}
	envs, err := after.Pending(ctx, acct.ID, 1, 0, 1<<20)
	if err != nil {
		t.Fatalf("Pending() after the crash = %v", err)
	}
	for _, e := range envs {
		stored[e.ID] = true
	}
	lost := 0
	for _, id := range acked {
		if !stored[id] {
			lost++
		}
	}
	if lost != 0 {
		t.Errorf("after a crash, %d of %d acknowledged envelopes are gone", lost, len(acked))
	}
	t.Logf("%d acknowledged before the crash, %d stored after it", len(acked), len(envs))
}
