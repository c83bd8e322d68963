package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/bastionchat/bastion/client"
)

// Two profiles register, and one sends the other a message, which the other receives.
// The example runs against a real server started in the test process; a program would
// pass its server's URL and read the code from the SMS.
func Example() {
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

	// open opens a profile and registers number with the code the server sent.
	open := func(name, number string) *client.Client {
		c, err := client.Open(ctx, filepath.Join(dir, name), client.Options{Server: srv.URL})
		if err != nil {
			log.Fatal(err)
		}
		if err := c.RequestCode(ctx, number); err != nil {
			log.Fatal(err)
		}
		code := srv.Code(number) // what the user reads in the SMS
		acct, err := c.Verify(ctx, code)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("registered %s, device %d\n", acct.Number, acct.DeviceID)
		return c
	}
	alice := open("alice", "+14155550100")
	defer alice.Close()
	bob := open("bob", "+14155550101")
	defer bob.Close()

	// Send: Bob need not be online; the server holds the envelope until he receives.
	if _, err := alice.Send(ctx, "+14155550101", "Hello Bob"); err != nil {
		log.Fatal(err)
	}

	// Receive: each message is stored in Bob's profile before it is acknowledged.
	msgs, err := bob.Receive(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range msgs {
		fmt.Printf("from %s: %s\n", m.FromNumber, m.Text)
	}

	// Both sides compute the same safety number to compare in person.
	a, _ := alice.SafetyNumber(ctx, "+14155550101")
	b, _ := bob.SafetyNumber(ctx, "+14155550100")
	fmt.Println("safety numbers match:", a == b)
	// Output:
	// registered +14155550100, device 1
	// registered +14155550101, device 1
	// from +14155550100: Hello Bob
	// safety numbers match: true
}
