package certificate

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bastionchat/bastion/protocol/curve"
)

// chain is a trust root, a server key with its certificate, and one sender certificate.
type chain struct {
	root, server *curve.PrivateKey
	serverCert   []byte
	identity     *curve.PublicKey
	sender       uuid.UUID
	expires      time.Time
	cert         []byte
}

func genKey(t testing.TB) *curve.PrivateKey {
	t.Helper()
	k, err := curve.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newChain(t testing.TB) *chain {
	t.Helper()
	c := &chain{root: genKey(t), server: genKey(t), identity: genKey(t).PublicKey(),
		sender: uuid.New(), expires: time.UnixMilli(1_900_000_000_123)}
	var err error
	c.serverCert, err = NewServer(c.root, 7, c.server.PublicKey(), nil)
	if err != nil {
		t.Fatalf("NewServer = %v", err)
	}
	c.cert, err = IssueSender(c.server, c.serverCert, c.sender, 3, c.identity, c.expires, nil)
	if err != nil {
		t.Fatalf("IssueSender = %v", err)
	}
	return c
}

func TestIssueParseValidate(t *testing.T) {
	c := newChain(t)
	s, err := ParseSender(c.cert)
	if err != nil {
		t.Fatalf("ParseSender = %v", err)
	}
	if s.SenderUUID != c.sender || s.DeviceID != 3 || !s.IdentityKey.Equal(c.identity) ||
		!s.Expires.Equal(c.expires) || s.Signer.ID != 7 || !s.Signer.Key.Equal(c.server.PublicKey()) {
		t.Errorf("ParseSender = %+v, want sender %v device 3 expires %v server 7", s, c.sender, c.expires)
	}
	if !bytes.Equal(s.Bytes(), c.cert) {
		t.Errorf("Bytes() differs from the issued certificate")
	}
	if !bytes.Equal(s.Signer.Bytes(), c.serverCert) {
		t.Errorf("Signer.Bytes() differs from the server certificate")
	}
	s.Bytes()[0] ^= 1 // Bytes is a copy
	if !bytes.Equal(s.Bytes(), c.cert) {
		t.Errorf("Bytes() aliases the certificate")
	}

	other := genKey(t).PublicKey()
	tests := []struct {
		name string
		root *curve.PublicKey
		now  time.Time
		ok   bool
	}{
		{"valid", c.root.PublicKey(), c.expires.Add(-time.Hour), true},
		{"at expiry", c.root.PublicKey(), c.expires, true},
		{"within the last millisecond", c.root.PublicKey(), c.expires.Add(999 * time.Microsecond), true},
		{"expired", c.root.PublicKey(), c.expires.Add(time.Millisecond), false},
		{"wrong trust root", other, c.expires.Add(-time.Hour), false},
		{"server key as trust root", c.server.PublicKey(), c.expires.Add(-time.Hour), false},
		{"nil trust root", nil, c.expires.Add(-time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Validate(tt.root, tt.now)
			if (err == nil) != tt.ok {
				t.Fatalf("Validate(%s) = %v, want ok %v", tt.name, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrUntrusted) {
				t.Errorf("Validate(%s) = %v, want ErrUntrusted", tt.name, err)
			}
		})
	}
}

// The signed bytes are exactly the inner certificates: changing any byte of them breaks
// a signature, and changing the signatures does too.
func TestTamperedRejected(t *testing.T) {
	c := newChain(t)
	root := c.root.PublicKey()
	now := c.expires.Add(-time.Minute)
	s, _ := ParseSender(c.cert)

	// Re-sign helpers build certificates a forger could make with the wrong key.
	forgedServer, err := NewServer(genKey(t), 7, c.server.PublicKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cert func() []byte
	}{
		{"sender signature", func() []byte {
			return appendSigned(nil, s.certificate, flip(s.signature, 5))
		}},
		{"server signature", func() []byte {
			srv := appendSigned(nil, s.Signer.certificate, flip(s.Signer.signature, 0))
			inner := encodeSender(c.sender, 3, c.identity, uint64(c.expires.UnixMilli()), srv)
			return appendSigned(nil, inner, s.signature)
		}},
		{"server cert signed by another root", func() []byte {
			b, err := IssueSender(c.server, forgedServer, c.sender, 3, c.identity, c.expires, nil)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
		{"sender cert signed by another server key", func() []byte {
			inner := encodeSender(c.sender, 3, c.identity, uint64(c.expires.UnixMilli()), c.serverCert)
			sig, _ := genKey(t).Sign(nil, inner)
			return appendSigned(nil, inner, sig)
		}},
		{"device changed", func() []byte {
			inner := encodeSender(c.sender, 4, c.identity, uint64(c.expires.UnixMilli()), c.serverCert)
			return appendSigned(nil, inner, s.signature)
		}},
		{"expiry extended", func() []byte {
			inner := encodeSender(c.sender, 3, c.identity, uint64(c.expires.UnixMilli())+1, c.serverCert)
			return appendSigned(nil, inner, s.signature)
		}},
		{"identity changed", func() []byte {
			inner := encodeSender(c.sender, 3, genKey(t).PublicKey(), uint64(c.expires.UnixMilli()), c.serverCert)
			return appendSigned(nil, inner, s.signature)
		}},
		{"account changed", func() []byte {
			inner := encodeSender(uuid.New(), 3, c.identity, uint64(c.expires.UnixMilli()), c.serverCert)
			return appendSigned(nil, inner, s.signature)
		}},
		{"revoked server id", func() []byte {
			var cert []byte
			cert = appendUint(cert, fieldServerID, 0xDEADC357)
			cert = appendBytes(cert, fieldServerKey, c.server.PublicKey().Bytes())
			sig, _ := c.root.Sign(nil, cert)
			b, err := IssueSender(c.server, appendSigned(nil, cert, sig), c.sender, 3, c.identity, c.expires, nil)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSender(tt.cert())
			if err != nil {
				t.Fatalf("ParseSender = %v, want a parsed (but invalid) certificate", err)
			}
			if err := got.Validate(root, now); !errors.Is(err, ErrUntrusted) {
				t.Errorf("Validate(%s) = %v, want ErrUntrusted", tt.name, err)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	b = clone(b)
	b[i] ^= 0x01
	return b
}

func TestParseSenderRejects(t *testing.T) {
	c := newChain(t)
	id := c.identity.Bytes()
	exp := uint64(c.expires.UnixMilli())
	sig := make([]byte, 64)
	// build writes a sender certificate from the given inner fields (a valid-looking
	// signature of the right size; parsing never checks it).
	build := func(fields ...[]byte) []byte {
		return appendSigned(nil, bytes.Join(fields, nil), sig)
	}
	device := func(d uint64) []byte { return appendUint(nil, fieldSenderDevice, d) }
	expires := func(ms uint64) []byte {
		b := protowire.AppendTag(nil, fieldExpires, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, ms)
	}
	key := appendBytes(nil, fieldIdentityKey, id)
	signer := appendBytes(nil, fieldSigner, c.serverCert)
	uuidStr := func(s string) []byte { return appendBytes(nil, fieldUUIDString, []byte(s)) }
	good := uuidStr(c.sender.String())
	upper := []byte(c.sender.String())
	copy(upper, bytes.ToUpper(upper))

	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"canonical", build(device(3), expires(exp), key, signer, good), true},
		{"fields in another order", build(good, signer, key, expires(exp), device(3)), true},
		{"uuid as bytes", build(device(3), expires(exp), key, signer, appendBytes(nil, fieldUUIDBytes, c.sender[:])), true},
		{"max device", build(device(127), expires(exp), key, signer, good), true},
		{"empty", nil, false},
		{"no signature", appendBytes(nil, fieldCertificate, []byte{}), false},
		{"short signature", appendSigned(nil, good, sig[:63]), false},
		{"missing device", build(expires(exp), key, signer, good), false},
		{"missing expiry", build(device(3), key, signer, good), false},
		{"missing key", build(device(3), expires(exp), signer, good), false},
		{"missing signer", build(device(3), expires(exp), key, good), false},
		{"missing uuid", build(device(3), expires(exp), key, signer), false},
		{"device 0", build(device(0), expires(exp), key, signer, good), false},
		{"device 128", build(device(128), expires(exp), key, signer, good), false},
		{"expiry beyond int64", build(device(3), expires(1<<63), key, signer, good), false},
		{"phone number", build(appendBytes(nil, fieldSenderE164, []byte("+14155550100")), device(3), expires(exp), key, signer, good), false},
		{"signer by reference", build(device(3), expires(exp), key, appendUint(nil, fieldSignerID, 3), good), false},
		{"two uuids", build(device(3), expires(exp), key, signer, good, appendBytes(nil, fieldUUIDBytes, c.sender[:])), false},
		{"uppercase uuid", build(device(3), expires(exp), key, signer, uuidStr(string(upper))), false},
		{"braced uuid", build(device(3), expires(exp), key, signer, uuidStr("{"+c.sender.String()+"}")), false},
		{"nil uuid", build(device(3), expires(exp), key, signer, uuidStr(uuid.Nil.String())), false},
		{"15-byte uuid", build(device(3), expires(exp), key, signer, appendBytes(nil, fieldUUIDBytes, c.sender[:15])), false},
		{"repeated device", build(device(3), device(3), expires(exp), key, signer, good), false},
		{"unknown field", build(device(3), expires(exp), key, signer, good, appendUint(nil, 9, 1)), false},
		{"device as bytes", build(appendBytes(nil, fieldSenderDevice, []byte{3}), expires(exp), key, signer, good), false},
		{"expiry as varint", build(device(3), appendUint(nil, fieldExpires, exp), key, signer, good), false},
		{"bad key", build(device(3), expires(exp), appendBytes(nil, fieldIdentityKey, id[1:]), signer, good), false},
		{"bad signer", build(device(3), expires(exp), key, appendBytes(nil, fieldSigner, c.serverCert[1:]), good), false},
		{"truncated", c.cert[:len(c.cert)-1], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSender(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseSender(%s) = %v, want ok %v", tt.name, err, tt.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("ParseSender(%s) = %v, want ErrInvalid", tt.name, err)
				}
				return
			}
			if s.SenderUUID != c.sender {
				t.Errorf("ParseSender(%s).SenderUUID = %v, want %v", tt.name, s.SenderUUID, c.sender)
			}
		})
	}
}

func TestParseServerRejects(t *testing.T) {
	k := genKey(t).PublicKey().Bytes()
	sig := make([]byte, 64)
	build := func(fields ...[]byte) []byte { return appendSigned(nil, bytes.Join(fields, nil), sig) }
	id := appendUint(nil, fieldServerID, 9)
	key := appendBytes(nil, fieldServerKey, k)
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"good", build(id, key), true},
		{"id 0", build(appendUint(nil, fieldServerID, 0), key), true},
		{"missing id", build(key), false},
		{"missing key", build(id), false},
		{"id overflows", build(appendUint(nil, fieldServerID, 1<<32), key), false},
		{"bad key", build(id, appendBytes(nil, fieldServerKey, k[:32])), false},
		{"unknown field", build(id, key, appendUint(nil, 3, 1)), false},
		{"unknown outer field", append(build(id, key), appendUint(nil, 3, 1)...), false},
		{"outer field as varint", appendUint(nil, fieldCertificate, 1), false},
		{"group wire type", protowire.AppendTag(nil, 1, protowire.StartGroupType), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseServer(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseServer(%s) = %v, want ok %v", tt.name, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseServer(%s) = %v, want ErrInvalid", tt.name, err)
			}
		})
	}
}

