package group

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
)

// Limits on what a peer can make a member hold.
const (
	// MaxMembers is the most members a group can have: Signal's limit. A full state
	// encodes in about 32 KiB, well inside one 96 KiB envelope.
	MaxMembers = 1000
	// MaxTitle is the longest title, in bytes of UTF-8.
	MaxTitle = 256
	// MaxChanges is the most changes one group's history holds; past it a member refuses
	// new ones, so a peer cannot grow its memory without bound.
	MaxChanges = 1 << 16
	// MaxPending is the most changes held back waiting for the changes they build on.
	MaxPending = 1024
	// maxBase bounds a change's base revision so that base+1 never overflows.
	maxBase = 1 << 62
)

// ID names a group: 32 random bytes chosen by its creator, so that no one can guess the
// id of a group they are not in.
type ID [32]byte

// GenerateID returns a random group id read from r (crypto/rand when r is nil).
func GenerateID(r io.Reader) (ID, error) {
	var id ID
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, id[:]); err != nil {
		return ID{}, fmt.Errorf("generating group id: %w", err)
	}
	return id, nil
}

// String returns the id in hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ChangeID names one change: 16 random bytes chosen by its author. It is the last
// tie-break of the order in which changes apply, so it must be unpredictable to the
// other admins: none can arrange for its own concurrent change to sort first.
type ChangeID [16]byte

// String returns the id in hex.
func (id ChangeID) String() string { return hex.EncodeToString(id[:]) }

// Kind is what a change does. Its numeric value is also its rank among concurrent
// changes (the same base revision): grants first, then removals, so that a removal wins
// over a concurrent add or promotion of the same member. The zero value is invalid.
type Kind uint8

const (
	// KindCreate makes the group: its author is the first member and admin, Members are
	// the other first members. Its base revision is 0.
	KindCreate Kind = iota + 1
	// KindAdd adds Members. Admins only.
	KindAdd
	// KindPromote makes Members admins. Admins only.
	KindPromote
	// KindRename sets the title. Admins only.
	KindRename
	// KindRemove removes Members (admins among them lose that too). Admins only.
	KindRemove
	// KindLeave removes the author. Any member.
	KindLeave
	kindEnd
)

var kindNames = [...]string{"", "create", "add", "promote", "rename", "remove", "leave"}

// String returns the kind's name ("create", "add", ...).
func (k Kind) String() string {
	if k == 0 || k >= kindEnd {
		return fmt.Sprintf("Kind(%d)", k)
	}
	return kindNames[k]
}

// Change is one group-control message. It travels end to end, inside a 1:1 session from
// its author to every member, so the server never sees it. A receiver must check that the
// session it came over is the author's ([Group.Receive] takes the authenticated sender
// for that).
//
//	message Change {          // preceded by the version byte 0x01
//	  bytes  group   = 1;     // 32 bytes
//	  bytes  author  = 2;     // 16-byte account id
//	  uint64 base    = 3;     // the revision the author's state was at (0 for create)
//	  bytes  id      = 4;     // 16 random bytes
//	  uint32 kind    = 5;
//	  string title   = 6;     // create and rename only, 1..MaxTitle bytes of UTF-8
//	  bytes  members = 7;     // 16-byte account ids, ascending, no repeats
//	}
type Change struct {
	Group  ID
	Author uuid.UUID
	// Base is the revision of the author's state when it made the change: the change
	// applies after every change whose base is lower.
	Base    uint64
	ID      ChangeID
	Kind    Kind
	Title   string
	Members []uuid.UUID
}

// compare orders changes: by base revision, then kind (grants before removals), then author,
// then change id. Every member folds its set of changes in this order.
func (c *Change) compare(o *Change) int {
	if c.Base != o.Base {
		if c.Base < o.Base {
			return -1
		}
		return 1
	}
	if c.Kind != o.Kind {
		return int(c.Kind) - int(o.Kind)
	}
	if x := compareUUID(c.Author, o.Author); x != 0 {
		return x
	}
	return bytes.Compare(c.ID[:], o.ID[:])
}

// validate checks everything about c that does not depend on the group's state.
func (c *Change) validate() error {
	if c.Kind == 0 || c.Kind >= kindEnd {
		return fmt.Errorf("unknown kind %d", c.Kind)
	}
	if c.Author == uuid.Nil {
		return errors.New("no author")
	}
	if c.ID == (ChangeID{}) {
		return errors.New("no change id")
	}
	if (c.Kind == KindCreate) != (c.Base == 0) {
		return errors.New("base revision 0 is for create, and only for create")
	}
	if c.Base > maxBase {
		return errors.New("base revision out of range")
	}
	switch c.Kind {
	case KindCreate, KindRename:
		if err := checkTitle(c.Title); err != nil {
			return err
		}
	default:
		if c.Title != "" {
			return fmt.Errorf("%s with a title", c.Kind)
		}
	}
	if err := checkUUIDs(c.Members); err != nil {
		return err
	}
	switch c.Kind {
	case KindCreate:
		if len(c.Members) > MaxMembers-1 {
			return fmt.Errorf("more than %d members", MaxMembers)
		}
		if _, found := slices.BinarySearchFunc(c.Members, c.Author, compareUUID); found {
			return errors.New("create lists its author as a member")
		}
	case KindAdd, KindPromote, KindRemove:
		if len(c.Members) == 0 || len(c.Members) > MaxMembers {
			return fmt.Errorf("%s of %d members", c.Kind, len(c.Members))
		}
	default:
		if len(c.Members) != 0 {
			return fmt.Errorf("%s with members", c.Kind)
		}
	}
	return nil
}

