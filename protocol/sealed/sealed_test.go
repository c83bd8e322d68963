package sealed

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/certificate"
	"github.com/bastionchat/bastion/protocol/curve"
)

// world is a trust root and server key, and two devices with certificates.
type world struct {
	root, server *curve.PrivateKey
	serverCert   []byte
	expires      time.Time
	now          time.Time
	alice, bob   *device
}

type device struct {
	addr     protocol.Address
	identity *protocol.IdentityKeyPair
	cert     []byte
}

func mustKey(t testing.TB) *curve.PrivateKey {
	t.Helper()
	k, err := curve.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{root: mustKey(t), server: mustKey(t),
		now: time.UnixMilli(1_750_000_000_000), expires: time.UnixMilli(1_750_000_000_000).Add(24 * time.Hour)}
	var err error
	if w.serverCert, err = certificate.NewServer(w.root, 1, w.server.PublicKey(), nil); err != nil {
		t.Fatal(err)
	}
	w.alice = w.newDevice(t, uuid.New(), 1)
	w.bob = w.newDevice(t, uuid.New(), 2)
	return w
}

func (w *world) newDevice(t testing.TB, account uuid.UUID, id uint32) *device {
	t.Helper()
	ik, err := protocol.GenerateIdentityKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &device{addr: protocol.Address{Name: account.String(), DeviceID: id}, identity: ik,
		cert: w.issue(t, account, id, ik.PublicKey())}
}

func (w *world) issue(t testing.TB, account uuid.UUID, id uint32, key *curve.PublicKey) []byte {
	t.Helper()
	c, err := certificate.IssueSender(w.server, w.serverCert, account, id, key, w.expires, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	w := newWorld(t)
	tests := []struct {
		name  string
		typ   protocol.MessageType
		body  []byte
		group []byte
		hint  ContentHint
	}{
		{"signal", protocol.TypeSignal, bytes.Repeat([]byte{1}, 256), nil, HintDefault},
		{"prekey", protocol.TypePreKey, bytes.Repeat([]byte{2}, 1500), nil, HintDefault},
		{"senderkey with group", TypeSenderKey, []byte("group body"), []byte("group-id-32-bytes..............."), HintResendable},
		{"plaintext", TypePlaintext, []byte("retry"), nil, HintImplicit},
		{"empty body", protocol.TypeSignal, []byte{}, nil, HintDefault},
		{"unknown hint kept", protocol.TypeSignal, []byte("x"), nil, 77},
		{"large body", protocol.TypeSignal, bytes.Repeat([]byte{3}, 90_000), nil, HintDefault},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct, err := encrypt(nil, w.bob.identity.PublicKey(), w.alice.identity, w.alice.cert, tt.typ, tt.body, tt.group, tt.hint)
			if err != nil {
				t.Fatalf("Encrypt = %v", err)
			}
			if ct[0] != Version {
				t.Errorf("Encrypt()[0] = %#x, want %#x", ct[0], Version)
			}
			c, err := DecryptFor(ct, w.bob.identity, w.bob.addr, w.root.PublicKey(), w.now)
			if err != nil {
				t.Fatalf("DecryptFor = %v", err)
			}
			if c.Sender != w.alice.addr || c.Type != tt.typ || !bytes.Equal(c.Body, tt.body) ||
				!bytes.Equal(c.GroupID, tt.group) || c.ContentHint != tt.hint ||
				!bytes.Equal(c.Certificate.Bytes(), w.alice.cert) {
				t.Errorf("DecryptFor = {%v %d %d bytes group %q hint %d}, want {%v %d %d bytes group %q hint %d}",
					c.Sender, c.Type, len(c.Body), c.GroupID, c.ContentHint,
					w.alice.addr, tt.typ, len(tt.body), tt.group, tt.hint)
			}
		})
	}
}

