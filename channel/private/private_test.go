package private

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/protocol/senderkey"
)

// privateChannel is a private channel with an owner, one admin and the owner's
// Verifier, which signs the next post.
type privateChannel struct {
	t            *testing.T
	owner, admin *channel.SigningKey
	author       *channel.Verifier
	posters      map[channel.PublicKey]*Poster
	served       [][]byte // what the server stores
}

func newPrivate(t *testing.T) *privateChannel {
	t.Helper()
	owner, _ := channel.GenerateSigningKey(nil)
	admin, _ := channel.GenerateSigningKey(nil)
	g, err := channel.Create(owner, channel.Info{Handle: "inner_circle", Title: "Inner circle", Private: true}, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := channel.NewVerifier(g)
	if err != nil {
		t.Fatal(err)
	}
	c := &privateChannel{t: t, owner: owner, admin: admin, author: v, posters: map[channel.PublicKey]*Poster{}, served: [][]byte{g.Bytes()}}
	for _, k := range []*channel.SigningKey{owner, admin} {
		c.posters[k.Public()] = NewPoster(senderkey.NewMemoryStore(), v.ID(), k.Public())
	}
	c.publish(owner, channel.Delegation{Key: admin.Public(), From: 2}.Draft(time.Now()))
	return c
}

func (c *privateChannel) publish(key *channel.SigningKey, d channel.Draft) *channel.Post {
	c.t.Helper()
	p, err := c.author.Next(key, d)
	if err != nil {
		c.t.Fatalf("Next: %v", err)
	}
	if _, err := c.author.Accept(p); err != nil {
		c.t.Fatalf("Accept: %v", err)
	}
	c.served = append(c.served, p.Bytes())
	return p
}

func (c *privateChannel) post(key *channel.SigningKey, kind channel.Kind, ref uint64, text string) *channel.Post {
	c.t.Helper()
	ct, err := c.posters[key.Public()].Seal(context.Background(), []byte(text))
	if err != nil {
		c.t.Fatalf("Seal: %v", err)
	}
	return c.publish(key, channel.Draft{Kind: kind, Ref: ref, Body: ct, Time: time.Now()})
}

// admit gives a subscriber every signer's chain, as the owner does over 1:1 sessions.
func (c *privateChannel) admit(r *Reader) {
	c.t.Helper()
	for k, p := range c.posters {
		m, err := p.Distribution(context.Background())
		if err != nil {
			c.t.Fatal(err)
		}
		wire, _ := senderkey.NewDistributionMessage(m.Bytes())
		if err := r.Admit(context.Background(), k, wire); err != nil {
			c.t.Fatalf("Admit: %v", err)
		}
	}
}

func TestPrivateChannel(t *testing.T) {
	ctx := context.Background()
	c := newPrivate(t)
	member := NewReader(senderkey.NewMemoryStore(), c.author.ID())
	c.admit(member)
	c.post(c.owner, channel.KindPost, 0, "meeting at noon")     // 2
	c.post(c.admin, channel.KindPost, 0, "bring the documents") // 3
	c.post(c.owner, channel.KindEdit, 2, "meeting at one")      // 4

	// The server and the member verify the same chain; the server holds no chain
	// key, the member does.
	genesis, _ := channel.ParsePost(c.served[0])
	server, _ := channel.NewVerifier(genesis)
	sub, _ := channel.NewVerifier(genesis)
	outsider := NewReader(senderkey.NewMemoryStore(), c.author.ID())
	// A reader admitted to another private channel has chains, but not these.
	elsewhere := newPrivate(t)
	otherStore := senderkey.NewMemoryStore()
	elsewhere.admit(NewReader(otherStore, elsewhere.author.ID()))
	otherReader := NewReader(otherStore, c.author.ID())

	want := map[uint64]string{2: "meeting at noon", 3: "bring the documents", 4: "meeting at one"}
	for seq := 1; seq < len(c.served); seq++ {
		p, err := channel.ParsePost(c.served[seq])
		if err != nil {
			t.Fatal(err)
		}
		// The signature covers the ciphertext: the server notices a flipped bit.
		altered := append([]byte{}, c.served[seq]...)
		altered[len(altered)-channel.SignatureSize-1] ^= 1
		if q, err := channel.ParsePost(altered); err == nil {
			if _, err := server.Accept(q); !errors.Is(err, channel.ErrAltered) {
				t.Errorf("server Accept(altered %d) = %v, want ErrAltered", seq, err)
			}
		}
		if _, err := server.Accept(p); err != nil {
			t.Fatalf("server Accept(%d) = %v, want nil: the server checks private chains", seq, err)
		}
		if _, err := sub.Accept(p); err != nil {
			t.Fatalf("subscriber Accept(%d) = %v", seq, err)
		}
		text, ok := want[uint64(seq)]
		if !ok {
			continue
		}
		if bytes.Contains(c.served[seq], []byte(text)) {
			t.Errorf("stored post %d holds its plaintext", seq)
		}
		for name, r := range map[string]*Reader{"outsider": outsider, "member of another channel": otherReader} {
			if pt, err := r.Open(ctx, p); !errors.Is(err, senderkey.ErrNoSenderKey) {
				t.Errorf("%s Open(%d) = %q, %v, want ErrNoSenderKey", name, seq, pt, err)
			}
		}
		pt, err := member.Open(ctx, p)
		if err != nil || string(pt) != text {
			t.Errorf("member Open(%d) = %q, %v, want %q", seq, pt, err, text)
		}
	}
}

func TestPrivateMisuse(t *testing.T) {
	ctx := context.Background()
	c := newPrivate(t)
	other := newPrivate(t)
	member := NewReader(senderkey.NewMemoryStore(), c.author.ID())
	c.admit(member)

	// A distribution message of another channel is refused.
	m, _ := other.posters[other.owner.Public()].Distribution(ctx)
	if err := member.Admit(ctx, other.owner.Public(), m); !errors.Is(err, ErrNotPrivate) {
		t.Errorf("Admit(other channel's chain) = %v, want ErrNotPrivate", err)
	}
	// A ciphertext of another channel, re-signed into this one by its admin, is refused.
	foreign, _ := other.posters[other.owner.Public()].Seal(ctx, []byte("x"))
	p := c.publish(c.admin, channel.Draft{Kind: channel.KindPost, Body: foreign, Time: time.Now()})
	if _, err := member.Open(ctx, p); !errors.Is(err, ErrNotPrivate) {
		t.Errorf("Open(foreign ciphertext) = %v, want ErrNotPrivate", err)
	}
	// One signer's ciphertext under another signer's post does not decrypt.
	ct, _ := c.posters[c.owner.Public()].Seal(ctx, []byte("owner's words"))
	p = c.publish(c.admin, channel.Draft{Kind: channel.KindPost, Body: ct, Time: time.Now()})
	if pt, err := member.Open(ctx, p); err == nil {
		t.Errorf("Open(owner ciphertext under admin post) = %q, want an error", pt)
	}
	// Not a content post, a withheld one, or garbage.
	del := c.publish(c.owner, channel.Draft{Kind: channel.KindDelete, Ref: 2, Time: time.Now()})
	if _, err := member.Open(ctx, del); !errors.Is(err, ErrNotPrivate) {
		t.Errorf("Open(delete) = %v, want ErrNotPrivate", err)
	}
	good := c.post(c.owner, channel.KindPost, 0, "fine")
	if _, err := member.Open(ctx, good.Withhold()); !errors.Is(err, ErrNotPrivate) {
		t.Errorf("Open(withheld) = %v, want ErrNotPrivate", err)
	}
	junk := c.publish(c.owner, channel.Draft{Kind: channel.KindPost, Body: []byte("plain"), Time: time.Now()})
	if _, err := member.Open(ctx, junk); !errors.Is(err, senderkey.ErrInvalidMessage) {
		t.Errorf("Open(plaintext body) = %v, want ErrInvalidMessage", err)
	}
}
