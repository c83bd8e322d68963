// Package certificate holds the certificates of sealed sender, byte-compatible with
// libsignal 0.90.0 (rust/protocol/src/sealed_sender.rs and proto/sealed_sender.proto):
// a [Server] certificate binds a server key id to a server public key under the
// service's trust root, and a [Sender] certificate binds an account id, a device id and
// that account's identity key to an expiry time under a server key.
//
// Who uses it: the server issues sender certificates to its authenticated devices;
// clients put their own certificate inside every sealed message and check the one they
// receive against the trust root they were configured with. It imports only
// protocol/curve, so the server can use it without touching any session code.
//
// What it protects: a recipient of a sealed message learns who sent it only through a
// certificate that the service vouched for (two XEdDSA signatures: trust root over the
// server certificate, server key over the sender certificate) and that has not expired,
// so one user cannot claim to be another. What it does not: the service itself can issue
// a certificate for any account with any key, so a certificate says what the server
// believes, not what the account holder did; the identity key in it must still be
// checked against the sender's session identity (safety numbers, key transparency).
// Expiry bounds how long a stolen device key's certificate stays usable, nothing more.
//
// Bastion never puts a phone number in a certificate: libsignal's optional senderE164
// field is never written, and a certificate that carries one is refused when parsed.
// libsignal's "signer by reference" form (a known Signal server certificate named by id)
// is refused too: those certificates belong to Signal's service, not to Bastion's.
//
// Parsers are strict: an unknown field, a wrong wire type, a repeated field, a
// truncated value or a missing required field is an [ErrInvalid] error, never a panic.
package certificate

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bastionchat/bastion/protocol/curve"
)

var (
	// ErrInvalid is wrapped by every error about a certificate's encoding.
	ErrInvalid = errors.New("certificate: invalid encoding")
	// ErrUntrusted is wrapped by every validation failure: a bad signature, a revoked
	// server key, an expired certificate.
	ErrUntrusted = errors.New("certificate: not trusted")
)

// MaxDeviceID is the largest device id a certificate may name: libsignal's DeviceId is
// 1..=127, and a certificate libsignal cannot parse would be useless to its users.
const MaxDeviceID = 127

// revokedServerIDs lists server key ids that no certificate may be signed by, whatever
// the trust root says: a compromised server key is revoked by shipping its id here in a
// client release. 0xDEADC357 is libsignal's own test id for the revocation path; it is
// kept so that both implementations refuse the same certificates.
var revokedServerIDs = []uint32{0xDEADC357}

// Server is a parsed ServerCertificate: the trust root's statement that Key is the
// server key with id ID.
type Server struct {
	ID  uint32
	Key *curve.PublicKey

	serialized  []byte // the whole ServerCertificate, as received
	certificate []byte // the signed bytes (ServerCertificate.Certificate)
	signature   []byte
	// Validate reads these, decoded from the signed bytes, never the exported fields,
	// which a caller may change.
	id  uint32
	key *curve.PublicKey
}

// Sender is a parsed SenderCertificate: the server's statement that device DeviceID of
// account SenderUUID has identity key IdentityKey, until Expires.
type Sender struct {
	SenderUUID  uuid.UUID
	DeviceID    uint32
	IdentityKey *curve.PublicKey
	// Expires is the last instant (millisecond precision) at which the certificate is valid.
	Expires time.Time
	// Signer is the embedded server certificate whose key signed this one.
	Signer *Server

	serialized    []byte
	certificate   []byte
	signature     []byte
	signer        *Server // as parsed; Signer may be changed by a caller
	expiresMillis int64
}

// Protobuf field numbers (sealed_sender.proto).
const (
	// ServerCertificate and SenderCertificate (outer).
	fieldCertificate = 1
	fieldSignature   = 2

	// ServerCertificate.Certificate.
	fieldServerID  = 1
	fieldServerKey = 2

	// SenderCertificate.Certificate.
	fieldSenderE164   = 1
	fieldSenderDevice = 2
	fieldExpires      = 3
	fieldIdentityKey  = 4
	fieldSigner       = 5
	fieldUUIDString   = 6
	fieldUUIDBytes    = 7
	fieldSignerID     = 8
)

