package senderkey

import "github.com/bastionchat/bastion/protocol/internal/primitives"

// Seeds of the sender chain KDF (libsignal sender_keys.rs, SenderChainKey): HMAC-SHA256
// of the chain key over one byte, 0x01 for the message key seed and 0x02 for the next
// chain key, so neither output reveals the other or the chain key.
var (
	messageKeySeed = []byte{0x01}
	chainKeySeed   = []byte{0x02}
)

// groupInfo is the HKDF info for message keys (libsignal: "WhisperGroup").
const groupInfo = "WhisperGroup"

// chainKey is a sender chain key at an iteration: the key for the message with that
// number and, through next, for every later one.
type chainKey struct {
	iteration uint32
	key       [32]byte
}

func (c *chainKey) derive(seed []byte) [32]byte {
	return [32]byte(primitives.HMAC(c.key[:], seed))
}

// messageKey returns the seed of the message key for c's iteration.
func (c *chainKey) messageKey() messageKey {
	return messageKey{iteration: c.iteration, seed: c.derive(messageKeySeed)}
}

// next returns the chain key one iteration on. The caller checks that the iteration
// does not overflow.
func (c *chainKey) next() chainKey {
	return chainKey{iteration: c.iteration + 1, key: c.derive(chainKeySeed)}
}

// messageKey is the seed of one message's keys; the record stores seeds, as libsignal
// does, and expands them when a message needs them.
type messageKey struct {
	iteration uint32
	seed      [32]byte
}

// keys expands the seed with HKDF-SHA256 (no salt, info "WhisperGroup") into 48 bytes:
// the CBC IV first (16 bytes), then the AES-256 key (32), in libsignal's order.
func (k *messageKey) keys() (iv, key []byte) {
	out, err := primitives.HKDF(k.seed[:], nil, []byte(groupInfo), 48)
	if err != nil {
		panic("senderkey: hkdf refused 48 bytes: " + err.Error()) // far under the 255*32 limit
	}
	return out[:16], out[16:48]
}
