package channel

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
)

// TestState saves Verifiers at different points and checks that the restored ones
// behave as the originals: same state, same decisions on the next posts.
func TestState(t *testing.T) {
	f := newFixture(t)
	admin := newKey(t)
	f.text(f.owner, "one")                                                      // 1
	f.publish(f.owner, Delegation{Key: admin.Public(), From: 3}.Draft(f.clock)) // 2
	f.text(admin, "three")                                                      // 3
	f.publish(admin, Draft{Kind: KindDelete, Ref: 1})                           // 4
	head, err := f.author.SignHead(f.owner, f.clock)
	wantOK(t, "SignHead", err)
	f.publish(f.owner, Revocation{Key: admin.Public(), From: 5}.Draft(f.clock)) // 5
	f.text(f.owner, "six")                                                      // 6
	opPub, _, _ := ed25519.GenerateKey(nil)

	full := f.subscriber()
	full.SetOperatorKey(opPub)
	wantOK(t, "AcceptPage", second(full.AcceptPage(f.server.page(1, 4), nil)))
	wantOK(t, "CheckHead", full.CheckHead(head))
	fromHead, err := NewVerifierAt(f.server.get(0), head)
	wantOK(t, "NewVerifierAt", err)
	wantOK(t, "AcceptOlder", second(fromHead.AcceptOlder(f.server.page(3, 4), nil)))

	for name, v := range map[string]*Verifier{"full": full, "from head": fromHead} {
		t.Run(name, func(t *testing.T) {
			b, err := v.MarshalBinary()
			wantOK(t, "MarshalBinary", err)
			w, err := UnmarshalVerifier(b)
			wantOK(t, "UnmarshalVerifier", err)
			b2, _ := w.MarshalBinary()
			if !bytes.Equal(b, b2) {
				t.Fatalf("UnmarshalVerifier(b).MarshalBinary() differs from b")
			}
			if !w.Fresh().Equal(v.Fresh()) {
				t.Errorf("restored Fresh() = %v, want %v", w.Fresh(), v.Fresh())
			}
			// Same decisions: an edit of deleted post 1, then the honest rest.
			bad, err := w.Next(f.owner, Draft{Kind: KindEdit, Ref: 1, Body: []byte("x"), Time: f.clock})
			wantOK(t, "Next", err)
			wantErr(t, "restored Accept(edit of deleted)", second(w.Accept(bad)), ErrInvalidEntry)
			wantErr(t, "original Accept(edit of deleted)", second(v.Accept(bad)), ErrInvalidEntry)
			wantOK(t, "restored AcceptPage(5..6)", second(w.AcceptPage(f.server.page(5, 6), nil)))
			late, err := w.Next(admin, Draft{Kind: KindPost, Body: []byte("x"), Time: f.clock})
			wantOK(t, "Next", err)
			wantErr(t, "restored Accept(revoked)", second(w.Accept(late)), ErrRevoked)
			wantErr(t, "restored Accept(3 altered)", second(w.Accept(f.server.alter(3))), ErrAltered)
		})
	}

	b, _ := full.MarshalBinary()
	for name, in := range map[string][]byte{
		"empty":         nil,
		"truncated":     b[:len(b)-1],
		"trailing byte": append(bytes.Clone(b), 0),
		"version 2":     append([]byte{2}, b[1:]...),
	} {
		if _, err := UnmarshalVerifier(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("UnmarshalVerifier(%s) = %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzUnmarshalVerifier: a saved state either is refused or saves back to itself.
func FuzzUnmarshalVerifier(f *testing.F) {
	posts := fixedChannel(f)
	v, _ := NewVerifier(posts[0])
	for _, p := range posts[1:] {
		b, _ := v.MarshalBinary()
		f.Add(b)
		_, _ = v.Accept(p)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := UnmarshalVerifier(b)
		if err != nil {
			return
		}
		got, _ := w.MarshalBinary()
		if !bytes.Equal(got, b) {
			t.Fatalf("UnmarshalVerifier(%x).MarshalBinary() = %x", b, got)
		}
		// A restored Verifier must not panic on the honest posts.
		for _, p := range posts {
			_, _ = w.Accept(p)
		}
	})
}

func TestForget(t *testing.T) {
	f := newFixture(t)
	f.posts(f.owner, 5)
	f.publish(f.owner, Draft{Kind: KindDelete, Ref: 2}) // 6
	v := f.subscriber()
	wantOK(t, "AcceptPage", second(v.AcceptPage(f.server.page(1, 6), nil)))
	v.Forget(5)
	if got := len(v.entries); got != 3 { // the genesis, 5 and 6
		t.Errorf("Forget(5) kept %d posts, want 3", got)
	}
	for _, s := range []uint64{1, 2, 3, 4} {
		if _, ok := v.entries[s]; ok {
			t.Errorf("Forget(5) kept post %d", s)
		}
	}
	wantErr(t, "Accept(3) after Forget", second(v.Accept(f.server.get(3))), ErrReordered)
	wantErr(t, "Accept(5) after Forget", second(v.Accept(f.server.get(5))), ErrDuplicate)
	edit, err := v.Next(f.owner, Draft{Kind: KindEdit, Ref: 2, Body: []byte("x"), Time: f.clock})
	wantOK(t, "Next", err)
	wantErr(t, "Accept(edit of forgotten deleted post)", second(v.Accept(edit)), ErrInvalidEntry)
	wantOK(t, "AcceptPage(7)", second(v.AcceptPage([]*Post{f.text(f.owner, "seven")}, nil)))
	b, _ := v.MarshalBinary()
	if _, err := UnmarshalVerifier(b); err != nil {
		t.Errorf("UnmarshalVerifier(after Forget) = %v", err)
	}
}
