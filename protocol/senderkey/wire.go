package senderkey

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// errEncoding is the cause of every protobuf parse failure.
var errEncoding = errors.New("invalid protobuf encoding")

// field is one protobuf field: a varint or a length-delimited value. The schemas here
// (libsignal's wire.proto and storage.proto for sender keys) use no other wire types.
type field struct {
	num    protowire.Number
	typ    protowire.Type
	varint uint64
	bytes  []byte
}

// readField reads the field at the start of b and returns it with its length. It refuses
// wire types other than varint and bytes and varints that are not minimally encoded, so
// that every value has exactly one encoding.
func readField(b []byte) (field, int, error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return field{}, 0, fmt.Errorf("%w: %v", errEncoding, protowire.ParseError(n))
	}
	if n != protowire.SizeTag(num) {
		return field{}, 0, fmt.Errorf("%w: non-minimal tag", errEncoding)
	}
	f := field{num: num, typ: typ}
	switch typ {
	case protowire.VarintType:
		v, m := protowire.ConsumeVarint(b[n:])
		if m < 0 {
			return field{}, 0, fmt.Errorf("%w: field %d: %v", errEncoding, num, protowire.ParseError(m))
		}
		if m != protowire.SizeVarint(v) {
			return field{}, 0, fmt.Errorf("%w: field %d: non-minimal varint", errEncoding, num)
		}
		f.varint = v
		n += m
	case protowire.BytesType:
		l, m := protowire.ConsumeVarint(b[n:])
		if m < 0 {
			return field{}, 0, fmt.Errorf("%w: field %d: %v", errEncoding, num, protowire.ParseError(m))
		}
		if m != protowire.SizeVarint(l) {
			return field{}, 0, fmt.Errorf("%w: field %d: non-minimal length", errEncoding, num)
		}
		n += m
		if l > uint64(len(b)-n) {
			return field{}, 0, fmt.Errorf("%w: field %d: truncated", errEncoding, num)
		}
		f.bytes = b[n : n+int(l)]
		n += int(l)
	default:
		return field{}, 0, fmt.Errorf("%w: field %d: unexpected wire type %d", errEncoding, num, typ)
	}
	return f, n, nil
}

// readFields reads every field of a message whose fields are 1..len(types), each of the
// given wire type, present at most once and in ascending order: the canonical form our
// encoders and libsignal's (prost) both produce. Unknown fields are refused.
func readFields(b []byte, types ...protowire.Type) ([]field, []bool, error) {
	fields := make([]field, len(types))
	present := make([]bool, len(types))
	last := protowire.Number(0)
	for len(b) > 0 {
		f, n, err := readField(b)
		if err != nil {
			return nil, nil, err
		}
		if f.num < 1 || int(f.num) > len(types) {
			return nil, nil, fmt.Errorf("%w: unknown field %d", errEncoding, f.num)
		}
		if f.num <= last {
			return nil, nil, fmt.Errorf("%w: field %d out of order or repeated", errEncoding, f.num)
		}
		if f.typ != types[f.num-1] {
			return nil, nil, fmt.Errorf("%w: field %d has wire type %d", errEncoding, f.num, f.typ)
		}
		last = f.num
		fields[f.num-1] = f
		present[f.num-1] = true
		b = b[n:]
	}
	return fields, present, nil
}

// uint32Field returns a varint field's value if it fits a uint32.
func uint32Field(f field) (uint32, error) {
	if f.varint > 1<<32-1 {
		return 0, fmt.Errorf("%w: field %d: %d overflows uint32", errEncoding, f.num, f.varint)
	}
	return uint32(f.varint), nil
}
