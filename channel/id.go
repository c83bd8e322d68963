package channel

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// IDSize is the size of a channel id.
const IDSize = 16

// ID names a channel. It is derived from the owner's public key and a nonce
// (see [DeriveID]), so a server cannot pair a known channel id with a key of its own.
type ID [IDSize]byte

// Domain-separation labels: each signed or hashed structure has its own, so a
// signature or hash made for one can never be read as another.
const (
	labelID       = "bastion channel id v1\x00"
	labelPost     = "bastion channel post v1\x00"
	labelPostHash = "bastion channel post hash v1\x00"
	labelBody     = "bastion channel body v1\x00"
	labelHead     = "bastion channel head v1\x00"
	labelNotice   = "bastion channel notice v1\x00"
)

// DeriveID returns the id of the channel owned by owner with the given nonce:
// the first 16 bytes of SHA-256(label || owner || nonce). 128 bits keep a second
// preimage (another key for someone else's id) out of reach; the nonce lets one key
// own several channels.
func DeriveID(owner PublicKey, nonce [16]byte) ID {
	h := sha256.New()
	h.Write([]byte(labelID))
	h.Write(owner.k[:])
	h.Write(nonce[:])
	var id ID
	copy(id[:], h.Sum(nil))
	return id
}

// String returns the id in hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID decodes an id from the hex [ID.String] returns.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != IDSize {
		return id, fmt.Errorf("channel: invalid id %q", s)
	}
	copy(id[:], b)
	return id, nil
}

// Hash is the SHA-256 hash of a post, the link of the chain.
type Hash [32]byte

// String returns the hash in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Handle limits: a handle is 5 to 32 characters.
const (
	MinHandleLen = 5
	MaxHandleLen = 32
)

// ErrInvalidHandle is returned by [ParseHandle] for text that is not a valid handle.
var ErrInvalidHandle = errors.New("channel: invalid handle")

// Handle is a channel's public name, shown as @name. It is lowercase letters,
// digits and underscores, 5 to 32 of them, starting with a letter (so that no
// handle reads as a number).
type Handle string

// ParseHandle validates a handle, with or without its leading '@'.
func ParseHandle(s string) (Handle, error) {
	name := strings.TrimPrefix(s, "@")
	if err := validHandle(name); err != nil {
		return "", err
	}
	return Handle(name), nil
}

// validHandle checks a handle without its '@'.
func validHandle(name string) error {
	if len(name) < MinHandleLen || len(name) > MaxHandleLen {
		return fmt.Errorf("%w: %d characters, want %d to %d", ErrInvalidHandle, len(name), MinHandleLen, MaxHandleLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c == '_' && i > 0, c >= '0' && c <= '9' && i > 0:
		default:
			return fmt.Errorf("%w: character %d", ErrInvalidHandle, i+1)
		}
	}
	return nil
}

// String returns the handle with its '@'.
func (h Handle) String() string { return "@" + string(h) }

// Text limits of [Info], in bytes of UTF-8.
const (
	MaxTitleLen       = 128
	MaxDescriptionLen = 2048
)

// Info is what a channel says about itself in its genesis post.
type Info struct {
	Handle      Handle
	Title       string
	Description string
	// Private channels carry Sender Key ciphertext in their posts (see package
	// channel/private); their handle, title and description stay public.
	Private bool
	// Nonce is mixed into the channel id; [Create] picks it at random.
	Nonce [16]byte
}

// validate checks the fields of an Info.
func (in *Info) validate() error {
	if err := validHandle(string(in.Handle)); err != nil {
		return err
	}
	if in.Title == "" || len(in.Title) > MaxTitleLen || !utf8.ValidString(in.Title) {
		return errors.New("channel: title must be 1 to 128 bytes of UTF-8")
	}
	if len(in.Description) > MaxDescriptionLen || !utf8.ValidString(in.Description) {
		return errors.New("channel: description must be at most 2048 bytes of UTF-8")
	}
	return nil
}
