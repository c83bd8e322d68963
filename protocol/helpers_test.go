package protocol_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bastionchat/bastion/protocol"
)

var (
	ctx     = context.Background()
	now     = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	aliceID = protocol.Address{Name: "a11ce000-0000-4000-8000-000000000001", DeviceID: 1}
	bobID   = protocol.Address{Name: "b0b00000-0000-4000-8000-000000000002", DeviceID: 1}
)

// party is one Go device: its identity, stores and cipher.
type party struct {
	addr     protocol.Address
	identity *protocol.IdentityKeyPair
	regID    uint32
	store    *protocol.MemoryStore
	cipher   *protocol.Cipher
}

func newParty(t testing.TB, addr protocol.Address, regID uint32) *party {
	t.Helper()
	id, err := protocol.GenerateIdentityKeyPair(nil)
	if err != nil {
		t.Fatalf("GenerateIdentityKeyPair = %v", err)
	}
	return newPartyWith(addr, id, regID)
}

func newPartyWith(addr protocol.Address, id *protocol.IdentityKeyPair, regID uint32) *party {
	st := protocol.NewMemoryStore(id, regID)
	return &party{addr: addr, identity: id, regID: regID, store: st,
		cipher: &protocol.Cipher{Local: addr, Stores: st.Stores()}}
}

// bundle makes and stores fresh prekeys and returns the public bundle.
func (p *party) bundle(t testing.TB, preKeyID, signedID, kyberID uint32, withPreKey bool) *protocol.PreKeyBundle {
	t.Helper()
	spk, err := protocol.GenerateSignedPreKey(nil, p.identity, signedID, now)
	if err != nil {
		t.Fatal(err)
	}
	kpk, err := protocol.GenerateKyberPreKey(nil, p.identity, kyberID, now)
	if err != nil {
		t.Fatal(err)
	}
	p.store.StoreSignedPreKey(spk)
	p.store.StoreKyberPreKey(kpk, false)
	b := &protocol.PreKeyBundle{
		RegistrationID: p.regID, DeviceID: p.addr.DeviceID,
		SignedPreKeyID: signedID, SignedPreKey: spk.PublicKey(), SignedPreKeySignature: spk.Signature,
		KyberPreKeyID: kyberID, KyberPreKey: kpk.KeyPair.Public, KyberPreKeySignature: kpk.Signature,
		IdentityKey: p.identity.PublicKey(),
	}
	if withPreKey {
		pk, err := protocol.GeneratePreKey(nil, preKeyID)
		if err != nil {
			t.Fatal(err)
		}
		p.store.StorePreKey(pk)
		b.PreKeyID, b.PreKey = preKeyID, pk.PublicKey()
	}
	return b
}

func (p *party) encrypt(t testing.TB, to *party, text string) protocol.CiphertextMessage {
	t.Helper()
	m, err := p.cipher.Encrypt(ctx, to.addr, []byte(text), now)
	if err != nil {
		t.Fatalf("Encrypt(%q) = %v", text, err)
	}
	return m
}

// wire serializes and reparses m, as the network would.
func wire(t testing.TB, m protocol.CiphertextMessage) protocol.CiphertextMessage {
	t.Helper()
	back, err := protocol.ParseCiphertextMessage(m.Type(), m.Bytes())
	if err != nil {
		t.Fatalf("ParseCiphertextMessage(%d) = %v", m.Type(), err)
	}
	return back
}

func (p *party) mustDecrypt(t testing.TB, from *party, m protocol.CiphertextMessage, want string) {
	t.Helper()
	got, err := p.cipher.Decrypt(ctx, from.addr, wire(t, m))
	if err != nil {
		t.Fatalf("Decrypt(%q) = %v", want, err)
	}
	if !bytes.Equal(got, []byte(want)) {
		t.Fatalf("Decrypt = %q, want %q", got, want)
	}
}

// snapshot captures every store of a MemoryStore that a decryption may touch.
func (p *party) snapshot(t testing.TB, peers ...protocol.Address) string {
	t.Helper()
	var b bytes.Buffer
	for _, a := range peers {
		rec, err := p.store.LoadSession(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if rec != nil {
			fmt.Fprintf(&b, "session %s %x\n", a, rec.Bytes())
		}
		if k := p.store.Identity(a); k != nil {
			fmt.Fprintf(&b, "identity %s %x\n", a, k.Bytes())
		}
	}
	ec, ky := p.store.PreKeyCounts()
	fmt.Fprintf(&b, "prekeys %d %d\n", ec, ky)
	return b.String()
}
