package protocol_test

// Interop with libsignal itself: the Node peer in interop/libsignal runs
// @signalapp/libsignal-client 0.90.0. These tests skip when the peer is not installed,
// and fail instead when BASTION_REQUIRE_INTEROP=1 (as CI sets it).

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bastionchat/bastion/interop/libsignal"
	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/proto"
)

func toLib(a protocol.Address) libsignal.Address {
	return libsignal.Address{Name: a.Name, DeviceID: a.DeviceID}
}

// fromLibBundle turns the peer's bundle into ours, through the validating constructor.
func fromLibBundle(t *testing.T, b libsignal.Bundle) *protocol.PreKeyBundle {
	t.Helper()
	pb, err := protocol.NewPreKeyBundle(b.RegistrationID, b.DeviceID, b.PreKeyID, b.PreKeyPublic,
		b.SignedPreKeyID, b.SignedPreKeyPublic, b.SignedPreKeySignature,
		b.KyberPreKeyID, b.KyberPreKeyPublic, b.KyberPreKeySignature, b.IdentityKey)
	if err != nil {
		t.Fatalf("NewPreKeyBundle(libsignal bundle) = %v", err)
	}
	return pb
}

func toLibBundle(b *protocol.PreKeyBundle) libsignal.Bundle {
	lb := libsignal.Bundle{
		RegistrationID: b.RegistrationID, DeviceID: b.DeviceID,
		SignedPreKeyID: b.SignedPreKeyID, SignedPreKeyPublic: b.SignedPreKey.Bytes(), SignedPreKeySignature: b.SignedPreKeySignature,
		KyberPreKeyID: b.KyberPreKeyID, KyberPreKeyPublic: b.KyberPreKey.Bytes(), KyberPreKeySignature: b.KyberPreKeySignature,
		IdentityKey: b.IdentityKey.Bytes(),
	}
	if b.PreKey != nil {
		lb.PreKeyID, lb.PreKeyPublic = b.PreKeyID, b.PreKey.Bytes()
	}
	return lb
}

func toLibMessage(m protocol.CiphertextMessage) libsignal.Message {
	return libsignal.Message{Type: libsignal.MessageType(m.Type()), Ciphertext: m.Bytes()}
}

func fromLibMessage(t *testing.T, m libsignal.Message) protocol.CiphertextMessage {
	t.Helper()
	cm, err := protocol.ParseCiphertextMessage(protocol.MessageType(m.Type), m.Ciphertext)
	if err != nil {
		t.Fatalf("ParseCiphertextMessage(libsignal type %d) = %v", m.Type, err)
	}
	return cm
}

// endpoint is one side of an interop conversation: Go or libsignal.
type endpoint interface {
	send(t *testing.T, to protocol.Address, text string) libsignal.Message
	recv(t *testing.T, from protocol.Address, m libsignal.Message) ([]byte, error)
}

type goEnd struct{ p *party }

func (g goEnd) send(t *testing.T, to protocol.Address, text string) libsignal.Message {
	t.Helper()
	m, err := g.p.cipher.Encrypt(ctx, to, []byte(text), now)
	if err != nil {
		t.Fatalf("Go Encrypt(%q) = %v", text, err)
	}
	return toLibMessage(m)
}

func (g goEnd) recv(t *testing.T, from protocol.Address, m libsignal.Message) ([]byte, error) {
	t.Helper()
	return g.p.cipher.Decrypt(ctx, from, fromLibMessage(t, m))
}

type libEnd struct {
	peer *libsignal.Peer
	name string
}

func (l libEnd) send(t *testing.T, to protocol.Address, text string) libsignal.Message {
	t.Helper()
	m, err := l.peer.Encrypt(l.name, toLib(to), []byte(text))
	if err != nil {
		t.Fatalf("libsignal Encrypt(%q) = %v", text, err)
	}
	return m
}

