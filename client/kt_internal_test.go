package client

import (
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// TestFrontier checks the monitor's compact tree against tlog's own root for every size
// up to 300, and across a marshal round trip at each size.
func TestFrontier(t *testing.T) {
	var hashes []tlog.Hash
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	f := &frontier{}
	if got, want := f.root(), mustTreeHash(t, 0, hr); got != want {
		t.Fatalf("root() of the empty frontier = %x, want %x", got, want)
	}
	for n := int64(1); n <= 300; n++ {
		entry := fmt.Appendf(nil, "entry %d", n-1)
		hs, err := tlog.StoredHashes(n-1, entry, hr)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, hs...)
		f.push(entry)
		if got, want := f.root(), mustTreeHash(t, n, hr); got != want {
			t.Fatalf("root() after %d entries = %x, want %x", n, got, want)
		}
		g, err := parseFrontier(f.marshal())
		if err != nil || g.n != n || g.root() != f.root() {
			t.Fatalf("parseFrontier(marshal()) at %d = %+v, %v", n, g, err)
		}
		f = g
	}
	for _, bad := range [][]byte{{1, 2, 3}, make([]byte, 8+32)} {
		if _, err := parseFrontier(bad); err == nil {
			t.Errorf("parseFrontier(%d bytes) = nil error, want one", len(bad))
		}
	}
}

func mustTreeHash(t *testing.T, n int64, hr tlog.HashReader) tlog.Hash {
	t.Helper()
	h, err := tlog.TreeHash(n, hr)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
