package server

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/bastionchat/bastion/internal/bus"
)

// TestChannelNodesOverNATS runs two servers on one store, linked by a real (in-process)
// NATS server as bastiond links them: a post on either node reaches the subscribers of
// both, in order, and each node accepts the post after the other's.
func TestChannelNodesOverNATS(t *testing.T) {
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatalf("nats NewServer() = %v", err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	h := newHarness(t, nil)
	alice := h.register("+14155550209", 0)
	o := newOwner(t, "nats_linked")
	h.createChannel(alice, o)

	var nodes []*harness
	var subs []*wsClient
	for i := range 2 {
		nb, err := bus.Connect("nats://"+ns.Addr().String(), bus.Options{Name: fmt.Sprint("node", i), PollInterval: -1, SweepInterval: -1})
		if err != nil {
			t.Fatalf("bus.Connect() = %v", err)
		}
		t.Cleanup(func() { nb.Close() })
		srv, err := New(testConfig(), Options{Store: h.st, SMS: h.sms, Logger: h.srv.log, Now: h.clock.Now, Notifier: nb})
		if err != nil {
			t.Fatal(err)
		}
		if srv.chans.bus == nil {
			t.Fatal("the server did not take the NATS bus for channel posts")
		}
		n := &harness{t: t, srv: srv, ts: newTestServer(t, srv), st: h.st, clock: h.clock, sms: h.sms, logs: h.logs}
		nodes = append(nodes, n)
		w := n.dial(alice)
		w.subscribe(o.id())
		subs = append(subs, w)
	}
	for i := range 6 {
		node := nodes[i%2]
		p := o.next(fmt.Sprintf("post %d via node %d", i+1, i%2))
		node.want(node.post(alice, o.id(), p.Bytes()), 200, "", "post")
		for j, w := range subs {
			if f := w.channelPosts(); len(f.Posts) != 1 || !bytes.Equal(f.Posts[0].Post, p.Bytes()) {
				t.Fatalf("subscriber on node %d got %+v, want post %d", j, f, p.Seq())
			}
		}
	}
}