func TestIssueRejects(t *testing.T) {
	c := newChain(t)
	tests := []struct {
		name    string
		key     *curve.PrivateKey
		cert    []byte
		sender  uuid.UUID
		device  uint32
		ident   *curve.PublicKey
		expires time.Time
	}{
		{"key not in certificate", genKey(t), c.serverCert, c.sender, 1, c.identity, c.expires},
		{"bad server certificate", c.server, c.serverCert[2:], c.sender, 1, c.identity, c.expires},
		{"nil account", c.server, c.serverCert, uuid.Nil, 1, c.identity, c.expires},
		{"device 0", c.server, c.serverCert, c.sender, 0, c.identity, c.expires},
		{"device 128", c.server, c.serverCert, c.sender, 128, c.identity, c.expires},
		{"nil identity", c.server, c.serverCert, c.sender, 1, nil, c.expires},
		{"nil server key", nil, c.serverCert, c.sender, 1, c.identity, c.expires},
		{"before 1970", c.server, c.serverCert, c.sender, 1, c.identity, time.Unix(-1, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := IssueSender(tt.key, tt.cert, tt.sender, tt.device, tt.ident, tt.expires, nil); err == nil {
				t.Errorf("IssueSender(%s) = nil error, want an error", tt.name)
			}
		})
	}
	if _, err := NewServer(c.root, 0xDEADC357, c.server.PublicKey(), nil); err == nil {
		t.Errorf("NewServer(revoked id) = nil error, want an error")
	}
	if _, err := NewServer(nil, 1, c.server.PublicKey(), nil); err == nil {
		t.Errorf("NewServer(nil root) = nil error, want an error")
	}
}

