package channel

import (
	"crypto"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Action is what the operator did to a post after a notice (EU Digital Services
// Act, Art. 16 and 17). The zero value is invalid.
type Action uint8

// Actions. Values are the wire encoding.
const (
	// ActionRestrict withholds the post from subscribers in one jurisdiction.
	ActionRestrict Action = 1
	// ActionRemove withholds the post from everyone.
	ActionRemove Action = 2
)

// String names the action.
func (a Action) String() string {
	switch a {
	case ActionRestrict:
		return "restricted"
	case ActionRemove:
		return "removed"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// MaxReasonLen bounds a statement of reasons, in bytes of UTF-8; a longer one is a
// link to a page.
const MaxReasonLen = 1024

// Notice is the operator's signed statement of reasons for withholding a post's
// body. It names the post by hash, so it cannot be moved to another post, and a
// subscriber shown a withheld post gets it in place of a silent hole.
//
// Wire layout: version(1) || channel(16) || seq(8) || post hash(32) || action(1) ||
// time ms(8) || len(1) jurisdiction || len(2) reason || Ed25519 signature(64)
// over labelNotice || everything before it, by the operator's server key.
type Notice struct {
	Channel ID
	Seq     uint64
	Post    Hash
	Action  Action
	// Jurisdiction is the ISO 3166-1 alpha-2 code a restriction applies in; empty
	// for a removal.
	Jurisdiction string
	// Reason is the statement of reasons: the ground, the facts, the redress.
	Reason string
	Time   time.Time

	sig []byte
}

// SignNotice signs n with the operator's Ed25519 key (crypto.Signer, so that a key
// in an HSM or internal/legal's server key can sign).
func SignNotice(key crypto.Signer, n Notice) (*Notice, error) {
	if _, ok := key.Public().(ed25519.PublicKey); !ok {
		return nil, errors.New("channel: notice key is not Ed25519")
	}
	if err := n.check(); err != nil {
		return nil, err
	}
	n.Time = time.UnixMilli(n.Time.UnixMilli()).UTC()
	sig, err := key.Sign(nil, n.signed(), crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("signing notice: %w", err)
	}
	n.sig = sig
	return &n, nil
}

func (n *Notice) check() error {
	switch n.Action {
	case ActionRestrict:
		j := n.Jurisdiction
		if len(j) != 2 || j[0] < 'A' || j[0] > 'Z' || j[1] < 'A' || j[1] > 'Z' {
			return fmt.Errorf("%w: jurisdiction %q", ErrMalformed, j)
		}
	case ActionRemove:
		if n.Jurisdiction != "" {
			return fmt.Errorf("%w: jurisdiction in a removal", ErrMalformed)
		}
	default:
		return fmt.Errorf("%w: action %d", ErrMalformed, uint8(n.Action))
	}
	// A statement of reasons is owed (DSA Art. 17): an empty one is refused.
	if n.Reason == "" || len(n.Reason) > MaxReasonLen || !utf8.ValidString(n.Reason) {
		return fmt.Errorf("%w: statement of reasons", ErrMalformed)
	}
	if n.Seq == 0 || n.Time.UnixMilli() < 0 {
		return fmt.Errorf("%w: notice", ErrMalformed)
	}
	return nil
}

func (n *Notice) body() []byte {
	b := make([]byte, 0, 1+IDSize+8+32+1+8+1+len(n.Jurisdiction)+2+len(n.Reason)+SignatureSize)
	b = append(b, version)
	b = append(b, n.Channel[:]...)
	b = binary.BigEndian.AppendUint64(b, n.Seq)
	b = append(b, n.Post[:]...)
	b = append(b, byte(n.Action))
	b = binary.BigEndian.AppendUint64(b, uint64(n.Time.UnixMilli()))
	b = append(b, byte(len(n.Jurisdiction)))
	b = append(b, n.Jurisdiction...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(n.Reason)))
	return append(b, n.Reason...)
}

func (n *Notice) signed() []byte { return append([]byte(labelNotice), n.body()...) }

// Bytes returns the encoded notice.
func (n *Notice) Bytes() []byte { return append(n.body(), n.sig...) }

// Verify reports whether operator signed n.
func (n *Notice) Verify(operator ed25519.PublicKey) bool {
	return len(operator) == ed25519.PublicKeySize && len(n.sig) == SignatureSize &&
		ed25519.Verify(operator, n.signed(), n.sig)
}

// ParseNotice decodes an encoded notice, accepting only what [Notice.Bytes]
// produces. It does not check the signature.
func ParseNotice(b []byte) (*Notice, error) {
	bad := fmt.Errorf("%w: notice", ErrMalformed)
	const fixed = 1 + IDSize + 8 + 32 + 1 + 8 + 1
	if len(b) < fixed+2+SignatureSize || b[0] != version {
		return nil, bad
	}
	n := new(Notice)
	copy(n.Channel[:], b[1:])
	n.Seq = binary.BigEndian.Uint64(b[17:])
	copy(n.Post[:], b[25:])
	n.Action = Action(b[57])
	t := binary.BigEndian.Uint64(b[58:])
	if t >= 1<<63 {
		return nil, bad
	}
	n.Time = time.UnixMilli(int64(t)).UTC()
	jl := int(b[66])
	rest := b[fixed:]
	if len(rest) < jl+2 {
		return nil, bad
	}
	n.Jurisdiction, rest = string(rest[:jl]), rest[jl:]
	rl := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != rl+SignatureSize {
		return nil, bad
	}
	n.Reason = string(rest[:rl])
	n.sig = append([]byte{}, rest[rl:]...)
	if err := n.check(); err != nil {
		return nil, err
	}
	return n, nil
}
