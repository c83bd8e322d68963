package sqlite

import (
	"context"
	"testing"
	"time"
)

// BenchmarkTakeToken measures one rate limit check through the writer (one commit each
// when alone), the number behind keeping SQLite's limits in memory.
func BenchmarkTakeToken(b *testing.B) {
	s := openTemp(b)
	ctx := context.Background()
	key := []byte("bench-bucket-digest")
	at := time.Now()
	for b.Loop() {
		if _, _, err := s.TakeToken(ctx, key, 1<<30, time.Millisecond, at); err != nil {
			b.Fatal(err)
		}
	}
}
