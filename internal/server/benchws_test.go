package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/store"
)

// rw reads from a connection's buffered reader and writes (pongs) to the connection.
type rw struct {
	io.Reader
	io.Writer
}

// BenchmarkWebSocketPipeline measures the whole path of a message over WebSockets: send
// frame, device check, durable enqueue (group commit), wake-up, push, ack, delete. 16
// senders each keep 8 sends in flight to their own recipient, who acks every frame. Client
// and server share the process, so the CPU profile shows both.
//
//	go test -run '^$' -bench WebSocketPipeline -benchtime 20000x -cpuprofile cpu.out ./internal/server
func BenchmarkWebSocketPipeline(b *testing.B) {
	const pairs, window = 16, 8
	h := newHarness(b, func(c *Config) {
		c.Limits.VerifyPerIP = Rate{N: 1000, Per: time.Hour}
		c.Limits.VerifyPerPrefix = Rate{N: 1000, Per: time.Hour}
	})
	var snd, rcv []*client
	for i := range pairs {
		snd = append(snd, h.register(fmt.Sprintf("+1415555%04d", 7100+i), 0))
		rcv = append(rcv, h.register(fmt.Sprintf("+1415555%04d", 7200+i), 0))
	}
	body := make([]byte, 256)
	var acked atomic.Int64
	var rwg sync.WaitGroup
	for _, r := range rcv {
		w := h.dial(r)
		w.next() // queue_empty
		rwg.Go(func() {
			for acked.Load() < int64(b.N) {
				w.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
				p, err := wsutil.ReadServerText(rw{w.r, w.conn})
				if err != nil {
					return
				}
				var f api.Frame
				json.Unmarshal(p, &f)
				ids := make([]uuid.UUID, len(f.Envelopes))
				for i, e := range f.Envelopes {
					ids[i] = e.ID
				}
				q, _ := json.Marshal(api.Frame{Type: api.FrameAck, IDs: ids})
				wsutil.WriteClientText(w.conn, q)
				acked.Add(int64(len(ids)))
			}
		})
	}
	var next atomic.Int64
	b.ResetTimer()
	var swg sync.WaitGroup
	for i, s := range snd {
		w := h.dial(s)
		w.next()
		to := rcv[i]
		swg.Go(func() {
			sent, answered := 0, 0
			var mu sync.Mutex
			done := make(chan struct{})
			go func() { // results
				defer close(done)
				for {
					w.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
					p, err := wsutil.ReadServerText(rw{w.r, w.conn})
					if err != nil {
						return
					}
					var f api.Frame
					json.Unmarshal(p, &f)
					if f.Type != api.FrameSendResult {
						continue
					}
					if f.Status != 200 {
						b.Errorf("send_result status %d", f.Status)
					}
					mu.Lock()
					answered++
					mu.Unlock()
				}
			}()
			for next.Add(1) <= int64(b.N) {
				for {
					mu.Lock()
					ok := sent-answered < window
					mu.Unlock()
					if ok {
						break
					}
					time.Sleep(50 * time.Microsecond)
				}
				sent++
				p, _ := json.Marshal(api.Frame{Type: api.FrameSend, RequestID: uint64(sent), Destination: &to.account,
					Messages: []api.OutgoingEnvelope{envelope(1, to.regID, body)}})
				wsutil.WriteClientText(w.conn, p)
			}
		})
	}
	swg.Wait()
	for acked.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkDrain measures a reconnecting device's drain of an offline queue: b.N
// envelopes queued in the store, then pushed, acked and deleted over one WebSocket.
//
//	go test -run '^$' -bench Drain -benchtime 50000x ./internal/server
func BenchmarkDrain(b *testing.B) {
	h := newHarness(b, nil)
	bob := h.register("+14155557300", 0)
	body := make([]byte, 256)
	for k := 0; k < b.N; k += 500 {
		envs := make([]*store.Envelope, 0, 500)
		for range min(500, b.N-k) {
			envs = append(envs, &store.Envelope{ID: uuid.New(), Account: bob.account, Device: 1, ServerTime: h.clock.Now(), Body: body})
		}
		if err := h.st.Enqueue(context.Background(), envs); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	w := h.dial(bob)
	got := 0
	for got < b.N {
		w.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		p, err := wsutil.ReadServerText(rw{w.r, w.conn})
		if err != nil {
			b.Fatal(err)
		}
		var f api.Frame
		json.Unmarshal(p, &f)
		ids := make([]uuid.UUID, len(f.Envelopes))
		for i, e := range f.Envelopes {
			ids[i] = e.ID
		}
		got += len(ids)
		if len(ids) > 0 {
			q, _ := json.Marshal(api.Frame{Type: api.FrameAck, IDs: ids})
			wsutil.WriteClientText(w.conn, q)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "envelopes/s")
}
