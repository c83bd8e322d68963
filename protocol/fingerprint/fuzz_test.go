package fingerprint

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzCompare feeds scanned bytes (what a QR code from anyone yields) to Compare: it
// fails cleanly, or the bytes are the canonical encoding of what it parsed.
func FuzzCompare(f *testing.F) {
	v := loadVectors(f)
	for _, tv := range v.Vectors {
		f.Add(mustHex(f, tv.AliceScannable))
		f.Add(mustHex(f, tv.BobScannable))
	}
	f.Add(mustHex(f, v.Encoding.Scannable))
	tv := v.Vectors[1]
	fp, err := New(tv.Version, 2, []byte(tv.AliceID), mustKey(f, tv.AliceKey), []byte(tv.BobID), mustKey(f, tv.BobKey))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, perr := parseScannable(b)
		ok, err := fp.Compare(b)
		if perr != nil {
			if !errors.Is(err, ErrInvalidEncoding) || ok {
				t.Fatalf("Compare(%x) = %v, %v, want false, ErrInvalidEncoding", b, ok, err)
			}
			return
		}
		if got := encode(s.version, s.local, s.remote); !bytes.Equal(got, b) {
			t.Fatalf("encode(parseScannable(%x)) = %x", b, got)
		}
		if err != nil && !errors.Is(err, ErrVersionMismatch) {
			t.Fatalf("Compare(%x) = %v", b, err)
		}
	})
}

// BenchmarkNew is one safety number as Signal computes it: 2 x 5200 SHA-512.
func BenchmarkNew(b *testing.B) {
	v := loadVectors(b).Vectors[1]
	ak, bk := mustKey(b, v.AliceKey), mustKey(b, v.BobKey)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(Version, Iterations, []byte(v.AliceID), ak, []byte(v.BobID), bk); err != nil {
			b.Fatal(err)
		}
	}
}
