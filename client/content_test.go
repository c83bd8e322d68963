package client

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestPad(t *testing.T) {
	for _, n := range []int{0, 1, 158, 159, 160, 161, 319, 320, 1000} {
		in := bytes.Repeat([]byte{0x80}, n) // the padding byte itself inside the message
		p := pad(in)
		if len(p)%padBlock != 0 || len(p) <= n {
			t.Errorf("len(pad(%d bytes)) = %d, want a multiple of %d above %d", n, len(p), padBlock, n)
		}
		got, err := unpad(p)
		if err != nil || !bytes.Equal(got, in) {
			t.Errorf("unpad(pad(%d bytes)) = %d bytes, %v; want the input back", n, len(got), err)
		}
	}
	for _, bad := range [][]byte{nil, {}, {0, 0, 0}, {1, 2, 3}, {0x80, 0, 1}} {
		if _, err := unpad(bad); !errors.Is(err, errBadContent) {
			t.Errorf("unpad(%x) = %v, want errBadContent", bad, err)
		}
	}
}

func TestContentRoundTrip(t *testing.T) {
	for _, c := range []Content{
		{},
		{Text: "hello"},
		{Text: "héllo ✓", SentMS: 1795457221176, SenderNumber: "+14155550100"},
		{Text: strings.Repeat("x", 5000), SentMS: 1, SyncDestination: uuid.MustParse("5f0c3a5e-1111-4222-8333-944455556666")},
		{Text: "to the group", GroupID: bytes.Repeat([]byte{7}, 32)},
		{GroupID: bytes.Repeat([]byte{1}, 32), GroupChanges: []byte{1, 2, 3}, SenderKeyDistribution: []byte{0x33, 4}},
		{ChannelID: bytes.Repeat([]byte{2}, 16), ChannelSigner: bytes.Repeat([]byte{3}, 32), ChannelDistribution: []byte{0x33}},
		{ChannelID: bytes.Repeat([]byte{2}, 16), ChannelSigner: bytes.Repeat([]byte{3}, 32), ChannelDistribution: []byte{0x33},
			ChannelAdmissionSig: bytes.Repeat([]byte{4}, 64)},
	} {
		got, err := unmarshalContent(c.marshal())
		if err != nil || !reflect.DeepEqual(*got, c) {
			t.Errorf("unmarshalContent(marshal(%+v)) = %+v, %v; want it back", c, got, err)
		}
	}
}

func TestContentVersion(t *testing.T) {
	c := &Content{Text: "hi", SentMS: 5}
	got, err := decodeContent(encodeContent(c))
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("decodeContent(encodeContent(%+v)) = %+v, %v", c, got, err)
	}
	for _, bad := range [][]byte{pad(nil), pad([]byte{0x02, 0x0a, 0x01, 'x'}), pad(c.marshal())} {
		if _, err := decodeContent(bad); !errors.Is(err, errBadContent) {
			t.Errorf("decodeContent(%x) = %v, want errBadContent", bad[:8], err)
		}
	}
}

func TestContentDecoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
		want Content
	}{
		{"unknown varint field skipped", []byte{0x0a, 0x02, 'h', 'i', 0xa0, 0x01, 0x01}, true, Content{Text: "hi"}},
		{"unknown bytes field skipped", []byte{0xa2, 0x01, 0x01, 0xff, 0x0a, 0x01, 'x'}, true, Content{Text: "x"}},
		{"group id of 31 bytes", append([]byte{0x32, 31}, make([]byte, 31)...), false, Content{}},
		{"channel id of 17 bytes", append([]byte{0x4a, 17}, make([]byte, 17)...), false, Content{}},
		{"channel signer of 16 bytes", append([]byte{0x52, 16}, make([]byte, 16)...), false, Content{}},
		{"admission signature of 63 bytes", append([]byte{0x62, 63}, make([]byte, 63)...), false, Content{}},
		{"admission signature of 65 bytes", append([]byte{0x62, 65}, make([]byte, 65)...), false, Content{}},
		{"admission signature of 64 bytes", append([]byte{0x62, 64}, make([]byte, 64)...), true, Content{ChannelAdmissionSig: make([]byte, 64)}},
		{"group changes as varint", []byte{0x38, 0x01}, false, Content{}},
		{"repeated distribution", []byte{0x42, 0x01, 0x01, 0x42, 0x01, 0x02}, false, Content{}},
		{"repeated text", []byte{0x0a, 0x01, 'a', 0x0a, 0x01, 'b'}, false, Content{}},
		{"text as varint", []byte{0x08, 0x01}, false, Content{}},
		{"sent_ms as bytes", []byte{0x12, 0x01, 0x01}, false, Content{}},
		{"invalid UTF-8", []byte{0x0a, 0x01, 0xff}, false, Content{}},
		{"short sync destination", []byte{0x22, 0x01, 0x01}, false, Content{}},
		{"truncated length", []byte{0x0a, 0x05, 'a'}, false, Content{}},
		{"truncated tag", []byte{0x80}, false, Content{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := unmarshalContent(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("unmarshalContent(%x) error = %v, want ok %v", tc.in, err, tc.ok)
			}
			if tc.ok && !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("unmarshalContent(%x) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzContent: decoding peer bytes never panics, and what decodes re-encodes to bytes
// that decode to the same Content.
func FuzzContent(f *testing.F) {
	f.Add((&Content{Text: "hello", SentMS: 1795457221176, SenderNumber: "+14155550100"}).marshal())
	f.Add(encodeContent(&Content{Text: "padded"}))
	f.Add([]byte{0x0a, 0x02, 'h', 'i', 0x48, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeContent(b)
		if err != nil {
			c, err = unmarshalContent(b)
		}
		if err != nil {
			return
		}
		again, err := unmarshalContent(c.marshal())
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip of %+v = %+v, %v", c, again, err)
		}
	})
}
