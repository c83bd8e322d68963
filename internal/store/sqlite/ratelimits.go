package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"
)

// TakeToken implements [store.RateLimits]. The read and the write run in one function on
// the writer goroutine, the only writer, so no other taker can come between them. Each
// call waits for a commit (an fsync) like any other write: bastiond therefore keeps its
// limits in memory on SQLite, where it runs as one node, and uses this only when told to
// share them (see internal/server/ratelimit.go for the measured cost).
func (s *Store) TakeToken(ctx context.Context, key []byte, capacity int, refill time.Duration, now time.Time) (bool, time.Duration, error) {
	if capacity < 1 || refill <= 0 {
		return false, 0, errors.New("taking rate limit token: capacity and refill must be positive")
	}
	key = bytesClone(key)
	var ok bool
	var wait time.Duration
	err := s.write(ctx, 0, func(tx *wtx) error {
		var tokens float64
		var updated int64
		err := tx.QueryRow(`SELECT tokens, updated_at FROM rate_limits WHERE key = ?`, key).Scan(&tokens, &updated)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			tokens, updated = float64(capacity), dbTime(now)
		case err != nil:
			return err
		}
		b := bucket{tokens: tokens, updated: goTime(updated)}
		ok, wait = b.take(capacity, refill, now)
		if !ok {
			return nil // a refused take changes nothing: the refill is computed from updated_at
		}
		_, err = tx.Exec(`INSERT INTO rate_limits (key, tokens, updated_at, full_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, updated_at = excluded.updated_at,
				full_at = excluded.full_at`,
			key, b.tokens, dbTime(b.updated), dbTime(b.fullAt(capacity, refill)))
		return err
	}, oneStatement)
	if err != nil {
		return false, 0, fmt.Errorf("taking rate limit token: %w", err)
	}
	return ok, wait, nil
}

// PruneRateLimits implements [store.RateLimits].
func (s *Store) PruneRateLimits(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.deleteCount(ctx, `DELETE FROM rate_limits WHERE full_at < ?`, dbTime(before))
	if err != nil {
		return 0, fmt.Errorf("pruning rate limits: %w", err)
	}
	return n, nil
}

// bucket is one stored token bucket: tokens left at updated.
type bucket struct {
	tokens  float64
	updated time.Time
}

// take refills b up to now and takes a token if there is one. A clock behind updated
// (another node's) refills nothing rather than draining the bucket.
func (b *bucket) take(capacity int, refill time.Duration, now time.Time) (bool, time.Duration) {
	if el := now.Sub(b.updated); el > 0 {
		b.tokens = math.Min(float64(capacity), b.tokens+float64(el)/float64(refill))
		b.updated = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, max(time.Duration((1-b.tokens)*float64(refill)), time.Microsecond)
}

// fullAt is when b is full again.
func (b *bucket) fullAt(capacity int, refill time.Duration) time.Time {
	return b.updated.Add(time.Duration((float64(capacity) - b.tokens) * float64(refill)))
}
