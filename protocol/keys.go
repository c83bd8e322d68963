package protocol

import (
	"fmt"
	"io"
	"time"

	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/kem"
	"github.com/bastionchat/bastion/protocol/proto"
)

// IdentityKeyPair is a device's long-term identity: a Curve25519 key pair whose public
// half is the device's identity key (libsignal's IdentityKeyPair). It signs the
// device's prekeys and takes part in every PQXDH agreement. It has no String or text
// encoding on purpose.
type IdentityKeyPair struct {
	private *curve.PrivateKey
}

// GenerateIdentityKeyPair makes a new identity key pair from r (nil means crypto/rand).
func GenerateIdentityKeyPair(r io.Reader) (*IdentityKeyPair, error) {
	k, err := curve.GeneratePrivateKey(r)
	if err != nil {
		return nil, fmt.Errorf("generating identity key: %w", err)
	}
	return &IdentityKeyPair{private: k}, nil
}

// NewIdentityKeyPair decodes an identity key pair made by [IdentityKeyPair.Bytes] and
// checks that its halves match.
func NewIdentityKeyPair(b []byte) (*IdentityKeyPair, error) {
	var r proto.IdentityKeyPair
	if err := r.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("identity key pair: %w", err)
	}
	priv, err := curve.NewPrivateKey(r.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("identity key pair: %w", err)
	}
	pub, err := curve.NewPublicKey(r.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("identity key pair: %w", err)
	}
	if !pub.Equal(priv.PublicKey()) {
		return nil, fmt.Errorf("identity key pair: public key does not match private key")
	}
	return &IdentityKeyPair{private: priv}, nil
}

// NewIdentityKeyPairFromPrivate makes the identity key pair of a 32-byte private key.
func NewIdentityKeyPairFromPrivate(private []byte) (*IdentityKeyPair, error) {
	k, err := curve.NewPrivateKey(private)
	if err != nil {
		return nil, fmt.Errorf("identity key pair: %w", err)
	}
	return &IdentityKeyPair{private: k}, nil
}

// Bytes encodes the key pair, private half included, for the device's own storage, in
// the layout of libsignal's IdentityKeyPair serialization.
func (k *IdentityKeyPair) Bytes() []byte {
	r := proto.IdentityKeyPair{PublicKey: k.private.PublicKey().Bytes(), PrivateKey: k.private.Bytes()}
	return r.Marshal(nil)
}

// PublicKey returns the identity key: the public half.
func (k *IdentityKeyPair) PublicKey() *curve.PublicKey { return k.private.PublicKey() }

// PrivateKey returns the private half.
func (k *IdentityKeyPair) PrivateKey() *curve.PrivateKey { return k.private }

// sign makes an XEdDSA signature with the identity key.
func (k *IdentityKeyPair) sign(r io.Reader, msg []byte) ([]byte, error) {
	return k.private.Sign(r, msg)
}

// PreKeyRecord is a one-time EC prekey and its id (libsignal's PreKeyRecord).
type PreKeyRecord struct {
	ID      uint32
	Private *curve.PrivateKey
}

// GeneratePreKey makes a one-time prekey with the given id.
func GeneratePreKey(r io.Reader, id uint32) (*PreKeyRecord, error) {
	k, err := curve.GeneratePrivateKey(r)
	if err != nil {
		return nil, fmt.Errorf("generating prekey: %w", err)
	}
	return &PreKeyRecord{ID: id, Private: k}, nil
}

// PublicKey returns the prekey's public half.
func (p *PreKeyRecord) PublicKey() *curve.PublicKey { return p.Private.PublicKey() }

// Bytes encodes the record for storage.
func (p *PreKeyRecord) Bytes() []byte {
	r := proto.KeyPairRecord{ID: p.ID, PublicKey: p.Private.PublicKey().Bytes(), PrivateKey: p.Private.Bytes()}
	return r.Marshal(nil)
}

// NewPreKeyRecord decodes a record made by [PreKeyRecord.Bytes].
func NewPreKeyRecord(b []byte) (*PreKeyRecord, error) {
	var r proto.KeyPairRecord
	if err := r.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("prekey record: %w", err)
	}
	priv, err := curve.NewPrivateKey(r.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("prekey record: %w", err)
	}
	if pub, err := curve.NewPublicKey(r.PublicKey); err != nil || !pub.Equal(priv.PublicKey()) {
		return nil, fmt.Errorf("prekey record: public key does not match private key")
	}
	return &PreKeyRecord{ID: r.ID, Private: priv}, nil
}

// SignedPreKeyRecord is a medium-term EC prekey signed by the identity key (libsignal's
// SignedPreKeyRecord). The signature is XEdDSA over the serialized public key
// (0x05 || 32 bytes), as libsignal signs and checks it.
type SignedPreKeyRecord struct {
	ID        uint32
	Timestamp time.Time // creation time, kept in milliseconds
	Private   *curve.PrivateKey
	Signature []byte
}

