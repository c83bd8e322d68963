package kt_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/bastionchat/bastion/internal/translog"
	"github.com/bastionchat/bastion/kt"
	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"
)

// A client checks a contact's device key: it advances its Verifier to the
// server's newest checkpoint, then verifies that the device binding it was
// given is in the tree that checkpoint commits to.
func Example() {
	ctx := context.Background()

	// Server side: a log signed by the server's key.
	skey, vkey, _ := note.GenerateKey(rand.Reader, "kt.bastion.example")
	signer, _ := note.NewSigner(skey)
	log := translog.New(translog.NewMemStorage(), signer)
	binding := kt.DeviceBinding{
		Account:  uuid.New(),
		Device:   1,
		State:    kt.StateAdded,
		Sequence: 1,
		Time:     time.Now(),
	}
	binding.IdentityKey[0] = 0x05 // then the 32-byte key
	entry, _ := kt.Marshal(binding)
	index, _ := log.Append(ctx, entry)
	signed, _ := log.Checkpoint(ctx)

	// Client side: the verifier key ships with the app.
	key, _ := note.NewVerifier(vkey)
	v, _ := kt.NewVerifier(key, nil)
	cp, err := v.Advance(signed, nil)
	if err != nil {
		fmt.Println("checkpoint:", err)
		return
	}
	proof, _ := log.InclusionProof(ctx, index, cp.Size)
	if err := kt.VerifyInclusion(cp, index, entry, proof); err != nil {
		fmt.Println("inclusion:", err)
		return
	}
	e, _ := kt.ParseEntry(entry)
	fmt.Printf("entry %d of %d: device %d %v\n", index, cp.Size, e.(kt.DeviceBinding).Device, e.(kt.DeviceBinding).State)
	// Output: entry 0 of 1: device 1 added
}
