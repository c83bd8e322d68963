package protocol_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/bastionchat/bastion/protocol"
)

// seedDir adds every testdata/<dir>/*.bin file to f.
func seedDir(f *testing.F, dir string) {
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.bin"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// Parsers of peer bytes either refuse with ErrInvalidMessage or produce a message
// whose bytes parse again to the same bytes.
func FuzzParseCiphertextMessage(f *testing.F) {
	seedDir(f, "signalmessage")
	seedDir(f, "prekeysignalmessage")
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, typ := range []protocol.MessageType{protocol.TypeSignal, protocol.TypePreKey} {
			m, err := protocol.ParseCiphertextMessage(typ, b)
			if err != nil {
				if !errors.Is(err, protocol.ErrInvalidMessage) {
					t.Fatalf("ParseCiphertextMessage(%d) = %v, want ErrInvalidMessage", typ, err)
				}
				continue
			}
			again, err := protocol.ParseCiphertextMessage(typ, m.Bytes())
			if err != nil || string(again.Bytes()) != string(b) {
				t.Fatalf("ParseCiphertextMessage(%d) does not round trip: %v", typ, err)
			}
		}
	})
}

func FuzzNewSessionRecord(f *testing.F) {
	seedDir(f, "record")
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := protocol.NewSessionRecord(b)
		if err != nil {
			return
		}
		enc := r.Bytes()
		r2, err := protocol.NewSessionRecord(enc)
		if err != nil {
			t.Fatalf("NewSessionRecord(Bytes()) = %v", err)
		}
		if string(r2.Bytes()) != string(enc) {
			t.Fatalf("session record does not round trip")
		}
	})
}

// Whatever a peer sends, decryption either fails cleanly and leaves the stores as they
// were, or succeeds.
func FuzzDecrypt(f *testing.F) {
	seedDir(f, "signalmessage")
	seedDir(f, "prekeysignalmessage")
	alice, bob := established(f)
	f.Add(alice.encrypt(f, bob, "seed").Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, typ := range []protocol.MessageType{protocol.TypeSignal, protocol.TypePreKey} {
			m, err := protocol.ParseCiphertextMessage(typ, b)
			if err != nil {
				continue
			}
			before := bob.snapshot(t, alice.addr)
			if _, err := bob.cipher.Decrypt(ctx, alice.addr, m); err != nil {
				if after := bob.snapshot(t, alice.addr); after != before {
					t.Fatalf("stores changed after failed decryption: %v", err)
				}
			}
		}
	})
}
