package sqlite

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/bastionchat/bastion/internal/translog"
	"github.com/bastionchat/bastion/internal/translog/translogtest"
)

func TestKTLogConformance(t *testing.T) {
	translogtest.Run(t, func(t *testing.T) translog.Storage {
		s := openTemp(t)
		t.Cleanup(func() { s.Close() })
		return s.KTLog()
	})
}

// TestKTLogReopen checks that the log survives a restart: the same tree, the same
// entries, and appends that carry on from there.
func TestKTLogReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "bastion.db")
	skey, _, err := note.GenerateKey(rand.Reader, "reopen.example/kt")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := translog.New(s.KTLog(), signer)
	if _, err := l.Append(ctx, []byte("a"), []byte("b"), []byte("c")); err != nil {
		t.Fatal(err)
	}
	before, err := l.Tree(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l = translog.New(s.KTLog(), signer)
	after, err := l.Tree(ctx)
	if err != nil || after != before {
		t.Fatalf("Tree() after reopen = %+v, %v, want %+v", after, err, before)
	}
	if first, err := l.Append(ctx, []byte("d")); err != nil || first != 3 {
		t.Fatalf("Append(d) after reopen = %d, %v, want 3", first, err)
	}
	es, err := l.Entries(ctx, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"a", "b", "c", "d"} {
		if string(es[i]) != want {
			t.Errorf("Entries(0, 4)[%d] = %q, want %q", i, es[i], want)
		}
	}
}
