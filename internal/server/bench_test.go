package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/bastionchat/bastion/api"
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

// BenchmarkSend measures PUT /v1/messages end to end over loopback HTTP: auth, device
// check, durable enqueue (group commit), wake-up. 64 concurrent senders, 256-byte bodies.
func BenchmarkSend(b *testing.B) {
	h := newHarness(b, nil)
	bob := h.register("+14155550702", 0)
	alice := h.register("+14155550703", 0)
	body := make([]byte, 256)
	tr := h.ts.Client().Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = 128
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, _ := json.Marshal(api.SendRequest{Messages: []api.OutgoingEnvelope{envelope(1, bob.regID, body)}})
			req, _ := http.NewRequest("PUT", h.ts.URL+"/v1/messages/"+bob.account.String(), bytes.NewReader(p))
			req.SetBasicAuth(alice.user(), alice.password)
			resp, err := h.ts.Client().Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("send = %d", resp.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
