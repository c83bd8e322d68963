package sealed_test

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/certificate"
	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/sealed"
)

// Alice seals a message for Bob with the sender certificate her server issued; Bob
// opens it and learns, from the validated certificate, who sent it. The server that
// relays the envelope sees only that it is for Bob.
func Example() {
	now := time.Now()

	// The service: a trust root (clients ship its public half) and a server key.
	root, _ := curve.GeneratePrivateKey(nil)
	serverKey, _ := curve.GeneratePrivateKey(nil)
	serverCert, _ := certificate.NewServer(root, 1, serverKey.PublicKey(), nil)

	// Two devices. The server issues Alice's device a certificate for its identity key
	// (GET /v1/certificate/delivery), valid for a day.
	aliceAddr := protocol.Address{Name: "a11ce000-0000-4000-8000-000000000001", DeviceID: 1}
	bobAddr := protocol.Address{Name: "b0b00000-0000-4000-8000-000000000002", DeviceID: 1}
	alice, _ := protocol.GenerateIdentityKeyPair(nil)
	bob, _ := protocol.GenerateIdentityKeyPair(nil)
	cert, err := certificate.IssueSender(serverKey, serverCert, uuid.MustParse(aliceAddr.Name), aliceAddr.DeviceID,
		alice.PublicKey(), now.Add(24*time.Hour), nil)
	if err != nil {
		panic(err)
	}

	// Alice seals what her session with Bob produced (here a stand-in body).
	body := []byte("a SignalMessage from Alice's session with Bob")
	envelope, err := sealed.Encrypt(nil, bob.PublicKey(), alice, cert, protocol.TypeSignal, body, nil)
	if err != nil {
		panic(err)
	}

	// Bob opens it against the trust root and hands Body to his session with Sender.
	c, err := sealed.DecryptFor(envelope, bob, bobAddr, root.PublicKey(), now)
	if err != nil {
		panic(err)
	}
	fmt.Println(c.Sender, c.Type == protocol.TypeSignal)
	fmt.Println(string(c.Body))
	// Output:
	// a11ce000-0000-4000-8000-000000000001.1 true
	// a SignalMessage from Alice's session with Bob
}
