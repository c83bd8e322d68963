package senderkey_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/protocol/senderkey"
)

// Fuzz targets for every parser of peer bytes (and of stored records): a parse either
// fails cleanly or its result encodes back to exactly the input.

func FuzzDistributionMessage(f *testing.F) {
	v, _ := loadVectors(f)
	f.Add(unhex(f, v.SKDM))
	own, err := senderkey.Create(context.Background(), senderkey.NewMemoryStore(), goSender, uuid.New())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(own.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := senderkey.NewDistributionMessage(b)
		if err != nil {
			if !errors.Is(err, senderkey.ErrInvalidEncoding) {
				t.Fatalf("NewDistributionMessage(%x) = %v, want ErrInvalidEncoding", b, err)
			}
			return
		}
		if got := m.Bytes(); !bytes.Equal(got, b) {
			t.Fatalf("NewDistributionMessage(%x).Bytes() = %x", b, got)
		}
	})
}

func FuzzMessage(f *testing.F) {
	ctx := context.Background()
	v, sender := loadVectors(f)
	skdm, err := senderkey.NewDistributionMessage(unhex(f, v.SKDM))
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range v.Messages {
		f.Add(unhex(f, m.Ciphertext))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := senderkey.NewMessage(b)
		if err == nil {
			if got := m.Bytes(); !bytes.Equal(got, b) {
				t.Fatalf("NewMessage(%x).Bytes() = %x", b, got)
			}
		} else if !errors.Is(err, senderkey.ErrInvalidEncoding) {
			t.Fatalf("NewMessage(%x) = %v, want ErrInvalidEncoding", b, err)
		}
		// Decrypt takes the same bytes from a peer: it must fail cleanly too, and only
		// ever decrypt what libsignal signed.
		store := senderkey.NewMemoryStore()
		if err := senderkey.Process(ctx, store, sender, skdm); err != nil {
			t.Fatal(err)
		}
		if _, err := senderkey.Decrypt(ctx, store, sender, b); err != nil &&
			!errors.Is(err, senderkey.ErrInvalidMessage) && !errors.Is(err, senderkey.ErrNoSenderKey) && !errors.Is(err, senderkey.ErrDuplicateMessage) {
			t.Fatalf("Decrypt(%x) = %v, want one of the package's errors", b, err)
		}
	})
}

func FuzzRecord(f *testing.F) {
	ctx := context.Background()
	v, sender := loadVectors(f)
	skdm, err := senderkey.NewDistributionMessage(unhex(f, v.SKDM))
	if err != nil {
		f.Fatal(err)
	}
	recv := senderkey.NewMemoryStore()
	if err := senderkey.Process(ctx, recv, sender, skdm); err != nil {
		f.Fatal(err)
	}
	add := func(s *senderkey.MemoryStore, d uuid.UUID) {
		r, err := s.LoadSenderKey(ctx, sender, d)
		if err != nil || r == nil {
			f.Fatalf("LoadSenderKey = %v, %v", r, err)
		}
		f.Add(r.Bytes())
	}
	add(recv, skdm.DistributionID())
	// After the last message: the chain moved on and holds skipped keys.
	last := v.Messages[len(v.Messages)-1]
	if _, err := senderkey.Decrypt(ctx, recv, sender, unhex(f, last.Ciphertext)); err != nil {
		f.Fatal(err)
	}
	add(recv, skdm.DistributionID())
	own := senderkey.NewMemoryStore()
	g := uuid.New()
	if _, err := senderkey.Create(ctx, own, sender, g); err != nil {
		f.Fatal(err)
	}
	add(own, g)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := senderkey.NewRecord(b)
		if err != nil {
			if !errors.Is(err, senderkey.ErrInvalidRecord) {
				t.Fatalf("NewRecord(%x) = %v, want ErrInvalidRecord", b, err)
			}
			return
		}
		if got := r.Bytes(); !bytes.Equal(got, b) {
			t.Fatalf("NewRecord(%x).Bytes() = %x", b, got)
		}
	})
}
