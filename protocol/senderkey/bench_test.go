package senderkey_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/senderkey"
)

func benchGroup(b *testing.B) (ctx context.Context, sender protocol.Address, group uuid.UUID, own, member *senderkey.MemoryStore) {
	ctx = context.Background()
	group = uuid.New()
	own, member = senderkey.NewMemoryStore(), senderkey.NewMemoryStore()
	skdm, err := senderkey.Create(ctx, own, goSender, group)
	if err != nil {
		b.Fatal(err)
	}
	if err := senderkey.Process(ctx, member, goSender, skdm); err != nil {
		b.Fatal(err)
	}
	return ctx, goSender, group, own, member
}

// BenchmarkEncrypt256 is one group message of 256 bytes: chain step, HKDF, AES-CBC,
// XEdDSA signature, and the record's round trip through the in-memory store.
func BenchmarkEncrypt256(b *testing.B) {
	ctx, sender, group, own, _ := benchGroup(b)
	pt := make([]byte, 256)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := senderkey.Encrypt(ctx, own, sender, group, pt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecrypt256 is the receiving side, in order: signature check, chain step,
// HKDF, AES-CBC.
func BenchmarkDecrypt256(b *testing.B) {
	ctx, sender, group, own, member := benchGroup(b)
	pt := make([]byte, 256)
	const batch = 1024
	cts := make([][]byte, 0, batch)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(cts) {
			b.StopTimer()
			cts, i = cts[:0], 0
			for range batch {
				ct, err := senderkey.Encrypt(ctx, own, sender, group, pt)
				if err != nil {
					b.Fatal(err)
				}
				cts = append(cts, ct)
			}
			b.StartTimer()
		}
		if _, err := senderkey.Decrypt(ctx, member, sender, cts[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkEncryptDecrypt256 is one group message sent and received: the operation the
// libsignal peer's "group" benchmark measures, for comparison.
func BenchmarkEncryptDecrypt256(b *testing.B) {
	ctx, sender, group, own, member := benchGroup(b)
	pt := make([]byte, 256)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		ct, err := senderkey.Encrypt(ctx, own, sender, group, pt)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := senderkey.Decrypt(ctx, member, sender, ct); err != nil {
			b.Fatal(err)
		}
	}
}
