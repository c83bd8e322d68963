package postgres

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bastionchat/bastion/internal/pgtest"
)

// TestRateLimitsSharedAcrossNodes: two nodes (two Stores on one database) taking from the
// same bucket at once get, together, exactly its capacity.
func TestRateLimitsSharedAcrossNodes(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t)
	nodes := twoNodes(t, dsn)
	const capacity, perNode = 5, 16
	key := []byte("shared-bucket-digest")
	at := time.Now()
	var granted [2]atomic.Int32
	var wg sync.WaitGroup
	for i, s := range nodes {
		for range perNode {
			wg.Go(func() {
				ok, _, err := s.TakeToken(ctx, key, capacity, time.Hour, at)
				if err != nil {
					t.Errorf("node %d: TakeToken() = %v", i, err)
				}
				if ok {
					granted[i].Add(1)
				}
			})
		}
	}
	wg.Wait()
	if got := granted[0].Load() + granted[1].Load(); got != capacity {
		t.Errorf("two nodes granted %d + %d tokens, want %d in all", granted[0].Load(), granted[1].Load(), capacity)
	}
	// Both nodes see the empty bucket, and agree on the wait.
	for i, s := range nodes {
		ok, wait, err := s.TakeToken(ctx, key, capacity, time.Hour, at.Add(30*time.Minute))
		if err != nil || ok || wait <= 0 || wait > time.Hour/2+time.Millisecond {
			t.Errorf("node %d: TakeToken(+30m) = %v, %v, %v; want false, (0, 30m], nil", i, ok, wait, err)
		}
	}
}

// BenchmarkTakeToken measures one rate limit check, the cost a limited request pays.
func BenchmarkTakeToken(b *testing.B) {
	s := open(b)
	ctx := context.Background()
	key := []byte("bench-bucket-digest")
	at := time.Now()
	for b.Loop() {
		if _, _, err := s.TakeToken(ctx, key, 1<<30, time.Millisecond, at); err != nil {
			b.Fatal(err)
		}
	}
}
