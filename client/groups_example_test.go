package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/bastionchat/bastion/client"
)

// Alice makes a group with Bob and Carol and writes to it; each reads the create as an
// event and then the message, with the group named. The example runs against a real
// server started in the test process.
func ExampleClient_SendGroup() {
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
	alice := open("alice", "+14155550100")
	defer alice.Close()
	bob := open("bob", "+14155550101")
	defer bob.Close()
	carol := open("carol", "+14155550102")
	defer carol.Close()

	// The create travels to Bob and Carol inside Alice's 1:1 sessions.
	g, err := alice.CreateGroup(ctx, "Climbers", []string{"+14155550101", "+14155550102"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("members:", len(g.Members))

	// One sender-key encryption, sealed for each of the two other devices.
	r, err := alice.SendGroup(ctx, "Climbers", "Meet at six")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("devices:", r.Devices)

	for _, c := range []*client.Client{bob, carol} {
		msgs, err := c.Receive(ctx)
		if err != nil {
			log.Fatal(err)
		}
		for _, m := range msgs {
			if m.GroupEvent != "" {
				fmt.Printf("[group %s] * event\n", m.Group.Title)
			} else {
				fmt.Printf("[group %s] %s: %s\n", m.Group.Title, m.FromNumber, m.Text)
			}
		}
	}
	// Output:
	// members: 3
	// devices: 2
	// [group Climbers] * event
	// [group Climbers] +14155550100: Meet at six
	// [group Climbers] * event
	// [group Climbers] +14155550100: Meet at six
}
