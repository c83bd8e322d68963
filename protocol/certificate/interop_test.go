package certificate

// Interop with libsignal 0.90.0 through the Node peer in interop/libsignal: certificates
// issued here validate there and the reverse, and both refuse the same bad ones. Skipped
// when the peer is not installed, a failure with BASTION_REQUIRE_INTEROP=1.

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/interop/libsignal"
	"github.com/bastionchat/bastion/protocol/curve"
)

type libCertArgs struct {
	TrustRootPrivate  []byte `json:"trust_root_private"`
	ServerKeyPrivate  []byte `json:"server_key_private"`
	ServerKeyID       uint32 `json:"server_key_id"`
	SenderUUID        string `json:"sender_uuid"`
	SenderDeviceID    uint32 `json:"sender_device_id"`
	SenderIdentityKey []byte `json:"sender_identity_key"`
	Expiration        int64  `json:"expiration"`
}

type libCertReply struct {
	ServerCertificate []byte `json:"server_certificate"`
	SenderCertificate []byte `json:"sender_certificate"`
}

// libValid asks libsignal whether cert validates under root at now. A certificate
// libsignal cannot even parse counts as invalid.
func libValid(t *testing.T, p *libsignal.Peer, cert []byte, root *curve.PublicKey, now time.Time) bool {
	t.Helper()
	var r struct {
		Valid bool `json:"valid"`
	}
	err := p.Call("sender_certificate_validate", map[string]any{
		"sender_certificate": cert, "trust_root": root.Bytes(), "time": now.UnixMilli(),
	}, &r)
	if err != nil {
		t.Logf("libsignal refused to parse: %v", err)
		return false
	}
	return r.Valid
}

// Certificates issued by Go validate in libsignal exactly when they validate here.
func TestInteropGoIssued(t *testing.T) {
	p := libsignal.StartForTest(t)
	c := newChain(t)
	root := c.root.PublicKey()
	s, err := ParseSender(c.cert)
	if err != nil {
		t.Fatal(err)
	}
	revoked := func() []byte {
		var cert []byte
		cert = appendUint(cert, fieldServerID, 0xDEADC357)
		cert = appendBytes(cert, fieldServerKey, c.server.PublicKey().Bytes())
		sig, _ := c.root.Sign(nil, cert)
		b, err := IssueSender(c.server, appendSigned(nil, cert, sig), c.sender, 3, c.identity, c.expires, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	otherRoot, err := NewServer(genKey(t), 7, c.server.PublicKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := IssueSender(c.server, otherRoot, c.sender, 3, c.identity, c.expires, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cert []byte
		root *curve.PublicKey
		now  time.Time
		want bool
	}{
		{"valid", c.cert, root, c.expires.Add(-time.Hour), true},
		{"at expiry", c.cert, root, c.expires, true},
		{"expired", c.cert, root, c.expires.Add(time.Millisecond), false},
		{"wrong trust root", c.cert, genKey(t).PublicKey(), c.expires.Add(-time.Hour), false},
		{"tampered signature", appendSigned(nil, s.certificate, flip(s.signature, 9)), root, c.expires.Add(-time.Hour), false},
		{"tampered device", appendSigned(nil, encodeSender(c.sender, 4, c.identity, uint64(c.expires.UnixMilli()), c.serverCert), s.signature), root, c.expires.Add(-time.Hour), false},
		{"server cert from another root", forged, root, c.expires.Add(-time.Hour), false},
		{"revoked server id", revoked, root, c.expires.Add(-time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := libValid(t, p, tt.cert, tt.root, tt.now); got != tt.want {
				t.Errorf("libsignal validate(%s) = %v, want %v", tt.name, got, tt.want)
			}
			s, err := ParseSender(tt.cert)
			got := err == nil && s.Validate(tt.root, tt.now) == nil
			if got != tt.want {
				t.Errorf("Go validate(%s) = %v (%v), want %v", tt.name, got, err, tt.want)
			}
		})
	}
}

// Certificates issued by libsignal parse and validate here, and libsignal encodes the
// signed bytes exactly as IssueSender and NewServer do.
func TestInteropLibsignalIssued(t *testing.T) {
	p := libsignal.StartForTest(t)
	rootKey, serverKey := genKey(t), genKey(t)
	identity := genKey(t).PublicKey()
	sender := uuid.New()
	expires := time.UnixMilli(1_800_000_000_777)
	var r libCertReply
	err := p.Call("sender_certificate", libCertArgs{
		TrustRootPrivate: rootKey.Bytes(), ServerKeyPrivate: serverKey.Bytes(), ServerKeyID: 0x1234567,
		SenderUUID: sender.String(), SenderDeviceID: 42, SenderIdentityKey: identity.Bytes(),
		Expiration: expires.UnixMilli(),
	}, &r)
	if err != nil {
		t.Fatalf("libsignal sender_certificate = %v", err)
	}
	s, err := ParseSender(r.SenderCertificate)
	if err != nil {
		t.Fatalf("ParseSender(libsignal certificate) = %v", err)
	}
	if s.SenderUUID != sender || s.DeviceID != 42 || !s.IdentityKey.Equal(identity) ||
		!s.Expires.Equal(expires) || s.Signer.ID != 0x1234567 || !s.Signer.Key.Equal(serverKey.PublicKey()) {
		t.Errorf("ParseSender(libsignal certificate) = %+v, want the issued fields", s)
	}
	if !bytes.Equal(s.Signer.Bytes(), r.ServerCertificate) {
		t.Errorf("embedded server certificate differs from libsignal's")
	}

	// Byte compatibility of the signed parts: our encoder writes the same bytes.
	if want := encodeSender(sender, 42, identity, uint64(expires.UnixMilli()), r.ServerCertificate); !bytes.Equal(s.certificate, want) {
		t.Errorf("libsignal's SenderCertificate.Certificate = %x, ours %x", s.certificate, want)
	}
	ours, err := NewServer(rootKey, 0x1234567, serverKey.PublicKey(), nil)
	if err != nil {
		t.Fatal(err)
	}
	oursParsed, _ := ParseServer(ours)
	if !bytes.Equal(s.Signer.certificate, oursParsed.certificate) {
		t.Errorf("libsignal's ServerCertificate.Certificate = %x, ours %x", s.Signer.certificate, oursParsed.certificate)
	}

	tests := []struct {
		name string
		root *curve.PublicKey
		now  time.Time
		ok   bool
	}{
		{"valid", rootKey.PublicKey(), expires.Add(-24 * time.Hour), true},
		{"expired", rootKey.PublicKey(), expires.Add(time.Millisecond), false},
		{"wrong trust root", serverKey.PublicKey(), expires.Add(-time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Validate(tt.root, tt.now); (err == nil) != tt.ok {
				t.Errorf("Validate(%s) = %v, want ok %v", tt.name, err, tt.ok)
			}
			if got := libValid(t, p, r.SenderCertificate, tt.root, tt.now); got != tt.ok {
				t.Errorf("libsignal validate(%s) = %v, want %v", tt.name, got, tt.ok)
			}
		})
	}
}
