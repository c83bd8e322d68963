package senderkey

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// skdmFields builds an SKDM body field by field, so that tests can break one at a time.
type skdmFields struct {
	version  byte
	uuid     []byte
	chainID  []byte // raw varint bytes
	iter     []byte
	chainKey []byte
	signing  []byte
	extra    []byte // appended raw
	order    []int  // field order; nil means 1..5
}

func (f skdmFields) bytes() []byte {
	b := []byte{f.version}
	order := f.order
	if order == nil {
		order = []int{1, 2, 3, 4, 5}
	}
	for _, n := range order {
		switch n {
		case 1:
			if f.uuid != nil {
				b = protowire.AppendTag(b, 1, protowire.BytesType)
				b = protowire.AppendBytes(b, f.uuid)
			}
		case 2:
			if f.chainID != nil {
				b = protowire.AppendTag(b, 2, protowire.VarintType)
				b = append(b, f.chainID...)
			}
		case 3:
			if f.iter != nil {
				b = protowire.AppendTag(b, 3, protowire.VarintType)
				b = append(b, f.iter...)
			}
		case 4:
			if f.chainKey != nil {
				b = protowire.AppendTag(b, 4, protowire.BytesType)
				b = protowire.AppendBytes(b, f.chainKey)
			}
		case 5:
			if f.signing != nil {
				b = protowire.AppendTag(b, 5, protowire.BytesType)
				b = protowire.AppendBytes(b, f.signing)
			}
		}
	}
	return append(b, f.extra...)
}

func TestDistributionMessageEncoding(t *testing.T) {
	p := newPair(t)
	good := skdmFields{
		version:  0x33,
		uuid:     group[:],
		chainID:  protowire.AppendVarint(nil, uint64(p.skdm.chainID)),
		iter:     []byte{0},
		chainKey: p.skdm.chainKey[:],
		signing:  p.skdm.signingKey.Bytes(),
	}
	if got, want := good.bytes(), p.skdm.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("hand-built SKDM = %x, want %x", got, want)
	}
	highBit := bytes.Clone(good.signing)
	highBit[32] |= 0x80
	mod := func(f func(*skdmFields)) []byte {
		c := good
		f(&c)
		return c.bytes()
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"version 2", mod(func(f *skdmFields) { f.version = 0x22 })},
		{"version 4", mod(func(f *skdmFields) { f.version = 0x44 })},
		{"low nibble not 3", mod(func(f *skdmFields) { f.version = 0x30 })},
		{"missing distribution id", mod(func(f *skdmFields) { f.uuid = nil })},
		{"missing chain id", mod(func(f *skdmFields) { f.chainID = nil })},
		{"missing iteration", mod(func(f *skdmFields) { f.iter = nil })},
		{"missing chain key", mod(func(f *skdmFields) { f.chainKey = nil })},
		{"missing signing key", mod(func(f *skdmFields) { f.signing = nil })},
		{"distribution id 15 bytes", mod(func(f *skdmFields) { f.uuid = f.uuid[:15] })},
		{"chain key 31 bytes", mod(func(f *skdmFields) { f.chainKey = f.chainKey[:31] })},
		{"chain key 33 bytes", mod(func(f *skdmFields) { f.chainKey = append(bytes.Clone(f.chainKey), 0) })},
		{"signing key without type byte", mod(func(f *skdmFields) { f.signing = f.signing[1:] })},
		{"signing key type 0x08", mod(func(f *skdmFields) { f.signing = append([]byte{8}, f.signing[1:]...) })},
		{"signing key high bit", mod(func(f *skdmFields) { f.signing = highBit })},
		{"chain id over 32 bits", mod(func(f *skdmFields) { f.chainID = protowire.AppendVarint(nil, 1<<32) })},
		{"non-minimal varint", mod(func(f *skdmFields) { f.iter = []byte{0x80, 0x00} })},
		{"fields out of order", mod(func(f *skdmFields) { f.order = []int{2, 1, 3, 4, 5} })},
		{"field repeated", mod(func(f *skdmFields) { f.order = []int{1, 2, 3, 3, 4, 5} })},
		{"unknown field", mod(func(f *skdmFields) { f.extra = []byte{0x30, 0x01} })},
		{"trailing garbage", mod(func(f *skdmFields) { f.extra = []byte{0xff} })},
		{"truncated", p.skdm.Bytes()[:40]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m, err := NewDistributionMessage(tt.b); !errors.Is(err, ErrInvalidEncoding) {
				t.Errorf("NewDistributionMessage(%x) = %v, %v, want ErrInvalidEncoding", tt.b, m, err)
			}
		})
	}
}

