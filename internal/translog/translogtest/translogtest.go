// Package translogtest holds the conformance tests every translog.Storage
// implementation must pass: the in-memory one here, and the SQL ones the
// store package adds. Call [Run] from a test with a function that returns a
// new, empty storage.
package translogtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	"github.com/bastionchat/bastion/internal/translog"
	"github.com/bastionchat/bastion/kt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Run runs the conformance tests, each on a fresh storage from open.
func Run(t *testing.T, open func(t *testing.T) translog.Storage) {
	t.Run("Empty", func(t *testing.T) { testEmpty(t, open(t)) })
	t.Run("Hashes", func(t *testing.T) { testHashes(t, open(t)) })
	t.Run("Entries", func(t *testing.T) { testEntries(t, open(t)) })
	t.Run("TreeConflict", func(t *testing.T) { testTreeConflict(t, open(t)) })
	t.Run("Log", func(t *testing.T) { testLog(t, open(t)) })
}

func testEmpty(t *testing.T, s translog.Storage) {
	ctx := context.Background()
	tree, err := s.ReadTree(ctx)
	if err != nil {
		t.Fatalf("ReadTree() on empty storage error: %v", err)
	}
	if tree != (tlog.Tree{}) {
		t.Errorf("ReadTree() on empty storage = %+v, want the zero tree", tree)
	}
	if hs, err := s.ReadHashes(ctx, []int64{0}); err == nil {
		t.Errorf("ReadHashes([0]) on empty storage = %v, want error", hs)
	}
	if es, err := s.ReadEntries(ctx, 0, 1); err == nil {
		t.Errorf("ReadEntries(0, 1) on empty storage = %q, want error", es)
	}
}

func hashOf(i int) tlog.Hash {
	return tlog.RecordHash(fmt.Appendf(nil, "hash %d", i))
}

func testHashes(t *testing.T, s translog.Storage) {
	ctx := context.Background()
	var first []tlog.Hash
	for i := range 10 {
		first = append(first, hashOf(i))
	}
	if err := s.WriteHashes(ctx, 0, first); err != nil {
		t.Fatalf("WriteHashes(0, 10 hashes) error: %v", err)
	}
	// A crashed append left hashes 8 and 9; the next one replaces them.
	if err := s.WriteHashes(ctx, 8, []tlog.Hash{hashOf(108), hashOf(109), hashOf(110)}); err != nil {
		t.Fatalf("WriteHashes(8, 3 hashes) error: %v", err)
	}
	got, err := s.ReadHashes(ctx, []int64{9, 0, 10, 8, 7})
	if err != nil {
		t.Fatalf("ReadHashes error: %v", err)
	}
	want := []tlog.Hash{hashOf(109), hashOf(0), hashOf(110), hashOf(108), hashOf(7)}
	if len(got) != len(want) {
		t.Fatalf("ReadHashes returned %d hashes, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ReadHashes[%d] = %x, want %x", i, got[i], want[i])
		}
	}
	if hs, err := s.ReadHashes(ctx, []int64{3, 11}); err == nil {
		t.Errorf("ReadHashes([3, 11]) past the end = %v, want error", hs)
	}
	if hs, err := s.ReadHashes(ctx, nil); err != nil || len(hs) != 0 {
		t.Errorf("ReadHashes(nil) = %v, %v, want none", hs, err)
	}
}

func testEntries(t *testing.T, s translog.Storage) {
	ctx := context.Background()
	in := [][]byte{[]byte("zero"), []byte("one"), []byte("two")}
	if err := s.WriteEntries(ctx, 0, in); err != nil {
		t.Fatalf("WriteEntries error: %v", err)
	}
	in[0][0] = 'Z' // the storage must have kept its own copy
	if err := s.WriteEntries(ctx, 2, [][]byte{[]byte("TWO"), []byte("three")}); err != nil {
		t.Fatalf("WriteEntries(2, ...) error: %v", err)
	}
	got, err := s.ReadEntries(ctx, 0, 4)
	if err != nil {
		t.Fatalf("ReadEntries(0, 4) error: %v", err)
	}
	want := []string{"zero", "one", "TWO", "three"}
	if len(got) != len(want) {
		t.Fatalf("ReadEntries(0, 4) = %q, want %q", got, want)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("ReadEntries(0, 4)[%d] = %q, want %q", i, got[i], want[i])
		}
	}
	got[1][0] = 'X' // nor may callers change what it holds
	again, err := s.ReadEntries(ctx, 1, 2)
	if err != nil || len(again) != 1 || string(again[0]) != "one" {
		t.Errorf("ReadEntries(1, 2) after changing a result = %q, %v, want [one]", again, err)
	}
	if es, err := s.ReadEntries(ctx, 3, 5); err == nil {
		t.Errorf("ReadEntries(3, 5) past the end = %q, want error", es)
	}
}

