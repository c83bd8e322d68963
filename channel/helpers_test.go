package channel

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// fixture is a channel with its owner, the owner's own Verifier (which signs the
// next post) and a server that stores what the owner publishes.
type fixture struct {
	t      testing.TB
	owner  *SigningKey
	author *Verifier
	server *evilServer
	clock  time.Time
}

func newKey(t testing.TB) *SigningKey {
	t.Helper()
	k, err := GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{t: t, owner: newKey(t), server: &evilServer{}, clock: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	g, err := Create(f.owner, Info{Handle: "bastion_news", Title: "Bastion news", Description: "Releases and notes."}, f.clock, nil)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if f.author, err = NewVerifier(g); err != nil {
		t.Fatalf("NewVerifier(genesis) = %v", err)
	}
	f.server.publish(g)
	return f
}

// publish signs d with key as the next post, has the owner's Verifier accept it and
// the server store it.
func (f *fixture) publish(key *SigningKey, d Draft) *Post {
	f.t.Helper()
	f.clock = f.clock.Add(time.Minute)
	if d.Time.IsZero() {
		d.Time = f.clock
	}
	p, err := f.author.Next(key, d)
	if err != nil {
		f.t.Fatalf("Next(%v): %v", d.Kind, err)
	}
	if _, err := f.author.Accept(p); err != nil {
		f.t.Fatalf("author Accept(%d): %v", p.Seq(), err)
	}
	f.server.publish(p)
	return p
}

func (f *fixture) text(key *SigningKey, s string) *Post {
	return f.publish(key, Draft{Kind: KindPost, Body: []byte(s)})
}

// posts publishes n text posts by key.
func (f *fixture) posts(key *SigningKey, n int) {
	for i := range n {
		f.text(key, fmt.Sprintf("post %d", i))
	}
}

// subscriber starts a Verifier from the genesis as the server serves it.
func (f *fixture) subscriber() *Verifier {
	f.t.Helper()
	v, err := NewVerifier(f.server.get(0))
	if err != nil {
		f.t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// evilServer stores posts as bytes, the way a server holds them, and serves pages
// honestly or with one misbehaviour.
type evilServer struct {
	stored [][]byte
}

func (s *evilServer) publish(p *Post) { s.stored = append(s.stored, p.Bytes()) }

func (s *evilServer) get(seq uint64) *Post {
	p, err := ParsePost(s.stored[seq])
	if err != nil {
		panic(fmt.Sprintf("stored post %d does not parse: %v", seq, err))
	}
	return p
}

// page serves posts from..to inclusive, honestly.
func (s *evilServer) page(from, to uint64) []*Post {
	var out []*Post
	for i := from; i <= to; i++ {
		out = append(out, s.get(i))
	}
	return out
}

func (s *evilServer) last() uint64 { return uint64(len(s.stored) - 1) }

// drop serves the page without post seq.
func (s *evilServer) drop(from, to, seq uint64) []*Post {
	var out []*Post
	for _, p := range s.page(from, to) {
		if p.Seq() != seq {
			out = append(out, p)
		}
	}
	return out
}

// swap serves the page with posts a and b exchanged.
func (s *evilServer) swap(from, to, a, b uint64) []*Post {
	out := s.page(from, to)
	out[a-from], out[b-from] = out[b-from], out[a-from]
	return out
}

// alter flips a byte of post seq's body, the last one before the signature.
func (s *evilServer) alter(seq uint64) *Post {
	b := append([]byte{}, s.stored[seq]...)
	b[len(b)-SignatureSize-1] ^= 1
	p, err := ParsePost(b)
	if err != nil {
		panic(err)
	}
	return p
}

// forge makes up post seq with its own key, chaining onto the real post seq-1.
func (s *evilServer) forge(key *SigningKey, seq uint64, body string) *Post {
	prev := s.get(seq - 1)
	p, err := Sign(key, prev.Channel(), seq, prev.Hash(), Draft{Kind: KindPost, Body: []byte(body), Time: time.Now()})
	if err != nil {
		panic(err)
	}
	return p
}

// impersonate makes up post seq under the signer key of the real post seq-1 (the
// owner's, say), signed with its own key.
func (s *evilServer) impersonate(key *SigningKey, seq uint64, body string) *Post {
	p := s.forge(key, seq, body)
	b := p.Bytes()
	copy(b[66:98], s.get(seq-1).Signer().Bytes())
	q, err := ParsePost(b)
	if err != nil {
		panic(err)
	}
	return q
}

// wantErr fails unless err is target.
func wantErr(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s = %v, want %v", what, err, target)
	}
}

func wantOK(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s = %v, want nil", what, err)
	}
}
