package protocol_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"

	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/proto"
)

// Negative tests modelled on libsignal's own (rust/protocol/tests/session.rs and
// session_cipher.rs): every refusal is checked for its error and, for decryption, for
// leaving every store exactly as it was.

// started returns Alice and Bob with a session Alice initiated, and Alice's first
// (PreKey) message, not yet delivered.
func started(t testing.TB) (alice, bob *party, first protocol.CiphertextMessage) {
	t.Helper()
	alice = newParty(t, aliceID, 1)
	bob = newParty(t, bobID, 2)
	if err := alice.cipher.ProcessPreKeyBundle(ctx, bob.addr, bob.bundle(t, 1, 2, 3, true), now); err != nil {
		t.Fatal(err)
	}
	return alice, bob, alice.encrypt(t, bob, "first")
}

// established returns Alice and Bob after one message each way.
func established(t testing.TB) (alice, bob *party) {
	t.Helper()
	alice, bob, first := started(t)
	bob.mustDecrypt(t, alice, first, "first")
	alice.mustDecrypt(t, bob, bob.encrypt(t, alice, "reply"), "reply")
	return alice, bob
}

// rewrite re-encodes a PreKeySignalMessage after edit changed its fields.
func rewrite(t testing.TB, m protocol.CiphertextMessage, edit func(*proto.PreKeySignalMessage)) []byte {
	t.Helper()
	b := m.Bytes()
	var body proto.PreKeySignalMessage
	if err := body.Unmarshal(b[1:]); err != nil {
		t.Fatal(err)
	}
	edit(&body)
	return body.Marshal([]byte{b[0]})
}

// lowOrder are the canonical encodings of Curve25519's points of small order: any
// X25519 output with them is all zeros.
var lowOrder = []string{
	"0000000000000000000000000000000000000000000000000000000000000000",
	"0100000000000000000000000000000000000000000000000000000000000000",
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

func djb(t *testing.T, h string) []byte {
	t.Helper()
	u, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{curve.TypeDjb}, u...)
}

func TestDecryptPreKeyFailuresLeaveStores(t *testing.T) {
	tests := []struct {
		name    string
		mangle  func(t *testing.T, m protocol.CiphertextMessage) []byte
		wantErr error
	}{
		{"tampered ciphertext", func(t *testing.T, m protocol.CiphertextMessage) []byte {
			return rewrite(t, m, func(p *proto.PreKeySignalMessage) { p.Message[len(p.Message)-12] ^= 1 })
		}, protocol.ErrInvalidMessage},
		{"tampered MAC", func(t *testing.T, m protocol.CiphertextMessage) []byte {
			return rewrite(t, m, func(p *proto.PreKeySignalMessage) { p.Message[len(p.Message)-1] ^= 1 })
		}, protocol.ErrInvalidMessage},
		{"tampered kyber ciphertext", func(t *testing.T, m protocol.CiphertextMessage) []byte {
			return rewrite(t, m, func(p *proto.PreKeySignalMessage) { p.KyberCiphertext[500] ^= 1 })
		}, protocol.ErrInvalidMessage},
		{"other base key", func(t *testing.T, m protocol.CiphertextMessage) []byte {
			k, _ := curve.GeneratePrivateKey(nil)
			return rewrite(t, m, func(p *proto.PreKeySignalMessage) { p.BaseKey = k.PublicKey().Bytes() })
		}, protocol.ErrInvalidMessage},
		{"other identity key", func(t *testing.T, m protocol.CiphertextMessage) []byte {
			k, _ := curve.GeneratePrivateKey(nil)
			return rewrite(t, m, func(p *proto.PreKeySignalMessage) { p.IdentityKey = k.PublicKey().Bytes() })
		}, protocol.ErrInvalidMessage},
		{"unknown signed prekey", func(t *testing.T, m protocol.CiphertextMessage) []byte {
			return rewrite(t, m, func(p *proto.PreKeySignalMessage) { p.SignedPreKeyID = 99 })
		}, protocol.ErrNoPreKey},
		{"unknown one-time prekey", func(t *testing.T, m protocol.CiphertextMessage) []byte {
			return rewrite(t, m, func(p *proto.PreKeySignalMessage) { p.PreKeyID = 99 })
		}, protocol.ErrNoPreKey},
		{"unknown kyber prekey", func(t *testing.T, m protocol.CiphertextMessage) []byte {
			return rewrite(t, m, func(p *proto.PreKeySignalMessage) { p.KyberPreKeyID = 99 })
		}, protocol.ErrNoPreKey},
		{"one-time prekey dropped", func(t *testing.T, m protocol.CiphertextMessage) []byte {
			return rewrite(t, m, func(p *proto.PreKeySignalMessage) { p.HasPreKeyID = false })
		}, protocol.ErrInvalidMessage},
	}
	for i, h := range lowOrder {
		tests = append(tests, struct {
			name    string
			mangle  func(t *testing.T, m protocol.CiphertextMessage) []byte
			wantErr error
		}{fmt.Sprint("low-order base key ", i), func(t *testing.T, m protocol.CiphertextMessage) []byte {
			return rewrite(t, m, func(p *proto.PreKeySignalMessage) { p.BaseKey = djb(t, h) })
		}, protocol.ErrInvalidMessage})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alice, bob, first := started(t)
			before := bob.snapshot(t, alice.addr)
			m, err := protocol.NewPreKeySignalMessage(tt.mangle(t, first))
			if err != nil {
				t.Fatalf("NewPreKeySignalMessage(mangled) = %v, want it to parse", err)
			}
			if _, err := bob.cipher.Decrypt(ctx, alice.addr, m); !errors.Is(err, tt.wantErr) {
				t.Errorf("Decrypt(%s) = %v, want %v", tt.name, err, tt.wantErr)
			}
			if after := bob.snapshot(t, alice.addr); after != before {
				t.Errorf("stores changed after a failed decryption:\nbefore %s\nafter  %s", before, after)
			}
			// The real message still works afterwards.
			bob.mustDecrypt(t, alice, first, "first")
		})
	}
}

