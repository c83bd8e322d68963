package group

import (
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
)

// State is a group as its members see it: the fold of every change they hold (see
// [Group]). Two members holding the same changes hold equal States, byte for byte.
//
//	message State {                  // preceded by the version byte 0x01
//	  bytes  group           = 1;    // 32 bytes
//	  string title           = 2;
//	  uint64 revision        = 3;
//	  bytes  members         = 4;    // 16-byte account ids, ascending
//	  bytes  admins          = 5;    // a subset of members, ascending
//	  uint64 epoch           = 6;
//	  bytes  distribution_id = 7;    // 16 bytes
//	}
type State struct {
	Group ID
	Title string
	// Revision is the base revision a change made now names: one more than the highest
	// base of the changes folded so far, applied or rejected.
	Revision uint64
	// Members and Admins are account ids, sorted ascending; Admins is a subset of Members.
	Members []uuid.UUID
	Admins  []uuid.UUID
	// Epoch counts the sender-key rotations: the changes, applied or refused for a full
	// group, that took a member out or kept one out.
	Epoch uint64
	// DistributionID is the sender-key distribution id of this epoch: every member sends
	// under it on a chain it made after the epoch began (see [PlanFor]).
	DistributionID uuid.UUID
}

// IsMember reports whether id is a member.
func (s *State) IsMember(id uuid.UUID) bool {
	_, ok := slices.BinarySearchFunc(s.Members, id, compareUUID)
	return ok
}

// IsAdmin reports whether id is an admin.
func (s *State) IsAdmin(id uuid.UUID) bool {
	_, ok := slices.BinarySearchFunc(s.Admins, id, compareUUID)
	return ok
}

// Bytes returns the state's canonical encoding.
func (s *State) Bytes() []byte {
	b := make([]byte, 0, 64+len(s.Title)+16*(len(s.Members)+len(s.Admins)+1)+16)
	b = append(b, version)
	b = appendBytes(b, 1, s.Group[:])
	b = appendBytes(b, 2, []byte(s.Title))
	b = appendVarint(b, 3, s.Revision)
	b = appendUUIDs(b, 4, s.Members)
	b = appendUUIDs(b, 5, s.Admins)
	b = appendVarint(b, 6, s.Epoch)
	b = appendBytes(b, 7, s.DistributionID[:])
	return b
}

// Digest returns SHA-256 over a label and the state's encoding. Members holding the same
// changes have the same digest; comparing digests shows whether they do.
func (s *State) Digest() [32]byte {
	h := sha256.New()
	h.Write([]byte("Bastion group state v1\x00")) // domain separation from any other hash of these bytes
	h.Write(s.Bytes())
	return [32]byte(h.Sum(nil))
}

// NewState parses and validates a state's encoding. Only the canonical encoding of a
// valid state is accepted: a title of at most MaxTitle bytes of UTF-8, at most
// [MaxMembers] members, admins among the members, a distribution id.
func NewState(b []byte) (*State, error) {
	const v, by = protowire.VarintType, protowire.BytesType
	f, err := readFields(b, by, by, v, by, by, v, by)
	if err != nil {
		return nil, err
	}
	s := &State{Title: string(f[2].bytes), Revision: f[3].varint, Epoch: f[6].varint}
	if len(f[1].bytes) != len(s.Group) || len(f[7].bytes) != 16 {
		return nil, fmt.Errorf("%w: wrong id length", ErrInvalidEncoding)
	}
	copy(s.Group[:], f[1].bytes)
	copy(s.DistributionID[:], f[7].bytes)
	if f[2].set {
		if err := checkTitle(s.Title); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidEncoding, err)
		}
	}
	if s.Members, err = parseUUIDs(f[4].bytes, MaxMembers); err != nil {
		return nil, err
	}
	if s.Admins, err = parseUUIDs(f[5].bytes, MaxMembers); err != nil {
		return nil, err
	}
	for _, a := range s.Admins {
		if !s.IsMember(a) {
			return nil, fmt.Errorf("%w: an admin who is not a member", ErrInvalidEncoding)
		}
	}
	if err := canonical(s.Bytes(), b); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *State) clone() *State {
	if s == nil {
		return nil
	}
	t := *s
	t.Members = slices.Clone(s.Members)
	t.Admins = slices.Clone(s.Admins)
	return &t
}
