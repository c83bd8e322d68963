package sqlite

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/bastionchat/bastion/internal/store"
	"github.com/google/uuid"
)

// TestCloseDrains checks that Close lets every submitted write finish: each Enqueue that
// returned nil before or during Close is in the database when it is opened again.
func TestCloseDrains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bastion.db")
	ctx := context.Background()
	s, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	acct, _, err := s.Register(ctx, "+14155550111", make([]byte, 33), store.Device{ID: 1, CredentialHash: make([]byte, 32)})
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	var (
		mu     sync.Mutex
		stored []uuid.UUID
		wg     sync.WaitGroup
		start  = make(chan struct{})
	)
	for range 32 {
		wg.Go(func() {
			<-start
			for {
				e := &store.Envelope{ID: uuid.New(), Account: acct.ID, Device: 1, ServerTime: time.Now(), Body: []byte("x")}
				err := s.Enqueue(ctx, []*store.Envelope{e})
				if err != nil {
					if !errors.Is(err, errClosed) {
						t.Errorf("Enqueue() during Close = %v, want nil or the closed error", err)
					}
					return
				}
				mu.Lock()
				stored = append(stored, e.ID)
				mu.Unlock()
			}
		})
	}
	close(start)
	time.Sleep(20 * time.Millisecond) // let writes pile up; the assertions do not depend on it
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Errorf("Close() twice = %v, want nil", err)
	}
	// A clean close checkpoints everything and truncates the WAL.
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() != 0 {
		t.Errorf("WAL after Close is %d bytes, want 0 (checkpointed and truncated)", fi.Size())
	}
	if st := s.Stats(); st.Commits == 0 || st.Writes < st.Commits {
		t.Errorf("Stats() = %+v, want commits and at least as many writes", st)
	}

	s, err = Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("Open() again = %v", err)
	}
	defer s.Close()
	got, err := s.Pending(ctx, acct.ID, 1, 0, 1<<30)
	if err != nil {
		t.Fatalf("Pending() = %v", err)
	}
	have := map[uuid.UUID]bool{}
	for _, e := range got {
		have[e.ID] = true
	}
	for _, id := range stored {
		if !have[id] {
			t.Errorf("envelope %v acknowledged before Close is missing after reopening", id)
		}
	}
}

// TestCancelledCaller checks that a caller whose context ends does not disturb the others
// in its batch.
func TestCancelledCaller(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	ctx := context.Background()
	acct, _, err := s.Register(ctx, "+14155550112", make([]byte, 33), store.Device{ID: 1, CredentialHash: make([]byte, 32)})
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	e := &store.Envelope{ID: uuid.New(), Account: acct.ID, Device: 1, ServerTime: time.Now(), Body: []byte("x")}
	if err := s.Enqueue(cancelled, []*store.Envelope{e}); !errors.Is(err, context.Canceled) {
		t.Errorf("Enqueue(cancelled) = %v, want context.Canceled", err)
	}
	ok := &store.Envelope{ID: uuid.New(), Account: acct.ID, Device: 1, ServerTime: time.Now()} // nil body: stored empty
	if err := s.Enqueue(ctx, []*store.Envelope{ok}); err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	got, err := s.Pending(ctx, acct.ID, 1, 0, 10)
	if err != nil || len(got) != 1 || got[0].ID != ok.ID || len(got[0].Body) != 0 {
		t.Errorf("Pending() = %d envelopes, %v; want only the uncancelled one, empty", len(got), err)
	}
}

func TestPragmas(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	tests := []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "2"}, // FULL
		{"foreign_keys", "1"},
		{"busy_timeout", "10000"},
		{"secure_delete", "2"}, // FAST
	}
	for _, tc := range tests {
		var got string
		// Ask the writer's own connection: that is where durability is decided.
		err := s.write(context.Background(), 0, func(tx *wtx) error {
			return tx.QueryRow("PRAGMA " + tc.pragma).Scan(&got)
		})
		if err != nil || got != tc.want {
			t.Errorf("PRAGMA %s = %q, %v; want %q", tc.pragma, got, err, tc.want)
		}
	}
	var fk string
	if err := s.rdb.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != "1" {
		t.Errorf("read pool PRAGMA foreign_keys = %q, %v; want 1", fk, err)
	}
	if _, err := s.rdb.Exec("DELETE FROM accounts"); err == nil {
		t.Errorf("read pool DELETE = nil, want an error (read-only)")
	}
}