func (l libEnd) recv(t *testing.T, from protocol.Address, m libsignal.Message) ([]byte, error) {
	t.Helper()
	return l.peer.Decrypt(l.name, toLib(from), m)
}

func mustRecv(t *testing.T, e endpoint, from protocol.Address, m libsignal.Message, want string) {
	t.Helper()
	got, err := e.recv(t, from, m)
	if err != nil {
		t.Fatalf("%T decrypt(%q) = %v", e, want, err)
	}
	if !bytes.Equal(got, []byte(want)) {
		t.Fatalf("%T decrypt = %q, want %q", e, got, want)
	}
}

// converse runs the same script whichever side initiated: the initiator's first
// messages delivered out of order, replies, several DH ratchet steps with one message
// per chain held back and delivered at the end, and a replay that must be refused.
func converse(t *testing.T, initiator, responder endpoint, iAddr, rAddr protocol.Address, replayRejected func(error) bool) {
	var first []libsignal.Message
	for i := range 3 {
		m := initiator.send(t, rAddr, fmt.Sprint("first ", i))
		if m.Type != libsignal.TypePreKey {
			t.Fatalf("initiator's message %d: type %d, want PreKey", i, m.Type)
		}
		first = append(first, m)
	}
	mustRecv(t, responder, iAddr, first[1], "first 1")
	mustRecv(t, responder, iAddr, first[0], "first 0")
	mustRecv(t, responder, iAddr, first[2], "first 2")

	reply := responder.send(t, iAddr, "reply")
	if reply.Type != libsignal.TypeWhisper {
		t.Fatalf("responder's reply: type %d, want Whisper", reply.Type)
	}
	mustRecv(t, initiator, rAddr, reply, "reply")

	type held struct {
		to   endpoint
		from protocol.Address
		m    libsignal.Message
		text string
	}
	var late []held
	for round := range 4 {
		x1 := initiator.send(t, rAddr, fmt.Sprint("i", round, "a"))
		x2 := initiator.send(t, rAddr, fmt.Sprint("i", round, "b"))
		if x1.Type != libsignal.TypeWhisper {
			t.Fatalf("initiator after reply: type %d, want Whisper", x1.Type)
		}
		mustRecv(t, responder, iAddr, x2, fmt.Sprint("i", round, "b"))
		late = append(late, held{responder, iAddr, x1, fmt.Sprint("i", round, "a")})
		y1 := responder.send(t, iAddr, fmt.Sprint("r", round, "a"))
		y2 := responder.send(t, iAddr, fmt.Sprint("r", round, "b"))
		mustRecv(t, initiator, rAddr, y2, fmt.Sprint("r", round, "b"))
		late = append(late, held{initiator, rAddr, y1, fmt.Sprint("r", round, "a")})
	}
	// Messages from chains several ratchet steps old, newest first.
	for i := len(late) - 1; i >= 0; i-- {
		mustRecv(t, late[i].to, late[i].from, late[i].m, late[i].text)
	}
	// A replayed message is refused by whichever side receives it.
	if _, err := responder.recv(t, iAddr, late[0].m); !replayRejected(err) {
		t.Errorf("responder decrypt(replay) = %v, want a duplicate-message error", err)
	}
	if _, err := responder.recv(t, iAddr, first[0]); err == nil {
		t.Errorf("responder decrypt(replayed PreKey message) succeeded, want an error")
	}
}

func isLibDuplicate(err error) bool {
	var le *libsignal.Error
	return errors.As(err, &le) && le.Code == "DuplicatedMessage"
}

func isGoDuplicate(err error) bool { return errors.Is(err, protocol.ErrDuplicateMessage) }

