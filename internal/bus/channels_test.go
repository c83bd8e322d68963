package bus

import (
	"testing"
	"time"
)

// TestChannelPosts checks that a post published on one node reaches the other node's
// subscriber with its id and seq, and not the publisher's own (NoEcho: a node fans out
// its own posts itself).
func TestChannelPosts(t *testing.T) {
	srv := startServer(t, -1)
	defer stopServer(srv)()
	a := connect(t, url(srv), -1, nil)
	b := connect(t, url(srv), -1, nil)
	type post struct {
		id  [16]byte
		seq uint64
	}
	gotA, gotB := make(chan post, 4), make(chan post, 4)
	for _, n := range []struct {
		n  *NATS
		ch chan post
	}{{a, gotA}, {b, gotB}} {
		cancel, err := n.n.SubscribeChannelPosts(func(id [16]byte, seq uint64) { n.ch <- post{id, seq} })
		if err != nil {
			t.Fatalf("SubscribeChannelPosts() = %v", err)
		}
		defer cancel()
	}
	want := post{[16]byte{1, 2, 3, 15: 9}, 1<<40 + 7}
	a.PublishChannelPost(want.id, want.seq)
	select {
	case got := <-gotB:
		if got != want {
			t.Errorf("node b got %+v, want %+v", got, want)
		}
	case <-time.After(waitFor):
		t.Fatal("node b got no channel post")
	}
	flush(t, a)
	flush(t, b)
	select {
	case got := <-gotA:
		t.Errorf("publishing node got its own post %+v back", got)
	default:
	}
}