// NewServer makes a ServerCertificate for the server key key with id id, signed by the
// trust root. rand supplies the XEdDSA nonce randomness (nil means crypto/rand).
func NewServer(trustRoot *curve.PrivateKey, id uint32, key *curve.PublicKey, rand io.Reader) ([]byte, error) {
	if trustRoot == nil || key == nil {
		return nil, errors.New("server certificate: nil key")
	}
	if slices.Contains(revokedServerIDs, id) {
		return nil, fmt.Errorf("server certificate: id %#x is revoked", id)
	}
	// libsignal writes both fields, in field order, even when the id is 0.
	var cert []byte
	cert = appendUint(cert, fieldServerID, uint64(id))
	cert = appendBytes(cert, fieldServerKey, key.Bytes())
	sig, err := trustRoot.Sign(rand, cert)
	if err != nil {
		return nil, fmt.Errorf("server certificate: signing: %w", err)
	}
	return appendSigned(nil, cert, sig), nil
}

// ParseServer decodes a ServerCertificate. It checks the encoding only; see
// [Server.Validate].
func ParseServer(b []byte) (*Server, error) {
	cert, sig, err := parseSigned(b)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	s := &Server{serialized: clone(b), certificate: cert, signature: sig}
	var haveID bool
	err = walk(cert, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error {
		switch num {
		case fieldServerID:
			if typ != protowire.VarintType {
				return wrongType(num)
			}
			if v > math.MaxUint32 {
				return fmt.Errorf("%w: server id overflows uint32", ErrInvalid)
			}
			s.ID, haveID = uint32(v), true
		case fieldServerKey:
			if typ != protowire.BytesType {
				return wrongType(num)
			}
			k, err := curve.NewPublicKey(data)
			if err != nil {
				return fmt.Errorf("%w: server key: %w", ErrInvalid, err)
			}
			s.Key = k
		default:
			return unknown(num)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	if !haveID {
		return nil, fmt.Errorf("server certificate: %w: missing id", ErrInvalid)
	}
	if s.Key == nil {
		return nil, fmt.Errorf("server certificate: %w: missing key", ErrInvalid)
	}
	s.id, s.key = s.ID, s.Key
	return s, nil
}

// Validate checks that the trust root signed s and that s's id is not revoked.
func (s *Server) Validate(trustRoot *curve.PublicKey) error {
	if trustRoot == nil {
		return fmt.Errorf("%w: no trust root", ErrUntrusted)
	}
	if s.key == nil {
		return fmt.Errorf("%w: not a parsed certificate", ErrUntrusted)
	}
	if slices.Contains(revokedServerIDs, s.id) {
		return fmt.Errorf("%w: server key id %#x is revoked", ErrUntrusted, s.id)
	}
	if !trustRoot.Verify(s.certificate, s.signature) {
		return fmt.Errorf("%w: server certificate not signed by the trust root", ErrUntrusted)
	}
	return nil
}

// Bytes returns a copy of the serialized ServerCertificate.
func (s *Server) Bytes() []byte { return clone(s.serialized) }

// IssueSender makes a SenderCertificate for device device of account sender with
// identity key identity, valid until expires, signed by serverKey. serverCert is the
// ServerCertificate of serverKey (made by [NewServer]); it is embedded whole, as
// libsignal embeds it. rand supplies the XEdDSA nonce randomness (nil means crypto/rand).
func IssueSender(serverKey *curve.PrivateKey, serverCert []byte, sender uuid.UUID, device uint32,
	identity *curve.PublicKey, expires time.Time, rand io.Reader) ([]byte, error) {
	if serverKey == nil || identity == nil {
		return nil, errors.New("sender certificate: nil key")
	}
	signer, err := ParseServer(serverCert)
	if err != nil {
		return nil, fmt.Errorf("sender certificate: %w", err)
	}
	// A certificate whose signature the embedded server key cannot verify is useless;
	// refuse to make one rather than hand it out.
	if !signer.Key.Equal(serverKey.PublicKey()) {
		return nil, errors.New("sender certificate: server key does not match the server certificate")
	}
	if sender == uuid.Nil {
		return nil, errors.New("sender certificate: nil account id")
	}
	if device == 0 || device > MaxDeviceID {
		return nil, fmt.Errorf("sender certificate: device id %d out of range 1..%d", device, MaxDeviceID)
	}
	ms := expires.UnixMilli()
	if ms < 0 {
		return nil, errors.New("sender certificate: expiry before 1970")
	}
	cert := encodeSender(sender, device, identity, uint64(ms), signer.serialized)
	sig, err := serverKey.Sign(rand, cert)
	if err != nil {
		return nil, fmt.Errorf("sender certificate: signing: %w", err)
	}
	return appendSigned(nil, cert, sig), nil
}

// encodeSender writes SenderCertificate.Certificate as libsignal does: fields in field
// number order, the account id as its canonical string (field 6), no phone number.
func encodeSender(sender uuid.UUID, device uint32, identity *curve.PublicKey, expiresMillis uint64, serverCert []byte) []byte {
	var b []byte
	b = appendUint(b, fieldSenderDevice, uint64(device))
	b = protowire.AppendTag(b, fieldExpires, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, expiresMillis)
	b = appendBytes(b, fieldIdentityKey, identity.Bytes())
	b = appendBytes(b, fieldSigner, serverCert)
	b = appendBytes(b, fieldUUIDString, []byte(sender.String()))
	return b
}

// ParseSender decodes a SenderCertificate and its embedded ServerCertificate. It checks
// the encoding only; see [Sender.Validate].
func ParseSender(b []byte) (*Sender, error) {
	cert, sig, err := parseSigned(b)
	if err != nil {
		return nil, fmt.Errorf("sender certificate: %w", err)
	}
	s := &Sender{serialized: clone(b), certificate: cert, signature: sig}
	var haveDevice, haveExpires, haveUUID bool
	err = walk(cert, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error {
		switch num {
		case fieldSenderE164:
			return fmt.Errorf("%w: carries a phone number", ErrInvalid)
		case fieldSignerID:
			return fmt.Errorf("%w: signer by reference is not supported", ErrInvalid)
		case fieldSenderDevice:
			if typ != protowire.VarintType {
				return wrongType(num)
			}
			if v == 0 || v > MaxDeviceID {
				return fmt.Errorf("%w: device id %d out of range", ErrInvalid, v)
			}
			s.DeviceID, haveDevice = uint32(v), true
		case fieldExpires:
			if typ != protowire.Fixed64Type {
				return wrongType(num)
			}
			// Bounded so that the time.Time round-trips to the same milliseconds.
			if v > math.MaxInt64 {
				return fmt.Errorf("%w: expiry out of range", ErrInvalid)
			}
			s.expiresMillis, haveExpires = int64(v), true
			s.Expires = time.UnixMilli(s.expiresMillis)
		case fieldIdentityKey:
			if typ != protowire.BytesType {
				return wrongType(num)
			}
			k, err := curve.NewPublicKey(data)
			if err != nil {
				return fmt.Errorf("%w: identity key: %w", ErrInvalid, err)
			}
			s.IdentityKey = k
		case fieldSigner:
			if typ != protowire.BytesType {
				return wrongType(num)
			}
			srv, err := ParseServer(data)
			if err != nil {
				return fmt.Errorf("%w: signer: %w", ErrInvalid, err)
			}
			s.Signer = srv
		case fieldUUIDString, fieldUUIDBytes:
			if typ != protowire.BytesType {
				return wrongType(num)
			}
			if haveUUID { // the two are one oneof: at most one may be present
				return fmt.Errorf("%w: two account ids", ErrInvalid)
			}
			id, err := parseUUID(num, data)
			if err != nil {
				return err
			}
			s.SenderUUID, haveUUID = id, true
		default:
			return unknown(num)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sender certificate: %w", err)
	}
	switch {
	case !haveUUID:
		err = errors.New("account id")
	case !haveDevice:
		err = errors.New("device id")
	case !haveExpires:
		err = errors.New("expiry")
	case s.IdentityKey == nil:
		err = errors.New("identity key")
	case s.Signer == nil:
		err = errors.New("signer")
	}
	if err != nil {
		return nil, fmt.Errorf("sender certificate: %w: missing %w", ErrInvalid, err)
	}
	s.signer = s.Signer
	return s, nil
}

// parseUUID reads the account id from its string form (field 6) or its 16 raw bytes
// (field 7). The string must be canonical (lowercase, hyphenated): it becomes the
// protocol address's name, and two spellings of one id would be two addresses.
func parseUUID(num protowire.Number, data []byte) (uuid.UUID, error) {
	var id uuid.UUID
	if num == fieldUUIDBytes {
		if len(data) != 16 {
			return uuid.Nil, fmt.Errorf("%w: account id is %d bytes, want 16", ErrInvalid, len(data))
		}
		copy(id[:], data)
	} else {
		parsed, err := uuid.ParseBytes(data)
		if err != nil || parsed.String() != string(data) {
			return uuid.Nil, fmt.Errorf("%w: account id is not a canonical UUID", ErrInvalid)
		}
		id = parsed
	}
	if id == uuid.Nil {
		return uuid.Nil, fmt.Errorf("%w: nil account id", ErrInvalid)
	}
	return id, nil
}

// Validate checks the whole chain as libsignal does: the trust root signed the embedded
// server certificate, whose id is not revoked; the server key signed s; and now is not
// after s.Expires (at millisecond precision, libsignal's Timestamp).
// It reads only what it decoded from the signed bytes, never the exported fields.
func (s *Sender) Validate(trustRoot *curve.PublicKey, now time.Time) error {
	if s.signer == nil {
		return fmt.Errorf("%w: not a parsed certificate", ErrUntrusted)
	}
	if err := s.signer.Validate(trustRoot); err != nil {
		return err
	}
	if !s.signer.key.Verify(s.certificate, s.signature) {
		return fmt.Errorf("%w: sender certificate not signed by the server key", ErrUntrusted)
	}
	if now.UnixMilli() > s.expiresMillis {
		return fmt.Errorf("%w: sender certificate expired", ErrUntrusted)
	}
	return nil
}

// Bytes returns a copy of the serialized SenderCertificate, exactly as it was issued.
func (s *Sender) Bytes() []byte { return clone(s.serialized) }

// appendSigned writes the outer message of both certificates: the signed bytes and the
// signature.
func appendSigned(b, cert, sig []byte) []byte {
	b = appendBytes(b, fieldCertificate, cert)
	return appendBytes(b, fieldSignature, sig)
}

// parseSigned reads the outer message of both certificates. The returned slices are
// copies.
func parseSigned(b []byte) (cert, sig []byte, err error) {
	err = walk(b, func(num protowire.Number, typ protowire.Type, _ uint64, data []byte) error {
		if typ != protowire.BytesType {
			return wrongType(num)
		}
		switch num {
		case fieldCertificate:
			cert = clone(data)
		case fieldSignature:
			// Any other length can never verify; refusing it here keeps junk out early.
			if len(data) != curve.SignatureSize {
				return fmt.Errorf("%w: signature is %d bytes, want %d", ErrInvalid, len(data), curve.SignatureSize)
			}
			sig = clone(data)
		default:
			return unknown(num)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if cert == nil {
		return nil, nil, fmt.Errorf("%w: missing certificate", ErrInvalid)
	}
	if sig == nil {
		return nil, nil, fmt.Errorf("%w: missing signature", ErrInvalid)
	}
	return cert, sig, nil
}

// walk calls fn for every field of b, refusing malformed tags and values, field numbers
// seen twice, and wire types other than varint, fixed64 and length-delimited. data
// aliases b.
func walk(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error) error {
	var seen uint64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: bad tag: %w", ErrInvalid, protowire.ParseError(n))
		}
		b = b[n:]
		if num >= 64 {
			return unknown(num)
		}
		if seen&(1<<num) != 0 {
			return fmt.Errorf("%w: field %d repeated", ErrInvalid, num)
		}
		seen |= 1 << num
		var v uint64
		var data []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			data, n = protowire.ConsumeBytes(b)
		default:
			return fmt.Errorf("%w: field %d: unsupported wire type %d", ErrInvalid, num, typ)
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %w", ErrInvalid, num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v, data); err != nil {
			return err
		}
	}
	return nil
}

func appendUint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func wrongType(num protowire.Number) error {
	return fmt.Errorf("%w: field %d has the wrong wire type", ErrInvalid, num)
}

func unknown(num protowire.Number) error {
	return fmt.Errorf("%w: unknown field %d", ErrInvalid, num)
}

func clone(b []byte) []byte { return append([]byte{}, b...) }
