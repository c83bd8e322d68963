package postgres

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/bastionchat/bastion/internal/pgtest"
	"github.com/bastionchat/bastion/internal/translog"
	"github.com/bastionchat/bastion/internal/translog/translogtest"
	"github.com/bastionchat/bastion/kt"
)

func TestKTLogConformance(t *testing.T) {
	translogtest.Run(t, func(t *testing.T) translog.Storage { return open(t).KTLog() })
}

// TestKTLogTwoNodes appends from two nodes (two Stores on one database, each with its
// own translog.Log) at once, each append under LockAppends, and checks that the result is
// one log holding every entry once, with proofs that verify.
func TestKTLogTwoNodes(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t)
	skey, vkey, err := note.GenerateKey(rand.Reader, "twonodes.example/kt")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	var nodes []*KTLog
	var logs []*translog.Log
	for range 2 {
		s, err := Open(ctx, dsn, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		nodes = append(nodes, s.KTLog())
		logs = append(logs, translog.New(s.KTLog(), signer))
	}
	const perNode = 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*perNode)
	for n := range nodes {
		wg.Go(func() {
			for i := range perNode {
				err := nodes[n].LockAppends(ctx, func(ctx context.Context) error {
					_, err := logs[n].Append(ctx, fmt.Appendf(nil, "node %d entry %d", n, i))
					return err
				})
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Append under LockAppends error: %v", err)
	}
	signed, err := logs[0].Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := kt.VerifyCheckpoint(verifier, signed)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 2*perNode {
		t.Fatalf("checkpoint size = %d, want %d", cp.Size, 2*perNode)
	}
	es, err := logs[1].Entries(ctx, 0, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, e := range es {
		if seen[string(e)] {
			t.Errorf("entry %q appears twice", e)
		}
		seen[string(e)] = true
		p, err := logs[1].InclusionProof(ctx, int64(i), cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := kt.VerifyInclusion(cp, int64(i), e, p); err != nil {
			t.Errorf("VerifyInclusion(%d) = %v", i, err)
		}
	}
}