// A base key with the high bit set is not a canonical encoding; libsignal refuses it
// ("incoming base key is invalid"), and so does the parser here.
func TestBaseKeyHighBit(t *testing.T) {
	_, _, first := started(t)
	for _, h := range []string{
		"0900000000000000000000000000000000000000000000000000000000000080", // 9 with bit 255 set
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p itself
	} {
		b := rewrite(t, first, func(p *proto.PreKeySignalMessage) { p.BaseKey = djb(t, h) })
		if _, err := protocol.NewPreKeySignalMessage(b); !errors.Is(err, protocol.ErrInvalidMessage) {
			t.Errorf("NewPreKeySignalMessage(base key %s) = %v, want ErrInvalidMessage", h, err)
		}
	}
}

func TestDuplicateMessage(t *testing.T) {
	alice, bob := established(t)
	m := alice.encrypt(t, bob, "once")
	bob.mustDecrypt(t, alice, m, "once")
	before := bob.snapshot(t, alice.addr)
	if _, err := bob.cipher.Decrypt(ctx, alice.addr, wire(t, m)); !errors.Is(err, protocol.ErrDuplicateMessage) {
		t.Errorf("Decrypt(duplicate) = %v, want ErrDuplicateMessage", err)
	}
	if bob.snapshot(t, alice.addr) != before {
		t.Errorf("stores changed after a duplicate")
	}
}

func TestChainJumpLimit(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("encrypts 25 000 messages: skipped with -short and -race")
	}
	alice, bob := established(t)
	var msgs []protocol.CiphertextMessage
	for i := range 25003 {
		m, err := alice.cipher.Encrypt(ctx, bob.addr, []byte{byte(i)}, now)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	// Bob's receiving chain is at index 0; a message 25 001 ahead is refused, one
	// exactly 25 000 ahead is accepted (libsignal's MAX_FORWARD_JUMPS).
	if _, err := bob.cipher.Decrypt(ctx, alice.addr, wire(t, msgs[25001])); !errors.Is(err, protocol.ErrInvalidMessage) {
		t.Errorf("Decrypt(jump 25001) = %v, want ErrInvalidMessage", err)
	}
	if got, err := bob.cipher.Decrypt(ctx, alice.addr, wire(t, msgs[25000])); err != nil || got[0] != byte(25000%256) {
		t.Errorf("Decrypt(jump 25000) = %v, %v, want success", got, err)
	}
	// Of the 25 000 keys skipped, the 2 000 newest are kept (MAX_MESSAGE_KEYS).
	if _, err := bob.cipher.Decrypt(ctx, alice.addr, wire(t, msgs[23000])); err != nil {
		t.Errorf("Decrypt(skipped 23000) = %v, want success", err)
	}
	if _, err := bob.cipher.Decrypt(ctx, alice.addr, wire(t, msgs[22999])); !errors.Is(err, protocol.ErrDuplicateMessage) {
		t.Errorf("Decrypt(skipped 22999, beyond the 2000 kept) = %v, want ErrDuplicateMessage", err)
	}
}