func TestMessageEncoding(t *testing.T) {
	p := newPair(t)
	ct := p.encrypt(t, "hello")
	m, err := NewMessage(ct)
	if err != nil {
		t.Fatalf("NewMessage: %v", err)
	}
	if !bytes.Equal(m.Bytes(), ct) {
		t.Errorf("NewMessage(ct).Bytes() = %x, want %x", m.Bytes(), ct)
	}
	if m.DistributionID() != group || m.ChainID() != p.skdm.chainID || m.Iteration() != 0 {
		t.Errorf("NewMessage(ct) = (%v, %d, %d), want (%v, %d, 0)", m.DistributionID(), m.ChainID(), m.Iteration(), group, p.skdm.chainID)
	}
	// Parsing copies: changing the input afterwards changes nothing.
	ct[len(ct)-70] ^= 1
	if bytes.Equal(m.Bytes(), ct) {
		t.Errorf("Message aliases the bytes it was parsed from")
	}
	ct[len(ct)-70] ^= 1

	sig := ct[len(ct)-64:]
	body := func(fs ...[]byte) []byte {
		b := []byte{0x33}
		for _, f := range fs {
			b = append(b, f...)
		}
		return append(b, sig...)
	}
	f := func(n protowire.Number, typ protowire.Type, v []byte) []byte {
		b := protowire.AppendTag(nil, n, typ)
		if typ == protowire.BytesType {
			return protowire.AppendBytes(b, v)
		}
		return append(b, v...)
	}
	id := f(1, protowire.BytesType, group[:])
	chain := f(2, protowire.VarintType, []byte{5})
	iter := f(3, protowire.VarintType, []byte{0})
	block := f(4, protowire.BytesType, make([]byte, 16))
	if _, err := NewMessage(body(id, chain, iter, block)); err != nil {
		t.Fatalf("NewMessage(well-formed) = %v", err)
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"only a signature", append([]byte{0x33}, sig...)},
		{"64 bytes", ct[:64]},
		{"version 0x44", append([]byte{0x44}, ct[1:]...)},
		{"version 0x23", append([]byte{0x23}, ct[1:]...)},
		{"missing ciphertext", body(id, chain, iter)},
		{"missing iteration", body(id, chain, block)},
		{"missing chain id", body(id, iter, block)},
		{"missing distribution id", body(chain, iter, block)},
		{"ciphertext 15 bytes", body(id, chain, iter, f(4, protowire.BytesType, make([]byte, 15)))},
		{"ciphertext empty", body(id, chain, iter, f(4, protowire.BytesType, nil))},
		{"out of order", body(chain, id, iter, block)},
		{"repeated", body(id, chain, chain, iter, block)},
		{"unknown field", body(id, chain, iter, block, f(5, protowire.VarintType, []byte{1}))},
		{"wrong wire type", body(id, f(2, protowire.BytesType, []byte{5}), iter, block)},
		{"fixed32 field", body(id, chain, iter, block, protowire.AppendFixed32(protowire.AppendTag(nil, 6, protowire.Fixed32Type), 1))},
		{"non-minimal varint", body(id, chain, f(3, protowire.VarintType, []byte{0x80, 0}), block)},
		{"iteration over 32 bits", body(id, chain, f(3, protowire.VarintType, protowire.AppendVarint(nil, 1<<32)), block)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m, err := NewMessage(tt.b); !errors.Is(err, ErrInvalidEncoding) {
				t.Errorf("NewMessage(%x) = %v, %v, want ErrInvalidEncoding", tt.b, m, err)
			}
		})
	}
}

func TestDistributionMessageRoundTrip(t *testing.T) {
	p := newPair(t)
	b := p.skdm.Bytes()
	m, err := NewDistributionMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Equal(p.skdm) || !bytes.Equal(m.Bytes(), b) {
		t.Errorf("NewDistributionMessage(%x) = %x, want the same message", b, m.Bytes())
	}
}
