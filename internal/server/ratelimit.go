package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/bastionchat/bastion/internal/store"
)

// RateLimitKeyFile is the secret, in the data directory, under which rate limit keys are
// derived. Nodes sharing one PostgreSQL copy it like the other key files, or their
// buckets would not meet.
const RateLimitKeyFile = "ratelimit.key"

// LoadRateLimitKey returns the 32-byte secret in dir's ratelimit.key, creating it (0600)
// on first start.
func LoadRateLimitKey(dir string) ([]byte, error) {
	key, err := loadOrMissing(dir, RateLimitKeyFile, decodeRateLimitKey)
	if err != nil || key != nil {
		return key, err
	}
	key = make([]byte, 32)
	rand.Read(key)
	if err := writeNew(filepath.Join(dir, RateLimitKeyFile), key); err != nil {
		if !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		// Another process created it first: use that one.
		return loadOrMissing(dir, RateLimitKeyFile, decodeRateLimitKey)
	}
	return key, nil
}

func decodeRateLimitKey(b []byte) ([]byte, error) {
	if len(b) != 32 {
		return nil, fmt.Errorf("want 32 bytes, have %d", len(b))
	}
	return b, nil
}

// limiter is a set of token buckets, one per key. Keys are HMAC-SHA256 digests under the
// server's rate limit secret (ratelimit.key), so neither the process memory nor the
// database holds a phone number, address or requester-target pair in the clear: a dump of
// the database alone reveals nothing about whom a bucket limits, and nothing of it is
// ever logged.
//
// Where the buckets live (measured on this 2-core machine, one check):
//   - in memory, per process: about a microsecond. The only choice on SQLite, one node:
//     there a store check goes through the single writer and waits for its commit's
//     fsync, about 600 µs, on the path of every limited request, and shares nothing.
//   - in the store, with PostgreSQL (shared is set): about 200 µs, one upsert statement
//     per check, and every node sees the same buckets, so N nodes do not allow N times
//     the limit.
type limiter struct {
	name    string // domain-separates the limiters' keys in the shared table
	rate    Rate
	hashKey []byte
	now     func() time.Time
	shared  store.RateLimits // nil: buckets in memory

	mu      sync.Mutex
	buckets map[[sha256.Size]byte]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(r Rate, hashKey []byte, now func() time.Time) *limiter {
	return &limiter{rate: r, hashKey: hashKey, now: now, buckets: make(map[[sha256.Size]byte]*bucket)}
}

// share moves l's buckets into the store, under name.
func (l *limiter) share(name string, rl store.RateLimits) {
	l.name, l.shared = name, rl
}

// digest is the bucket key made of parts.
func (l *limiter) digest(parts ...[]byte) [sha256.Size]byte {
	m := hmac.New(sha256.New, l.hashKey)
	for _, p := range parts {
		// Length-prefix each part so ("ab","c") and ("a","bc") are different keys.
		m.Write([]byte{byte(len(p) >> 8), byte(len(p))})
		m.Write(p)
	}
	var k [sha256.Size]byte
	m.Sum(k[:0])
	return k
}

// take takes a token for the key made of parts, from the shared buckets if l has them.
func (l *limiter) take(ctx context.Context, parts ...[]byte) (ok bool, retryAfter time.Duration, err error) {
	if l.shared == nil {
		ok, retryAfter = l.allow(parts...)
		return ok, retryAfter, nil
	}
	k := l.digest(append([][]byte{[]byte(l.name)}, parts...)...)
	ok, retryAfter, err = l.shared.TakeToken(ctx, k[:], l.rate.N, l.rate.Per/time.Duration(l.rate.N), l.now())
	if err != nil {
		return false, 0, fmt.Errorf("rate limit %s: %w", l.name, err)
	}
	return ok, retryAfter, nil
}

// allow takes a token for the key made of parts from the in-memory buckets. When none is
// left it reports how long until one is.
func (l *limiter) allow(parts ...[]byte) (ok bool, retryAfter time.Duration) {
	k := l.digest(parts...)
	perToken := l.rate.Per.Seconds() / float64(l.rate.N)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[k]
	if b == nil {
		b = &bucket{tokens: float64(l.rate.N), last: now}
		l.buckets[k] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(float64(l.rate.N), b.tokens+el/perToken)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) * perToken * float64(time.Second))
	return false, wait
}

// sweep forgets in-memory buckets that have refilled completely: they behave as new
// ones. Shared buckets are pruned by the store (Server.janitor).
func (l *limiter) sweep() {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, b := range l.buckets {
		if now.Sub(b.last) >= l.rate.Per {
			delete(l.buckets, k)
		}
	}
}