func testTreeConflict(t *testing.T, s translog.Storage) {
	ctx := context.Background()
	one := tlog.Tree{N: 1, Hash: hashOf(1)}
	two := tlog.Tree{N: 2, Hash: hashOf(2)}
	if err := s.WriteTree(ctx, tlog.Tree{}, one); err != nil {
		t.Fatalf("WriteTree(zero, one) error: %v", err)
	}
	if err := s.WriteTree(ctx, tlog.Tree{}, two); !errors.Is(err, translog.ErrConflict) {
		t.Errorf("WriteTree(stale zero, two) = %v, want ErrConflict", err)
	}
	if err := s.WriteTree(ctx, tlog.Tree{N: 1, Hash: hashOf(9)}, two); !errors.Is(err, translog.ErrConflict) {
		t.Errorf("WriteTree(right size wrong hash, two) = %v, want ErrConflict", err)
	}
	if got, err := s.ReadTree(ctx); err != nil || got != one {
		t.Errorf("ReadTree() after conflicts = %+v, %v, want %+v", got, err, one)
	}
	if err := s.WriteTree(ctx, one, two); err != nil {
		t.Errorf("WriteTree(one, two) error: %v", err)
	}
	if got, err := s.ReadTree(ctx); err != nil || got != two {
		t.Errorf("ReadTree() = %+v, %v, want %+v", got, err, two)
	}
}

// testLog runs a Log on the storage and checks its proofs with package kt.
func testLog(t *testing.T, s translog.Storage) {
	ctx := context.Background()
	skey, vkey, err := note.GenerateKey(rand.Reader, "translogtest.example/log")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	l := translog.New(s, signer)
	var all [][]byte
	var cps []kt.Checkpoint
	for batch := 1; batch <= 20; batch++ {
		var es [][]byte
		for i := range batch {
			es = append(es, fmt.Appendf(nil, "batch %d entry %d", batch, i))
		}
		first, err := l.Append(ctx, es...)
		if err != nil {
			t.Fatalf("Append(batch %d) error: %v", batch, err)
		}
		if first != int64(len(all)) {
			t.Errorf("Append(batch %d) = %d, want %d", batch, first, len(all))
		}
		all = append(all, es...)
		signed, err := l.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := kt.VerifyCheckpoint(verifier, signed)
		if err != nil {
			t.Fatalf("VerifyCheckpoint after batch %d error: %v", batch, err)
		}
		cps = append(cps, cp)
	}
	last := cps[len(cps)-1]
	if last.Size != int64(len(all)) {
		t.Fatalf("checkpoint size %d, want %d", last.Size, len(all))
	}
	for i, e := range all {
		p, err := l.InclusionProof(ctx, int64(i), last.Size)
		if err != nil {
			t.Fatalf("InclusionProof(%d) error: %v", i, err)
		}
		if err := kt.VerifyInclusion(last, int64(i), e, p); err != nil {
			t.Errorf("VerifyInclusion(%d) error: %v", i, err)
		}
	}
	for _, old := range cps {
		p, err := l.ConsistencyProof(ctx, old.Size, last.Size)
		if err != nil {
			t.Fatalf("ConsistencyProof(%d, %d) error: %v", old.Size, last.Size, err)
		}
		if err := kt.VerifyConsistency(old, last, p); err != nil {
			t.Errorf("VerifyConsistency(%d, %d) error: %v", old.Size, last.Size, err)
		}
	}
	got, err := l.Entries(ctx, 0, int64(len(all)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range all {
		if !bytes.Equal(got[i], all[i]) {
			t.Errorf("Entries()[%d] = %q, want %q", i, got[i], all[i])
		}
	}
}
