package protocol

import (
	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/internal/primitives"
)

// KDF labels and constants of libsignal's Double Ratchet (rust/protocol/src/ratchet.rs
// and ratchet/keys.rs at v0.90.0). Changing any byte breaks interop.
var (
	// labelPQXDH is the HKDF info of PQXDH's first root and chain keys.
	labelPQXDH = []byte("WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024")
	// labelRatchet is the HKDF info of every DH ratchet step.
	labelRatchet = []byte("WhisperRatchet")
	// labelMessageKeys is the HKDF info that expands a message key seed.
	labelMessageKeys = []byte("WhisperMessageKeys")
	// messageKeySeed and chainKeySeed are the HMAC inputs that derive a message key
	// seed and the next chain key from a chain key (Signal's Double Ratchet spec, 5.2).
	messageKeySeed = []byte{0x01}
	chainKeySeed   = []byte{0x02}
	// discontinuity is 32 bytes of 0xFF put before the DH outputs in PQXDH, so that
	// the KDF input can never collide with an X25519 output alone (XEdDSA/X3DH spec).
	discontinuity = [32]byte{
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	}
)

// Limits from libsignal rust/protocol/src/consts.rs.
const (
	// maxForwardJumps bounds how far ahead of a chain a message may be, so a forged
	// counter cannot make the receiver derive millions of keys.
	maxForwardJumps = 25000
	// maxMessageKeys bounds the skipped keys kept per receiving chain; the oldest go.
	maxMessageKeys = 2000
	// maxReceiverChains bounds the receiving chains kept per session; the oldest go.
	maxReceiverChains = 5
	// maxArchivedStates bounds the previous session states kept per record.
	maxArchivedStates = 40
	// maxUnacknowledgedAge: a session whose PreKeySignalMessage was never answered is
	// not used to send after 30 days; the sender fetches a new bundle.
	maxUnacknowledgedAgeSeconds = 30 * 24 * 60 * 60
)

// messageKeys are the keys of one message: 80 bytes of HKDF output.
type messageKeys struct {
	cipherKey [32]byte
	macKey    [32]byte
	iv        [16]byte
}

// deriveMessageKeys expands a message key seed (HKDF-SHA256, no salt,
// "WhisperMessageKeys", 80 bytes: cipher key, MAC key, IV).
func deriveMessageKeys(mac *primitives.MAC, seed []byte) messageKeys {
	var okm [80]byte
	mac.HKDFInto(okm[:], seed, nil, labelMessageKeys)
	var k messageKeys
	copy(k.cipherKey[:], okm[:32])
	copy(k.macKey[:], okm[32:64])
	copy(k.iv[:], okm[64:])
	clear(okm[:])
	return k
}

// chainStep returns the message key seed at a chain key and the next chain key.
func chainStep(mac *primitives.MAC, chainKey []byte) (seed, next [32]byte) {
	return mac.Sum32(chainKey, messageKeySeed), mac.Sum32(chainKey, chainKeySeed)
}

// rootStep is one DH ratchet step: HKDF-SHA256 with the root key as salt and the DH
// output as input, "WhisperRatchet", 64 bytes: the new root key and a chain key.
func rootStep(mac *primitives.MAC, rootKey []byte, theirs *curve.PublicKey, ours *curve.PrivateKey) (root, chain []byte, err error) {
	shared, err := ours.Agree(theirs)
	if err != nil {
		return nil, nil, err
	}
	okm := make([]byte, 64)
	mac.HKDFInto(okm, shared, rootKey, labelRatchet)
	clear(shared)
	return okm[:32:32], okm[32:], nil
}
