package kt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bastionchat/bastion/internal/translog"
	"github.com/bastionchat/bastion/kt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const testOrigin = "kt.bastion.example/log"

// newKey returns a signer and verifier for name.
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

// testLog is a log under construction plus the key that signs it.
type testLog struct {
	t   testing.TB
	log *translog.Log
	s   note.Signer
	v   note.Verifier
}

func newTestLog(t testing.TB, n int) *testLog {
	s, v := newKey(t, testOrigin)
	tl := &testLog{t: t, log: translog.New(translog.NewMemStorage(), s), s: s, v: v}
	tl.grow(n, "a")
	return tl
}

// grow appends n entries whose contents depend on tag.
func (tl *testLog) grow(n int, tag string) {
	tl.t.Helper()
	for i := 0; i < n; i++ {
		if _, err := tl.log.Append(context.Background(), fmt.Appendf(nil, "%s-%d", tag, i)); err != nil {
			tl.t.Fatal(err)
		}
	}
}

func (tl *testLog) checkpoint() []byte {
	tl.t.Helper()
	cp, err := tl.log.Checkpoint(context.Background())
	if err != nil {
		tl.t.Fatal(err)
	}
	return cp
}

func (tl *testLog) consistency(old, new int64) tlog.TreeProof {
	tl.t.Helper()
	p, err := tl.log.ConsistencyProof(context.Background(), old, new)
	if err != nil {
		tl.t.Fatal(err)
	}
	return p
}

func TestFormatParseCheckpoint(t *testing.T) {
	var h tlog.Hash
	for i := range h {
		h[i] = byte(i)
	}
	text := kt.FormatCheckpoint(testOrigin, tlog.Tree{N: 12345, Hash: h})
	want := testOrigin + "\n12345\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
	if string(text) != want {
		t.Fatalf("FormatCheckpoint = %q, want %q", text, want)
	}
	c, err := kt.ParseCheckpoint(text)
	if err != nil {
		t.Fatalf("ParseCheckpoint(%q) error: %v", text, err)
	}
	if c.Origin != testOrigin || c.Size != 12345 || c.Hash != h {
		t.Errorf("ParseCheckpoint(%q) = %+v", text, c)
	}
	ext, err := kt.ParseCheckpoint([]byte(want + "extension line\n"))
	if err != nil || !ext.Same(c) {
		t.Errorf("ParseCheckpoint(with extension) = %+v, %v, want %+v", ext, err, c)
	}

	bad := []string{
		"",
		testOrigin,
		testOrigin + "\n12345\n",
		testOrigin + "\n12345\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
		"\n12345\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
		"two words\n12345\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
		testOrigin + "\n012345\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
		testOrigin + "\n+12345\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
		testOrigin + "\n-1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
		testOrigin + "\n99999999999999999999\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
		testOrigin + "\n12345\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh=\n",
		testOrigin + "\n12345\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n",
		testOrigin + "\n12345\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n",
		testOrigin + "\n12345\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n",
	}
	for _, in := range bad {
		if c, err := kt.ParseCheckpoint([]byte(in)); err == nil {
			t.Errorf("ParseCheckpoint(%q) = %+v, want error", in, c)
		}
	}
}

func TestVerifyCheckpoint(t *testing.T) {
	tl := newTestLog(t, 10)
	signed := tl.checkpoint()
	cp, err := kt.VerifyCheckpoint(tl.v, signed)
	if err != nil {
		t.Fatalf("VerifyCheckpoint(own log) error: %v", err)
	}
	tree, err := tl.log.Tree(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if cp.Origin != testOrigin || cp.Tree() != tree || !bytes.Equal(cp.Note, signed) {
		t.Errorf("VerifyCheckpoint = %+v, want origin %q tree %+v", cp, testOrigin, tree)
	}

	// Tampered signature: flip one bit of the base64 signature payload.
	tampered := tamperSignature(t, signed)
	// Tampered text: another size under the same signature.
	text := strings.Replace(string(signed), "\n10\n", "\n11\n", 1)

	_, otherV := newKey(t, testOrigin)      // same name, another key
	otherS, _ := newKey(t, "other.example") // another name
	sameKeyWrongOrigin, err := note.Sign(&note.Note{Text: string(kt.FormatCheckpoint("elsewhere", tree))}, tl.s)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := kt.SignCheckpoint(otherS, tree)
	if err != nil {
		t.Fatal(err)
	}
	notACheckpoint, err := note.Sign(&note.Note{Text: "hello\n"}, tl.s)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		v      note.Verifier
		signed []byte
	}{
		{"tampered signature", tl.v, tampered},
		{"tampered text", tl.v, []byte(text)},
		{"another key of the same name", otherV, signed},
		{"signed by another log", tl.v, foreign},
		{"origin differs from key name", tl.v, sameKeyWrongOrigin},
		{"not a checkpoint", tl.v, notACheckpoint},
		{"unsigned", tl.v, kt.FormatCheckpoint(testOrigin, tree)},
		{"huge", tl.v, append(bytes.Repeat([]byte("x"), 17<<10), signed...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if cp, err := kt.VerifyCheckpoint(tt.v, tt.signed); err == nil {
				t.Errorf("VerifyCheckpoint(%q) = %+v, want error", tt.signed, cp)
			}
		})
	}
	var sigErr *note.InvalidSignatureError
	if _, err := kt.VerifyCheckpoint(tl.v, tampered); !errors.As(err, &sigErr) {
		t.Errorf("VerifyCheckpoint(tampered signature) = %v, want InvalidSignatureError", err)
	}
	var unverified *note.UnverifiedNoteError
	if _, err := kt.VerifyCheckpoint(tl.v, foreign); !errors.As(err, &unverified) {
		t.Errorf("VerifyCheckpoint(other log) = %v, want UnverifiedNoteError", err)
	}
}

