package channel_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/bastionchat/bastion/channel"
)

// The owner creates a channel and posts; a subscriber verifies what the server
// serves, and notices when the server drops a post.
func Example() {
	owner, _ := channel.GenerateSigningKey(nil)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	genesis, err := channel.Create(owner, channel.Info{Handle: "bastion_news", Title: "Bastion news"}, now, nil)
	if err != nil {
		panic(err)
	}
	// The owner's device keeps its own Verifier and signs each post after its newest.
	mine, _ := channel.NewVerifier(genesis)
	var served [][]byte // what the server stores
	for _, text := range []string{"first", "second", "third"} {
		p, err := mine.Next(owner, channel.Draft{Kind: channel.KindPost, Body: []byte(text), Time: now})
		if err != nil {
			panic(err)
		}
		if _, err := mine.Accept(p); err != nil {
			panic(err)
		}
		served = append(served, p.Bytes())
	}

	// A subscriber who followed @bastion_news holds the genesis.
	sub, _ := channel.NewVerifier(genesis)
	for _, i := range []int{0, 2} { // the server drops "second"
		p, err := channel.ParsePost(served[i])
		if err != nil {
			panic(err)
		}
		_, err = sub.Accept(p)
		var gap *channel.GapError
		switch {
		case errors.As(err, &gap):
			fmt.Printf("missing posts %d to %d\n", gap.From, gap.To)
		case err != nil:
			fmt.Println(err)
		default:
			fmt.Printf("%s: %s\n", sub.Info().Handle, p.Body())
		}
	}
	// Output:
	// @bastion_news: first
	// missing posts 2 to 2
}