func TestServerValidate(t *testing.T) {
	root := genKey(t)
	b, err := NewServer(root, 1, genKey(t).PublicKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseServer(b)
	if err != nil {
		t.Fatalf("ParseServer = %v", err)
	}
	if err := s.Validate(root.PublicKey()); err != nil {
		t.Errorf("Validate(root) = %v, want nil", err)
	}
	if err := s.Validate(genKey(t).PublicKey()); !errors.Is(err, ErrUntrusted) {
		t.Errorf("Validate(other root) = %v, want ErrUntrusted", err)
	}
	if !bytes.Equal(s.Bytes(), b) {
		t.Errorf("Bytes() differs from NewServer's output")
	}
}

// Validate judges the signed bytes, not the exported fields a caller may have changed.
func TestValidateIgnoresChangedFields(t *testing.T) {
	c := newChain(t)
	root := c.root.PublicKey()
	s, err := ParseSender(c.cert)
	if err != nil {
		t.Fatal(err)
	}
	s.Expires = c.expires.Add(1000 * time.Hour)
	s.Signer.Key = genKey(t).PublicKey()
	s.Signer.ID = 0xDEADC357
	if err := s.Validate(root, c.expires.Add(-time.Hour)); err != nil {
		t.Errorf("Validate(changed Signer fields) = %v, want nil: the signed bytes are valid", err)
	}
	if err := s.Validate(root, c.expires.Add(time.Hour)); !errors.Is(err, ErrUntrusted) {
		t.Errorf("Validate(after expiry, Expires changed) = %v, want ErrUntrusted", err)
	}
	s.Signer = nil
	if err := s.Validate(root, c.expires.Add(-time.Hour)); err != nil {
		t.Errorf("Validate(Signer set to nil) = %v, want nil", err)
	}
	if err := (&Sender{}).Validate(root, c.expires); !errors.Is(err, ErrUntrusted) {
		t.Errorf("Validate(zero Sender) = %v, want ErrUntrusted", err)
	}
	if err := (&Server{}).Validate(root); !errors.Is(err, ErrUntrusted) {
		t.Errorf("Server{}.Validate = %v, want ErrUntrusted", err)
	}
}
