package sealed_test

// Interop with libsignal 0.90.0 through the Node peer in interop/libsignal: Go seals and
// libsignal opens, including the inner PQXDH/Double Ratchet messages of a Go session,
// and the reverse; both refuse the same bad messages. Skipped when the peer is not
// installed, a failure with BASTION_REQUIRE_INTEROP=1.

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/interop/libsignal"
	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/certificate"
	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/sealed"
)

var ctx = context.Background()

// service is a trust root and a server key, as a Bastion server holds them.
type service struct {
	root, server *curve.PrivateKey
	serverCert   []byte
}

func newService(t *testing.T) *service {
	t.Helper()
	s := &service{root: genKey(t), server: genKey(t)}
	var err error
	if s.serverCert, err = certificate.NewServer(s.root, 5, s.server.PublicKey(), nil); err != nil {
		t.Fatal(err)
	}
	return s
}

func genKey(t *testing.T) *curve.PrivateKey {
	t.Helper()
	k, err := curve.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (s *service) issue(t *testing.T, a protocol.Address, key *curve.PublicKey, expires time.Time) []byte {
	t.Helper()
	c, err := certificate.IssueSender(s.server, s.serverCert, uuid.MustParse(a.Name), a.DeviceID, key, expires, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// issueLib has libsignal issue the certificate, under the same keys.
func (s *service) issueLib(t *testing.T, p *libsignal.Peer, a protocol.Address, key []byte, expires time.Time) []byte {
	t.Helper()
	var r struct {
		SenderCertificate []byte `json:"sender_certificate"`
	}
	err := p.Call("sender_certificate", map[string]any{
		"trust_root_private": s.root.Bytes(), "server_key_private": s.server.Bytes(), "server_key_id": 5,
		"sender_uuid": a.Name, "sender_device_id": a.DeviceID, "sender_identity_key": key,
		"expiration": expires.UnixMilli(),
	}, &r)
	if err != nil {
		t.Fatalf("libsignal sender_certificate = %v", err)
	}
	return r.SenderCertificate
}

type libOpened struct {
	Plaintext      []byte `json:"plaintext"`
	SenderUUID     string `json:"sender_uuid"`
	SenderDeviceID uint32 `json:"sender_device_id"`
}

// libOpen has libsignal party open a sealed message fully (sealed layer, certificate,
// then the inner session message), as the device local.
func libOpen(p *libsignal.Peer, party string, local protocol.Address, ct []byte, root *curve.PublicKey, now time.Time) (libOpened, error) {
	var r libOpened
	err := p.Call("sealed_decrypt", map[string]any{
		"party": party, "ciphertext": ct, "trust_root": root.Bytes(), "timestamp": now.UnixMilli(),
		"local_uuid": local.Name, "local_device_id": local.DeviceID,
	}, &r)
	return r, err
}

type libUSMC struct {
	MsgType           int    `json:"msg_type"`
	Contents          []byte `json:"contents"`
	SenderCertificate []byte `json:"sender_certificate"`
	ContentHint       int    `json:"content_hint"`
	GroupID           []byte `json:"group_id"`
}

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

// A whole conversation through sealed sender: a Go device starts a session with a
// libsignal device and seals every message; libsignal opens them and answers sealed.
func TestInteropConversation(t *testing.T) {
	p := libsignal.StartForTest(t)
	svc := newService(t)
	now := time.Now()
	expires := now.Add(24 * time.Hour)

	aliceAddr := protocol.Address{Name: uuid.NewString(), DeviceID: 1}
	bobAddr := protocol.Address{Name: uuid.NewString(), DeviceID: 2}
	aliceID, err := protocol.GenerateIdentityKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	alice := &protocol.Cipher{Local: aliceAddr, Stores: protocol.NewMemoryStore(aliceID, 11).Stores()}
	aliceCert := svc.issue(t, aliceAddr, aliceID.PublicKey(), expires)

	bob, err := p.NewParty(libsignal.NewPartyArgs{Party: "bob", RegistrationID: 22})
	if err != nil {
		t.Fatal(err)
	}
	bobKey, err := curve.NewPublicKey(bob.IdentityKey)
	if err != nil {
		t.Fatal(err)
	}
	bobCert := svc.issueLib(t, p, bobAddr, bob.IdentityKey, expires)
	bundle, err := p.GenerateBundle("bob", libsignal.BundleArgs{DeviceID: 2, PreKeyID: 1, SignedPreKeyID: 1, KyberPreKeyID: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.ProcessPreKeyBundle(ctx, bobAddr, fromLibBundle(t, bundle), now); err != nil {
		t.Fatal(err)
	}

	goSends := func(text string, wantType protocol.MessageType) {
		t.Helper()
		m, err := alice.Encrypt(ctx, bobAddr, []byte(text), now)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type() != wantType {
			t.Fatalf("Encrypt(%q).Type() = %d, want %d", text, m.Type(), wantType)
		}
		ct, err := sealed.Encrypt(nil, bobKey, aliceID, aliceCert, m.Type(), m.Bytes(), nil)
		if err != nil {
			t.Fatalf("sealed.Encrypt = %v", err)
		}
		got, err := libOpen(p, "bob", bobAddr, ct, svc.root.PublicKey(), now)
		if err != nil {
			t.Fatalf("libsignal sealed_decrypt(%q) = %v", text, err)
		}
		if string(got.Plaintext) != text || got.SenderUUID != aliceAddr.Name || got.SenderDeviceID != aliceAddr.DeviceID {
			t.Errorf("libsignal sealed_decrypt = %q from %s.%d, want %q from %s", got.Plaintext,
				got.SenderUUID, got.SenderDeviceID, text, aliceAddr)
		}
	}
	libSends := func(text string, wantType protocol.MessageType) {
		t.Helper()
		var r struct {
			Ciphertext []byte `json:"ciphertext"`
		}
		err := p.Call("sealed_encrypt", map[string]any{
			"party": "bob", "address": libsignal.Address{Name: aliceAddr.Name, DeviceID: aliceAddr.DeviceID},
			"sender_certificate": bobCert, "plaintext": []byte(text),
		}, &r)
		if err != nil {
			t.Fatalf("libsignal sealed_encrypt = %v", err)
		}
		if r.Ciphertext[0] != sealed.Version {
			t.Errorf("libsignal's version byte = %#x, want %#x", r.Ciphertext[0], sealed.Version)
		}
		c, err := sealed.DecryptFor(r.Ciphertext, aliceID, aliceAddr, svc.root.PublicKey(), now)
		if err != nil {
			t.Fatalf("sealed.DecryptFor(libsignal's %q) = %v", text, err)
		}
		if c.Sender != bobAddr || c.Type != wantType || !bytes.Equal(c.Certificate.Bytes(), bobCert) {
			t.Errorf("sealed.DecryptFor = sender %v type %d, want %v type %d", c.Sender, c.Type, bobAddr, wantType)
		}
		m, err := protocol.ParseCiphertextMessage(c.Type, c.Body)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := alice.Decrypt(ctx, c.Sender, m)
		if err != nil {
			t.Fatalf("Decrypt(inner of %q) = %v", text, err)
		}
		if string(pt) != text {
			t.Errorf("Decrypt(inner) = %q, want %q", pt, text)
		}
	}

	goSends("first, sealed, with PQXDH", protocol.TypePreKey)
	goSends("second before any answer", protocol.TypePreKey)
	libSends("answer from libsignal", protocol.TypeSignal)
	goSends("ratchet step", protocol.TypeSignal)
	goSends("same chain", protocol.TypeSignal)
	libSends("and back again", protocol.TypeSignal)
}

// libsignal's view of what Go sealed: the UnidentifiedSenderMessageContent, field by field.
func TestInteropGoSealsContent(t *testing.T) {
	p := libsignal.StartForTest(t)
	svc := newService(t)
	now := time.Now()
	recipient, err := p.NewParty(libsignal.NewPartyArgs{Party: "r"})
	if err != nil {
		t.Fatal(err)
	}
	rKey, _ := curve.NewPublicKey(recipient.IdentityKey)
	senderID, _ := protocol.GenerateIdentityKeyPair(nil)
	senderAddr := protocol.Address{Name: uuid.NewString(), DeviceID: 127}
	cert := svc.issue(t, senderAddr, senderID.PublicKey(), now.Add(time.Hour))

	tests := []struct {
		name  string
		typ   protocol.MessageType
		body  []byte
		group []byte
	}{
		{"signal", protocol.TypeSignal, bytes.Repeat([]byte{0xaa}, 256), nil},
		{"prekey", protocol.TypePreKey, []byte("prekey body"), nil},
		{"sender key with group", sealed.TypeSenderKey, []byte("group body"), bytes.Repeat([]byte{7}, 32)},
		{"plaintext content", sealed.TypePlaintext, []byte("plain"), nil},
		{"empty body", protocol.TypeSignal, []byte{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct, err := sealed.Encrypt(nil, rKey, senderID, cert, tt.typ, tt.body, tt.group)
			if err != nil {
				t.Fatal(err)
			}
			var u libUSMC
			if err := p.Call("sealed_decrypt_to_usmc", map[string]any{"party": "r", "ciphertext": ct}, &u); err != nil {
				t.Fatalf("libsignal sealed_decrypt_to_usmc = %v", err)
			}
			if u.MsgType != int(tt.typ) || !bytes.Equal(u.Contents, tt.body) || !bytes.Equal(u.SenderCertificate, cert) ||
				u.ContentHint != 0 || !bytes.Equal(u.GroupID, tt.group) {
				t.Errorf("libsignal sees type %d, %d bytes, hint %d, group %x; want type %d, %d bytes, hint 0, group %x",
					u.MsgType, len(u.Contents), u.ContentHint, u.GroupID, tt.typ, len(tt.body), tt.group)
			}
		})
	}
}

// Both implementations refuse the same bad messages: expired certificate, wrong trust
// root, a flipped bit, a message to someone else, and a message from the device itself.
func TestInteropRejections(t *testing.T) {
	p := libsignal.StartForTest(t)
	svc := newService(t)
	now := time.Now()
	bobAddr := protocol.Address{Name: uuid.NewString(), DeviceID: 1}
	bob, err := p.NewParty(libsignal.NewPartyArgs{Party: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	bobKey, _ := curve.NewPublicKey(bob.IdentityKey)
	full, err := p.Identity("bob")
	if err != nil {
		t.Fatal(err)
	}
	bobID, err := protocol.NewIdentityKeyPairFromPrivate(full.IdentityPrivate)
	if err != nil {
		t.Fatal(err)
	}
	aliceID, _ := protocol.GenerateIdentityKeyPair(nil)
	aliceAddr := protocol.Address{Name: uuid.NewString(), DeviceID: 1}
	good := svc.issue(t, aliceAddr, aliceID.PublicKey(), now.Add(time.Hour))
	expired := svc.issue(t, aliceAddr, aliceID.PublicKey(), now.Add(-time.Millisecond))
	seal := func(from *protocol.IdentityKeyPair, cert []byte, to *curve.PublicKey) []byte {
		ct, err := sealed.Encrypt(nil, to, from, cert, protocol.TypeSignal, []byte("junk: never reached"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	flipped := seal(aliceID, good, bobKey)
	flipped[len(flipped)-3] ^= 1
	other := genKey(t).PublicKey()

	tests := []struct {
		name     string
		ct       []byte
		root     *curve.PublicKey
		libCode  string // libsignal's ErrorCode, where it names one
		libMsg   string // part of libsignal's message: the reason it refused
		selfSend bool
	}{
		{"expired certificate", seal(aliceID, expired, bobKey), svc.root.PublicKey(), "", "trust root validation failed", false},
		{"wrong trust root", seal(aliceID, good, bobKey), other, "", "trust root validation failed", false},
		{"flipped bit", flipped, svc.root.PublicKey(), "", "failed to decrypt sealed sender v1 message contents", false},
		{"sealed to another key", seal(aliceID, good, other), svc.root.PublicKey(), "", "failed to decrypt sealed sender v1 message key", false},
		{"from this very device", seal(bobID, svc.issue(t, bobAddr, bobKey, now.Add(time.Hour)), bobKey), svc.root.PublicKey(), "SealedSenderSelfSend", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := libOpen(p, "bob", bobAddr, tt.ct, tt.root, now)
			var le *libsignal.Error
			if !errors.As(err, &le) {
				t.Fatalf("libsignal sealed_decrypt = %v, want a libsignal error", err)
			}
			if tt.libCode != "" && le.Code != tt.libCode {
				t.Errorf("libsignal error code = %q, want %q", le.Code, tt.libCode)
			}
			if !strings.Contains(le.Message, tt.libMsg) {
				t.Errorf("libsignal error = %q, want it to say %q", le.Message, tt.libMsg)
			}
			_, err = sealed.DecryptFor(tt.ct, bobID, bobAddr, tt.root, now)
			want := sealed.ErrInvalid
			if tt.selfSend {
				want = sealed.ErrSelfSend
			}
			if !errors.Is(err, want) {
				t.Errorf("sealed.DecryptFor = %v, want %v", err, want)
			}
		})
	}

	// libsignal seals under its own key with a certificate for someone else's key (it does
	// not check at sealing time); Go refuses to open it.
	mismatch := svc.issueLib(t, p, bobAddr, aliceID.PublicKey().Bytes(), now.Add(time.Hour))
	if _, err := p.NewParty(libsignal.NewPartyArgs{Party: "alice", IdentityPrivate: aliceID.PrivateKey().Bytes()}); err != nil {
		t.Fatal(err)
	}
	// Bob needs a session with Alice to seal to her; only the public bundle matters.
	spk, _ := protocol.GenerateSignedPreKey(nil, aliceID, 1, now)
	kpk, _ := protocol.GenerateKyberPreKey(nil, aliceID, 1, now)
	err = p.ProcessBundle("bob", libsignal.Address{Name: aliceAddr.Name, DeviceID: 1}, libsignal.Bundle{
		RegistrationID: 3, DeviceID: 1, SignedPreKeyID: 1, SignedPreKeyPublic: spk.PublicKey().Bytes(),
		SignedPreKeySignature: spk.Signature, KyberPreKeyID: 1, KyberPreKeyPublic: kpk.KeyPair.Public.Bytes(),
		KyberPreKeySignature: kpk.Signature, IdentityKey: aliceID.PublicKey().Bytes(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Ciphertext []byte `json:"ciphertext"`
	}
	if err := p.Call("sealed_encrypt", map[string]any{
		"party": "bob", "address": libsignal.Address{Name: aliceAddr.Name, DeviceID: 1},
		"sender_certificate": mismatch, "plaintext": []byte("forged"),
	}, &r); err != nil {
		t.Fatal(err)
	}
	if _, err := sealed.Decrypt(r.Ciphertext, aliceID, svc.root.PublicKey(), now); !errors.Is(err, sealed.ErrInvalid) {
		t.Errorf("sealed.Decrypt(certificate for another key) = %v, want ErrInvalid", err)
	}
	// libsignal refuses the same message (the party "alice" holds alice's identity).
	if err := p.Call("sealed_decrypt_to_usmc", map[string]any{"party": "alice", "ciphertext": r.Ciphertext}, nil); err == nil {
		t.Errorf("libsignal sealed_decrypt_to_usmc(certificate for another key) = nil error, want an error")
	}
}
