package sealed

import (
	"testing"

	"github.com/bastionchat/bastion/protocol"
)

// Whatever bytes arrive, Decrypt either opens them or fails with ErrInvalid itself.
func FuzzDecrypt(f *testing.F) {
	w := newWorld(f)
	for _, typ := range []protocol.MessageType{protocol.TypeSignal, protocol.TypePreKey, TypeSenderKey, TypePlaintext} {
		ct, err := encrypt(nil, w.bob.identity.PublicKey(), w.alice.identity, w.alice.cert, typ, []byte("seed"), []byte("g"), HintResendable)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ct)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decrypt(b, w.bob.identity, w.root.PublicKey(), w.now)
		if err != nil {
			if err != ErrInvalid { // the same value, never wrapped
				t.Fatalf("Decrypt = %v, want ErrInvalid", err)
			}
			return
		}
		if c.Sender != w.alice.addr {
			t.Fatalf("Decrypt opened a message from %v; only alice's seeds can open", c.Sender)
		}
	})
}

// The content parser (what sits inside the encryption) either refuses, or gives a value
// that encodes back and parses to the same value.
func FuzzParseContent(f *testing.F) {
	w := newWorld(f)
	var seed []byte
	seed = appendUint(seed, fieldType, 7)
	seed = appendBytes(seed, fieldCertificate, w.alice.cert)
	seed = appendBytes(seed, fieldContent, []byte("body"))
	seed = appendUint(seed, fieldContentHint, 1)
	seed = appendBytes(seed, fieldGroupID, []byte("group"))
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseContent(b)
		if err != nil {
			return
		}
		wt, ok := toWireType(c.Type)
		if !ok {
			t.Fatalf("parseContent gave type %d, which cannot be encoded", c.Type)
		}
		var enc []byte
		enc = appendUint(enc, fieldType, wt)
		enc = appendBytes(enc, fieldCertificate, c.Certificate.Bytes())
		enc = appendBytes(enc, fieldContent, c.Body)
		enc = appendUint(enc, fieldContentHint, uint64(c.ContentHint))
		if c.GroupID != nil {
			enc = appendBytes(enc, fieldGroupID, c.GroupID)
		}
		again, err := parseContent(enc)
		if err != nil {
			t.Fatalf("parseContent(re-encoded) = %v", err)
		}
		if again.Type != c.Type || string(again.Body) != string(c.Body) || string(again.GroupID) != string(c.GroupID) ||
			again.ContentHint != c.ContentHint || again.Sender != c.Sender {
			t.Fatalf("parseContent does not round trip: %+v, then %+v", c, again)
		}
	})
}
