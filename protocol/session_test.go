package protocol_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/bastionchat/bastion/protocol"
)

func TestSessionGoToGo(t *testing.T) {
	for _, withPreKey := range []bool{true, false} {
		t.Run(fmt.Sprintf("one-time prekey %v", withPreKey), func(t *testing.T) {
			alice := newParty(t, aliceID, 1111)
			bob := newParty(t, bobID, 2222)
			if err := alice.cipher.ProcessPreKeyBundle(ctx, bob.addr, bob.bundle(t, 1, 2, 3, withPreKey), now); err != nil {
				t.Fatalf("ProcessPreKeyBundle = %v", err)
			}
			// Until Bob answers, Alice sends PreKey messages; Bob gets them out of order.
			var first []protocol.CiphertextMessage
			for i := range 3 {
				m := alice.encrypt(t, bob, fmt.Sprint("hello ", i))
				if m.Type() != protocol.TypePreKey {
					t.Fatalf("Encrypt before a reply: type %d, want %d", m.Type(), protocol.TypePreKey)
				}
				first = append(first, m)
			}
			bob.mustDecrypt(t, alice, first[2], "hello 2")
			bob.mustDecrypt(t, alice, first[0], "hello 0")
			if ec, ky := bob.store.PreKeyCounts(); ec != 0 || ky != 0 {
				t.Errorf("PreKeyCounts after first message = %d, %d, want 0, 0", ec, ky)
			}
			bob.mustDecrypt(t, alice, first[1], "hello 1")

			// Bob answers; from then on, Alice sends SignalMessages.
			r := bob.encrypt(t, alice, "hi alice")
			if r.Type() != protocol.TypeSignal {
				t.Fatalf("Bob's reply type = %d, want %d", r.Type(), protocol.TypeSignal)
			}
			alice.mustDecrypt(t, bob, r, "hi alice")

			// Several ratchet steps, with one message from each chain held back.
			var held []protocol.CiphertextMessage
			var heldText []string
			for round := range 4 {
				a1 := alice.encrypt(t, bob, fmt.Sprint("a", round, "-1"))
				a2 := alice.encrypt(t, bob, fmt.Sprint("a", round, "-2"))
				if a1.Type() != protocol.TypeSignal {
					t.Fatalf("Alice after reply: type %d", a1.Type())
				}
				held, heldText = append(held, a1), append(heldText, fmt.Sprint("a", round, "-1"))
				bob.mustDecrypt(t, alice, a2, fmt.Sprint("a", round, "-2"))
				b1 := bob.encrypt(t, alice, fmt.Sprint("b", round))
				alice.mustDecrypt(t, bob, b1, fmt.Sprint("b", round))
			}
			// Messages from chains several ratchet steps old still decrypt, once.
			for i := len(held) - 1; i >= 0; i-- {
				bob.mustDecrypt(t, alice, held[i], heldText[i])
			}
			_, err := bob.cipher.Decrypt(ctx, alice.addr, wire(t, held[0]))
			if !errors.Is(err, protocol.ErrDuplicateMessage) {
				t.Errorf("Decrypt(replay) = %v, want ErrDuplicateMessage", err)
			}
		})
	}
}

func TestSessionRecordRoundTrip(t *testing.T) {
	alice := newParty(t, aliceID, 1)
	bob := newParty(t, bobID, 2)
	if err := alice.cipher.ProcessPreKeyBundle(ctx, bob.addr, bob.bundle(t, 1, 2, 3, true), now); err != nil {
		t.Fatal(err)
	}
	bob.mustDecrypt(t, alice, alice.encrypt(t, bob, "x"), "x")
	alice.mustDecrypt(t, bob, bob.encrypt(t, alice, "y"), "y")
	held := alice.encrypt(t, bob, "held")
	bob.mustDecrypt(t, alice, alice.encrypt(t, bob, "z"), "z")

	// Serialize both records, reload them into fresh stores, and keep talking.
	for _, p := range []*party{alice, bob} {
		peer := bob.addr
		if p == bob {
			peer = alice.addr
		}
		rec, err := p.store.LoadSession(ctx, peer)
		if err != nil || rec == nil {
			t.Fatalf("LoadSession = %v, %v", rec, err)
		}
		b := rec.Bytes()
		back, err := protocol.NewSessionRecord(b)
		if err != nil {
			t.Fatalf("NewSessionRecord(Bytes()) = %v", err)
		}
		if string(back.Bytes()) != string(b) {
			t.Errorf("NewSessionRecord(b).Bytes() != b")
		}
		if err := p.store.StoreSession(ctx, peer, back); err != nil {
			t.Fatal(err)
		}
	}
	bob.mustDecrypt(t, alice, held, "held")
	alice.mustDecrypt(t, bob, bob.encrypt(t, alice, "after reload"), "after reload")
}

func TestKeyRecordsRoundTrip(t *testing.T) {
	id, err := protocol.GenerateIdentityKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := protocol.NewIdentityKeyPair(id.Bytes())
	if err != nil || !id2.PublicKey().Equal(id.PublicKey()) {
		t.Fatalf("NewIdentityKeyPair(Bytes()) = %v", err)
	}
	pk, _ := protocol.GeneratePreKey(nil, 7)
	if back, err := protocol.NewPreKeyRecord(pk.Bytes()); err != nil || back.ID != 7 || !back.PublicKey().Equal(pk.PublicKey()) {
		t.Errorf("NewPreKeyRecord(Bytes()) = %+v, %v", back, err)
	}
	spk, _ := protocol.GenerateSignedPreKey(nil, id, 8, now)
	back, err := protocol.NewSignedPreKeyRecord(spk.Bytes())
	if err != nil || back.ID != 8 || !back.Timestamp.Equal(now) || !id.PublicKey().Verify(back.PublicKey().Bytes(), back.Signature) {
		t.Errorf("NewSignedPreKeyRecord(Bytes()) = %+v, %v", back, err)
	}
	kpk, _ := protocol.GenerateKyberPreKey(nil, id, 9, now)
	kback, err := protocol.NewKyberPreKeyRecord(kpk.Bytes())
	if err != nil || kback.ID != 9 || !kback.KeyPair.Public.Equal(kpk.KeyPair.Public) || !id.PublicKey().Verify(kback.KeyPair.Public.Bytes(), kback.Signature) {
		t.Errorf("NewKyberPreKeyRecord(Bytes()) = %+v, %v", kback, err)
	}
}

func TestBundleRoundTrip(t *testing.T) {
	bob := newParty(t, bobID, 2)
	for _, withPreKey := range []bool{true, false} {
		b := bob.bundle(t, 1, 2, 3, withPreKey)
		back, err := protocol.ParsePreKeyBundle(b.Bytes())
		if err != nil {
			t.Fatalf("ParsePreKeyBundle(Bytes()) = %v", err)
		}
		if err := back.Verify(); err != nil {
			t.Errorf("Verify(round-tripped bundle) = %v", err)
		}
		if string(back.Bytes()) != string(b.Bytes()) || (back.PreKey != nil) != withPreKey {
			t.Errorf("ParsePreKeyBundle(Bytes()) = %+v, want %+v", back, b)
		}
	}
	if _, err := protocol.ParsePreKeyBundle([]byte{0xff}); err == nil {
		t.Errorf("ParsePreKeyBundle(garbage) succeeded")
	}
}