func TestInteropGoInitiates(t *testing.T) {
	peer := libsignal.StartForTest(t)
	for i, withPreKey := range []bool{true, false} {
		t.Run(fmt.Sprintf("one-time prekey %v", withPreKey), func(t *testing.T) {
			name := fmt.Sprint("bob-go-initiates-", i)
			if _, err := peer.NewParty(libsignal.NewPartyArgs{Party: name}); err != nil {
				t.Fatal(err)
			}
			lb, err := peer.GenerateBundle(name, libsignal.BundleArgs{DeviceID: 1, PreKeyID: 11, SignedPreKeyID: 22, KyberPreKeyID: 33, NoPreKey: !withPreKey})
			if err != nil {
				t.Fatal(err)
			}
			alice := newParty(t, aliceID, 4242)
			if err := alice.cipher.ProcessPreKeyBundle(ctx, bobID, fromLibBundle(t, lb), now); err != nil {
				t.Fatalf("ProcessPreKeyBundle(libsignal bundle) = %v", err)
			}
			converse(t, goEnd{alice}, libEnd{peer, name}, aliceID, bobID, isLibDuplicate)

			info, err := peer.SessionInfo(name, toLib(aliceID))
			if err != nil {
				t.Fatal(err)
			}
			if info.RemoteRegistrationID != 4242 {
				t.Errorf("libsignal's remote registration id = %d, want 4242", info.RemoteRegistrationID)
			}
		})
	}
}

func TestInteropLibsignalInitiates(t *testing.T) {
	peer := libsignal.StartForTest(t)
	for i, withPreKey := range []bool{true, false} {
		t.Run(fmt.Sprintf("one-time prekey %v", withPreKey), func(t *testing.T) {
			name := fmt.Sprint("alice-lib-initiates-", i)
			lp, err := peer.NewParty(libsignal.NewPartyArgs{Party: name})
			if err != nil {
				t.Fatal(err)
			}
			bob := newParty(t, bobID, 777)
			if err := peer.ProcessBundle(name, toLib(bobID), toLibBundle(bob.bundle(t, 5, 6, 7, withPreKey))); err != nil {
				t.Fatalf("libsignal ProcessBundle(Go bundle) = %v", err)
			}
			converse(t, libEnd{peer, name}, goEnd{bob}, aliceID, bobID, isGoDuplicate)

			rec, err := bob.store.LoadSession(ctx, aliceID)
			if err != nil || rec == nil {
				t.Fatalf("LoadSession = %v, %v", rec, err)
			}
			if id, _ := rec.RemoteRegistrationID(); id != lp.RegistrationID {
				t.Errorf("remote registration id = %d, want %d", id, lp.RegistrationID)
			}
			if ec, ky := bob.store.PreKeyCounts(); ec != 0 || ky != 0 {
				t.Errorf("PreKeyCounts = %d, %d, want one-time keys consumed", ec, ky)
			}
		})
	}
}

// Both sides refuse a bundle whose signed prekey or Kyber prekey signature was
// tampered with.
func TestInteropTamperedSignature(t *testing.T) {
	peer := libsignal.StartForTest(t)
	if _, err := peer.NewParty(libsignal.NewPartyArgs{Party: "tamper-bob"}); err != nil {
		t.Fatal(err)
	}
	if _, err := peer.NewParty(libsignal.NewPartyArgs{Party: "tamper-alice"}); err != nil {
		t.Fatal(err)
	}
	lb, err := peer.GenerateBundle("tamper-bob", libsignal.BundleArgs{DeviceID: 1, PreKeyID: 1, SignedPreKeyID: 2, KyberPreKeyID: 3})
	if err != nil {
		t.Fatal(err)
	}
	gb := newParty(t, bobID, 1).bundle(t, 1, 2, 3, true)
	for _, which := range []string{"signed prekey", "kyber prekey"} {
		t.Run(which, func(t *testing.T) {
			// libsignal's bundle, tampered, into Go.
			b := lb
			if which == "signed prekey" {
				b.SignedPreKeySignature = flip(b.SignedPreKeySignature)
			} else {
				b.KyberPreKeySignature = flip(b.KyberPreKeySignature)
			}
			alice := newParty(t, aliceID, 1)
			err := alice.cipher.ProcessPreKeyBundle(ctx, bobID, fromLibBundle(t, b), now)
			if !errors.Is(err, protocol.ErrInvalidSignature) {
				t.Errorf("Go ProcessPreKeyBundle(tampered %s) = %v, want ErrInvalidSignature", which, err)
			}
			if rec, _ := alice.store.LoadSession(ctx, bobID); rec != nil {
				t.Errorf("Go stored a session from a tampered bundle")
			}
			// Go's bundle, tampered, into libsignal.
			g := toLibBundle(gb)
			if which == "signed prekey" {
				g.SignedPreKeySignature = flip(g.SignedPreKeySignature)
			} else {
				g.KyberPreKeySignature = flip(g.KyberPreKeySignature)
			}
			if err := peer.ProcessBundle("tamper-alice", toLib(bobID), g); err == nil {
				t.Errorf("libsignal ProcessBundle(tampered %s) succeeded, want an error", which)
			}
		})
	}
	// The untampered Go bundle is accepted, so the failures above are the signatures'.
	if err := peer.ProcessBundle("tamper-alice", toLib(bobID), toLibBundle(gb)); err != nil {
		t.Errorf("libsignal ProcessBundle(Go bundle) = %v", err)
	}
}

