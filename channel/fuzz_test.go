package channel

import (
	"bytes"
	"testing"
	"time"
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

// fixedChannel is a channel made from fixed keys and times, so that its posts are
// the same in every run: the fuzzers' seeds reach past the channel-id check.
func fixedChannel(t testing.TB) []*Post {
	owner, _ := GenerateSigningKey(bytes.NewReader(bytes.Repeat([]byte{1}, 32)))
	admin, _ := GenerateSigningKey(bytes.NewReader(bytes.Repeat([]byte{2}, 32)))
	at := time.Unix(1_800_000_000, 0)
	g, err := Create(owner, Info{Handle: "fixed_channel", Title: "Fixed"}, at, bytes.NewReader(make([]byte, 16)))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier(g)
	posts := []*Post{g}
	add := func(key *SigningKey, d Draft) {
		d.Time = at
		p, err := v.Next(key, d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Accept(p); err != nil {
			t.Fatal(err)
		}
		posts = append(posts, p)
	}
	add(owner, Draft{Kind: KindPost, Body: []byte("one")})
	add(owner, Delegation{Key: admin.Public(), From: 3}.Draft(at))
	add(admin, Draft{Kind: KindPost, Body: []byte("three")})
	add(admin, Draft{Kind: KindEdit, Ref: 3, Body: []byte("three, edited")})
	add(owner, Draft{Kind: KindDelete, Ref: 1})
	add(owner, Revocation{Key: admin.Public(), From: 5}.Draft(at))
	add(owner, Draft{Kind: KindPost, Body: []byte("seven")})
	return posts
}

// FuzzVerifier feeds one post to Verifiers that hold the first k posts of a fixed
// channel, forwards and backwards. Nothing may panic, and whatever a Verifier
// accepts must be the channel's own post at that place: a fuzzer cannot sign.
func FuzzVerifier(f *testing.F) {
	posts := fixedChannel(f)
	for i, p := range posts {
		f.Add(p.Bytes(), uint8(i))
		f.Add(p.Bytes(), uint8(i-1))
		f.Add(p.Withhold().Bytes(), uint8(i-1))
	}
	owner, _ := GenerateSigningKey(bytes.NewReader(bytes.Repeat([]byte{1}, 32)))
	f.Fuzz(func(t *testing.T, b []byte, k uint8) {
		p, err := ParsePost(b)
		if err != nil {
			return
		}
		n := int(k) % len(posts)
		v, _ := NewVerifier(posts[0])
		for _, q := range posts[1 : n+1] {
			if _, err := v.Accept(q); err != nil {
				t.Fatalf("Accept(honest %d) = %v", q.Seq(), err)
			}
		}
		honest := func(what string) {
			if p.Seq() >= uint64(len(posts)) || posts[p.Seq()].Hash() != p.Hash() {
				t.Fatalf("%s accepted post %d that the channel did not publish", what, p.Seq())
			}
		}
		if _, err := v.Accept(p); err == nil {
			honest("Accept")
		}
		if _, err := v.AcceptPage([]*Post{p, p}, nil); err == nil {
			honest("AcceptPage")
		}
		head, _ := v.SignHead(owner, time.Unix(1_800_000_000, 0))
		w, err := NewVerifierAt(posts[0], head)
		if err != nil {
			t.Fatalf("NewVerifierAt(own head) = %v", err)
		}
		if _, err := w.AcceptOlder([]*Post{p}, nil); err == nil {
			honest("AcceptOlder")
		}
		_ = w.CheckHead(head)
	})
}
