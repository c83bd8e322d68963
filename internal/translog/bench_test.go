package translog_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/bits"
	mrand "math/rand/v2"
	"sync"
	"testing"

	"github.com/bastionchat/bastion/internal/translog"
	"github.com/bastionchat/bastion/kt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// benchEntry is the size of a lookup binding, the larger of the two kt
// entry types.
func benchEntry(i int) []byte {
	e := make([]byte, kt.LookupBindingSize)
	binary.BigEndian.PutUint64(e, uint64(i))
	return e
}

func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	signer, _ := newKey(b, origin)
	l := translog.New(translog.NewMemStorage(), signer)
	i := 0
	for b.Loop() {
		if _, err := l.Append(ctx, benchEntry(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

func BenchmarkAppendBatch(b *testing.B) {
	for _, size := range []int{16, 256} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			ctx := context.Background()
			signer, _ := newKey(b, origin)
			l := translog.New(translog.NewMemStorage(), signer)
			batch := make([][]byte, size)
			i := 0
			for b.Loop() {
				for j := range batch {
					batch[j] = benchEntry(i)
					i++
				}
				if _, err := l.Append(ctx, batch...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// bigLog is a log of 2^20 entries shared by the proof benchmarks; building
// it takes a few seconds, once per test binary.
var bigLog struct {
	once sync.Once
	l    *translog.Log
	v    note.Verifier
	cp   kt.Checkpoint
}

const bigLogSize = 1 << 20

func getBigLog(b *testing.B) (*translog.Log, kt.Checkpoint) {
	bigLog.once.Do(func() {
		ctx := context.Background()
		signer, verifier := newKey(b, origin)
		l := translog.New(translog.NewMemStorage(), signer)
		batch := make([][]byte, 4096)
		for i := 0; i < bigLogSize; i += len(batch) {
			for j := range batch {
				batch[j] = benchEntry(i + j)
			}
			if _, err := l.Append(ctx, batch...); err != nil {
				b.Fatal(err)
			}
		}
		bigLog.l, bigLog.v = l, verifier
		bigLog.cp = checkpoint(b, l, verifier)
	})
	if bigLog.l == nil {
		b.Fatal("building the benchmark log failed")
	}
	return bigLog.l, bigLog.cp
}

func BenchmarkInclusionProof(b *testing.B) {
	l, cp := getBigLog(b)
	ctx := context.Background()
	rng := mrand.New(mrand.NewPCG(3, 4))
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.InclusionProof(ctx, rng.Int64N(cp.Size), cp.Size); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyInclusion(b *testing.B) {
	l, cp := getBigLog(b)
	ctx := context.Background()
	const idx = 123457
	p, err := l.InclusionProof(ctx, idx, cp.Size)
	if err != nil {
		b.Fatal(err)
	}
	leaf := benchEntry(idx)
	b.ResetTimer()
	for b.Loop() {
		if err := kt.VerifyInclusion(cp, idx, leaf, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConsistencyProof(b *testing.B) {
	l, cp := getBigLog(b)
	ctx := context.Background()
	rng := mrand.New(mrand.NewPCG(5, 6))
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.ConsistencyProof(ctx, 1+rng.Int64N(cp.Size-1), cp.Size); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyConsistency(b *testing.B) {
	l, cp := getBigLog(b)
	ctx := context.Background()
	const oldSize = 777777
	p, err := l.ConsistencyProof(ctx, oldSize, cp.Size)
	if err != nil {
		b.Fatal(err)
	}
	old := kt.Checkpoint{Origin: cp.Origin, Size: oldSize}
	old.Hash, err = tlog.TreeHash(oldSize, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		// Only the benchmark's setup reads hashes this way.
		hs := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			level, n := tlog.SplitStoredHashIndex(x)
			h, err := subtreeHash(l, level, n)
			if err != nil {
				return nil, err
			}
			hs[i] = h
		}
		return hs, nil
	}))
	if err != nil {
		b.Fatal(err)
	}
	if err := kt.VerifyConsistency(old, cp, p); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := kt.VerifyConsistency(old, cp, p); err != nil {
			b.Fatal(err)
		}
	}
}

// subtreeHash reads the stored hash at (level, n) through a one-tile read,
// using only the log's public API.
func subtreeHash(l *translog.Log, level int, n int64) (tlog.Hash, error) {
	t := tlog.Tile{H: 1, L: level, N: n / 2, W: int(n%2) + 1}
	data, err := l.TileData(context.Background(), t)
	if err != nil {
		return tlog.Hash{}, err
	}
	return tlog.HashFromTile(t, data, tlog.StoredHashIndex(level, n))
}

func BenchmarkCheckpoint(b *testing.B) {
	l, _ := getBigLog(b)
	signer, verifier := newKey(b, origin)
	ctx := context.Background()
	tree, err := l.Tree(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("sign", func(b *testing.B) {
		for b.Loop() {
			if _, err := kt.SignCheckpoint(signer, tree); err != nil {
				b.Fatal(err)
			}
		}
	})
	signed, err := kt.SignCheckpoint(signer, tree)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if _, err := kt.VerifyCheckpoint(verifier, signed); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// countingReader answers any hash read with zeros and counts the hashes; the
// proof functions of tlog then give the exact proof length for any tree size
// without building the tree.
type countingReader struct{}

func (countingReader) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	return make([]tlog.Hash, len(idx)), nil
}

// proofLengths returns the largest inclusion and consistency proofs, in
// hashes, over a sample of positions in a tree of size n: every power of two
// and its neighbours, and 2000 random positions.
func proofLengths(t testing.TB, n int64) (incl, cons int) {
	rng := mrand.New(mrand.NewPCG(uint64(n), 7))
	var pos []int64
	for k := 0; int64(1)<<k < n; k++ {
		for _, d := range []int64{-1, 0, 1} {
			if p := int64(1)<<k + d; p >= 1 && p < n {
				pos = append(pos, p)
			}
		}
	}
	for range 2000 {
		pos = append(pos, 1+rng.Int64N(n-1))
	}
	pos = append(pos, 0, n-1)
	for _, p := range pos {
		rp, err := tlog.ProveRecord(n, p, countingReader{})
		if err != nil {
			t.Fatal(err)
		}
		incl = max(incl, len(rp))
		if p == 0 {
			continue
		}
		tp, err := tlog.ProveTree(n, p, countingReader{})
		if err != nil {
			t.Fatal(err)
		}
		cons = max(cons, len(tp))
	}
	return incl, cons
}

// TestProofSizes computes proof sizes for large trees without building them
// and checks them against the RFC 6962 bounds: an inclusion proof has at
// most ceil(log2 n) hashes, a consistency proof at most ceil(log2 n) + 1.
// It also checks that the log stores just under two hashes per entry.
// Run with -v to print the table in docs/bench/kt.md.
func TestProofSizes(t *testing.T) {
	for _, n := range []int64{1_000, 1_000_000, 100_000_000, 1_000_000_000} {
		incl, cons := proofLengths(t, n)
		depth := bits.Len64(uint64(n - 1)) // ceil(log2 n)
		if incl > depth || incl < depth-1 {
			t.Errorf("n=%d: largest inclusion proof %d hashes, want %d", n, incl, depth)
		}
		if cons > depth+1 || cons < depth-1 {
			t.Errorf("n=%d: largest consistency proof %d hashes, want about %d", n, cons, depth+1)
		}
		stored := tlog.StoredHashCount(n)
		if stored < 2*n-int64(depth)-1 || stored > 2*n {
			t.Errorf("n=%d: StoredHashCount = %d, want just under 2n", n, stored)
		}
		t.Logf("| %d | %d | %d B | %d | %d B | %d |", n, incl, incl*tlog.HashSize, cons, cons*tlog.HashSize, stored)
	}
	signer, _ := newKey(t, "kt.bastion.example")
	signed, err := kt.SignCheckpoint(signer, tlog.Tree{N: 100_000_000})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("signed checkpoint for 100000000 entries, origin %q: %d bytes", signer.Name(), len(signed))
}