func checkTitle(t string) error {
	if t == "" || len(t) > MaxTitle || !utf8.ValidString(t) {
		return fmt.Errorf("title must be 1 to %d bytes of UTF-8", MaxTitle)
	}
	return nil
}

// Bytes returns the change's canonical encoding. It encodes c as it is: [NewChange] takes
// it back only if c is a valid change (as every change a Group method makes is).
func (c *Change) Bytes() []byte {
	b := []byte{version}
	b = appendBytes(b, 1, c.Group[:])
	b = appendBytes(b, 2, c.Author[:])
	b = appendVarint(b, 3, c.Base)
	b = appendBytes(b, 4, c.ID[:])
	b = appendVarint(b, 5, uint64(c.Kind))
	b = appendBytes(b, 6, []byte(c.Title))
	b = appendUUIDs(b, 7, c.Members)
	return b
}

// NewChange parses and validates a change's encoding. Only the canonical encoding of a
// valid change is accepted.
func NewChange(b []byte) (*Change, error) {
	const v, by = protowire.VarintType, protowire.BytesType
	f, err := readFields(b, by, by, v, by, v, by, by)
	if err != nil {
		return nil, err
	}
	c := &Change{Base: f[3].varint, Title: string(f[6].bytes)}
	if len(f[1].bytes) != len(c.Group) || len(f[2].bytes) != 16 || len(f[4].bytes) != len(c.ID) {
		return nil, fmt.Errorf("%w: wrong id length", ErrInvalidEncoding)
	}
	copy(c.Group[:], f[1].bytes)
	copy(c.Author[:], f[2].bytes)
	copy(c.ID[:], f[4].bytes)
	if f[5].varint >= uint64(kindEnd) {
		return nil, fmt.Errorf("%w: unknown kind", ErrInvalidEncoding)
	}
	c.Kind = Kind(f[5].varint)
	if c.Members, err = parseUUIDs(f[7].bytes, MaxMembers); err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEncoding, err)
	}
	if err := canonical(c.Bytes(), b); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Change) clone() *Change {
	d := *c
	d.Members = slices.Clone(c.Members)
	return &d
}

// History encoding: the version byte, then every change of a group as field 1, in the
// order they apply (see [Change]), each once.
//
//	message History { repeated bytes change = 1; }

// NewHistory parses a group's history as [Group.History] writes it: changes of one group,
// its one create first, in order, no change id twice, at most [MaxChanges].
func NewHistory(b []byte) ([]*Change, error) {
	if len(b) == 0 || b[0] != version {
		return nil, fmt.Errorf("%w: unknown version", ErrInvalidEncoding)
	}
	var cs []*Change
	ids := map[ChangeID]bool{}
	rest := b[1:]
	for len(rest) > 0 {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return nil, fmt.Errorf("%w: unexpected field", ErrInvalidEncoding)
		}
		v, m := protowire.ConsumeBytes(rest[n:])
		if m < 0 {
			return nil, fmt.Errorf("%w: %w", ErrInvalidEncoding, protowire.ParseError(m))
		}
		rest = rest[n+m:]
		if len(cs) == MaxChanges {
			return nil, fmt.Errorf("%w: more than %d changes", ErrInvalidEncoding, MaxChanges)
		}
		c, err := NewChange(v)
		if err != nil {
			return nil, fmt.Errorf("change %d: %w", len(cs), err)
		}
		if (len(cs) == 0) != (c.Kind == KindCreate) {
			return nil, fmt.Errorf("%w: history does not start with its one create", ErrInvalidEncoding)
		}
		if len(cs) > 0 && (c.Group != cs[0].Group || cs[len(cs)-1].compare(c) >= 0) {
			return nil, fmt.Errorf("%w: change %d out of order or of another group", ErrInvalidEncoding, len(cs))
		}
		if ids[c.ID] {
			return nil, fmt.Errorf("%w: change id %d repeated", ErrInvalidEncoding, len(cs))
		}
		ids[c.ID] = true
		cs = append(cs, c)
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("%w: empty history", ErrInvalidEncoding)
	}
	if err := canonical(appendHistory(nil, cs), b); err != nil {
		return nil, err
	}
	return cs, nil
}

func appendHistory(b []byte, cs []*Change) []byte {
	b = append(b, version)
	for _, c := range cs {
		b = appendBytes(b, 1, c.Bytes())
	}
	return b
}
