package storetest

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/internal/store"
)

// DevicesOfStore is the optional bulk read of device lists a multi-recipient send uses
// when the store has it (both backends do; it is not part of store.Store).
type DevicesOfStore interface {
	store.Store
	DevicesOf(ctx context.Context, accounts []uuid.UUID) (map[uuid.UUID][]store.Device, error)
}

// RunDevicesOf checks DevicesOf against Devices: every known account with its devices
// (without credential hashes), unknown accounts absent, an account named twice once.
// It registers 300 accounts with 1 to 3 devices each, more than one query of a backend
// that splits the list names (SQLite: 256).
func RunDevicesOf(t *testing.T, s DevicesOfStore) {
	ctx := context.Background()
	const n = 300
	ids := make([]uuid.UUID, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			a, _, err := s.Register(ctx, fmt.Sprintf("+1416%07d", i), make([]byte, 33),
				store.Device{ID: 1, RegistrationID: uint32(i), CredentialHash: make([]byte, 32)})
			for j := range i % 3 {
				if err == nil {
					_, err = s.AddDevice(ctx, a.ID, store.Device{RegistrationID: uint32(j), CredentialHash: make([]byte, 32)})
				}
			}
			ids[i], errs[i] = a.ID, err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("Register/AddDevice() = %v", err)
		}
	}
	unknown := uuid.New()
	tests := []struct {
		name     string
		accounts []uuid.UUID
	}{
		{"none", nil},
		{"one", ids[:1]},
		{"all", ids},
		{"with an unknown account", append([]uuid.UUID{unknown}, ids[:10]...)},
		{"an account twice", append(ids[:5:5], ids[2])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.DevicesOf(ctx, tt.accounts)
			if err != nil {
				t.Fatalf("DevicesOf() = %v", err)
			}
			want := map[uuid.UUID][]store.Device{}
			for _, a := range tt.accounts {
				devs, err := s.Devices(ctx, a)
				if err != nil {
					continue // unknown: absent
				}
				for i := range devs {
					devs[i].CredentialHash = nil
				}
				want[a] = devs
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("DevicesOf(%d accounts) = %d accounts, want %d as Devices lists them", len(tt.accounts), len(got), len(want))
			}
		})
	}
}
