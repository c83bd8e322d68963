package protocol

import (
	"fmt"
	"io"

	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/proto"
)

// PQXDH as libsignal runs it (rust/protocol/src/ratchet.rs at v0.90.0; Signal's PQXDH
// specification). The KDF input is
//
//	0xFF*32 || DH(IK_A, SPK_B) || DH(EK_A, IK_B) || DH(EK_A, SPK_B) [|| DH(EK_A, OPK_B)] || SS_kyber
//
// and HKDF-SHA256 with no salt and info "WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024"
// expands it to the first root key and chain key. (libsignal expands 96 bytes; the last
// 32 seed the SPQR ratchet, which Bastion does not run yet. HKDF's output is a prefix
// stream, so the first 64 bytes are the same.) Bob's signed prekey doubles as his first
// ratchet key.

// deriveInitial returns the root and chain keys of a new session.
func deriveInitial(secrets []byte) (root, chain []byte) {
	mac := getMAC()
	defer putMAC(mac)
	okm := make([]byte, 64)
	mac.HKDFInto(okm, secrets, nil, labelPQXDH)
	return okm[:32:32], okm[32:]
}

// dh is one X25519 agreement of PQXDH.
type dh struct {
	priv *curve.PrivateKey
	pub  *curve.PublicKey
}

// agreeAll appends the DH outputs of pairs to secrets, failing on any all-zero output
// (a low-order public key), which curve's Agree refuses.
func agreeAll(secrets []byte, pairs ...dh) ([]byte, error) {
	for _, p := range pairs {
		s, err := p.priv.Agree(p.pub)
		if err != nil {
			return nil, err
		}
		secrets = append(secrets, s...)
	}
	return secrets, nil
}

// initiate runs PQXDH as Alice against bundle (whose signatures the caller checked)
// and returns the new session state with its pending prekey message fields; the
// caller sets the timestamp and registration ids.
func initiate(r io.Reader, identity *IdentityKeyPair, bundle *PreKeyBundle) (*proto.Session, *curve.PrivateKey, error) {
	base, err := curve.GeneratePrivateKey(r)
	if err != nil {
		return nil, nil, err
	}
	secrets := make([]byte, 0, 32*6)
	secrets = append(secrets, discontinuity[:]...)
	pairs := []dh{
		{identity.PrivateKey(), bundle.SignedPreKey},
		{base, bundle.IdentityKey},
		{base, bundle.SignedPreKey},
	}
	if bundle.PreKey != nil {
		pairs = append(pairs, dh{base, bundle.PreKey})
	}
	if secrets, err = agreeAll(secrets, pairs...); err != nil {
		return nil, nil, fmt.Errorf("pqxdh: %w", err)
	}
	ss, kyberCT, err := bundle.KyberPreKey.Encapsulate(r)
	if err != nil {
		return nil, nil, fmt.Errorf("pqxdh: %w", err)
	}
	secrets = append(secrets, ss...)
	root, chain := deriveInitial(secrets)
	clear(secrets)

	ratchet, err := curve.GeneratePrivateKey(r)
	if err != nil {
		return nil, nil, err
	}
	mac := getMAC()
	sendRoot, sendChain, err := rootStep(mac, root, bundle.SignedPreKey, ratchet)
	putMAC(mac)
	if err != nil {
		return nil, nil, fmt.Errorf("pqxdh: %w", err)
	}
	st := &proto.Session{
		SessionVersion:       messageVersion,
		LocalIdentityPublic:  identity.PublicKey().Bytes(),
		RemoteIdentityPublic: bundle.IdentityKey.Bytes(),
		RootKey:              sendRoot,
		AliceBaseKey:         base.PublicKey().Bytes(),
		ReceiverChains: []proto.Chain{{
			SenderRatchetKey: bundle.SignedPreKey.Bytes(),
			ChainKey:         &proto.ChainKey{Key: chain},
		}},
		SenderChain: &proto.Chain{
			SenderRatchetKey:        ratchet.PublicKey().Bytes(),
			SenderRatchetKeyPrivate: ratchet.Bytes(),
			ChainKey:                &proto.ChainKey{Key: sendChain},
		},
		PendingPreKey: &proto.PendingPreKey{
			PreKeyID:       bundle.PreKeyID,
			HasPreKeyID:    bundle.PreKey != nil,
			SignedPreKeyID: int32(bundle.SignedPreKeyID),
			BaseKey:        base.PublicKey().Bytes(),
		},
		PendingKyberPreKey: &proto.PendingKyberPreKey{PreKeyID: bundle.KyberPreKeyID, Ciphertext: kyberCT},
	}
	return st, ratchet, nil
}

// respond runs PQXDH as Bob for message m and returns the new session state; the
// caller sets the registration ids. oneTime may be nil.
func respond(identity *IdentityKeyPair, signed *SignedPreKeyRecord, oneTime *PreKeyRecord, kyber *KyberPreKeyRecord, m *PreKeySignalMessage) (*proto.Session, error) {
	if !torsionFree(m.baseKey) {
		return nil, ErrInvalidMessage
	}
	secrets := make([]byte, 0, 32*6)
	secrets = append(secrets, discontinuity[:]...)
	pairs := []dh{
		{signed.Private, m.identityKey},
		{identity.PrivateKey(), m.baseKey},
		{signed.Private, m.baseKey},
	}
	if oneTime != nil {
		pairs = append(pairs, dh{oneTime.Private, m.baseKey})
	}
	secrets, err := agreeAll(secrets, pairs...)
	if err != nil {
		// A low-order base or identity key: the same answer as any bad message.
		return nil, ErrInvalidMessage
	}
	ss, err := kyber.KeyPair.Private.Decapsulate(m.body.KyberCiphertext)
	if err != nil {
		return nil, ErrInvalidMessage
	}
	secrets = append(secrets, ss...)
	root, chain := deriveInitial(secrets)
	clear(secrets)
	return &proto.Session{
		SessionVersion:       messageVersion,
		LocalIdentityPublic:  identity.PublicKey().Bytes(),
		RemoteIdentityPublic: m.identityKey.Bytes(),
		RootKey:              root,
		AliceBaseKey:         m.baseKey.Bytes(),
		SenderChain: &proto.Chain{
			SenderRatchetKey:        signed.PublicKey().Bytes(),
			SenderRatchetKeyPrivate: signed.Private.Bytes(),
			ChainKey:                &proto.ChainKey{Key: chain},
		},
	}, nil
}
