package senderkey_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/senderkey"
)

func loadVectors(t testing.TB) (*vectorFile, protocol.Address) {
	t.Helper()
	b, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Messages) == 0 || v.SKDM == "" {
		t.Fatalf("%s holds no vectors", vectorsFile)
	}
	return &v, protocol.Address{Name: v.Sender, DeviceID: v.DeviceID}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// libsignal's own distribution message and messages, without Node: each parses and
// re-encodes to the same bytes, decrypts (newest first, so every key but the first
// comes from the skipped-key store) once, and refuses a tampered copy.
func TestLibsignalVectors(t *testing.T) {
	ctx := context.Background()
	v, sender := loadVectors(t)
	raw := unhex(t, v.SKDM)
	skdm, err := senderkey.NewDistributionMessage(raw)
	if err != nil {
		t.Fatalf("NewDistributionMessage(libsignal SKDM) = %v", err)
	}
	if !bytes.Equal(skdm.Bytes(), raw) {
		t.Errorf("NewDistributionMessage(libsignal SKDM).Bytes() = %x, want %x", skdm.Bytes(), raw)
	}
	if want := uuid.MustParse(v.DistributionID); skdm.DistributionID() != want {
		t.Errorf("DistributionID() = %v, want %v", skdm.DistributionID(), want)
	}
	store := senderkey.NewMemoryStore()
	if err := senderkey.Process(ctx, store, sender, skdm); err != nil {
		t.Fatal(err)
	}
	for i := len(v.Messages) - 1; i >= 0; i-- {
		ct, pt := unhex(t, v.Messages[i].Ciphertext), unhex(t, v.Messages[i].Plaintext)
		m, err := senderkey.NewMessage(ct)
		if err != nil {
			t.Fatalf("NewMessage(vector %d) = %v", i, err)
		}
		if !bytes.Equal(m.Bytes(), ct) || m.Iteration() != uint32(i) || m.ChainID() != skdm.ChainID() {
			t.Errorf("NewMessage(vector %d) = iteration %d chain %d, want %d %d, same bytes", i, m.Iteration(), m.ChainID(), i, skdm.ChainID())
		}
		bad := bytes.Clone(ct)
		bad[len(bad)-64-1] ^= 0x80
		if got, err := senderkey.Decrypt(ctx, store, sender, bad); !errors.Is(err, senderkey.ErrInvalidMessage) {
			t.Errorf("Decrypt(vector %d tampered) = %x, %v, want ErrInvalidMessage", i, got, err)
		}
		got, err := senderkey.Decrypt(ctx, store, sender, ct)
		if err != nil || !bytes.Equal(got, pt) {
			t.Errorf("Decrypt(vector %d) = %x, %v, want %x", i, got, err, pt)
		}
		if _, err := senderkey.Decrypt(ctx, store, sender, ct); !errors.Is(err, senderkey.ErrDuplicateMessage) {
			t.Errorf("Decrypt(vector %d again) = %v, want ErrDuplicateMessage", i, err)
		}
	}
}
