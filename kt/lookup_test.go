package kt_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/bastionchat/bastion/internal/translog"
	"github.com/bastionchat/bastion/kt"
	"github.com/bastionchat/bastion/kt/vrf"
	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/tlog"
)

func TestLookupIndex(t *testing.T) {
	sk, err := vrf.NewPrivateKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	other, err := vrf.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	idx, proof, err := kt.LookupIndex(sk, kt.KindPhoneNumber, "+15555550100")
	if err != nil {
		t.Fatal(err)
	}
	got, err := kt.VerifyLookup(sk.Public(), kt.KindPhoneNumber, "+15555550100", proof)
	if err != nil || got != idx {
		t.Fatalf("VerifyLookup(own proof) = %x, %v, want %x", got, err, idx)
	}

	// The same text as a username is another index: kinds never collide.
	uidx, _, err := kt.LookupIndex(sk, kt.KindUsername, "+15555550100")
	if err != nil {
		t.Fatal(err)
	}
	if uidx == idx {
		t.Errorf("LookupIndex(username %q) = LookupIndex(phone number %q)", "+15555550100", "+15555550100")
	}

	tests := []struct {
		name  string
		pk    *vrf.PublicKey
		kind  kt.LookupKind
		key   string
		proof []byte
	}{
		{"other number", sk.Public(), kt.KindPhoneNumber, "+15555550101", proof},
		{"other kind", sk.Public(), kt.KindUsername, "+15555550100", proof},
		{"other server key", other.Public(), kt.KindPhoneNumber, "+15555550100", proof},
		{"truncated proof", sk.Public(), kt.KindPhoneNumber, "+15555550100", proof[:40]},
		{"invalid kind", sk.Public(), 0, "+15555550100", proof},
		{"empty key", sk.Public(), kt.KindPhoneNumber, "", proof},
		{"invalid utf-8", sk.Public(), kt.KindUsername, "\xff", proof},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := kt.VerifyLookup(tt.pk, tt.kind, tt.key, tt.proof); err == nil {
				t.Errorf("VerifyLookup(%v, %q) = %x, want error", tt.kind, tt.key, got)
			}
		})
	}
	if _, err := kt.VerifyLookup(other.Public(), kt.KindPhoneNumber, "+15555550100", proof); !errors.Is(err, vrf.ErrInvalidProof) {
		t.Errorf("VerifyLookup(other key) = %v, want vrf.ErrInvalidProof", err)
	}
}

// TestLogHoldsNoPhoneNumber builds a log of phone-number lookup bindings the
// way the server does and checks that no form of any number appears in what
// the log serves: entries, hash tiles or checkpoint.
func TestLogHoldsNoPhoneNumber(t *testing.T) {
	ctx := context.Background()
	sk, err := vrf.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	tl := newTestLog(t, 0)
	const n = 300
	var numbers []string
	for i := 0; i < n; i++ {
		number := fmt.Sprintf("+4915%09d", 100000000+i*7919)
		numbers = append(numbers, number)
		idx, proof, err := kt.LookupIndex(sk, kt.KindPhoneNumber, number)
		if err != nil {
			t.Fatal(err)
		}
		// A client holding the proof finds the entry by its index.
		if got, err := kt.VerifyLookup(sk.Public(), kt.KindPhoneNumber, number, proof); err != nil || got != idx {
			t.Fatalf("VerifyLookup(%q) = %x, %v", number, got, err)
		}
		entry, err := kt.Marshal(kt.LookupBinding{
			Kind: kt.KindPhoneNumber, Index: idx, Account: uuid.New(),
			State: kt.StateAdded, Sequence: 1, Time: time.Now(),
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tl.log.Append(ctx, entry); err != nil {
			t.Fatal(err)
		}
	}

	var served [][]byte
	for start := int64(0); start < n; start += translog.MaxEntriesRange {
		es, err := tl.log.Entries(ctx, start, min(start+translog.MaxEntriesRange, n))
		if err != nil {
			t.Fatal(err)
		}
		served = append(served, es...)
	}
	tree, err := tl.log.Tree(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tile := range tlog.NewTiles(8, 0, tree.N) {
		data, err := tl.log.TileData(ctx, tile)
		if err != nil {
			t.Fatal(err)
		}
		served = append(served, data)
	}
	served = append(served, tl.checkpoint())
	blob := bytes.Join(served, nil)

	for _, number := range numbers {
		digits := number[1:]
		v, err := strconv.ParseUint(digits, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		forms := [][]byte{
			[]byte(number),
			[]byte(digits),
			[]byte(digits[2:]), // national number
			binary.BigEndian.AppendUint64(nil, v),
			binary.LittleEndian.AppendUint64(nil, v),
		}
		for _, f := range forms {
			if bytes.Contains(blob, f) {
				t.Errorf("served log data contains %x, a form of a logged phone number", f)
			}
		}
	}
}