// Only the 5 newest receiving chains are kept: a message from a chain six DH ratchet
// steps old cannot be decrypted any more.
func TestReceiverChainLimit(t *testing.T) {
	alice, bob := established(t)
	var held []protocol.CiphertextMessage
	for round := range 7 {
		held = append(held, alice.encrypt(t, bob, fmt.Sprint(round)))
		bob.mustDecrypt(t, alice, alice.encrypt(t, bob, "x"), "x")
		alice.mustDecrypt(t, bob, bob.encrypt(t, alice, "y"), "y")
	}
	// held[6] is in the newest chain, held[2] in the 5th newest, held[1] in the 6th.
	for _, i := range []int{6, 2} {
		bob.mustDecrypt(t, alice, held[i], fmt.Sprint(i))
	}
	if _, err := bob.cipher.Decrypt(ctx, alice.addr, wire(t, held[1])); !errors.Is(err, protocol.ErrInvalidMessage) {
		t.Errorf("Decrypt(message 6 chains old) = %v, want ErrInvalidMessage", err)
	}
}

func TestBadBundles(t *testing.T) {
	bob := newParty(t, bobID, 2)
	other, _ := protocol.GenerateIdentityKeyPair(nil)
	tests := []struct {
		name    string
		edit    func(b *protocol.PreKeyBundle)
		wantErr error
	}{
		{"signed prekey signature flipped", func(b *protocol.PreKeyBundle) { b.SignedPreKeySignature = flip(b.SignedPreKeySignature) }, protocol.ErrInvalidSignature},
		{"kyber prekey signature flipped", func(b *protocol.PreKeyBundle) { b.KyberPreKeySignature = flip(b.KyberPreKeySignature) }, protocol.ErrInvalidSignature},
		{"signatures swapped", func(b *protocol.PreKeyBundle) {
			b.SignedPreKeySignature, b.KyberPreKeySignature = b.KyberPreKeySignature, b.SignedPreKeySignature
		}, protocol.ErrInvalidSignature},
		{"signed by another identity", func(b *protocol.PreKeyBundle) { b.IdentityKey = other.PublicKey() }, protocol.ErrInvalidSignature},
		{"short signature", func(b *protocol.PreKeyBundle) { b.SignedPreKeySignature = b.SignedPreKeySignature[:63] }, protocol.ErrInvalidSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alice := newParty(t, aliceID, 1)
			b := bob.bundle(t, 1, 2, 3, true)
			tt.edit(b)
			if err := alice.cipher.ProcessPreKeyBundle(ctx, bob.addr, b, now); !errors.Is(err, tt.wantErr) {
				t.Errorf("ProcessPreKeyBundle(%s) = %v, want %v", tt.name, err, tt.wantErr)
			}
			if rec, _ := alice.store.LoadSession(ctx, bob.addr); rec != nil {
				t.Errorf("a session was stored from a bad bundle")
			}
			if alice.store.Identity(bob.addr) != nil {
				t.Errorf("an identity was saved from a bad bundle")
			}
		})
	}
}

