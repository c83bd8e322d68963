package multinode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/internal/pgtest"
	"github.com/bastionchat/bastion/internal/reliability"
)

// TestChannelAcrossNodes runs a broadcast channel over three real nodes: the channel is
// created through node 1, a subscriber listens on node 2's WebSocket, and a post submitted
// through node 3 reaches it live (only the NATS news crosses from node 3 to node 2; the
// post itself is read from PostgreSQL) and verifies against the genesis. Two posts signed
// for the same place and submitted at once through two nodes are not both stored there:
// one wins, the other is told channel_conflict, signs again for the next place and lands
// there, so the subscriber sees one chain with distinct seqs.
func TestChannelAcrossNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn := pgtest.Start(t)
	nodes := startChannelNodes(t, ctx, dsn, startNATS(t))
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	owner, err := n1.Register(ctx, "+14155550301", reliability.KeyOptions{})
	if err != nil {
		t.Fatalf("Register(owner) via node1 = %v", err)
	}
	follower, err := n2.Register(ctx, "+14155550302", reliability.KeyOptions{})
	if err != nil {
		t.Fatalf("Register(follower) via node2 = %v", err)
	}
	do := func(n *reliability.Server, method, path string, body, out any) error {
		return n.Do(ctx, method, path, body, owner.User(), owner.Password, out)
	}

	// The owner creates the channel through node 1.
	key, err := channel.GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	genesis, err := channel.Create(key, channel.Info{Handle: "acrossnodes", Title: "Across nodes"}, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	id := genesis.Channel()
	var info api.ChannelInfo
	if err := do(n1, "POST", "/v1/channels", api.CreateChannelRequest{Genesis: genesis.Bytes()}, &info); err != nil {
		t.Fatalf("creating the channel via node1 = %v", err)
	}
	if info.ID != id.String() {
		t.Fatalf("created channel id = %s, want %s", info.ID, id)
	}

	// The follower looks it up, follows and subscribes on node 2.
	var found api.ChannelInfo
	if err := n2.Do(ctx, "GET", "/v1/channels/@acrossnodes", nil, follower.User(), follower.Password, &found); err != nil {
		t.Fatalf("GET @acrossnodes via node2 = %v", err)
	}
	v, err := newVerifier(found.Genesis, genesis)
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Do(ctx, "PUT", "/v1/channels/"+id.String()+"/follow", nil, follower.User(), follower.Password, nil); err != nil {
		t.Fatalf("follow via node2 = %v", err)
	}
	conn, err := n2.Dial(ctx, follower)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.WriteFrame(api.Frame{Type: api.FrameChannelSubscribe, Channels: []string{id.String()}}); err != nil {
		t.Fatal(err)
	}
	if f, err := nextFrame(conn, api.FrameChannelSubscribe); err != nil || len(f.Channels) != 1 || f.Error != nil {
		t.Fatalf("answer to channel_subscribe on node2 = %+v, %v; want the one channel", f, err)
	}

	// A post submitted through node 3 reaches the subscriber on node 2 at once.
	prev := genesis.Hash()
	sign := func(seq uint64, text string) *channel.Post {
		t.Helper()
		p, err := channel.Sign(key, id, seq, prev, channel.Draft{Kind: channel.KindPost, Body: []byte(text), Time: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := sign(1, "posted via node3")
	var pr api.PostResponse
	if err := do(n3, "POST", "/v1/channels/"+id.String()+"/posts", api.PostRequest{Post: first.Bytes()}, &pr); err != nil || pr.Seq != 1 {
		t.Fatalf("posting via node3 = seq %d, %v; want seq 1", pr.Seq, err)
	}
	got := receivePosts(t, conn, id, v, 1)
	if string(got[0].Body()) != "posted via node3" {
		t.Errorf("post pushed on node2 = %q, want %q", got[0].Body(), "posted via node3")
	}
	prev = first.Hash()

	// Two posts for place 2, submitted at once through nodes 1 and 3.
	racers := []*reliability.Server{n1, n3}
	posts := []*channel.Post{sign(2, "raced via node1"), sign(2, "raced via node3")}
	errs := make([]error, len(racers))
	var wg sync.WaitGroup
	for i, n := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r api.PostResponse
			errs[i] = do(n, "POST", "/v1/channels/"+id.String()+"/posts", api.PostRequest{Post: posts[i].Bytes()}, &r)
			if errs[i] == nil && r.Seq != 2 {
				errs[i] = fmt.Errorf("stored at seq %d, want 2", r.Seq)
			}
		}()
	}
	wg.Wait()
	winner, loser := -1, -1
	for i, err := range errs {
		var se *reliability.StatusError
		switch {
		case err == nil:
			winner = i
		case errors.As(err, &se) && se.Status == 409 && se.Body.Code == api.CodeChannelConflict:
			loser = i
		default:
			t.Fatalf("racing post via node %d = %v, want stored or channel_conflict", i*2+1, err)
		}
	}
	if winner < 0 || loser < 0 {
		t.Fatalf("racing posts = %v; want exactly one stored and one channel_conflict", errs)
	}
	// The loser signs again after the winner and lands at place 3.
	prev = posts[winner].Hash()
	again := sign(3, string(posts[loser].Body()))
	if err := do(racers[loser], "POST", "/v1/channels/"+id.String()+"/posts", api.PostRequest{Post: again.Bytes()}, &pr); err != nil || pr.Seq != 3 {
		t.Fatalf("re-signed post = seq %d, %v; want seq 3", pr.Seq, err)
	}
	got = receivePosts(t, conn, id, v, 2)
	for i, want := range []*channel.Post{posts[winner], again} {
		if got[i].Seq() != want.Seq() || got[i].Hash() != want.Hash() {
			t.Errorf("push %d on node2 = post %d %q, want post %d %q", i, got[i].Seq(), got[i].Body(), want.Seq(), want.Body())
		}
	}

	// Node 2 serves the same chain from the store.
	var page api.PostsPage
	if err := n2.Do(ctx, "GET", "/v1/channels/"+id.String()+"/posts?after=0", nil, follower.User(), follower.Password, &page); err != nil {
		t.Fatal(err)
	}
	if page.Newest != 3 || len(page.Posts) != 3 {
		t.Errorf("history via node2: newest %d, %d posts; want 3 and 3", page.Newest, len(page.Posts))
	}
}

// startChannelNodes runs three bastiond nodes on one database and one NATS server, node 1
// with the legal desk and the key files the others get copies of (docs/operations.md).
func startChannelNodes(t *testing.T, ctx context.Context, dsn, natsURL string) []*reliability.Server {
	t.Helper()
	var nodes []*reliability.Server
	for i := range 3 {
		dir := t.TempDir()
		if i > 0 {
			for _, f := range sharedKeyFiles {
				b, err := os.ReadFile(filepath.Join(nodes[0].Data, f))
				if err != nil {
					t.Fatalf("node1 did not create %s: %v", f, err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		n, err := reliability.Start(ctx, bastiond, dir, "--store", dsn, "--nats", natsURL,
			fmt.Sprintf("--legal-desk=%t", i == 0),
			"--rate-verify-ip", "1000/1h", "--rate-verify-prefix", "1000/1h", "--rate-verify-number", "1000/1h")
		if err != nil {
			t.Fatalf("starting node%d: %v", i+1, err)
		}
		t.Cleanup(func() {
			if err := n.Stop(); err != nil {
				t.Errorf("stopping node%d: %v", i+1, err)
			}
		})
		nodes = append(nodes, n)
	}
	return nodes
}

// newVerifier starts a subscriber's verifier from the genesis a node served, which must be
// the one the owner made.
func newVerifier(served []byte, made *channel.Post) (*channel.Verifier, error) {
	g, err := channel.ParsePost(served)
	if err != nil {
		return nil, fmt.Errorf("parsing the served genesis: %w", err)
	}
	if g.Hash() != made.Hash() {
		return nil, errors.New("the node served another genesis")
	}
	return channel.NewVerifier(g)
}

// nextFrame reads frames until one of type typ arrives, within promptly.
func nextFrame(c *reliability.Conn, typ string) (api.Frame, error) {
	deadline := time.Now().Add(promptly)
	for {
		f, err := c.Next(deadline)
		if err != nil {
			return f, fmt.Errorf("waiting for a %s frame: %w", typ, err)
		}
		if f.Type == typ {
			return f, nil
		}
	}
}

// receivePosts reads channel_posts frames until n posts of id have arrived and verifies
// each with v, in order.
func receivePosts(t *testing.T, c *reliability.Conn, id channel.ID, v *channel.Verifier, n int) []*channel.Post {
	t.Helper()
	var out []*channel.Post
	for len(out) < n {
		f, err := nextFrame(c, api.FrameChannelPosts)
		if err != nil {
			t.Fatalf("%v: a post did not reach the subscriber on another node within %v", err, promptly)
		}
		if f.Channel != id.String() {
			t.Fatalf("channel_posts for %s, want %s", f.Channel, id)
		}
		for _, cp := range f.Posts {
			p, err := channel.ParsePost(cp.Post)
			if err != nil {
				t.Fatalf("ParsePost(pushed) = %v", err)
			}
			if _, err := v.Accept(p); err != nil {
				t.Fatalf("Accept(pushed post %d) = %v", p.Seq(), err)
			}
			out = append(out, p)
		}
	}
	return out
}
