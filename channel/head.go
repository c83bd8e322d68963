package channel

import (
	"encoding/binary"
	"fmt"
	"time"
)

// MaxGrants bounds how many delegations a channel can make over its life, so that a
// head stays small (Telegram allows 50 admins; this leaves room for rotations).
const MaxGrants = 1024

// Grant is one delegation as a [Verifier] holds it: the key, its window
// [From, Until) (Until zero: open) and, once revoked, the first sequence number
// it is void from (zero: not revoked).
type Grant struct {
	Key         PublicKey
	From        uint64
	Until       uint64
	RevokedFrom uint64
}

// covers reports whether g's window contains seq, revocation aside.
func (g Grant) covers(seq uint64) bool { return g.From <= seq && (g.Until == 0 || seq < g.Until) }

const grantSize = PublicKeySize + 24

// Head is the owner's signed statement "at time T the channel's newest post is
// number Seq with hash Hash, and these are its admin keys". Owners publish one
// periodically: a subscriber that holds a recent head knows how much it could be
// missing (freshness), one that holds a different post at Seq knows it is shown a
// fork, and a new subscriber can start from one instead of the whole history
// ([NewVerifierAt]).
//
// Wire layout: version(1) || channel(16) || seq(8) || hash(32) || time ms(8) ||
// count(2) || count × (key(32) || from(8) || until(8) || revokedFrom(8)) ||
// Ed25519 signature(64) over labelHead || everything before it.
type Head struct {
	channel ID
	seq     uint64
	hash    Hash
	time    int64
	grants  []Grant
	sig     []byte
}

func (h *Head) body() []byte {
	b := make([]byte, 0, 1+IDSize+8+32+8+2+len(h.grants)*grantSize+SignatureSize)
	b = append(b, version)
	b = append(b, h.channel[:]...)
	b = binary.BigEndian.AppendUint64(b, h.seq)
	b = append(b, h.hash[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.time))
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.grants)))
	for _, g := range h.grants {
		b = append(b, g.Key.k[:]...)
		b = binary.BigEndian.AppendUint64(b, g.From)
		b = binary.BigEndian.AppendUint64(b, g.Until)
		b = binary.BigEndian.AppendUint64(b, g.RevokedFrom)
	}
	return b
}

func (h *Head) signed() []byte { return append([]byte(labelHead), h.body()...) }

// Bytes returns the encoded head.
func (h *Head) Bytes() []byte { return append(h.body(), h.sig...) }

// ParseHead decodes an encoded head, accepting only what [Head.Bytes] produces.
// It does not check the signature: [NewVerifierAt] and [Verifier.CheckHead] do.
func ParseHead(b []byte) (*Head, error) {
	const fixed = 1 + IDSize + 8 + 32 + 8 + 2
	if len(b) < fixed+SignatureSize || b[0] != version {
		return nil, fmt.Errorf("%w: head", ErrMalformed)
	}
	h := new(Head)
	copy(h.channel[:], b[1:])
	h.seq = binary.BigEndian.Uint64(b[17:])
	copy(h.hash[:], b[25:])
	t := binary.BigEndian.Uint64(b[57:])
	n := int(binary.BigEndian.Uint16(b[65:]))
	if t >= 1<<63 || n > MaxGrants || len(b) != fixed+n*grantSize+SignatureSize {
		return nil, fmt.Errorf("%w: head", ErrMalformed)
	}
	h.time = int64(t)
	rest := b[fixed:]
	for range n {
		k, err := NewPublicKey(rest[:PublicKeySize])
		if err != nil {
			return nil, fmt.Errorf("%w: head grant key", ErrMalformed)
		}
		g := Grant{
			Key:         k,
			From:        binary.BigEndian.Uint64(rest[32:]),
			Until:       binary.BigEndian.Uint64(rest[40:]),
			RevokedFrom: binary.BigEndian.Uint64(rest[48:]),
		}
		if g.From == 0 || (g.Until != 0 && g.Until <= g.From) {
			return nil, fmt.Errorf("%w: head grant window", ErrMalformed)
		}
		h.grants = append(h.grants, g)
		rest = rest[grantSize:]
	}
	h.sig = append([]byte{}, rest...)
	return h, nil
}

// Channel returns the channel the head is for.
func (h *Head) Channel() ID { return h.channel }

// Seq returns the sequence number of the newest post.
func (h *Head) Seq() uint64 { return h.seq }

// Hash returns the hash of the newest post.
func (h *Head) Hash() Hash { return h.hash }

// Time returns when the owner signed the head, by its own clock.
func (h *Head) Time() time.Time { return time.UnixMilli(h.time).UTC() }

// Grants returns a copy of the channel's delegations as of the head.
func (h *Head) Grants() []Grant { return append([]Grant(nil), h.grants...) }
