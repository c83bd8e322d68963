package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/bastionchat/bastion/internal/store"
	"github.com/bastionchat/bastion/internal/store/storetest"
)

func openTemp(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "bastion.db"), nil)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}
