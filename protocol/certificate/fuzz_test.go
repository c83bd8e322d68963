package certificate

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func seed(f *testing.F, pattern string) {
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds for %s: %v", pattern, err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// A sender certificate from a peer parses to a value that encodes back to the same
// signed bytes and parses again to the same value, or fails with ErrInvalid.
func FuzzParseSender(f *testing.F) {
	seed(f, "*-sender.bin")
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSender(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseSender = %v, want ErrInvalid", err)
			}
			return
		}
		inner := encodeSender(s.SenderUUID, s.DeviceID, s.IdentityKey, uint64(s.Expires.UnixMilli()), s.Signer.Bytes())
		again, err := ParseSender(appendSigned(nil, inner, s.signature))
		if err != nil {
			t.Fatalf("ParseSender(re-encoded) = %v", err)
		}
		if again.SenderUUID != s.SenderUUID || again.DeviceID != s.DeviceID ||
			!again.IdentityKey.Equal(s.IdentityKey) || !again.Expires.Equal(s.Expires) ||
			again.Signer.ID != s.Signer.ID || !again.Signer.Key.Equal(s.Signer.Key) {
			t.Fatalf("ParseSender does not round trip: %+v, then %+v", s, again)
		}
		if string(s.Bytes()) != string(b) {
			t.Fatalf("Bytes() = %x, want the parsed input %x", s.Bytes(), b)
		}
	})
}

// The same for server certificates.
func FuzzParseServer(f *testing.F) {
	seed(f, "*-server.bin")
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseServer(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseServer = %v, want ErrInvalid", err)
			}
			return
		}
		var cert []byte
		cert = appendUint(cert, fieldServerID, uint64(s.ID))
		cert = appendBytes(cert, fieldServerKey, s.Key.Bytes())
		again, err := ParseServer(appendSigned(nil, cert, s.signature))
		if err != nil {
			t.Fatalf("ParseServer(re-encoded) = %v", err)
		}
		if again.ID != s.ID || !again.Key.Equal(s.Key) {
			t.Fatalf("ParseServer does not round trip: %+v, then %+v", s, again)
		}
		if string(s.Bytes()) != string(b) {
			t.Fatalf("Bytes() = %x, want the parsed input %x", s.Bytes(), b)
		}
	})
}
