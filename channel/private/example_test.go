package private_test

import (
	"context"
	"fmt"
	"time"

	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/channel/private"
	"github.com/bastionchat/bastion/protocol/senderkey"
)

// The owner of a private channel admits a subscriber and posts; the server checks
// the post's signature and chain without being able to read it.
func Example() {
	ctx := context.Background()
	owner, _ := channel.GenerateSigningKey(nil)
	genesis, _ := channel.Create(owner, channel.Info{Handle: "inner_circle", Title: "Inner circle", Private: true}, time.Now(), nil)
	mine, _ := channel.NewVerifier(genesis)
	poster := private.NewPoster(senderkey.NewMemoryStore(), mine.ID(), owner.Public())

	// Admission: the distribution message travels over the owner's 1:1 session
	// with the subscriber.
	dm, _ := poster.Distribution(ctx)
	reader := private.NewReader(senderkey.NewMemoryStore(), genesis.Channel())
	if err := reader.Admit(ctx, owner.Public(), dm); err != nil {
		panic(err)
	}

	body, _ := poster.Seal(ctx, []byte("members only"))
	post, _ := mine.Next(owner, channel.Draft{Kind: channel.KindPost, Body: body, Time: time.Now()})

	server, _ := channel.NewVerifier(genesis)
	_, err := server.Accept(post)
	fmt.Println("server accepts:", err == nil)

	subscriber, _ := channel.NewVerifier(genesis)
	if _, err := subscriber.Accept(post); err != nil {
		panic(err)
	}
	text, err := reader.Open(ctx, post)
	fmt.Printf("subscriber reads: %s %v\n", text, err)
	// Output:
	// server accepts: true
	// subscriber reads: members only <nil>
}
