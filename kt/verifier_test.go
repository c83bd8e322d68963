package kt_test

import (
	"errors"
	"testing"

	"github.com/bastionchat/bastion/internal/translog"
	"github.com/bastionchat/bastion/kt"
	"golang.org/x/mod/sumdb/tlog"
)

// forkedLogs returns two logs signed by one key that agree on their first
// common entries and then diverge: each gets extra entries with its own tag.
func forkedLogs(t *testing.T, common, extraA, extraB int) (a, b *testLog) {
	a = newTestLog(t, common)
	b = &testLog{t: t, log: translog.New(translog.NewMemStorage(), a.s), s: a.s, v: a.v}
	b.grow(common, "a")
	a.grow(extraA, "fork-a")
	b.grow(extraB, "fork-b")
	return a, b
}

func TestVerifierAdvance(t *testing.T) {
	tl := newTestLog(t, 5)
	v, err := kt.NewVerifier(tl.v, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Latest(); ok {
		t.Fatalf("Latest() on a new Verifier reports a checkpoint")
	}
	first := tl.checkpoint()
	if _, err := v.Advance(first, nil); err != nil {
		t.Fatalf("Advance(first) error: %v", err)
	}
	// The same checkpoint again is fine.
	if _, err := v.Advance(first, nil); err != nil {
		t.Fatalf("Advance(same) error: %v", err)
	}
	for _, grow := range []int{1, 7, 64, 3} {
		old, _ := v.Latest()
		tl.grow(grow, "g")
		next := tl.checkpoint()
		cp, err := v.Advance(next, tl.consistency(old.Size, old.Size+int64(grow)))
		if err != nil {
			t.Fatalf("Advance(%d -> %d) error: %v", old.Size, cp.Size, err)
		}
		if latest, _ := v.Latest(); latest.Size != old.Size+int64(grow) {
			t.Errorf("Latest().Size = %d, want %d", latest.Size, old.Size+int64(grow))
		}
	}

	// An older checkpoint that is a prefix is accepted and changes nothing.
	latest, _ := v.Latest()
	cp, err := v.Advance(first, tl.consistency(5, latest.Size))
	if err != nil || cp.Size != 5 {
		t.Errorf("Advance(older consistent) = %d, %v, want 5, nil", cp.Size, err)
	}
	if now, _ := v.Latest(); !now.Same(latest) {
		t.Errorf("Latest() after older = size %d, want %d", now.Size, latest.Size)
	}
	// Without a proof, the older one is refused.
	if _, err := v.Advance(first, nil); err == nil {
		t.Errorf("Advance(older, no proof) = nil, want error")
	}

	// Restoring from the stored note gives the same state.
	v2, err := kt.NewVerifier(tl.v, latest.Note)
	if err != nil {
		t.Fatalf("NewVerifier(stored) error: %v", err)
	}
	if got, ok := v2.Latest(); !ok || !got.Same(latest) {
		t.Errorf("NewVerifier(stored).Latest() = %+v, %v, want %+v", got, ok, latest)
	}
	if _, err := kt.NewVerifier(tl.v, tamperSignature(t, latest.Note)); err == nil {
		t.Errorf("NewVerifier(tampered stored note) error = nil, want error")
	}
}

func TestVerifierRejects(t *testing.T) {
	t.Run("same size different hash", func(t *testing.T) {
		a, b := forkedLogs(t, 10, 3, 3)
		v, err := kt.NewVerifier(a.v, a.checkpoint())
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Advance(b.checkpoint(), nil)
		var fe *kt.ForkError
		if !errors.As(err, &fe) {
			t.Fatalf("Advance(fork of same size) = %v, want ForkError", err)
		}
		if !fe.Provable() || fe.Trusted.Size != 13 || fe.Received.Size != 13 {
			t.Errorf("ForkError = %+v, want provable, both size 13", fe)
		}
		if latest, _ := v.Latest(); latest.Hash != fe.Trusted.Hash {
			t.Errorf("Latest() moved to the forked checkpoint")
		}
	})
	t.Run("inconsistent growth", func(t *testing.T) {
		a, b := forkedLogs(t, 10, 2, 9)
		v, err := kt.NewVerifier(a.v, a.checkpoint())
		if err != nil {
			t.Fatal(err)
		}
		// b's honest proof from its own size 12 to 19 does not link a's 12.
		_, err = v.Advance(b.checkpoint(), b.consistency(12, 19))
		var fe *kt.ForkError
		if !errors.As(err, &fe) {
			t.Fatalf("Advance(inconsistent growth) = %v, want ForkError", err)
		}
		if fe.Provable() || !errors.Is(err, kt.ErrInvalidProof) {
			t.Errorf("ForkError = %v, want not provable, wrapping ErrInvalidProof", fe)
		}
		if latest, _ := v.Latest(); latest.Size != 12 {
			t.Errorf("Latest().Size = %d after a fork, want 12", latest.Size)
		}
	})
	t.Run("older checkpoint from a fork", func(t *testing.T) {
		a, b := forkedLogs(t, 10, 9, 2)
		v, err := kt.NewVerifier(a.v, a.checkpoint())
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Advance(b.checkpoint(), a.consistency(12, 19))
		var fe *kt.ForkError
		if !errors.As(err, &fe) {
			t.Fatalf("Advance(smaller forked checkpoint) = %v, want ForkError", err)
		}
	})
	t.Run("other key", func(t *testing.T) {
		tl := newTestLog(t, 4)
		other := newTestLog(t, 4)
		v, err := kt.NewVerifier(tl.v, tl.checkpoint())
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Advance(other.checkpoint(), nil)
		var fe *kt.ForkError
		if err == nil || errors.As(err, &fe) {
			t.Errorf("Advance(checkpoint by another key) = %v, want a non-fork error", err)
		}
	})
	t.Run("tampered signature", func(t *testing.T) {
		tl := newTestLog(t, 4)
		v, err := kt.NewVerifier(tl.v, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Advance(tamperSignature(t, tl.checkpoint()), nil); err == nil {
			t.Errorf("Advance(tampered) = nil, want error")
		}
		if _, ok := v.Latest(); ok {
			t.Errorf("Latest() set by a tampered checkpoint")
		}
	})
}

func TestCompareCheckpoints(t *testing.T) {
	a, b := forkedLogs(t, 20, 5, 5)
	cpA, err := kt.VerifyCheckpoint(a.v, a.checkpoint())
	if err != nil {
		t.Fatal(err)
	}
	cpB, err := kt.VerifyCheckpoint(b.v, b.checkpoint())
	if err != nil {
		t.Fatal(err)
	}
	common := kt.Checkpoint{Origin: testOrigin, Size: 20}
	common.Hash = mustTreeHash(t, a, 20)

	var fe *kt.ForkError
	if err := kt.CompareCheckpoints(cpA, cpB, nil); !errors.As(err, &fe) || !fe.Provable() {
		t.Errorf("CompareCheckpoints(fork) = %v, want provable ForkError", err)
	}
	if err := kt.CompareCheckpoints(cpA, cpA, nil); err != nil {
		t.Errorf("CompareCheckpoints(a, a) = %v, want nil", err)
	}
	for _, cp := range []struct {
		name string
		tl   *testLog
		c    kt.Checkpoint
	}{{"a", a, cpA}, {"b", b, cpB}} {
		proof := cp.tl.consistency(20, 25)
		if err := kt.CompareCheckpoints(common, cp.c, proof); err != nil {
			t.Errorf("CompareCheckpoints(common, %s) = %v, want nil", cp.name, err)
		}
		if err := kt.CompareCheckpoints(cp.c, common, proof); err != nil {
			t.Errorf("CompareCheckpoints(%s, common) = %v, want nil", cp.name, err)
		}
	}
	// a's proof does not link b's tree.
	if err := kt.CompareCheckpoints(common, cpB, a.consistency(20, 25)); !errors.As(err, &fe) || fe.Provable() {
		t.Errorf("CompareCheckpoints(common, b, a's proof) = %v, want unprovable ForkError", err)
	}
	other := cpA
	other.Origin = "other.example"
	if err := kt.CompareCheckpoints(cpA, other, nil); err == nil || errors.As(err, &fe) {
		t.Errorf("CompareCheckpoints(different logs) = %v, want a non-fork error", err)
	}
}

func mustTreeHash(t *testing.T, tl *testLog, n int64) tlog.Hash {
	t.Helper()
	es, err := tl.log.Entries(t.Context(), 0, n)
	if err != nil {
		t.Fatal(err)
	}
	var hashes []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	for i, e := range es {
		hs, err := tlog.StoredHashes(int64(i), e, r)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, hs...)
	}
	h, err := tlog.TreeHash(n, r)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
