package channel

import (
	"bytes"
	"testing"
)

// The fuzzers assert that every parser either refuses its input cleanly or returns
// a value that encodes back to exactly the input (one encoding per value). Seeds
// are in testdata/fuzz, written by TestWriteSeeds -update.

func FuzzParsePost(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePost(b)
		if err != nil {
			return
		}
		if got := p.Bytes(); !bytes.Equal(got, b) {
			t.Fatalf("ParsePost(%x).Bytes() = %x, want the input", b, got)
		}
		if q, err := ParsePost(p.Withhold().Bytes()); err != nil || q.Hash() != p.Hash() {
			t.Fatalf("ParsePost(Withhold()) = %v; hash kept %v", err, err == nil && q.Hash() == p.Hash())
		}
	})
}

func FuzzParseHead(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHead(b)
		if err != nil {
			return
		}
		if got := h.Bytes(); !bytes.Equal(got, b) {
			t.Fatalf("ParseHead(%x).Bytes() = %x, want the input", b, got)
		}
	})
}

func FuzzParseNotice(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseNotice(b)
		if err != nil {
			return
		}
		if got := n.Bytes(); !bytes.Equal(got, b) {
			t.Fatalf("ParseNotice(%x).Bytes() = %x, want the input", b, got)
		}
	})
}
