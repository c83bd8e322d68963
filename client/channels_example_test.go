package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/bastionchat/bastion/client"
)

// An owner creates a channel and posts; a follower reads what it verified. The example
// runs against a real server started in the test process.
func Example_channels() {
	srv, err := newServer()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	dir, err := os.MkdirTemp("", "bastion-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	open := func(name, number string) *client.Client {
		c, err := client.Open(ctx, filepath.Join(dir, name), client.Options{Server: srv.URL})
		if err != nil {
			log.Fatal(err)
		}
		if err := c.RequestCode(ctx, number); err != nil {
			log.Fatal(err)
		}
		if _, err := c.Verify(ctx, srv.Code(number)); err != nil {
			log.Fatal(err)
		}
		return c
	}
	owner := open("owner", "+14155550100")
	defer owner.Close()
	reader := open("reader", "+14155550101")
	defer reader.Close()

	// The owner's device makes the channel's key and keeps it in its profile.
	ch, err := owner.CreateChannel(ctx, "@bastion_news", "Bastion news", "What is new", false)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("created", ch.Handle, "as", ch.Role)

	// Following pins the channel's genesis; every post is verified against it.
	if _, err := reader.FollowChannel(ctx, "@bastion_news"); err != nil {
		log.Fatal(err)
	}
	for _, text := range []string{"Hello, subscribers", "Second post"} {
		if _, err := owner.PostToChannel(ctx, "@bastion_news", text); err != nil {
			log.Fatal(err)
		}
	}
	if _, err := owner.EditChannelPost(ctx, "@bastion_news", 2, "Second post, corrected"); err != nil {
		log.Fatal(err)
	}

	// A read shows only verified posts; a forged, altered, dropped or reordered one
	// would come back as an error wrapping package channel's (channel.ErrForged, ...).
	entries, err := reader.ReadChannel(ctx, "@bastion_news", 20)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		fmt.Printf("#%d %s (by owner: %v, edited: %v)\n", e.Seq, e.Text, e.ByOwner, e.Edited)
	}
	// Output:
	// created @bastion_news as owner
	// #1 Hello, subscribers (by owner: true, edited: false)
	// #2 Second post, corrected (by owner: true, edited: true)
}
