package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"math"
	"sync"
	"time"
)

// limiter is a set of token buckets, one per key. Keys are HMAC-SHA256 digests under a
// key drawn at startup, so the process memory holds no phone number, address or
// requester-target pair in the clear, and nothing of it is ever logged or persisted.
// Limits are per process: a multi-node deployment shares them elsewhere (issue 7).
type limiter struct {
	rate    Rate
	hashKey []byte
	now     func() time.Time

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

// allow takes a token for the key made of parts. When none is left it reports how long
// until one is.
func (l *limiter) allow(parts ...[]byte) (ok bool, retryAfter time.Duration) {
	m := hmac.New(sha256.New, l.hashKey)
	for _, p := range parts {
		// Length-prefix each part so ("ab","c") and ("a","bc") are different keys.
		m.Write([]byte{byte(len(p) >> 8), byte(len(p))})
		m.Write(p)
	}
	var k [sha256.Size]byte
	m.Sum(k[:0])

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

// sweep forgets buckets that have refilled completely: they behave as new ones.
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
