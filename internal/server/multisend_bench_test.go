package server

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
)

// BenchmarkFanOut measures one group message fanned out to 1,000 and 10,000 recipient
// devices over loopback HTTP, on the harness's SQLite store (WAL, synchronous=FULL, a
// real fsync per commit): one PUT /v1/messages carrying every envelope, against the
// same envelopes sent as one PUT /v1/messages/{account} per account, one at a time and
// 32 at a time. Bodies are 512 random bytes, the size of a sealed sender-key message.
// Request bodies are encoded before the timer starts, so the time is the server's
// (decode, device checks, durable enqueue, wake-ups) plus loopback HTTP.
//
// Every cached device list is forgotten before each fan-out, so every account's list is
// read from SQLite, as for a group's first message after a second of quiet.
//
//	go test -run '^$' -bench FanOut -benchtime 5x -count 3 ./internal/server
func BenchmarkFanOut(b *testing.B) {
	h := newHarness(b, nil)
	sender := h.register("+14155558200", 0)
	single := h.storeAccounts(100_000, 10_000, 1) // 10,000 accounts of 1 device
	multi := h.storeAccounts(200_000, 1_000, 10)  // 1,000 accounts of 10 devices
	// The cleanup's log scan checks a sample of the 11,000 accounts' ids and numbers:
	// all of them against the log of 10,000s of requests would outlast the benchmark.
	h.mu.Lock()
	h.secrets = h.secrets[:min(len(h.secrets), 1000)]
	h.mu.Unlock()
	tr := h.ts.Client().Transport.(*http.Transport)
	tr.MaxIdleConnsPerHost = 64
	body := make([]byte, 512)
	rand.Read(body)

	shapes := []struct {
		name     string
		accounts []uuid.UUID
		devices  int
	}{
		{"1000x1", single[:1000], 1},
		{"1000x10", multi, 10},
		{"10000x1", single, 1},
	}
	for _, sh := range shapes {
		devices := len(sh.accounts) * sh.devices
		forget := func() {
			for _, a := range sh.accounts {
				h.srv.devices.forget(a)
			}
		}
		var cpu0 time.Duration
		report := func(b *testing.B) {
			per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(per/float64(devices)/1e3, "µs/device")
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N*devices), "cpu-µs/device")
			b.ReportMetric(float64(devices)*float64(b.N)/b.Elapsed().Seconds(), "envelopes/s")
		}
		b.Run(fmt.Sprintf("multi/%s", sh.name), func(b *testing.B) {
			reqs := make([][]byte, b.N)
			for i := range reqs {
				p, err := json.Marshal(api.MultiSendRequest{Recipients: fanOut(sh.accounts, sh.devices, 1234, body)})
				if err != nil {
					b.Fatal(err)
				}
				reqs[i] = p
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 = processCPU()
			for i := range b.N {
				b.StopTimer()
				forget()
				b.StartTimer()
				fanOutHTTP(b, h, sender, "/v1/messages", reqs[i])
			}
			b.StopTimer()
			report(b)
		})
		for _, inFlight := range []int{1, 32} {
			b.Run(fmt.Sprintf("1to1x%d/%s", inFlight, sh.name), func(b *testing.B) {
				reqs := make([][][]byte, b.N)
				for i := range reqs {
					reqs[i] = make([][]byte, len(sh.accounts))
					for j, rc := range fanOut(sh.accounts, sh.devices, 1234, body) {
						p, err := json.Marshal(api.SendRequest{Messages: rc.Messages})
						if err != nil {
							b.Fatal(err)
						}
						reqs[i][j] = p
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 = processCPU()
				for i := range b.N {
					b.StopTimer()
					forget()
					b.StartTimer()
					var wg sync.WaitGroup
					next := make(chan int)
					for range inFlight {
						wg.Go(func() {
							for j := range next {
								fanOutHTTP(b, h, sender, "/v1/messages/"+sh.accounts[j].String(), reqs[i][j])
							}
						})
					}
					for j := range sh.accounts {
						next <- j
					}
					close(next)
					wg.Wait()
				}
				b.StopTimer()
				report(b)
			})
		}
	}
}

// processCPU is the user and system CPU time this process has used: the server's and
// the loopback client's, but not other processes' on the shared machine. It includes
// the forget calls between fan-outs, a few microseconds per account.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fanOutHTTP PUTs body to path as from and fails b unless the answer is 200.
func fanOutHTTP(b *testing.B, h *harness, from *client, path string, body []byte) {
	req, err := http.NewRequest("PUT", h.ts.URL+path, bytes.NewReader(body))
	if err != nil {
		b.Error(err)
		return
	}
	req.SetBasicAuth(from.user(), from.password)
	resp, err := h.ts.Client().Do(req)
	if err != nil {
		b.Error(err)
		return
	}
	p, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Errorf("PUT %s = %d %.200s", path, resp.StatusCode, p)
	}
}

// BenchmarkFanOutDelivery measures a group message to 1,000 single-device accounts whose
// devices are connected over WebSocket and ack what they get: the time from the request
// to the server's answer (every envelope durable) and to the moment the last device has
// its envelope. 1,000 connections because the machine allows 20,000 open files, and
// client and server ends share this process.
//
//	go test -run '^$' -bench FanOutDelivery -benchtime 5x -count 3 ./internal/server
func BenchmarkFanOutDelivery(b *testing.B) {
	const n = 1000
	h := newHarness(b, nil)
	sender := h.register("+14155558201", 0)
	accounts := h.storeAccounts(300_000, n, 1)
	h.mu.Lock()
	h.secrets = h.secrets[:min(len(h.secrets), 1000)]
	h.mu.Unlock()
	var got atomic.Int64
	done := make(chan struct{}, 1)
	for _, a := range accounts {
		w := h.dial(&client{account: a, device: 1, password: storePassword})
		w.next() // queue_empty
		go func() {
			for {
				p, err := wsutil.ReadServerText(rw{w.r, w.conn})
				if err != nil {
					return // closed at cleanup
				}
				var f api.Frame
				json.Unmarshal(p, &f)
				if len(f.Envelopes) == 0 {
					continue
				}
				ids := make([]uuid.UUID, len(f.Envelopes))
				for i, e := range f.Envelopes {
					ids[i] = e.ID
				}
				q, _ := json.Marshal(api.Frame{Type: api.FrameAck, IDs: ids})
				wsutil.WriteClientText(w.conn, q)
				// Each device gets one envelope per fan-out: the total reaches a multiple
				// of n exactly once per fan-out, when its last device has it.
				if got.Add(int64(len(ids)))%n == 0 {
					done <- struct{}{}
				}
			}
		}()
	}
	body := make([]byte, 512)
	rand.Read(body)
	reqs := make([][]byte, b.N)
	for i := range reqs {
		p, err := json.Marshal(api.MultiSendRequest{Recipients: fanOut(accounts, 1, 1234, body)})
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = p
	}
	var durable, delivered time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		for _, a := range accounts {
			h.srv.devices.forget(a)
		}
		b.StartTimer()
		start := time.Now()
		fanOutHTTP(b, h, sender, "/v1/messages", reqs[i])
		durable += time.Since(start)
		select {
		case <-done:
		case <-time.After(time.Minute):
			b.Fatalf("after a minute %d of %d devices have the envelope", got.Load()-int64(i*n), n)
		}
		delivered += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(durable.Seconds()*1e3/float64(b.N), "ms-durable")
	b.ReportMetric(delivered.Seconds()*1e3/float64(b.N), "ms-last-delivered")
}
