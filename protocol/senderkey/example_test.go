package senderkey_test

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/senderkey"
)

// Alice sends to a group; Bob, a member, reads it.
func Example() {
	ctx := context.Background()
	alice := protocol.Address{Name: "9d0652a3-dcc3-4d11-975f-74d61598733f", DeviceID: 1}
	group := uuid.MustParse("b0b0c0c0-0000-4000-8000-000000000001")
	aliceStore, bobStore := senderkey.NewMemoryStore(), senderkey.NewMemoryStore()

	// Alice makes her chain for the group and sends its distribution message to every
	// member over their 1:1 sessions.
	skdm, err := senderkey.Create(ctx, aliceStore, alice, group)
	if err != nil {
		panic(err)
	}
	wire := skdm.Bytes()

	// Bob receives it (decrypted from his session with Alice) and stores the chain.
	received, err := senderkey.NewDistributionMessage(wire)
	if err != nil {
		panic(err)
	}
	if err := senderkey.Process(ctx, bobStore, alice, received); err != nil {
		panic(err)
	}

	// One ciphertext for the whole group.
	ct, err := senderkey.Encrypt(ctx, aliceStore, alice, group, []byte("hello, group"))
	if err != nil {
		panic(err)
	}
	pt, err := senderkey.Decrypt(ctx, bobStore, alice, ct)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s\n", pt)
	// Output: hello, group
}
