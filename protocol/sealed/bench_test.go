package sealed

import (
	"bytes"
	"testing"

	"github.com/bastionchat/bastion/protocol"
)

// Sealing and opening a 256-byte message: two X25519 agreements and a fresh key pair to
// seal; two agreements, two XEdDSA verifications (the certificate chain) to open.
func BenchmarkEncrypt256(b *testing.B) {
	w := newWorld(b)
	body := bytes.Repeat([]byte{1}, 256)
	to := w.bob.identity.PublicKey()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := Encrypt(nil, to, w.alice.identity, w.alice.cert, protocol.TypeSignal, body, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt256(b *testing.B) {
	w := newWorld(b)
	body := bytes.Repeat([]byte{1}, 256)
	ct, err := Encrypt(nil, w.bob.identity.PublicKey(), w.alice.identity, w.alice.cert, protocol.TypeSignal, body, nil)
	if err != nil {
		b.Fatal(err)
	}
	root := w.root.PublicKey()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := Decrypt(ct, w.bob.identity, root, w.now); err != nil {
			b.Fatal(err)
		}
	}
}