// tamperSignature flips one bit in the Ed25519 signature of the note's last
// signature line, keeping the line well-formed.
func tamperSignature(t testing.TB, signed []byte) []byte {
	t.Helper()
	body := signed[:len(signed)-1]
	i := bytes.LastIndexByte(body, ' ')
	sig, err := base64.StdEncoding.DecodeString(string(body[i+1:]))
	if err != nil {
		t.Fatal(err)
	}
	sig[4+10] ^= 0x01 // past the 4-byte key hash
	out := append(bytes.Clone(signed[:i+1]), base64.StdEncoding.EncodeToString(sig)...)
	return append(out, '\n')
}

func TestVerifyInclusionAndConsistency(t *testing.T) {
	ctx := context.Background()
	tl := newTestLog(t, 37)
	small, err := kt.VerifyCheckpoint(tl.v, tl.checkpoint())
	if err != nil {
		t.Fatal(err)
	}
	tl.grow(20, "b")
	big, err := kt.VerifyCheckpoint(tl.v, tl.checkpoint())
	if err != nil {
		t.Fatal(err)
	}

	for _, cp := range []kt.Checkpoint{small, big} {
		for i := int64(0); i < cp.Size; i++ {
			proof, err := tl.log.InclusionProof(ctx, i, cp.Size)
			if err != nil {
				t.Fatal(err)
			}
			es, err := tl.log.Entries(ctx, i, i+1)
			if err != nil {
				t.Fatal(err)
			}
			if err := kt.VerifyInclusion(cp, i, es[0], proof); err != nil {
				t.Errorf("VerifyInclusion(size %d, %d) error: %v", cp.Size, i, err)
			}
			if err := kt.VerifyInclusion(cp, i, append(es[0], '!'), proof); !errors.Is(err, kt.ErrInvalidProof) {
				t.Errorf("VerifyInclusion(size %d, %d, wrong leaf) = %v, want ErrInvalidProof", cp.Size, i, err)
			}
		}
	}

	// A proof for a different tree does not verify.
	proofSmall, err := tl.log.InclusionProof(ctx, 3, small.Size)
	if err != nil {
		t.Fatal(err)
	}
	es, err := tl.log.Entries(ctx, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := kt.VerifyInclusion(big, 3, es[0], proofSmall); !errors.Is(err, kt.ErrInvalidProof) {
		t.Errorf("VerifyInclusion(big, proof for small) = %v, want ErrInvalidProof", err)
	}
	if err := kt.VerifyInclusion(big, big.Size, es[0], proofSmall); err == nil {
		t.Errorf("VerifyInclusion(index = size) = nil, want error")
	}
	if err := kt.VerifyInclusion(big, -1, es[0], proofSmall); err == nil {
		t.Errorf("VerifyInclusion(index -1) = nil, want error")
	}

	proof := tl.consistency(small.Size, big.Size)
	if err := kt.VerifyConsistency(small, big, proof); err != nil {
		t.Errorf("VerifyConsistency(%d, %d) error: %v", small.Size, big.Size, err)
	}
	if err := kt.VerifyConsistency(big, small, proof); err == nil {
		t.Errorf("VerifyConsistency(newer, older) = nil, want error")
	}
	if err := kt.VerifyConsistency(small, big, proof[1:]); !errors.Is(err, kt.ErrInvalidProof) {
		t.Errorf("VerifyConsistency(truncated proof) = %v, want ErrInvalidProof", err)
	}
	wrong := tl.consistency(small.Size-1, big.Size)
	if err := kt.VerifyConsistency(small, big, wrong); !errors.Is(err, kt.ErrInvalidProof) {
		t.Errorf("VerifyConsistency(proof for another size) = %v, want ErrInvalidProof", err)
	}
	empty := kt.Checkpoint{Origin: testOrigin}
	if err := kt.VerifyConsistency(empty, big, nil); err != nil {
		t.Errorf("VerifyConsistency(empty, big) = %v, want nil", err)
	}
	if err := kt.VerifyConsistency(big, big, nil); err != nil {
		t.Errorf("VerifyConsistency(big, big) = %v, want nil", err)
	}
	other := big
	other.Origin = "another.example"
	if err := kt.VerifyConsistency(small, other, proof); err == nil {
		t.Errorf("VerifyConsistency(different origins) = nil, want error")
	}
}

// FuzzParseCheckpoint checks that a parsed checkpoint body without
// extension lines formats back to the same bytes.
func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte(testOrigin + "\n12345\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"))
	f.Add([]byte("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := kt.ParseCheckpoint(in)
		if err != nil {
			return
		}
		out := kt.FormatCheckpoint(c.Origin, c.Tree())
		if !bytes.HasPrefix(in, out) {
			t.Fatalf("FormatCheckpoint(ParseCheckpoint(%q)) = %q, not a prefix", in, out)
		}
		if c2, err := kt.ParseCheckpoint(out); err != nil || !c2.Same(c) {
			t.Fatalf("ParseCheckpoint(FormatCheckpoint(%+v)) = %+v, %v", c, c2, err)
		}
	})
}