// GenerateSignedPreKey makes a signed prekey with the given id, signed by identity.
func GenerateSignedPreKey(r io.Reader, identity *IdentityKeyPair, id uint32, now time.Time) (*SignedPreKeyRecord, error) {
	k, err := curve.GeneratePrivateKey(r)
	if err != nil {
		return nil, fmt.Errorf("generating signed prekey: %w", err)
	}
	sig, err := identity.sign(r, k.PublicKey().Bytes())
	if err != nil {
		return nil, fmt.Errorf("signing prekey: %w", err)
	}
	return &SignedPreKeyRecord{ID: id, Timestamp: now.Truncate(time.Millisecond), Private: k, Signature: sig}, nil
}

// PublicKey returns the prekey's public half.
func (p *SignedPreKeyRecord) PublicKey() *curve.PublicKey { return p.Private.PublicKey() }

// Bytes encodes the record for storage.
func (p *SignedPreKeyRecord) Bytes() []byte {
	r := proto.SignedKeyRecord{ID: p.ID, PublicKey: p.Private.PublicKey().Bytes(), PrivateKey: p.Private.Bytes(),
		Signature: p.Signature, Timestamp: uint64(p.Timestamp.UnixMilli())}
	return r.Marshal(nil)
}

// NewSignedPreKeyRecord decodes a record made by [SignedPreKeyRecord.Bytes].
func NewSignedPreKeyRecord(b []byte) (*SignedPreKeyRecord, error) {
	var r proto.SignedKeyRecord
	if err := r.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("signed prekey record: %w", err)
	}
	priv, err := curve.NewPrivateKey(r.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("signed prekey record: %w", err)
	}
	if pub, err := curve.NewPublicKey(r.PublicKey); err != nil || !pub.Equal(priv.PublicKey()) {
		return nil, fmt.Errorf("signed prekey record: public key does not match private key")
	}
	if len(r.Signature) != curve.SignatureSize {
		return nil, fmt.Errorf("signed prekey record: signature is %d bytes", len(r.Signature))
	}
	return &SignedPreKeyRecord{ID: r.ID, Timestamp: time.UnixMilli(int64(r.Timestamp)), Private: priv, Signature: r.Signature}, nil
}

// KyberPreKeyRecord is a Kyber-1024 prekey signed by the identity key (libsignal's
// KyberPreKeyRecord). The signature is XEdDSA over the serialized public key
// (0x08 || 1568 bytes). Whether it is one-time or last-resort is the store's business.
type KyberPreKeyRecord struct {
	ID        uint32
	Timestamp time.Time
	KeyPair   *kem.KeyPair
	Signature []byte
}

// GenerateKyberPreKey makes a signed Kyber prekey with the given id.
func GenerateKyberPreKey(r io.Reader, identity *IdentityKeyPair, id uint32, now time.Time) (*KyberPreKeyRecord, error) {
	kp, err := kem.GenerateKeyPair(r)
	if err != nil {
		return nil, fmt.Errorf("generating kyber prekey: %w", err)
	}
	sig, err := identity.sign(r, kp.Public.Bytes())
	if err != nil {
		return nil, fmt.Errorf("signing kyber prekey: %w", err)
	}
	return &KyberPreKeyRecord{ID: id, Timestamp: now.Truncate(time.Millisecond), KeyPair: kp, Signature: sig}, nil
}

// Bytes encodes the record for storage.
func (p *KyberPreKeyRecord) Bytes() []byte {
	r := proto.SignedKeyRecord{ID: p.ID, PublicKey: p.KeyPair.Public.Bytes(), PrivateKey: p.KeyPair.Private.Bytes(),
		Signature: p.Signature, Timestamp: uint64(p.Timestamp.UnixMilli())}
	return r.Marshal(nil)
}

// NewKyberPreKeyRecord decodes a record made by [KyberPreKeyRecord.Bytes].
func NewKyberPreKeyRecord(b []byte) (*KyberPreKeyRecord, error) {
	var r proto.SignedKeyRecord
	if err := r.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("kyber prekey record: %w", err)
	}
	priv, err := kem.NewPrivateKey(r.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("kyber prekey record: %w", err)
	}
	if pub, err := kem.NewPublicKey(r.PublicKey); err != nil || !pub.Equal(priv.PublicKey()) {
		return nil, fmt.Errorf("kyber prekey record: public key does not match private key")
	}
	if len(r.Signature) != curve.SignatureSize {
		return nil, fmt.Errorf("kyber prekey record: signature is %d bytes", len(r.Signature))
	}
	return &KyberPreKeyRecord{ID: r.ID, Timestamp: time.UnixMilli(int64(r.Timestamp)),
		KeyPair: &kem.KeyPair{Public: priv.PublicKey(), Private: priv}, Signature: r.Signature}, nil
}