// A validly signed but low-order signed prekey gives an all-zero X25519 output, which
// is refused rather than used as a shared secret.
func TestAllZeroAgreementRefused(t *testing.T) {
	bob := newParty(t, bobID, 2)
	for i, h := range lowOrder {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			b := bob.bundle(t, 1, 2, 3, false)
			k, err := curve.NewPublicKey(djb(t, h))
			if err != nil {
				t.Fatalf("NewPublicKey(low order %s) = %v", h, err)
			}
			sig, err := bob.identity.PrivateKey().Sign(nil, k.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			b.SignedPreKey, b.SignedPreKeySignature = k, sig
			alice := newParty(t, aliceID, 1)
			if err := alice.cipher.ProcessPreKeyBundle(ctx, bob.addr, b, now); err == nil {
				t.Errorf("ProcessPreKeyBundle(low-order signed prekey) succeeded, want an error")
			}
		})
	}
	// A low-order ratchet key in a SignalMessage is refused the same way.
	alice, bob2 := established(t)
	m := alice.encrypt(t, bob2, "x")
	b := m.Bytes()
	var body proto.SignalMessage
	if err := body.Unmarshal(b[1 : len(b)-8]); err != nil {
		t.Fatal(err)
	}
	body.RatchetKey = djb(t, lowOrder[2])
	forged := append(body.Marshal([]byte{b[0]}), b[len(b)-8:]...)
	sm, err := protocol.NewSignalMessage(forged)
	if err != nil {
		t.Fatal(err)
	}
	before := bob2.snapshot(t, alice.addr)
	if _, err := bob2.cipher.Decrypt(ctx, alice.addr, sm); !errors.Is(err, protocol.ErrInvalidMessage) {
		t.Errorf("Decrypt(low-order ratchet key) = %v, want ErrInvalidMessage", err)
	}
	if bob2.snapshot(t, alice.addr) != before {
		t.Errorf("stores changed after a failed decryption")
	}
}

