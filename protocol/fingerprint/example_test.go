package fingerprint_test

import (
	"fmt"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/fingerprint"
)

// Alice and Bob each compute the safety number from their own side; the numbers match
// when each holds the other's real identity key.
func Example() {
	aliceKey, _ := curve.GeneratePrivateKey(nil)
	bobKey, _ := curve.GeneratePrivateKey(nil)
	aliceACI := uuid.MustParse("9d0652a3-dcc3-4d11-975f-74d61598733f")
	bobACI := uuid.MustParse("796abedb-ca4e-4f18-8803-1fde5b921f9f")

	alice, err := fingerprint.New(fingerprint.Version, fingerprint.Iterations,
		aliceACI[:], aliceKey.PublicKey(), bobACI[:], bobKey.PublicKey())
	if err != nil {
		panic(err)
	}
	bob, err := fingerprint.New(fingerprint.Version, fingerprint.Iterations,
		bobACI[:], bobKey.PublicKey(), aliceACI[:], aliceKey.PublicKey())
	if err != nil {
		panic(err)
	}
	fmt.Println(len(alice.Displayable()), alice.Displayable() == bob.Displayable())

	// Bob scans the QR code on Alice's screen.
	same, err := bob.Compare(alice.Scannable())
	fmt.Println(same, err)
	// Output:
	// 60 true
	// true <nil>
}
