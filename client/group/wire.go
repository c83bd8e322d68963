package group

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"
)

// ErrInvalidEncoding is returned by [NewChange], [NewState] and [NewHistory] for bytes that
// are not the one canonical encoding of a valid value.
var ErrInvalidEncoding = errors.New("group: invalid encoding")

// version is the first byte of every encoding here, so that a later format can be told
// apart rather than misread.
const version = 1

// fields holds the fields of one message, indexed by field number (index 0 unused).
type fields []struct {
	set    bool
	varint uint64
	bytes  []byte
}

// readFields parses b (after the version byte) as a message whose field i has wire type
// types[i-1]. It refuses unknown fields, repeated fields, fields out of ascending order and
// non-minimal varints; whoever calls it still compares a re-encoding with b, so whatever
// slips through here is refused there.
func readFields(b []byte, types ...protowire.Type) (fields, error) {
	if len(b) == 0 || b[0] != version {
		return nil, fmt.Errorf("%w: unknown version", ErrInvalidEncoding)
	}
	b = b[1:]
	f := make(fields, len(types)+1)
	last := protowire.Number(0)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("%w: %w", ErrInvalidEncoding, protowire.ParseError(n))
		}
		if num <= last || int(num) > len(types) || typ != types[num-1] {
			return nil, fmt.Errorf("%w: unexpected field %d", ErrInvalidEncoding, num)
		}
		last = num
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return nil, fmt.Errorf("%w: field %d: %w", ErrInvalidEncoding, num, protowire.ParseError(m))
			}
			f[num].varint = v
			b = b[m:]
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, fmt.Errorf("%w: field %d: %w", ErrInvalidEncoding, num, protowire.ParseError(m))
			}
			f[num].bytes = v
			b = b[m:]
		default:
			return nil, fmt.Errorf("%w: field %d: wire type %d", ErrInvalidEncoding, num, typ)
		}
		f[num].set = true
	}
	return f, nil
}

// canonical returns nil when enc (our encoding of what was parsed) equals the input, so
// that every value has exactly one encoding and a digest of it means one thing.
func canonical(enc, in []byte) error {
	if !bytes.Equal(enc, in) {
		return fmt.Errorf("%w: not canonical", ErrInvalidEncoding)
	}
	return nil
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b // proto3: a zero is omitted
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// appendUUIDs writes ids (sorted ascending, no repeats) as one bytes field of 16-byte ids:
// 16 KiB for a full group, and one encoding for one set.
func appendUUIDs(b []byte, num protowire.Number, ids []uuid.UUID) []byte {
	if len(ids) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(16*len(ids)))
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

// parseUUIDs reads a list written by appendUUIDs: a multiple of 16 bytes, strictly
// ascending (so sorted and without repeats), no nil id, at most max ids.
func parseUUIDs(b []byte, max int) ([]uuid.UUID, error) {
	if len(b)%16 != 0 {
		return nil, fmt.Errorf("%w: member list length %d", ErrInvalidEncoding, len(b))
	}
	if len(b)/16 > max {
		return nil, fmt.Errorf("%w: more than %d members", ErrInvalidEncoding, max)
	}
	ids := make([]uuid.UUID, len(b)/16)
	for i := range ids {
		copy(ids[i][:], b[16*i:])
	}
	if err := checkUUIDs(ids); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEncoding, err)
	}
	return ids, nil
}

// checkUUIDs reports whether ids is a valid member list: sorted ascending, no repeats, no
// nil id.
func checkUUIDs(ids []uuid.UUID) error {
	for i, id := range ids {
		if id == uuid.Nil {
			return errors.New("nil account id")
		}
		if i > 0 && compareUUID(ids[i-1], id) >= 0 {
			return errors.New("member list not sorted or repeated")
		}
	}
	return nil
}

// compareUUID orders ids as their bytes do (two big-endian words, faster than
// bytes.Compare on the sort and search paths of a 1,000-member group).
func compareUUID(a, b uuid.UUID) int {
	if x, y := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8]); x != y {
		return cmp.Compare(x, y)
	}
	return cmp.Compare(binary.BigEndian.Uint64(a[8:]), binary.BigEndian.Uint64(b[8:]))
}

// sortedUUIDs returns the ids sorted ascending with repeats removed.
func sortedUUIDs(ids []uuid.UUID) []uuid.UUID {
	s := slices.Clone(ids)
	slices.SortFunc(s, compareUUID)
	return slices.Compact(s)
}