func TestUntrustedIdentity(t *testing.T) {
	alice, bob, first := started(t)
	stranger, _ := protocol.GenerateIdentityKeyPair(nil)
	if _, err := bob.store.SaveIdentity(ctx, alice.addr, stranger.PublicKey()); err != nil {
		t.Fatal(err)
	}
	before := bob.snapshot(t, alice.addr)
	if _, err := bob.cipher.Decrypt(ctx, alice.addr, wire(t, first)); !errors.Is(err, protocol.ErrUntrustedIdentity) {
		t.Errorf("Decrypt(untrusted sender) = %v, want ErrUntrustedIdentity", err)
	}
	if bob.snapshot(t, alice.addr) != before {
		t.Errorf("stores changed after an untrusted identity")
	}
	// Encrypting to a peer whose identity changed is refused too.
	if _, err := alice.store.SaveIdentity(ctx, bob.addr, stranger.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.cipher.Encrypt(ctx, bob.addr, []byte("x"), now); !errors.Is(err, protocol.ErrUntrustedIdentity) {
		t.Errorf("Encrypt(untrusted recipient) = %v, want ErrUntrustedIdentity", err)
	}
}

// The sender/recipient binding (field 6) in a PreKeySignalMessage: a message addressed
// to another device, or claiming another sender, is refused; a message without the
// binding is accepted. SignalMessages of an established session carry none, as
// libsignal sends them.
func TestAddressBinding(t *testing.T) {
	alice, bob, first := started(t)
	inner := func(m protocol.CiphertextMessage) []byte {
		t.Helper()
		b := m.Bytes()
		if m.Type() == protocol.TypePreKey {
			var p proto.PreKeySignalMessage
			if err := p.Unmarshal(b[1:]); err != nil {
				t.Fatal(err)
			}
			b = p.Message
		}
		var body proto.SignalMessage
		if err := body.Unmarshal(b[1 : len(b)-8]); err != nil {
			t.Fatal(err)
		}
		return body.Addresses
	}
	if a := inner(first); len(a) != 36 {
		t.Fatalf("PreKeySignalMessage field 6 = %x, want 36 bytes", a)
	}
	wrong := *bob.cipher
	wrong.Local.DeviceID = 2
	if _, err := wrong.Decrypt(ctx, alice.addr, wire(t, first)); !errors.Is(err, protocol.ErrInvalidMessage) {
		t.Errorf("Decrypt(to another device) = %v, want ErrInvalidMessage", err)
	}
	other := protocol.Address{Name: "0ddba11e-0000-4000-8000-000000000005", DeviceID: 1}
	if _, err := bob.cipher.Decrypt(ctx, other, wire(t, first)); !errors.Is(err, protocol.ErrInvalidMessage) {
		t.Errorf("Decrypt(from another sender) = %v, want ErrInvalidMessage", err)
	}
	bob.mustDecrypt(t, alice, first, "first")
	reply := bob.encrypt(t, alice, "reply")
	if a := inner(reply); a != nil {
		t.Errorf("SignalMessage field 6 = %x, want none", a)
	}
	alice.mustDecrypt(t, bob, reply, "reply")

	// Without service-id addresses, no binding is sent, and none is required.
	carol := newParty(t, protocol.Address{Name: "carol", DeviceID: 1}, 3)
	if err := carol.cipher.ProcessPreKeyBundle(ctx, bob.addr, bob.bundle(t, 7, 8, 9, true), now); err != nil {
		t.Fatal(err)
	}
	m := carol.encrypt(t, bob, "unbound")
	if a := inner(m); a != nil {
		t.Fatalf("PreKeySignalMessage field 6 from a non-service-id sender = %x, want none", a)
	}
	bob.mustDecrypt(t, carol, m, "unbound")
}

// Both sides start a session at the same time (libsignal's simultaneous initiation):
// each keeps both states, and they converge on one as they talk.
func TestSimultaneousInitiation(t *testing.T) {
	alice := newParty(t, aliceID, 1)
	bob := newParty(t, bobID, 2)
	if err := alice.cipher.ProcessPreKeyBundle(ctx, bob.addr, bob.bundle(t, 1, 2, 3, true), now); err != nil {
		t.Fatal(err)
	}
	if err := bob.cipher.ProcessPreKeyBundle(ctx, alice.addr, alice.bundle(t, 4, 5, 6, true), now); err != nil {
		t.Fatal(err)
	}
	ma := alice.encrypt(t, bob, "from alice")
	mb := bob.encrypt(t, alice, "from bob")
	if ma.Type() != protocol.TypePreKey || mb.Type() != protocol.TypePreKey {
		t.Fatalf("types = %d, %d, want PreKey", ma.Type(), mb.Type())
	}
	alice.mustDecrypt(t, bob, mb, "from bob")
	bob.mustDecrypt(t, alice, ma, "from alice")
	for i := range 3 {
		m := alice.encrypt(t, bob, fmt.Sprint("a", i))
		if m.Type() != protocol.TypeSignal {
			t.Fatalf("Alice after simultaneous start: type %d, want Signal", m.Type())
		}
		bob.mustDecrypt(t, alice, m, fmt.Sprint("a", i))
		bob2 := bob.encrypt(t, alice, fmt.Sprint("b", i))
		if bob2.Type() != protocol.TypeSignal {
			t.Fatalf("Bob after simultaneous start: type %d, want Signal", bob2.Type())
		}
		alice.mustDecrypt(t, bob, bob2, fmt.Sprint("b", i))
	}
}

// A prekey message never answered is not used to send after 30 days.
func TestStaleUnacknowledgedSession(t *testing.T) {
	alice, bob, _ := started(t)
	if _, err := alice.cipher.Encrypt(ctx, bob.addr, []byte("x"), now.Add(29*24*time.Hour)); err != nil {
		t.Errorf("Encrypt after 29 days = %v, want success", err)
	}
	if _, err := alice.cipher.Encrypt(ctx, bob.addr, []byte("x"), now.Add(31*24*time.Hour)); !errors.Is(err, protocol.ErrNoSession) {
		t.Errorf("Encrypt after 31 days = %v, want ErrNoSession", err)
	}
	rec, err := alice.store.LoadSession(ctx, bob.addr)
	if err != nil || rec == nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		after time.Duration
		want  bool
	}{{29 * 24 * time.Hour, true}, {31 * 24 * time.Hour, false}} {
		if got := rec.HasUsableSenderChain(now.Add(tt.after)); got != tt.want {
			t.Errorf("HasUsableSenderChain(+%v) = %v, want %v", tt.after, got, tt.want)
		}
	}
}

func TestNoSession(t *testing.T) {
	alice, bob := newParty(t, aliceID, 1), newParty(t, bobID, 2)
	if _, err := alice.cipher.Encrypt(ctx, bob.addr, []byte("x"), now); !errors.Is(err, protocol.ErrNoSession) {
		t.Errorf("Encrypt without a session = %v, want ErrNoSession", err)
	}
	a2, b2 := established(t)
	m := a2.encrypt(t, b2, "x")
	if _, err := bob.cipher.Decrypt(ctx, alice.addr, wire(t, m)); !errors.Is(err, protocol.ErrNoSession) {
		t.Errorf("Decrypt without a session = %v, want ErrNoSession", err)
	}
}

