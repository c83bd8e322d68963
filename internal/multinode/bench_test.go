package multinode

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/pgtest"
	"github.com/bastionchat/bastion/internal/reliability"
)

// benchPairs is how many sender-recipient pairs load the nodes: enough to keep two cores
// busy, few enough that registration stays a small part of the run.
const benchPairs = 32

// BenchmarkNodes measures closed-loop throughput (send -> durable -> delivered -> acked)
// on one SQLite node and on one, two and three PostgreSQL nodes sharing NATS. Sender i
// sends through node i mod N to a recipient connected to node (i+1) mod N, so with two
// or more nodes every message crosses nodes. b.N is the number of messages; run it with
// a fixed count, e.g. -benchtime=4000x, since each run starts its own nodes:
//
//	go test ./internal/multinode -run '^$' -bench Nodes -benchtime 4000x
func BenchmarkNodes(b *testing.B) {
	b.Run("sqlite-1", func(b *testing.B) { benchNodes(b, 1, false) })
	for n := 1; n <= 3; n++ {
		b.Run(fmt.Sprintf("postgres-%d", n), func(b *testing.B) { benchNodes(b, n, true) })
	}
}

func benchNodes(b *testing.B, n int, pg bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var shared []string
	if pg {
		shared = []string{"--store", pgtest.Start(b), "--nats", startNATS(b)}
	}
	var nodes []*reliability.Server
	for i := range n {
		dir := b.TempDir()
		if i > 0 { // the keys every node shares, as docs/operations.md says
			for _, f := range sharedKeyFiles {
				data, err := os.ReadFile(filepath.Join(nodes[0].Data, f))
				if err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
					b.Fatal(err)
				}
			}
		}
		// Every device registers from 127.0.0.1 and fetches no bundles: raise what that trips.
		args := append([]string{fmt.Sprintf("--legal-desk=%t", i == 0),
			"--rate-verify-ip", "100000/1h", "--rate-verify-prefix", "100000/1h"}, shared...)
		s, err := reliability.Start(ctx, bastiond, dir, args...)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Stop()
		nodes = append(nodes, s)
	}

	senders := make([]*reliability.Device, benchPairs)
	recipients := make([]*reliability.Device, benchPairs)
	conns := make([]*reliability.Conn, benchPairs)
	for i := range benchPairs {
		var err error
		home := nodes[i%n]
		if senders[i], err = home.Register(ctx, fmt.Sprintf("+1415556%04d", i), reliability.KeyOptions{}); err != nil {
			b.Fatal(err)
		}
		if recipients[i], err = home.Register(ctx, fmt.Sprintf("+1415557%04d", i), reliability.KeyOptions{}); err != nil {
			b.Fatal(err)
		}
		if conns[i], err = nodes[(i+1)%n].Dial(ctx, recipients[i]); err != nil {
			b.Fatal(err)
		}
		defer conns[i].Close()
	}

	var delivered atomic.Int64
	for _, c := range conns {
		go func() {
			for {
				f, err := c.Next(time.Time{})
				if err != nil {
					return
				}
				if f.Type != api.FrameEnvelopes {
					continue
				}
				ids := make([]uuid.UUID, len(f.Envelopes))
				for i, e := range f.Envelopes {
					ids[i] = e.ID
				}
				if err := c.Ack(ids); err != nil {
					return
				}
				delivered.Add(int64(len(ids)))
			}
		}()
	}

	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range benchPairs {
		wg.Go(func() {
			body := make([]byte, 256) // random bytes: the server cannot tell them from ciphertext
			for next.Add(1) <= int64(b.N) {
				rand.Read(body)
				if err := nodes[i%n].Send(ctx, senders[i], recipients[i], uuid.New(), body); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for delivered.Load() < int64(b.N) && ctx.Err() == nil && !b.Failed() {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	if got := delivered.Load(); got < int64(b.N) {
		b.Fatalf("%d of %d messages delivered", got, b.N)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
}