// Two seals of the same message differ (fresh ephemeral key) and neither contains the
// sender's identity key, account id or certificate in the clear.
func TestNothingInTheClear(t *testing.T) {
	w := newWorld(t)
	body := []byte("hello")
	a, err := Encrypt(nil, w.bob.identity.PublicKey(), w.alice.identity, w.alice.cert, protocol.TypeSignal, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encrypt(nil, w.bob.identity.PublicKey(), w.alice.identity, w.alice.cert, protocol.TypeSignal, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Errorf("two seals of one message are equal")
	}
	id, _ := uuid.Parse(w.alice.addr.Name)
	for _, secret := range [][]byte{w.alice.identity.PublicKey().Bytes(), w.alice.identity.PublicKey().U(),
		[]byte(w.alice.addr.Name), id[:], w.alice.cert[:40], body} {
		if bytes.Contains(a, secret) {
			t.Errorf("sealed message contains %x in the clear", secret)
		}
	}
}

func TestDecryptRejects(t *testing.T) {
	w := newWorld(t)
	seal := func(from *device, cert []byte, to *device) []byte {
		t.Helper()
		ct, err := Encrypt(nil, to.identity.PublicKey(), from.identity, cert, protocol.TypeSignal, []byte("hi"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	good := seal(w.alice, w.alice.cert, w.bob)
	// mallory seals under her own key with Alice's certificate: the key check catches it.
	mallory := w.newDevice(t, uuid.New(), 1)
	pasted := forgeWithCert(t, mallory.identity, w.alice.cert, w.bob.identity.PublicKey())

	expiredWorld := *w
	expiredWorld.expires = w.now.Add(-time.Millisecond)
	expiredCert := expiredWorld.issue(t, uuid.MustParse(w.alice.addr.Name), 1, w.alice.identity.PublicKey())

	otherRoot := newWorld(t)
	foreign := otherRoot.issue(t, uuid.MustParse(w.alice.addr.Name), 1, w.alice.identity.PublicKey())

	tests := []struct {
		name  string
		ct    []byte
		local *protocol.IdentityKeyPair
		root  *curve.PublicKey
	}{
		{"empty", nil, w.bob.identity, w.root.PublicKey()},
		{"version only", []byte{Version}, w.bob.identity, w.root.PublicKey()},
		{"version 0x10", append([]byte{0x10}, good[1:]...), w.bob.identity, w.root.PublicKey()},
		{"version 0x22", append([]byte{0x22}, good[1:]...), w.bob.identity, w.root.PublicKey()},
		{"truncated", good[:len(good)-1], w.bob.identity, w.root.PublicKey()},
		{"trailing byte", append(append([]byte{}, good...), 0), w.bob.identity, w.root.PublicKey()},
		{"wrong recipient", good, w.alice.identity, w.root.PublicKey()},
		{"wrong trust root", good, w.bob.identity, mustKey(t).PublicKey()},
		{"nil trust root", good, w.bob.identity, nil},
		{"nil identity", good, nil, w.root.PublicKey()},
		{"certificate for another key", pasted, w.bob.identity, w.root.PublicKey()},
		{"expired certificate", seal(w.alice, expiredCert, w.bob), w.bob.identity, w.root.PublicKey()},
		{"certificate from another service", seal(w.alice, foreign, w.bob), w.bob.identity, w.root.PublicKey()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Decrypt(tt.ct, tt.local, tt.root, w.now)
			if err != ErrInvalid { // the same value, never wrapped: no detail to leak
				t.Errorf("Decrypt(%s) = %v, %v, want ErrInvalid itself", tt.name, c, err)
			}
		})
	}

	// Every single-bit change anywhere in the message is refused, the same way.
	for i := range good {
		bad := append([]byte{}, good...)
		bad[i] ^= 0x04
		if _, err := Decrypt(bad, w.bob.identity, w.root.PublicKey(), w.now); err != ErrInvalid {
			t.Fatalf("Decrypt(byte %d flipped) = %v, want ErrInvalid", i, err)
		}
	}
}

// forgeWithCert seals like Encrypt but without its certificate check, as an attacker's
// own code would.
func forgeWithCert(t *testing.T, sender *protocol.IdentityKeyPair, cert []byte, to *curve.PublicKey) []byte {
	t.Helper()
	var usmc []byte
	usmc = appendUint(usmc, fieldType, 2)
	usmc = appendBytes(usmc, fieldCertificate, cert)
	usmc = appendBytes(usmc, fieldContent, []byte("hi"))
	eph := mustKey(t)
	ek, err := ephemeralKeys(eph, to, to, eph.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	static := seal(ek.cipher, ek.mac, sender.PublicKey().Bytes())
	sk, err := staticKeys(sender.PrivateKey(), to, ek.chain, static)
	if err != nil {
		t.Fatal(err)
	}
	out := []byte{Version}
	out = appendBytes(out, fieldEphemeral, eph.PublicKey().Bytes())
	out = appendBytes(out, fieldEncryptedStatic, static)
	return appendBytes(out, fieldEncryptedMessage, seal(sk.cipher, sk.mac, usmc))
}

func TestSelfSend(t *testing.T) {
	w := newWorld(t)
	// Bob's second device shares his identity key; a certificate for Bob's own device 2
	// is the one a self-send carries.
	ct, err := Encrypt(nil, w.bob.identity.PublicKey(), w.bob.identity, w.bob.cert, protocol.TypeSignal, []byte("me"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecryptFor(ct, w.bob.identity, w.bob.addr, w.root.PublicKey(), w.now); !errors.Is(err, ErrSelfSend) {
		t.Errorf("DecryptFor(from self) = %v, want ErrSelfSend", err)
	}
	other := protocol.Address{Name: w.bob.addr.Name, DeviceID: 3}
	if c, err := DecryptFor(ct, w.bob.identity, other, w.root.PublicKey(), w.now); err != nil || c.Sender != w.bob.addr {
		t.Errorf("DecryptFor(from a sibling device) = %v, %v, want sender %v", c, err, w.bob.addr)
	}
	if _, err := DecryptFor(ct, w.bob.identity, w.bob.addr, mustKey(t).PublicKey(), w.now); !errors.Is(err, ErrInvalid) {
		t.Errorf("DecryptFor(from self, wrong root) = %v, want ErrInvalid (authentication first)", err)
	}
}

func TestEncryptRejects(t *testing.T) {
	w := newWorld(t)
	bobKey := w.bob.identity.PublicKey()
	tests := []struct {
		name string
		to   *curve.PublicKey
		from *protocol.IdentityKeyPair
		cert []byte
		typ  protocol.MessageType
	}{
		{"certificate for another key", bobKey, w.alice.identity, w.bob.cert, protocol.TypeSignal},
		{"bad certificate", bobKey, w.alice.identity, w.alice.cert[1:], protocol.TypeSignal},
		{"type 0", bobKey, w.alice.identity, w.alice.cert, 0},
		{"type 1", bobKey, w.alice.identity, w.alice.cert, 1},
		{"type 4", bobKey, w.alice.identity, w.alice.cert, 4},
		{"nil recipient", nil, w.alice.identity, w.alice.cert, protocol.TypeSignal},
		{"nil sender", bobKey, nil, w.alice.cert, protocol.TypeSignal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Encrypt(nil, tt.to, tt.from, tt.cert, tt.typ, []byte("x"), nil); err == nil {
				t.Errorf("Encrypt(%s) = nil error, want an error", tt.name)
			}
		})
	}
}

func TestParseContentRejects(t *testing.T) {
	w := newWorld(t)
	cert := appendBytes(nil, fieldCertificate, w.alice.cert)
	body := appendBytes(nil, fieldContent, []byte("b"))
	typ := func(v uint64) []byte { return appendUint(nil, fieldType, v) }
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"minimal", cat(typ(2), cert, body), true},
		{"empty body", cat(typ(2), cert, appendBytes(nil, fieldContent, nil)), true},
		{"prekey is 1 on the wire", cat(typ(1), cert, body), true},
		{"type 3 on the wire", cat(typ(3), cert, body), false},
		{"type 0", cat(typ(0), cert, body), false},
		{"missing type", cat(cert, body), false},
		{"missing certificate", cat(typ(2), body), false},
		{"missing body", cat(typ(2), cert), false},
		{"bad certificate", cat(typ(2), appendBytes(nil, fieldCertificate, w.alice.cert[2:]), body), false},
		{"unknown field", cat(typ(2), cert, body, appendUint(nil, 6, 1)), false},
		{"repeated body", cat(typ(2), cert, body, body), false},
		{"hint beyond uint32", cat(typ(2), cert, body, appendUint(nil, fieldContentHint, 1<<32)), false},
		{"type as bytes", cat(appendBytes(nil, fieldType, []byte{2}), cert, body), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseContent(tt.in)
			if (err == nil) != tt.ok {
				t.Errorf("parseContent(%s) = %v, want ok %v", tt.name, err, tt.ok)
			}
		})
	}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