func flip(b []byte) []byte {
	c := bytes.Clone(b)
	c[10] ^= 0x01
	return c
}

// Go's messages are byte-for-byte what libsignal's parser reads back: the peer parses
// the PreKeySignalMessage fields, and our re-encoding of libsignal's messages is
// identical to libsignal's bytes (same field order, same varints).
func TestInteropEncoding(t *testing.T) {
	peer := libsignal.StartForTest(t)
	if _, err := peer.NewParty(libsignal.NewPartyArgs{Party: "enc-bob"}); err != nil {
		t.Fatal(err)
	}
	lb, err := peer.GenerateBundle("enc-bob", libsignal.BundleArgs{DeviceID: 1, PreKeyID: 9, SignedPreKeyID: 8, KyberPreKeyID: 7})
	if err != nil {
		t.Fatal(err)
	}
	alice := newParty(t, aliceID, 99)
	if err := alice.cipher.ProcessPreKeyBundle(ctx, bobID, fromLibBundle(t, lb), now); err != nil {
		t.Fatal(err)
	}
	m := alice.encrypt(t, &party{addr: bobID}, "x")
	var pk struct {
		RegistrationID uint32  `json:"registration_id"`
		PreKeyID       *uint32 `json:"prekey_id"`
		SignedPreKeyID uint32  `json:"signed_prekey_id"`
	}
	if err := peer.Call("parse_prekey_message", map[string]any{"message": m.Bytes()}, &pk); err != nil {
		t.Fatalf("libsignal parse_prekey_message(Go message) = %v", err)
	}
	if pk.RegistrationID != 99 || pk.PreKeyID == nil || *pk.PreKeyID != 9 || pk.SignedPreKeyID != 8 {
		t.Errorf("libsignal parsed Go's PreKeySignalMessage as %+v, want registration 99, prekey 9, signed 8", pk)
	}
	if b := m.Bytes(); b[0] != 0x44 {
		t.Errorf("version byte = %#x, want 0x44", b[0])
	}

	// libsignal -> Go: the bodies re-encode to the same bytes.
	if _, err := peer.NewParty(libsignal.NewPartyArgs{Party: "enc-alice"}); err != nil {
		t.Fatal(err)
	}
	bob := newParty(t, bobID, 5)
	if err := peer.ProcessBundle("enc-alice", toLib(bobID), toLibBundle(bob.bundle(t, 1, 2, 3, true))); err != nil {
		t.Fatal(err)
	}
	lm, err := peer.Encrypt("enc-alice", toLib(bobID), []byte("y"))
	if err != nil {
		t.Fatal(err)
	}
	var pre proto.PreKeySignalMessage
	if err := pre.Unmarshal(lm.Ciphertext[1:]); err != nil {
		t.Fatalf("Unmarshal(libsignal PreKeySignalMessage) = %v", err)
	}
	if got := pre.Marshal([]byte{lm.Ciphertext[0]}); !bytes.Equal(got, lm.Ciphertext) {
		t.Errorf("re-encoded libsignal PreKeySignalMessage differs:\n got %x\nwant %x", got, lm.Ciphertext)
	}
	// libsignal answers Go's reply with a SignalMessage.
	if _, err := bob.cipher.Decrypt(ctx, aliceID, fromLibMessage(t, lm)); err != nil {
		t.Fatalf("Go Decrypt(libsignal PreKey message) = %v", err)
	}
	gr := bob.encrypt(t, &party{addr: aliceID}, "z")
	if _, err := peer.Decrypt("enc-alice", toLib(bobID), toLibMessage(gr)); err != nil {
		t.Fatalf("libsignal Decrypt(Go reply) = %v", err)
	}
	ls, err := peer.Encrypt("enc-alice", toLib(bobID), []byte("w"))
	if err != nil || ls.Type != libsignal.TypeWhisper {
		t.Fatalf("libsignal Encrypt after reply = %v, %v", ls.Type, err)
	}
	rec, _ := bob.store.LoadSession(ctx, aliceID)
	const dist = "dddddddd-0000-4000-8000-000000000009"
	skdm, err := peer.SenderKeyCreate("enc-alice", toLib(aliceID), dist)
	if err != nil {
		t.Fatal(err)
	}
	skm, err := peer.GroupEncrypt("enc-alice", toLib(aliceID), dist, []byte("group"))
	if err != nil {
		t.Fatal(err)
	}
	writeTestdata(t, map[string][]byte{
		"senderkeydistributionmessage/libsignal-0.90.0.bin": skdm,
		"senderkeymessage/libsignal-0.90.0.bin":             skm,
		"prekeysignalmessage/libsignal-0.90.0.bin":          lm.Ciphertext,
		"prekeysignalmessage/bastion.bin":                   m.Bytes(),
		"signalmessage/libsignal-0.90.0.bin":                ls.Ciphertext,
		"signalmessage/bastion.bin":                         gr.Bytes(),
		"record/bastion.bin":                                rec.Bytes(),
	})

	var sm proto.SignalMessage
	inner := pre.Message
	if err := sm.Unmarshal(inner[1 : len(inner)-8]); err != nil {
		t.Fatalf("Unmarshal(libsignal SignalMessage) = %v", err)
	}
	if got := sm.Marshal([]byte{inner[0]}); !bytes.Equal(got, inner[:len(inner)-8]) {
		t.Errorf("re-encoded libsignal SignalMessage differs:\n got %x\nwant %x", got, inner[:len(inner)-8])
	}
}