func TestParseRejects(t *testing.T) {
	alice, bob := established(t)
	good := alice.encrypt(t, bob, "x").Bytes()
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"too short", good[:8]},
		{"version 3", append([]byte{0x33}, good[1:]...)},
		{"version 5", append([]byte{0x54}, good[1:]...)},
		{"truncated body", append(append([]byte{}, good[:5]...), good[len(good)-8:]...)},
	}
	for _, tt := range tests {
		if _, err := protocol.NewSignalMessage(tt.b); !errors.Is(err, protocol.ErrInvalidMessage) {
			t.Errorf("NewSignalMessage(%s) = %v, want ErrInvalidMessage", tt.name, err)
		}
	}
	if _, err := protocol.NewPreKeySignalMessage(good); !errors.Is(err, protocol.ErrInvalidMessage) {
		t.Errorf("NewPreKeySignalMessage(a SignalMessage) = %v, want ErrInvalidMessage", err)
	}
	_, _, first := started(t)
	noKyber := rewrite(t, first, func(p *proto.PreKeySignalMessage) { p.HasKyberPreKeyID, p.KyberCiphertext = false, nil })
	if _, err := protocol.NewPreKeySignalMessage(noKyber); !errors.Is(err, protocol.ErrInvalidMessage) {
		t.Errorf("NewPreKeySignalMessage(no kyber) = %v, want ErrInvalidMessage", err)
	}
	if !bytes.Equal(first.Bytes()[:1], []byte{0x44}) {
		t.Errorf("PreKeySignalMessage version byte = %#x, want 0x44", first.Bytes()[0])
	}
}