func TestMigrations(t *testing.T) {
	ms, err := migrations(migrationFS)
	if err != nil || len(ms) == 0 || schemaVersion() != len(ms) {
		t.Fatalf("migrations(embedded) = %d, %v; want them numbered from 1", len(ms), err)
	}
	bad := []struct {
		name string
		fs   fstest.MapFS
	}{
		{"gap", fstest.MapFS{"migrations/0001_a.sql": {}, "migrations/0003_c.sql": {}}},
		{"no number", fstest.MapFS{"migrations/init.sql": {}}},
		{"zero", fstest.MapFS{"migrations/0000_a.sql": {}}},
		{"duplicate", fstest.MapFS{"migrations/0001_a.sql": {}, "migrations/0001_b.sql": {}}},
	}
	for _, tc := range bad {
		if _, err := migrations(tc.fs); err == nil {
			t.Errorf("migrations(%s) = nil error, want one", tc.name)
		}
	}
}

// TestNewerSchemaRefused checks that a database written by a newer binary is not opened.
func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bastion.db")
	ctx := context.Background()
	s, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	err = s.write(ctx, 0, func(tx *wtx) error {
		_, err := tx.Exec("UPDATE schema_version SET version = version + 1")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(ctx, path, nil); err == nil || !strings.Contains(err.Error(), "newer") {
		if err == nil {
			s.Close()
		}
		t.Errorf("Open(newer schema) = %v, want a refusal", err)
	}
}

// TestMigrationAtomic checks that a failing migration leaves the schema at the version
// before it, not half applied.
func TestMigrationAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bastion.db")
	ctx := context.Background()
	s, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	ms, _ := migrations(migrationFS)
	broken := append(ms, migration{version: len(ms) + 1, name: "broken.sql",
		sql: "CREATE TABLE half_done (x INTEGER); THIS IS NOT SQL;"})
	err = s.write(ctx, 0, func(tx *wtx) error { return nil }) // writer is idle from here
	if err != nil {
		t.Fatal(err)
	}
	if err := applyMigrations(ctx, s.cdb, broken, s.log); err == nil {
		t.Fatalf("applyMigrations(broken) = nil, want an error")
	}
	var v int
	if err := s.rdb.QueryRow("SELECT version FROM schema_version").Scan(&v); err != nil || v != len(ms) {
		t.Errorf("schema version after a failed migration = %d, %v; want %d", v, err, len(ms))
	}
	var n int
	if err := s.rdb.QueryRow("SELECT COUNT(*) FROM sqlite_master WHERE name = 'half_done'").Scan(&n); err != nil || n != 0 {
		t.Errorf("tables from the failed migration = %d, %v; want 0", n, err)
	}
	s.Close()
}

// TestExpireChunks expires more envelopes than one chunk, interleaved with fresh ones.
func TestExpireChunks(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	ctx := context.Background()
	acct, _, err := s.Register(ctx, "+14155550113", make([]byte, 33), store.Device{ID: 1, CredentialHash: make([]byte, 32)})
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	defer func(c int) { expireChunk = c }(expireChunk)
	expireChunk = 100 // several chunks without thousands of rows
	now := time.Now()
	n := 2*expireChunk + 50
	var envs []*store.Envelope
	for i := range n {
		at := now
		if i%2 == 0 {
			at = now.Add(-31 * 24 * time.Hour)
		}
		envs = append(envs, &store.Envelope{ID: uuid.New(), Account: acct.ID, Device: 1, ServerTime: at, Body: []byte("x")})
	}
	for chunk := range slices.Chunk(envs, 500) {
		if err := s.Enqueue(ctx, chunk); err != nil {
			t.Fatalf("Enqueue() = %v", err)
		}
	}
	got, err := s.ExpireBefore(ctx, now.Add(-30*24*time.Hour))
	if want := int64((n + 1) / 2); err != nil || got != want {
		t.Errorf("ExpireBefore(-30d) = %d, %v; want %d", got, err, want)
	}
	left, err := s.Pending(ctx, acct.ID, 1, 0, n)
	if err != nil || len(left) != n/2 {
		t.Fatalf("Pending() after expiry = %d, %v; want %d", len(left), err, n/2)
	}
	for _, e := range left {
		if !e.ServerTime.After(now.Add(-time.Hour)) {
			t.Errorf("Pending() after expiry holds envelope from %v", e.ServerTime)
			break
		}
	}
}

