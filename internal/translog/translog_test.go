package translog_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/bastionchat/bastion/internal/translog"
	"github.com/bastionchat/bastion/internal/translog/translogtest"
	"github.com/bastionchat/bastion/kt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const origin = "translog.bastion.example/kt"

func TestMemStorage(t *testing.T) {
	translogtest.Run(t, func(t *testing.T) translog.Storage { return translog.NewMemStorage() })
}

func newKey(t testing.TB, name string) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func entry(i int) []byte { return fmt.Appendf(nil, "entry %d", i) }

func checkpoint(t testing.TB, l *translog.Log, v note.Verifier) kt.Checkpoint {
	t.Helper()
	signed, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cp, err := kt.VerifyCheckpoint(v, signed)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestLargeLog builds a log of a few thousand entries in batches of varying
// size, keeps a checkpoint after every batch, and checks a sample of
// inclusion proofs and consistency proofs between many pairs of them.
func TestLargeLog(t *testing.T) {
	ctx := context.Background()
	signer, verifier := newKey(t, origin)
	l := translog.New(translog.NewMemStorage(), signer)
	rng := mrand.New(mrand.NewPCG(1, 2))

	n := 4000
	if testing.Short() {
		n = 1000
	}
	var cps []kt.Checkpoint
	for i := 0; i < n; {
		k := min(1+rng.IntN(40), n-i)
		var batch [][]byte
		for j := range k {
			batch = append(batch, entry(i+j))
		}
		if _, err := l.Append(ctx, batch...); err != nil {
			t.Fatal(err)
		}
		i += k
		cps = append(cps, checkpoint(t, l, verifier))
	}
	last := cps[len(cps)-1]

	// Inclusion: the edges and every 13th entry, in the final tree and in
	// a few earlier ones.
	for _, cp := range []kt.Checkpoint{last, cps[len(cps)/2], cps[3]} {
		for i := int64(0); i < cp.Size; i++ {
			if i%13 != 0 && i != cp.Size-1 && i != 1 {
				continue
			}
			p, err := l.InclusionProof(ctx, i, cp.Size)
			if err != nil {
				t.Fatalf("InclusionProof(%d, %d) error: %v", i, cp.Size, err)
			}
			if err := kt.VerifyInclusion(cp, i, entry(int(i)), p); err != nil {
				t.Errorf("VerifyInclusion(size %d, %d) error: %v", cp.Size, i, err)
			}
		}
	}

	// Consistency between 300 random pairs of checkpoints and all pairs
	// with the first and last.
	pairs := [][2]int{}
	for i := range cps {
		pairs = append(pairs, [2]int{0, i}, [2]int{i, len(cps) - 1})
	}
	for range 300 {
		a, b := rng.IntN(len(cps)), rng.IntN(len(cps))
		pairs = append(pairs, [2]int{min(a, b), max(a, b)})
	}
	for _, pr := range pairs {
		old, new := cps[pr[0]], cps[pr[1]]
		p, err := l.ConsistencyProof(ctx, old.Size, new.Size)
		if err != nil {
			t.Fatalf("ConsistencyProof(%d, %d) error: %v", old.Size, new.Size, err)
		}
		if err := kt.VerifyConsistency(old, new, p); err != nil {
			t.Errorf("VerifyConsistency(%d, %d) error: %v", old.Size, new.Size, err)
		}
		// The same proof does not link old to another tree.
		other := cps[(pr[1]+1)%len(cps)]
		if old.Size > 0 && other.Size >= old.Size && other.Size != new.Size {
			if err := kt.VerifyConsistency(old, other, p); !errors.Is(err, kt.ErrInvalidProof) {
				t.Errorf("VerifyConsistency(%d, %d) with the proof to %d = %v, want ErrInvalidProof", old.Size, other.Size, new.Size, err)
			}
		}
	}

	// A client following the log checkpoint by checkpoint never sees a fork.
	v, err := kt.NewVerifier(verifier, nil)
	if err != nil {
		t.Fatal(err)
	}
	prev := int64(0)
	for _, cp := range cps {
		p, err := l.ConsistencyProof(ctx, prev, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if prev == 0 {
			p = nil
		}
		if _, err := v.Advance(cp.Note, p); err != nil {
			t.Fatalf("Advance(%d -> %d) error: %v", prev, cp.Size, err)
		}
		prev = cp.Size
	}
}

// TestBatchEqualsSingle checks that the tree does not depend on how the
// entries were batched.
func TestBatchEqualsSingle(t *testing.T) {
	ctx := context.Background()
	signer, _ := newKey(t, origin)
	single := translog.New(translog.NewMemStorage(), signer)
	batched := translog.New(translog.NewMemStorage(), signer)
	var all [][]byte
	for i := range 300 {
		all = append(all, entry(i))
		if _, err := single.Append(ctx, entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < len(all); i += 77 {
		if _, err := batched.Append(ctx, all[i:min(i+77, len(all))]...); err != nil {
			t.Fatal(err)
		}
	}
	a, err := single.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := batched.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("Checkpoint() of single appends = %q, of batches = %q", a, b)
	}
}

func TestConcurrentAppends(t *testing.T) {
	ctx := context.Background()
	signer, verifier := newKey(t, origin)
	l := translog.New(translog.NewMemStorage(), signer)
	const workers, each = 8, 25
	firsts := make([][]int64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				e := fmt.Appendf(nil, "worker %d entry %d", w, i)
				first, err := l.Append(ctx, e, append(e, '+'))
				if err != nil {
					t.Error(err)
					return
				}
				firsts[w] = append(firsts[w], first)
			}
		})
	}
	// Readers run alongside the writers.
	wg.Go(func() {
		for range 50 {
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()

	cp := checkpoint(t, l, verifier)
	if cp.Size != workers*each*2 {
		t.Fatalf("size after concurrent appends = %d, want %d", cp.Size, workers*each*2)
	}
	var all []int64
	for w := range workers {
		for i, first := range firsts[w] {
			all = append(all, first)
			e := fmt.Appendf(nil, "worker %d entry %d", w, i)
			for j, want := range [][]byte{e, append(e, '+')} {
				idx := first + int64(j)
				got, err := l.Entries(ctx, idx, idx+1)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got[0], want) {
					t.Errorf("entry %d = %q, want %q (batches interleaved)", idx, got[0], want)
				}
				p, err := l.InclusionProof(ctx, idx, cp.Size)
				if err != nil {
					t.Fatal(err)
				}
				if err := kt.VerifyInclusion(cp, idx, want, p); err != nil {
					t.Errorf("VerifyInclusion(%d) error: %v", idx, err)
				}
			}
		}
	}
	slices.Sort(all)
	for i, first := range all {
		if first != int64(2*i) {
			t.Fatalf("batch starts = %v, want 0, 2, 4, ...", all)
		}
	}
}

// faultyStorage wraps a storage, records the order of writes and fails the
// named one once.
type faultyStorage struct {
	translog.Storage
	mu     sync.Mutex
	writes []string
	failOn string
}

var errInjected = errors.New("injected failure")

func (f *faultyStorage) record(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes = append(f.writes, op)
	if f.failOn == op {
		f.failOn = ""
		return errInjected
	}
	return nil
}

func (f *faultyStorage) WriteHashes(ctx context.Context, start int64, h []tlog.Hash) error {
	if err := f.record("hashes"); err != nil {
		return err
	}
	return f.Storage.WriteHashes(ctx, start, h)
}

func (f *faultyStorage) WriteEntries(ctx context.Context, start int64, e [][]byte) error {
	if err := f.record("entries"); err != nil {
		return err
	}
	return f.Storage.WriteEntries(ctx, start, e)
}

func (f *faultyStorage) WriteTree(ctx context.Context, old, new tlog.Tree) error {
	if err := f.record("tree"); err != nil {
		return err
	}
	return f.Storage.WriteTree(ctx, old, new)
}

func TestAppendWriteOrderAndFailures(t *testing.T) {
	ctx := context.Background()
	signer, verifier := newKey(t, origin)
	fs := &faultyStorage{Storage: translog.NewMemStorage()}
	l := translog.New(fs, signer)
	if _, err := l.Append(ctx, entry(0), entry(1)); err != nil {
		t.Fatal(err)
	}
	if want := []string{"entries", "hashes", "tree"}; !slices.Equal(fs.writes, want) {
		t.Errorf("write order = %v, want %v", fs.writes, want)
	}
	before := checkpoint(t, l, verifier)

	for _, op := range []string{"entries", "hashes", "tree"} {
		fs.failOn = op
		if _, err := l.Append(ctx, []byte("lost-"+op)); !errors.Is(err, errInjected) {
			t.Fatalf("Append with %s failing = %v, want the injected error", op, err)
		}
		if got := checkpoint(t, l, verifier); !got.Same(before) {
			t.Fatalf("tree after failed %s write = %d, want unchanged %d", op, got.Size, before.Size)
		}
		if _, err := l.InclusionProof(ctx, before.Size, before.Size+1); err == nil {
			t.Errorf("InclusionProof of an uncommitted entry after failed %s write succeeded", op)
		}
	}

	// The next append replaces what the failed ones left behind.
	if _, err := l.Append(ctx, entry(2)); err != nil {
		t.Fatal(err)
	}
	after := checkpoint(t, l, verifier)
	for i := range 3 {
		p, err := l.InclusionProof(ctx, int64(i), after.Size)
		if err != nil {
			t.Fatal(err)
		}
		if err := kt.VerifyInclusion(after, int64(i), entry(i), p); err != nil {
			t.Errorf("VerifyInclusion(%d) after recovery error: %v", i, err)
		}
	}
	p, err := l.ConsistencyProof(ctx, before.Size, after.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := kt.VerifyConsistency(before, after, p); err != nil {
		t.Errorf("VerifyConsistency(before failures, after) error: %v", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Append(cctx, entry(3)); !errors.Is(err, context.Canceled) {
		t.Errorf("Append(canceled context) = %v, want context.Canceled", err)
	}
}

func TestLogRejects(t *testing.T) {
	ctx := context.Background()
	signer, _ := newKey(t, origin)
	l := translog.New(translog.NewMemStorage(), signer)
	if _, err := l.Append(ctx); err == nil {
		t.Errorf("Append() of nothing = nil, want error")
	}
	if _, err := l.Append(ctx, []byte{}); err == nil {
		t.Errorf("Append(empty entry) = nil, want error")
	}
	if _, err := l.Append(ctx, make([]byte, translog.MaxEntrySize+1)); err == nil {
		t.Errorf("Append(oversized entry) = nil, want error")
	}
	for i := range 10 {
		if _, err := l.Append(ctx, entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.InclusionProof(ctx, 3, 11); err == nil {
		t.Errorf("InclusionProof(3, 11) beyond the tree = nil, want error")
	}
	if _, err := l.InclusionProof(ctx, 10, 10); err == nil {
		t.Errorf("InclusionProof(10, 10) = nil, want error")
	}
	if _, err := l.InclusionProof(ctx, -1, 10); err == nil {
		t.Errorf("InclusionProof(-1, 10) = nil, want error")
	}
	if _, err := l.ConsistencyProof(ctx, 5, 11); err == nil {
		t.Errorf("ConsistencyProof(5, 11) beyond the tree = nil, want error")
	}
	if _, err := l.ConsistencyProof(ctx, 6, 5); err == nil {
		t.Errorf("ConsistencyProof(6, 5) = nil, want error")
	}
	for _, r := range [][2]int64{{0, 11}, {5, 5}, {-1, 3}, {4, 2}} {
		if _, err := l.Entries(ctx, r[0], r[1]); err == nil {
			t.Errorf("Entries(%d, %d) = nil error, want error", r[0], r[1])
		}
	}
	for _, tile := range []tlog.Tile{
		{H: 2, L: 0, N: 2, W: 3},  // entries 8..10: beyond 10
		{H: 2, L: 1, N: 0, W: 3},  // needs 12 entries
		{H: 2, L: -1, N: 0, W: 4}, // entry tiles are served by Entries
		{H: 2, L: 0, N: 0, W: 5},  // wider than 2^H
		{H: 0, L: 0, N: 0, W: 1},
	} {
		if _, err := l.TileData(ctx, tile); err == nil {
			t.Errorf("TileData(%+v) = nil error, want error", tile)
		}
	}
	if _, err := l.Entries(ctx, 0, translog.MaxEntriesRange+1); err == nil {
		t.Errorf("Entries of more than MaxEntriesRange = nil error, want error")
	}
}

// TestTiles reads the tree through tlog's own tile reader, which checks every
// tile it reads against the tree hash, and then proves records with it.
func TestTiles(t *testing.T) {
	ctx := context.Background()
	signer, verifier := newKey(t, origin)
	l := translog.New(translog.NewMemStorage(), signer)
	for i := 0; i < 1000; i += 100 {
		var batch [][]byte
		for j := range 100 {
			batch = append(batch, entry(i+j))
		}
		if _, err := l.Append(ctx, batch...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Append(ctx, entry(1000), entry(1001), entry(1002)); err != nil {
		t.Fatal(err)
	}
	cp := checkpoint(t, l, verifier)
	for _, h := range []int{2, 4, 8} {
		tr := &tileReader{ctx: ctx, l: l, h: h}
		r := tlog.TileHashReader(cp.Tree(), tr)
		for _, i := range []int64{0, 1, 255, 256, 999, 1000, 1002} {
			p, err := tlog.ProveRecord(cp.Size, i, r)
			if err != nil {
				t.Fatalf("H=%d ProveRecord(%d) through tiles error: %v", h, i, err)
			}
			if err := kt.VerifyInclusion(cp, i, entry(int(i)), p); err != nil {
				t.Errorf("H=%d VerifyInclusion(%d) through tiles error: %v", h, i, err)
			}
		}
		if tr.reads == 0 {
			t.Errorf("H=%d: tile reader was never used", h)
		}
	}
}

type tileReader struct {
	ctx   context.Context
	l     *translog.Log
	h     int
	reads int
}

func (r *tileReader) Height() int { return r.h }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := r.l.TileData(r.ctx, t)
		if err != nil {
			return nil, err
		}
		out[i] = data
		r.reads++
	}
	return out, nil
}

func (r *tileReader) SaveTiles([]tlog.Tile, [][]byte) {}