// edwardsFromU maps a Montgomery u-coordinate to an Edwards point (positive x).
func edwardsFromU(t testing.TB, u []byte) *edwards25519.Point {
	t.Helper()
	var fu, one, num, den, y field.Element
	if _, err := fu.SetBytes(u); err != nil {
		t.Fatal(err)
	}
	one.One()
	num.Subtract(&fu, &one)
	den.Add(&fu, &one)
	y.Multiply(&num, den.Invert(&den))
	p, err := new(edwards25519.Point).SetBytes(y.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// withTorsion adds a point of order 8 to the key whose u-coordinate is u and returns
// the new u-coordinate. X25519 with any clamped scalar gives the same output for both.
func withTorsion(t testing.TB, u []byte) []byte {
	t.Helper()
	orderEight, _ := hex.DecodeString(lowOrder[2])
	r := new(edwards25519.Point).Add(edwardsFromU(t, u), edwardsFromU(t, orderEight))
	yb := r.Bytes()
	yb[31] &= 0x7f
	var y, one, num, den, out field.Element
	if _, err := y.SetBytes(yb); err != nil {
		t.Fatal(err)
	}
	one.One()
	num.Add(&one, &y)
	den.Subtract(&one, &y)
	out.Multiply(&num, den.Invert(&den))
	return out.Bytes()
}

// libsignal's responder refuses a base key outside the prime-order subgroup
// (test_bob_rejects_torsioned_basekey). Such a key gives exactly the same DH outputs
// as the honest one, so without the check this message would decrypt.
func TestTorsionedBaseKey(t *testing.T) {
	alice, bob, first := started(t)
	b := rewrite(t, first, func(p *proto.PreKeySignalMessage) {
		p.BaseKey = append([]byte{curve.TypeDjb}, withTorsion(t, p.BaseKey[1:])...)
	})
	m, err := protocol.NewPreKeySignalMessage(b)
	if err != nil {
		t.Fatalf("NewPreKeySignalMessage(torsioned base key) = %v, want it to parse", err)
	}
	before := bob.snapshot(t, alice.addr)
	if _, err := bob.cipher.Decrypt(ctx, alice.addr, m); !errors.Is(err, protocol.ErrInvalidMessage) {
		t.Errorf("Decrypt(torsioned base key) = %v, want ErrInvalidMessage", err)
	}
	if bob.snapshot(t, alice.addr) != before {
		t.Errorf("stores changed after a failed decryption")
	}
	bob.mustDecrypt(t, alice, first, "first")
}

// libsignal's prekey_message_sent_from_different_user_is_rejected: the same
// PreKeySignalMessage replayed under another sender's address must not start a second
// session. With the address binding (field 6) the MAC check refuses it; without it,
// the last-resort Kyber prekey store refuses the reused base key.
func TestPreKeyMessageFromDifferentUser(t *testing.T) {
	for _, tt := range []struct {
		name    string
		local   protocol.Address
		wantErr error
	}{
		{"with address binding", aliceID, protocol.ErrInvalidMessage},
		{"without address binding", protocol.Address{Name: "alice", DeviceID: 1}, protocol.ErrReusedKyberPreKey},
	} {
		t.Run(tt.name, func(t *testing.T) {
			alice := newParty(t, aliceID, 1)
			alice.cipher.Local = tt.local
			bob := newParty(t, bobID, 2)
			bundle := bob.bundle(t, 0, 2, 3, false)
			kpk, _ := bob.store.LoadKyberPreKey(ctx, 3)
			bob.store.StoreKyberPreKey(kpk, true)
			if err := alice.cipher.ProcessPreKeyBundle(ctx, bob.addr, bundle, now); err != nil {
				t.Fatal(err)
			}
			m := alice.encrypt(t, bob, "hi")
			bob.mustDecrypt(t, alice, m, "hi")
			mallory := protocol.Address{Name: "3a110000-0000-4000-8000-00000000000d", DeviceID: 77}
			if _, err := bob.cipher.Decrypt(ctx, mallory, wire(t, m)); !errors.Is(err, tt.wantErr) {
				t.Errorf("Decrypt(replay as another sender) = %v, want %v", err, tt.wantErr)
			}
			if rec, _ := bob.store.LoadSession(ctx, mallory); rec != nil {
				t.Errorf("a session was stored for the replaying sender")
			}
			if bob.store.Identity(mallory) != nil {
				t.Errorf("an identity was saved for the replaying sender")
			}
		})
	}
}

// libsignal's test_repeat_bundle_message: a PreKeySignalMessage delivered twice is a
// duplicate the second time, and the session carries on.
func TestRepeatPreKeyMessage(t *testing.T) {
	alice, bob, first := started(t)
	bob.mustDecrypt(t, alice, first, "first")
	if _, err := bob.cipher.Decrypt(ctx, alice.addr, wire(t, first)); !errors.Is(err, protocol.ErrDuplicateMessage) {
		t.Errorf("Decrypt(repeated PreKey message) = %v, want ErrDuplicateMessage", err)
	}
	alice.mustDecrypt(t, bob, bob.encrypt(t, alice, "reply"), "reply")
	bob.mustDecrypt(t, alice, alice.encrypt(t, bob, "after"), "after")
}

// libsignal's prekey_message_to_archived_session: a PreKeySignalMessage for a session
// the receiver has since archived (by starting its own) brings that session back.
func TestPreKeyMessageToArchivedSession(t *testing.T) {
	alice := newParty(t, aliceID, 1)
	bob := newParty(t, bobID, 2)
	aliceBundle := alice.bundle(t, 1, 1, 1, true)
	bobBundle := bob.bundle(t, 10, 10, 10, true)
	if err := bob.cipher.ProcessPreKeyBundle(ctx, alice.addr, aliceBundle, now); err != nil {
		t.Fatal(err)
	}
	alice.mustDecrypt(t, bob, bob.encrypt(t, alice, "from Bob"), "from Bob")
	// Alice starts a new session of her own, archiving Bob's.
	if err := alice.cipher.ProcessPreKeyBundle(ctx, bob.addr, bobBundle, now); err != nil {
		t.Fatal(err)
	}
	if m := alice.encrypt(t, bob, "unsent"); m.Type() != protocol.TypePreKey {
		t.Fatalf("Alice's new session: type %d, want PreKey", m.Type())
	}
	m2 := bob.encrypt(t, alice, "from Bob 2")
	if m2.Type() != protocol.TypePreKey {
		t.Fatalf("Bob's second message: type %d, want PreKey", m2.Type())
	}
	alice.mustDecrypt(t, bob, m2, "from Bob 2")
	// Bob's session is current again on both sides: Alice now answers on it.
	reply := alice.encrypt(t, bob, "back")
	if reply.Type() != protocol.TypeSignal {
		t.Fatalf("Alice after the archived session came back: type %d, want Signal", reply.Type())
	}
	bob.mustDecrypt(t, alice, reply, "back")
}
