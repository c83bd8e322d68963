package sqlite

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bastionchat/bastion/internal/store"
	"github.com/google/uuid"
)

// cpuTime returns the process's user+system CPU time so far. The machine is shared, so
// CPU per operation is a steadier figure than wall-clock rate.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports CPU microseconds per operation since start.
func reportCPU(b *testing.B, start time.Duration, unit string) {
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/"+unit)
}

// benchAccount registers an account with devices 1..n.
func benchAccount(b *testing.B, s *Store, n int) store.Account {
	b.Helper()
	ctx := context.Background()
	acct, _, err := s.Register(ctx, "+14155550100", make([]byte, 33), store.Device{ID: 1, RegistrationID: 1, CredentialHash: make([]byte, 32)})
	if err != nil {
		b.Fatal(err)
	}
	for range n - 1 {
		if _, err := s.AddDevice(ctx, acct.ID, store.Device{RegistrationID: 2, CredentialHash: make([]byte, 32)}); err != nil {
			b.Fatal(err)
		}
	}
	return acct
}

// BenchmarkEnqueue measures durable enqueues of one 256-byte envelope per call with 1, 16
// and 64 concurrent callers: the gap between them is what group commit buys.
func BenchmarkEnqueue(b *testing.B) {
	for _, callers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s := openTemp(b)
			defer s.Close()
			acct := benchAccount(b, s, 16)
			body := make([]byte, 256)
			rand.Read(body)
			ctx := context.Background()
			b.ResetTimer()
			cpu0 := cpuTime()
			runCallers(callers, b.N, func(c, n int) {
				for range n {
					e := &store.Envelope{ID: uuid.New(), Account: acct.ID, Device: uint32(1 + c%16), ServerTime: time.Now(), Body: body}
					if err := s.Enqueue(ctx, []*store.Envelope{e}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "envelopes/s")
			reportCPU(b, cpu0, "envelope")
			st := s.Stats()
			b.ReportMetric(float64(st.Writes)/float64(st.Commits), "writes/commit")
		})
	}
}

// BenchmarkDrain measures an offline queue drained the way the server delivers: pages of
// Pending by Seq cursor, each page acknowledged while the next is read (acks arrive from
// the device independently of the push). devices queues drain at once.
func BenchmarkDrain(b *testing.B) {
	for _, c := range []struct{ devices, page int }{{1, 100}, {1, 500}, {16, 100}} {
		b.Run(fmt.Sprintf("devices=%d/page=%d", c.devices, c.page), func(b *testing.B) {
			s := openTemp(b)
			defer s.Close()
			acct := benchAccount(b, s, c.devices)
			ctx := context.Background()
			body := make([]byte, 256)
			rand.Read(body)
			// Fill the queues outside the timer, 512 envelopes a call.
			for d := 1; d <= c.devices; d++ {
				per := b.N / c.devices
				if d <= b.N%c.devices {
					per++
				}
				for per > 0 {
					n := min(per, 512)
					envs := make([]*store.Envelope, n)
					for i := range envs {
						envs[i] = &store.Envelope{ID: uuid.New(), Account: acct.ID, Device: uint32(d), ServerTime: time.Now(), Body: body}
					}
					if err := s.Enqueue(ctx, envs); err != nil {
						b.Fatal(err)
					}
					per -= n
				}
			}
			b.ResetTimer()
			cpu0 := cpuTime()
			var wg sync.WaitGroup
			for d := 1; d <= c.devices; d++ {
				wg.Go(func() {
					acks := make(chan []uuid.UUID, 4)
					var ackWG sync.WaitGroup
					ackWG.Go(func() {
						for ids := range acks {
							if err := s.Ack(ctx, acct.ID, uint32(d), ids); err != nil {
								b.Error(err)
							}
						}
					})
					defer ackWG.Wait()
					defer close(acks)
					after := int64(0)
					for {
						envs, err := s.Pending(ctx, acct.ID, uint32(d), after, c.page)
						if err != nil {
							b.Error(err)
							return
						}
						if len(envs) == 0 {
							return
						}
						ids := make([]uuid.UUID, len(envs))
						for i, e := range envs {
							ids[i] = e.ID
						}
						acks <- ids
						after = envs[len(envs)-1].Seq
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			reportCPU(b, cpu0, "envelope")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "envelopes/s")
			for d := 1; d <= c.devices; d++ {
				if left, err := s.Pending(ctx, acct.ID, uint32(d), 0, 1); err != nil || len(left) != 0 {
					b.Fatalf("Pending(%d) after drain = %d envelopes, %v; want none", d, len(left), err)
				}
			}
		})
	}
}

// BenchmarkTakeBundle measures bundle fetches, each consuming one EC and one Kyber
// one-time prekey, with 1 and 16 concurrent fetchers.
func BenchmarkTakeBundle(b *testing.B) {
	for _, callers := range []int{1, 16} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			s := openTemp(b)
			defer s.Close()
			acct := benchAccount(b, s, 1)
			ctx := context.Background()
			sp := store.SignedPreKey{ID: 1, PublicKey: make([]byte, 33), Signature: make([]byte, 64)}
			lr := store.SignedPreKey{ID: 1, PublicKey: make([]byte, 1569), Signature: make([]byte, 64)}
			if err := s.SetKeys(ctx, acct.ID, 1, store.KeyUpload{SignedPreKey: &sp, LastResortKyber: &lr}); err != nil {
				b.Fatal(err)
			}
			for next := 0; next < b.N; next += 500 {
				var up store.KeyUpload
				for id := next; id < min(b.N, next+500); id++ {
					up.PreKeys = append(up.PreKeys, store.PreKey{ID: uint32(id), PublicKey: make([]byte, 33)})
					up.KyberPreKeys = append(up.KyberPreKeys, store.SignedPreKey{ID: uint32(id), PublicKey: make([]byte, 1569), Signature: make([]byte, 64)})
				}
				if err := s.SetKeys(ctx, acct.ID, 1, up); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			cpu0 := cpuTime()
			runCallers(callers, b.N, func(_, n int) {
				for range n {
					bu, err := s.TakeBundle(ctx, acct.ID, 1)
					if err != nil || bu.PreKey == nil || bu.KyberLastResort {
						b.Errorf("TakeBundle() = %v (one-time keys: %v), want one-time keys", err, bu.PreKey != nil)
						return
					}
				}
			})
			reportCPU(b, cpu0, "bundle")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "bundles/s")
		})
	}
}

// runCallers shares total calls out among callers goroutines, caller c making n of them
// in call(c, n), and waits for all of them.
func runCallers(callers, total int, call func(c, n int)) {
	var wg sync.WaitGroup
	for c := range callers {
		n := total / callers
		if c < total%callers {
			n++
		}
		wg.Go(func() { call(c, n) })
	}
	wg.Wait()
}
