package protocol

import (
	"fmt"

	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/kem"
	"github.com/bastionchat/bastion/protocol/proto"
)

// PreKeyBundle is what a device publishes so others can start a session with it while
// it is offline (libsignal's PreKeyBundle). The one-time EC prekey is optional; the
// signed EC prekey and the signed Kyber prekey are not.
type PreKeyBundle struct {
	RegistrationID        uint32
	DeviceID              uint32
	PreKeyID              uint32           // meaningful only when PreKey is not nil
	PreKey                *curve.PublicKey // optional one-time prekey
	SignedPreKeyID        uint32           //
	SignedPreKey          *curve.PublicKey // required
	SignedPreKeySignature []byte           // XEdDSA by IdentityKey over SignedPreKey.Bytes()
	KyberPreKeyID         uint32           //
	KyberPreKey           *kem.PublicKey   // required
	KyberPreKeySignature  []byte           // XEdDSA by IdentityKey over KyberPreKey.Bytes()
	IdentityKey           *curve.PublicKey // required
}

// NewPreKeyBundle builds a bundle from the serialized public keys a server hands out,
// validating every key encoding. preKey may be empty (no one-time prekey). The
// signatures are checked by [PreKeyBundle.Verify], which [Cipher.ProcessPreKeyBundle]
// calls.
func NewPreKeyBundle(registrationID, deviceID, preKeyID uint32, preKey []byte,
	signedPreKeyID uint32, signedPreKey, signedPreKeySignature []byte,
	kyberPreKeyID uint32, kyberPreKey, kyberPreKeySignature []byte, identityKey []byte) (*PreKeyBundle, error) {
	b := &PreKeyBundle{
		RegistrationID: registrationID, DeviceID: deviceID,
		SignedPreKeyID: signedPreKeyID, SignedPreKeySignature: append([]byte(nil), signedPreKeySignature...),
		KyberPreKeyID: kyberPreKeyID, KyberPreKeySignature: append([]byte(nil), kyberPreKeySignature...),
	}
	var err error
	if len(preKey) > 0 {
		b.PreKeyID = preKeyID
		if b.PreKey, err = curve.NewPublicKey(preKey); err != nil {
			return nil, fmt.Errorf("bundle prekey: %w", err)
		}
	}
	if b.SignedPreKey, err = curve.NewPublicKey(signedPreKey); err != nil {
		return nil, fmt.Errorf("bundle signed prekey: %w", err)
	}
	if b.KyberPreKey, err = kem.NewPublicKey(kyberPreKey); err != nil {
		return nil, fmt.Errorf("bundle kyber prekey: %w", err)
	}
	if b.IdentityKey, err = curve.NewPublicKey(identityKey); err != nil {
		return nil, fmt.Errorf("bundle identity key: %w", err)
	}
	return b, nil
}

// Verify checks that every required key is present and that both prekey signatures
// were made by the bundle's identity key. A failed signature is [ErrInvalidSignature].
func (b *PreKeyBundle) Verify() error {
	switch {
	case b.IdentityKey == nil:
		return fmt.Errorf("bundle: missing identity key")
	case b.SignedPreKey == nil:
		return fmt.Errorf("bundle: missing signed prekey")
	case b.KyberPreKey == nil:
		return fmt.Errorf("bundle: missing kyber prekey")
	}
	if !b.IdentityKey.Verify(b.SignedPreKey.Bytes(), b.SignedPreKeySignature) {
		return fmt.Errorf("bundle signed prekey: %w", ErrInvalidSignature)
	}
	if !b.IdentityKey.Verify(b.KyberPreKey.Bytes(), b.KyberPreKeySignature) {
		return fmt.Errorf("bundle kyber prekey: %w", ErrInvalidSignature)
	}
	return nil
}

// Bytes encodes the bundle (public data only) for a client's cache.
func (b *PreKeyBundle) Bytes() []byte {
	p := proto.Bundle{
		RegistrationID: b.RegistrationID, DeviceID: b.DeviceID,
		SignedPreKeyID: b.SignedPreKeyID, SignedPreKeySignature: b.SignedPreKeySignature,
		KyberPreKeyID: b.KyberPreKeyID, KyberPreKeySignature: b.KyberPreKeySignature,
	}
	if b.PreKey != nil {
		p.PreKeyID, p.PreKey = b.PreKeyID, b.PreKey.Bytes()
	}
	if b.SignedPreKey != nil {
		p.SignedPreKey = b.SignedPreKey.Bytes()
	}
	if b.KyberPreKey != nil {
		p.KyberPreKey = b.KyberPreKey.Bytes()
	}
	if b.IdentityKey != nil {
		p.IdentityKey = b.IdentityKey.Bytes()
	}
	return p.Marshal(nil)
}

// ParsePreKeyBundle decodes a bundle made by [PreKeyBundle.Bytes], validating every
// key as [NewPreKeyBundle] does.
func ParsePreKeyBundle(data []byte) (*PreKeyBundle, error) {
	var p proto.Bundle
	if err := p.Unmarshal(data); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return NewPreKeyBundle(p.RegistrationID, p.DeviceID, p.PreKeyID, p.PreKey,
		p.SignedPreKeyID, p.SignedPreKey, p.SignedPreKeySignature,
		p.KyberPreKeyID, p.KyberPreKey, p.KyberPreKeySignature, p.IdentityKey)
}
