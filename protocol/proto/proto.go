// Package proto encodes and decodes, by hand, the protobuf messages of the Signal
// Protocol: the wire messages libsignal exchanges (rust/protocol/src/proto/wire.proto at
// v0.90.0, plus field 6 of SignalMessage from v0.91.0) and Bastion's own storage
// records, modelled on libsignal's storage.proto. wire.proto in this directory is the
// schema, written out as documentation of exactly what is encoded here.
//
// Only google.golang.org/protobuf/encoding/protowire is used, for tags and varints.
//
// What it protects: the parsers see bytes straight from a peer, so they are strict: an
// unknown field, a wrong wire type, a repeated singular field, a truncated value, an
// integer out of range or a missing required field is an error, never a panic and never
// silently skipped. Decoding then encoding a message gives a message that decodes to
// the same value. What it does not: any cryptographic check (package protocol does those).
package proto

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// ErrInvalid is wrapped by every decoding error.
var ErrInvalid = errors.New("proto: invalid encoding")

// field is one decoded field: a varint or a length-delimited value.
type field struct {
	num   protowire.Number
	typ   protowire.Type
	v     uint64
	bytes []byte
}

// walk calls fn for every field of b. repeated lists the field numbers that may occur
// more than once; any other number seen twice is an error. Field numbers must be below
// 64 (all of ours are).
func walk(b []byte, repeated uint64, fn func(f field) error) error {
	var seen uint64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: bad tag: %v", ErrInvalid, protowire.ParseError(n))
		}
		b = b[n:]
		if num >= 64 {
			return fmt.Errorf("%w: unknown field %d", ErrInvalid, num)
		}
		bit := uint64(1) << num
		if seen&bit != 0 && repeated&bit == 0 {
			return fmt.Errorf("%w: field %d repeated", ErrInvalid, num)
		}
		seen |= bit
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("%w: field %d: %v", ErrInvalid, num, protowire.ParseError(n))
			}
			f.v, b = v, b[n:]
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: field %d: %v", ErrInvalid, num, protowire.ParseError(n))
			}
			f.bytes, b = v, b[n:]
		case protowire.Fixed64Type:
			v, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return fmt.Errorf("%w: field %d: %v", ErrInvalid, num, protowire.ParseError(n))
			}
			f.v, b = v, b[n:]
		default:
			return fmt.Errorf("%w: field %d: unsupported wire type %d", ErrInvalid, num, typ)
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

func (f field) uint32() (uint32, error) {
	if f.typ != protowire.VarintType {
		return 0, f.wrongType()
	}
	if f.v > math.MaxUint32 {
		return 0, fmt.Errorf("%w: field %d: %d overflows uint32", ErrInvalid, f.num, f.v)
	}
	return uint32(f.v), nil
}

func (f field) int32() (int32, error) {
	if f.typ != protowire.VarintType {
		return 0, f.wrongType()
	}
	v := int64(f.v)
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, fmt.Errorf("%w: field %d: %d overflows int32", ErrInvalid, f.num, v)
	}
	return int32(v), nil
}

func (f field) uint64() (uint64, error) {
	if f.typ != protowire.VarintType {
		return 0, f.wrongType()
	}
	return f.v, nil
}

func (f field) fixed64() (uint64, error) {
	if f.typ != protowire.Fixed64Type {
		return 0, f.wrongType()
	}
	return f.v, nil
}

// data returns a copy of a length-delimited value, so decoded messages never alias
// the caller's buffer.
func (f field) data() ([]byte, error) {
	if f.typ != protowire.BytesType {
		return nil, f.wrongType()
	}
	return append([]byte{}, f.bytes...), nil
}

// message returns the raw bytes of an embedded message, without copying; the caller
// decodes them at once.
func (f field) message() ([]byte, error) {
	if f.typ != protowire.BytesType {
		return nil, f.wrongType()
	}
	return f.bytes, nil
}

func (f field) wrongType() error {
	return fmt.Errorf("%w: field %d has wrong wire type %d", ErrInvalid, f.num, f.typ)
}

func unknown(num protowire.Number) error {
	return fmt.Errorf("%w: unknown field %d", ErrInvalid, num)
}

func missing(name string) error {
	return fmt.Errorf("%w: missing %s", ErrInvalid, name)
}

func appendUint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendFixed64(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// appendNonZero* write proto3-style fields: omitted when zero.
func appendNonZeroUint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return appendUint(b, num, v)
}

func appendNonEmpty(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	return appendBytes(b, num, v)
}
