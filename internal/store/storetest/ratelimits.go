package storetest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bastionchat/bastion/internal/store"
)

// testRateLimits checks the token bucket: capacity honoured, one token back per refill,
// a wait that says when the next token comes, independent keys, pruning of full buckets.
func testRateLimits(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := now()
	const capacity, refill = 3, time.Minute
	key, other := randBytes(32), randBytes(32)
	take := func(k []byte, at time.Time) (bool, time.Duration) {
		t.Helper()
		ok, wait, err := s.TakeToken(ctx, k, capacity, refill, at)
		if err != nil {
			t.Fatalf("TakeToken(at %v) = %v", at.Sub(t0), err)
		}
		return ok, wait
	}
	for i := range capacity {
		if ok, wait := take(key, t0); !ok || wait != 0 {
			t.Fatalf("TakeToken() #%d = %v, %v; want true, 0", i+1, ok, wait)
		}
	}
	// Empty: the next token is one refill away.
	if ok, wait := take(key, t0); ok || wait <= 0 || wait > refill {
		t.Errorf("TakeToken() on an empty bucket = %v, %v; want false, (0, %v]", ok, wait, refill)
	}
	// Half a refill later, half the wait is left.
	if ok, wait := take(key, t0.Add(refill/2)); ok || wait <= 0 || wait > refill/2+time.Millisecond {
		t.Errorf("TakeToken(+%v) = %v, %v; want false, (0, %v]", refill/2, ok, wait, refill/2)
	}
	// Another key has its own bucket.
	if ok, _ := take(other, t0); !ok {
		t.Errorf("TakeToken(other key) = false, want true")
	}
	// One refill later exactly one token is back.
	if ok, _ := take(key, t0.Add(refill)); !ok {
		t.Errorf("TakeToken(+%v) = false, want true", refill)
	}
	if ok, _ := take(key, t0.Add(refill)); ok {
		t.Errorf("second TakeToken(+%v) = true, want false", refill)
	}
	// A bucket is not pruned while it is refilling.
	if n, err := s.PruneRateLimits(ctx, t0.Add(refill)); err != nil || n != 0 {
		t.Errorf("PruneRateLimits(+%v) = %d, %v; want 0, nil", refill, n, err)
	}
	// Both buckets are full again by +4 refills: pruned, and key starts full.
	if n, err := s.PruneRateLimits(ctx, t0.Add(5*refill)); err != nil || n != 2 {
		t.Errorf("PruneRateLimits(+%v) = %d, %v; want 2, nil", 5*refill, n, err)
	}
	for i := range capacity {
		if ok, _ := take(key, t0.Add(5*refill)); !ok {
			t.Fatalf("TakeToken() #%d after pruning = false, want true", i+1)
		}
	}
	if ok, _ := take(key, t0.Add(5*refill)); ok {
		t.Errorf("TakeToken() after pruning and %d takes = true, want false", capacity)
	}
}

// testRateLimitsConcurrent: concurrent takers never get more tokens than the bucket has.
func testRateLimitsConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := now()
	const takers, capacity = 32, 10
	key := randBytes(32)
	var granted atomic.Int32
	var wg sync.WaitGroup
	for range takers {
		wg.Go(func() {
			ok, _, err := s.TakeToken(ctx, key, capacity, time.Hour, t0)
			if err != nil {
				t.Errorf("TakeToken() = %v", err)
			}
			if ok {
				granted.Add(1)
			}
		})
	}
	wg.Wait()
	if got := granted.Load(); got != capacity {
		t.Errorf("%d concurrent TakeToken() granted %d tokens, want %d", takers, got, capacity)
	}
}
