package postgres

import (
	"context"
	"os"
	"testing"

	"github.com/bastionchat/bastion/internal/pgtest"
	"github.com/bastionchat/bastion/internal/store"
	"github.com/bastionchat/bastion/internal/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// open returns a store on a fresh database, closed when t ends.
func open(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), pgtest.Start(t), nil)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(context.Background(), pgtest.Start(t), nil)
		if err != nil {
			t.Fatalf("Open() = %v", err)
		}
		return s
	})
}