// TestAckSizes acknowledges in lists of many lengths (the id lists are padded to powers
// of two and split at 256), with unknown ids mixed in.
func TestAckSizes(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	ctx := context.Background()
	acct, _, err := s.Register(ctx, "+14155550114", make([]byte, 33), store.Device{ID: 1, CredentialHash: make([]byte, 32)})
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	sizes := []int{1, 2, 3, 5, 256, 257}
	total := 0
	for _, n := range sizes {
		total += n
	}
	var envs []*store.Envelope
	for range total + 10 {
		envs = append(envs, &store.Envelope{ID: uuid.New(), Account: acct.ID, Device: 1, ServerTime: time.Now(), Body: []byte("x")})
	}
	for chunk := range slices.Chunk(envs, 500) {
		if err := s.Enqueue(ctx, chunk); err != nil {
			t.Fatalf("Enqueue() = %v", err)
		}
	}
	next := 0
	for _, n := range sizes {
		var ids []uuid.UUID
		for _, e := range envs[next : next+n] {
			ids = append(ids, e.ID, uuid.New()) // each with an unknown id beside it
		}
		next += n
		if err := s.Ack(ctx, acct.ID, 1, ids); err != nil {
			t.Fatalf("Ack(%d ids) = %v", len(ids), err)
		}
		left, err := s.Pending(ctx, acct.ID, 1, 0, 1<<20)
		if err != nil || len(left) != len(envs)-next || (len(left) > 0 && left[0].ID != envs[next].ID) {
			t.Fatalf("Pending() after acking %d = %d envelopes, %v; want the %d not acknowledged", next, len(left), err, len(envs)-next)
		}
	}
}

// TestFileMode checks that the database and its WAL files are readable by the server's
// user only: they hold phone numbers and the connection log.
func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bastion.db")
	s, err := Open(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	defer s.Close()
	if _, _, err := s.Register(context.Background(), "+14155550115", make([]byte, 33), store.Device{ID: 1, CredentialHash: make([]byte, 32)}); err != nil {
		t.Fatalf("Register() = %v", err)
	}
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Errorf("Stat(%s) = %v", filepath.Base(name), err)
			continue
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("mode of %s = %o, want 600", filepath.Base(name), mode)
		}
	}
}

// TestPrunedDataGone checks that a pruned connection-log address and a deleted account's
// number are not left behind in the database file's free space once the store is closed.
func TestPrunedDataGone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bastion.db")
	ctx := context.Background()
	s, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	const number, ip = "+14155550177", "203.0.113.77"
	acct, _, err := s.Register(ctx, number, make([]byte, 33), store.Device{ID: 1, CredentialHash: make([]byte, 32)})
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	keep, _, err := s.Register(ctx, "+14155550178", make([]byte, 33), store.Device{ID: 1, CredentialHash: make([]byte, 32)})
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	old := time.Now().Add(-10 * 24 * time.Hour)
	for _, id := range []uuid.UUID{acct.ID, keep.ID} {
		if err := s.RecordConnection(ctx, id, netip.MustParseAddr(ip), old); err != nil {
			t.Fatalf("RecordConnection() = %v", err)
		}
	}
	if err := s.Close(); err != nil { // checkpoint: the rows reach the database file
		t.Fatalf("Close() = %v", err)
	}
	if raw, _ := os.ReadFile(path); !bytes.Contains(raw, []byte(ip)) || !bytes.Contains(raw, []byte(number)) {
		t.Fatalf("database file lacks the rows before pruning; the test would prove nothing")
	}

	if s, err = Open(ctx, path, nil); err != nil {
		t.Fatalf("Open() = %v", err)
	}
	if n, err := s.PruneConnections(ctx, time.Now().Add(-7*24*time.Hour)); err != nil || n != 2 {
		t.Fatalf("PruneConnections() = %d, %v; want 2", n, err)
	}
	if err := s.DeleteAccount(ctx, acct.ID); err != nil {
		t.Fatalf("DeleteAccount() = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	for _, name := range []string{path, path + "-wal"} {
		raw, err := os.ReadFile(name)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, secret := range []string{ip, number} {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("%s still holds %q after it was deleted", filepath.Base(name), secret)
			}
		}
	}
}
