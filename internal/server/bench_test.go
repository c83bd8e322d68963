package server

import (
	"runtime"
	"testing"
	"time"
)

// BenchmarkIdleWebSocketMemory opens idle WebSocket connections and reports heap and
// stack bytes per connection. Client and server share the process, so the figure is an
// upper bound for the server: it includes the client's socket objects (the client runs
// no goroutine).
//
//	go test -run '^$' -bench IdleWebSocketMemory -benchtime 1x ./internal/server
func BenchmarkIdleWebSocketMemory(b *testing.B) {
	const n = 2000
	h := newHarness(b, nil)
	bob := h.register("+14155550701", 0)
	inuse := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse + m.StackInuse
	}
	// One connection first, so that one-time allocations are not counted.
	w := h.dial(bob)
	w.next()
	b.ResetTimer()
	for range b.N {
		before := inuse()
		for range n {
			w := h.dial(bob)
			w.next() // queue_empty: the connection is set up and idle
		}
		for range 1000 {
			h.srv.wsMu.Lock()
			open := len(h.srv.ws)
			h.srv.wsMu.Unlock()
			if open == n+1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // let handler goroutines of the upgrades exit
		after := inuse()
		b.ReportMetric(float64(after-before)/n, "B/conn")
	}
}
