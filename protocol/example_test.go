package protocol_test

import (
	"context"
	"fmt"
	"time"

	"github.com/bastionchat/bastion/protocol"
)

// A whole session: Bob publishes a bundle, Alice starts a session from it and sends;
// Bob decrypts and answers.
func Example() {
	ctx := context.Background()
	now := time.Now()
	aliceAddr := protocol.Address{Name: "a11ce000-0000-4000-8000-000000000001", DeviceID: 1}
	bobAddr := protocol.Address{Name: "b0b00000-0000-4000-8000-000000000002", DeviceID: 1}

	// Each device has an identity and stores (here in memory).
	aliceID, _ := protocol.GenerateIdentityKeyPair(nil)
	bobID, _ := protocol.GenerateIdentityKeyPair(nil)
	aliceStore := protocol.NewMemoryStore(aliceID, 1001)
	bobStore := protocol.NewMemoryStore(bobID, 2002)
	alice := &protocol.Cipher{Local: aliceAddr, Stores: aliceStore.Stores()}
	bob := &protocol.Cipher{Local: bobAddr, Stores: bobStore.Stores()}

	// Bob makes signed prekeys and keeps their private halves; the bundle is what a
	// server would hand to Alice.
	spk, _ := protocol.GenerateSignedPreKey(nil, bobID, 1, now)
	kpk, _ := protocol.GenerateKyberPreKey(nil, bobID, 1, now)
	otk, _ := protocol.GeneratePreKey(nil, 1)
	bobStore.StoreSignedPreKey(spk)
	bobStore.StoreKyberPreKey(kpk, true)
	bobStore.StorePreKey(otk)
	bundle := &protocol.PreKeyBundle{
		RegistrationID: 2002, DeviceID: 1,
		PreKeyID: otk.ID, PreKey: otk.PublicKey(),
		SignedPreKeyID: spk.ID, SignedPreKey: spk.PublicKey(), SignedPreKeySignature: spk.Signature,
		KyberPreKeyID: kpk.ID, KyberPreKey: kpk.KeyPair.Public, KyberPreKeySignature: kpk.Signature,
		IdentityKey: bobID.PublicKey(),
	}

	// Alice: PQXDH from the bundle, then encrypt.
	if err := alice.ProcessPreKeyBundle(ctx, bobAddr, bundle, now); err != nil {
		fmt.Println("bundle:", err)
		return
	}
	msg, _ := alice.Encrypt(ctx, bobAddr, []byte("hello bob"), now)

	// On the wire: the type and the bytes.
	typ, wire := msg.Type(), msg.Bytes()

	// Bob: parse and decrypt; the first message sets up his side of the session.
	in, _ := protocol.ParseCiphertextMessage(typ, wire)
	pt, err := bob.Decrypt(ctx, aliceAddr, in)
	fmt.Println(string(pt), err, typ == protocol.TypePreKey)

	reply, _ := bob.Encrypt(ctx, aliceAddr, []byte("hello alice"), now)
	pt, err = alice.Decrypt(ctx, bobAddr, reply)
	fmt.Println(string(pt), err, reply.Type() == protocol.TypeSignal)
	// Output:
	// hello bob <nil> true
	// hello alice <nil> true
}