// writeTestdata refreshes the fuzz seeds in testdata/ from a live interop run when
// BASTION_UPDATE_TESTDATA=1.
func writeTestdata(t *testing.T, files map[string][]byte) {
	if os.Getenv("BASTION_UPDATE_TESTDATA") != "1" {
		return
	}
	for name, b := range files {
		p := filepath.Join("testdata", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Go and libsignal start sessions with each other at the same time; each keeps both
// states, and they converge whichever message arrives first.
func TestInteropSimultaneousInitiation(t *testing.T) {
	peer := libsignal.StartForTest(t)
	const name = "bob-simultaneous"
	if _, err := peer.NewParty(libsignal.NewPartyArgs{Party: name}); err != nil {
		t.Fatal(err)
	}
	lb, err := peer.GenerateBundle(name, libsignal.BundleArgs{DeviceID: 1, PreKeyID: 1, SignedPreKeyID: 2, KyberPreKeyID: 3})
	if err != nil {
		t.Fatal(err)
	}
	alice := newParty(t, aliceID, 31)
	if err := alice.cipher.ProcessPreKeyBundle(ctx, bobID, fromLibBundle(t, lb), now); err != nil {
		t.Fatal(err)
	}
	if err := peer.ProcessBundle(name, toLib(aliceID), toLibBundle(alice.bundle(t, 4, 5, 6, true))); err != nil {
		t.Fatal(err)
	}
	goSide, libSide := goEnd{alice}, libEnd{peer, name}
	ma := goSide.send(t, bobID, "from go")
	mb := libSide.send(t, aliceID, "from libsignal")
	if ma.Type != libsignal.TypePreKey || mb.Type != libsignal.TypePreKey {
		t.Fatalf("types = %d, %d, want PreKey", ma.Type, mb.Type)
	}
	mustRecv(t, libSide, aliceID, ma, "from go")
	mustRecv(t, goSide, bobID, mb, "from libsignal")
	for i := range 3 {
		m := goSide.send(t, bobID, fmt.Sprint("go ", i))
		mustRecv(t, libSide, aliceID, m, fmt.Sprint("go ", i))
		r := libSide.send(t, aliceID, fmt.Sprint("lib ", i))
		mustRecv(t, goSide, bobID, r, fmt.Sprint("lib ", i))
	}
}

// libsignal resets the session (a new bundle) in the middle of a conversation; Go
// follows, and a message still in flight on the old session decrypts from the archive
// (which makes the old state current again, on both sides, as libsignal does).
func TestInteropSessionReset(t *testing.T) {
	peer := libsignal.StartForTest(t)
	const name = "alice-reset"
	if _, err := peer.NewParty(libsignal.NewPartyArgs{Party: name}); err != nil {
		t.Fatal(err)
	}
	bob := newParty(t, bobID, 8)
	libSide, goSide := libEnd{peer, name}, goEnd{bob}
	if err := peer.ProcessBundle(name, toLib(bobID), toLibBundle(bob.bundle(t, 1, 2, 3, true))); err != nil {
		t.Fatal(err)
	}
	mustRecv(t, goSide, aliceID, libSide.send(t, bobID, "old 1"), "old 1")
	mustRecv(t, libSide, bobID, goSide.send(t, aliceID, "reply"), "reply")
	inFlight := libSide.send(t, bobID, "old 2")

	if err := peer.ProcessBundle(name, toLib(bobID), toLibBundle(bob.bundle(t, 11, 12, 13, true))); err != nil {
		t.Fatal(err)
	}
	fresh := libSide.send(t, bobID, "new 1")
	if fresh.Type != libsignal.TypePreKey {
		t.Fatalf("after reset: type %d, want PreKey", fresh.Type)
	}
	mustRecv(t, goSide, aliceID, fresh, "new 1")
	mustRecv(t, goSide, aliceID, inFlight, "old 2")
	mustRecv(t, libSide, bobID, goSide.send(t, aliceID, "on new"), "on new")
}

// A libsignal identity private key gives the same identity key here.
func TestInteropIdentityKey(t *testing.T) {
	peer := libsignal.StartForTest(t)
	if _, err := peer.NewParty(libsignal.NewPartyArgs{Party: "ident"}); err != nil {
		t.Fatal(err)
	}
	id, err := peer.Identity("ident")
	if err != nil {
		t.Fatal(err)
	}
	ours, err := protocol.NewIdentityKeyPairFromPrivate(id.IdentityPrivate)
	if err != nil {
		t.Fatalf("NewIdentityKeyPairFromPrivate(libsignal key) = %v", err)
	}
	if got := ours.PublicKey().Bytes(); !bytes.Equal(got, id.IdentityKey) {
		t.Errorf("identity key = %x, libsignal's = %x", got, id.IdentityKey)
	}
	back, err := protocol.NewIdentityKeyPair(ours.Bytes())
	if err != nil || !back.PublicKey().Equal(ours.PublicKey()) {
		t.Errorf("NewIdentityKeyPair(Bytes()) = %v", err)
	}
}
