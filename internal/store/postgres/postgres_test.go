package postgres

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bastionchat/bastion/internal/pgtest"
	"github.com/bastionchat/bastion/internal/store"
	"github.com/bastionchat/bastion/internal/store/storetest"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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

// TestInventoryMatchesSchema walks the schema a fresh database gets (every column of
// every table in the public schema, from information_schema) and fails when a column is
// not in the data inventory, or the inventory lists a column that does not exist.
func TestInventoryMatchesSchema(t *testing.T) {
	s := open(t)
	rows, err := s.pool.Query(context.Background(), `SELECT c.table_name, c.column_name
		FROM information_schema.columns c JOIN information_schema.tables t
			ON t.table_schema = c.table_schema AND t.table_name = c.table_name
		WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
		ORDER BY c.table_name, c.ordinal_position`)
	if err != nil {
		t.Fatalf("reading information_schema: %v", err)
	}
	defer rows.Close()
	var schema []string
	for rows.Next() {
		var table, col string
		if err := rows.Scan(&table, &col); err != nil {
			t.Fatal(err)
		}
		schema = append(schema, table+"."+col)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	storetest.CheckInventory(t, schema)
}

// TestConcurrentMigrations starts several nodes on one empty database at once: each
// migration is applied once, and every node comes up.
func TestConcurrentMigrations(t *testing.T) {
	dsn := pgtest.Start(t)
	const nodes = 4
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i := range nodes {
		wg.Go(func() {
			s, err := Open(context.Background(), dsn, nil)
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open() on node %d = %v, want nil", i, err)
		}
	}
	st, err := Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	defer st.Close()
	ms, _ := migrations(migrationFS)
	var rowsN, version int
	if err := st.pool.QueryRow(context.Background(), `SELECT count(*), max(version) FROM schema_version`).Scan(&rowsN, &version); err != nil {
		t.Fatal(err)
	}
	if rowsN != 1 || version != len(ms) {
		t.Errorf("schema_version after %d concurrent Opens = %d rows, version %d; want 1 row, version %d", nodes, rowsN, version, len(ms))
	}
}

// TestRefusesNewerSchema: a binary must not run on a schema a newer one wrote.
func TestRefusesNewerSchema(t *testing.T) {
	dsn := pgtest.Start(t)
	s, err := Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	if _, err := s.pool.Exec(context.Background(), `UPDATE schema_version SET version = version + 1`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(context.Background(), dsn, nil); err == nil || !strings.Contains(err.Error(), "newer") {
		if s != nil {
			s.Close()
		}
		t.Errorf("Open(newer schema) = %v, want a refusal", err)
	}
}

// TestRefusesAsyncCommit: with synchronous_commit off a send would be acknowledged
// before it is durable, which the contract forbids.
func TestRefusesAsyncCommit(t *testing.T) {
	dsn := pgtest.Start(t)
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	var db string
	conn.QueryRow(context.Background(), `SELECT current_database()`).Scan(&db)
	if _, err := conn.Exec(context.Background(), `ALTER DATABASE `+db+` SET synchronous_commit = off`); err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
	if s, err := Open(context.Background(), dsn, nil); err == nil || !strings.Contains(err.Error(), "synchronous_commit") {
		if s != nil {
			s.Close()
		}
		t.Errorf("Open(synchronous_commit=off) = %v, want a refusal", err)
	}
}

// TestCursorNeverSkips has two nodes enqueue for one device while a reader pages through
// its queue with Pending's "after" cursor, as a connected device does. If a Seq could
// become visible before a smaller one of the same queue, the reader would step past the
// smaller one and never see it.
func TestCursorNeverSkips(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t)
	nodes := twoNodes(t, dsn)
	acct, _, err := nodes[0].Register(ctx, "+14155550199", []byte{5, 1}, store.Device{ID: 1, RegistrationID: 1, CredentialHash: []byte{1}})
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	const writers, each = 8, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for range each {
				e := &store.Envelope{ID: uuid.New(), Account: acct.ID, Device: 1, ServerTime: time.Now(), Body: []byte("x")}
				if err := nodes[w%2].Enqueue(ctx, []*store.Envelope{e}); err != nil {
					t.Errorf("Enqueue() = %v", err)
					return
				}
			}
		})
	}
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()
	seen := map[uuid.UUID]bool{}
	var after int64
	read := func() {
		envs, err := nodes[1].Pending(ctx, acct.ID, 1, after, 7)
		if err != nil {
			t.Fatalf("Pending() = %v", err)
		}
		for _, e := range envs {
			seen[e.ID] = true
			after = e.Seq
		}
	}
	for done := false; !done; {
		select {
		case <-writing:
			done = true
		default:
		}
		read()
	}
	for range writers * each { // drain what is left with the same cursor
		read()
	}
	all, err := nodes[0].Pending(ctx, acct.ID, 1, 0, writers*each+1)
	if err != nil {
		t.Fatalf("Pending() = %v", err)
	}
	if len(all) != writers*each {
		t.Fatalf("Pending(all) = %d envelopes, want %d", len(all), writers*each)
	}
	missed := 0
	for _, e := range all {
		if !seen[e.ID] {
			missed++
		}
	}
	if missed != 0 {
		t.Errorf("a reader paging with the after cursor missed %d of %d envelopes", missed, len(all))
	}
}

// TestTakeBundleAcrossNodes has takers on two nodes race for the same one-time keys.
func TestTakeBundleAcrossNodes(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t)
	nodes := twoNodes(t, dsn)
	acct, _, err := nodes[0].Register(ctx, "+14155550198", []byte{5, 1}, store.Device{ID: 1, RegistrationID: 1, CredentialHash: []byte{1}})
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	const keys, takers, each = 40, 8, 8
	up := store.KeyUpload{
		SignedPreKey:    &store.SignedPreKey{ID: 1, PublicKey: []byte{5}, Signature: []byte{1}},
		LastResortKyber: &store.SignedPreKey{ID: 999, PublicKey: []byte{8}, Signature: []byte{1}},
	}
	for i := range keys {
		up.PreKeys = append(up.PreKeys, store.PreKey{ID: uint32(i + 1), PublicKey: []byte{5, byte(i)}})
		up.KyberPreKeys = append(up.KyberPreKeys, store.SignedPreKey{ID: uint32(i + 1), PublicKey: []byte{8, byte(i)}, Signature: []byte{2}})
	}
	if err := nodes[0].SetKeys(ctx, acct.ID, 1, up); err != nil {
		t.Fatalf("SetKeys() = %v", err)
	}
	var mu sync.Mutex
	ec, ky := map[uint32]int{}, map[uint32]int{}
	var wg sync.WaitGroup
	for i := range takers {
		wg.Go(func() {
			for range each {
				b, err := nodes[i%2].TakeBundle(ctx, acct.ID, 1)
				if err != nil {
					t.Errorf("TakeBundle() = %v", err)
					return
				}
				mu.Lock()
				if b.PreKey != nil {
					ec[b.PreKey.ID]++
				}
				if !b.KyberLastResort {
					ky[b.KyberPreKey.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for name, m := range map[string]map[uint32]int{"EC": ec, "Kyber": ky} {
		if len(m) != keys {
			t.Errorf("%s one-time keys handed out across nodes: %d distinct, want all %d", name, len(m), keys)
		}
		for id, n := range m {
			if n != 1 {
				t.Errorf("%s one-time key %d handed out %d times, want once", name, id, n)
			}
		}
	}
}

func TestClosed(t *testing.T) {
	s := open(t)
	acct, _, err := s.Register(context.Background(), "+14155550197", []byte{5}, store.Device{ID: 1, CredentialHash: []byte{1}})
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	s.Close()
	e := &store.Envelope{ID: uuid.New(), Account: acct.ID, Device: 1, ServerTime: time.Now(), Body: []byte("x")}
	if err := s.Enqueue(context.Background(), []*store.Envelope{e}); !errors.Is(err, errClosed) {
		t.Errorf("Enqueue() after Close() = %v, want errClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close() twice = %v, want nil", err)
	}
}

// TestAddDeviceAcrossNodes adds devices to one account from two nodes at once: every
// device gets its own id.
func TestAddDeviceAcrossNodes(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t)
	nodes := twoNodes(t, dsn)
	acct, _, err := nodes[0].Register(ctx, "+14155550195", []byte{5, 1}, store.Device{ID: 1, RegistrationID: 1, CredentialHash: []byte{1}})
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	const adders = 12
	var mu sync.Mutex
	ids := map[uint32]int{}
	var wg sync.WaitGroup
	for i := range adders {
		wg.Go(func() {
			d, err := nodes[i%2].AddDevice(ctx, acct.ID, store.Device{RegistrationID: 7, CredentialHash: []byte{2}})
			if err != nil {
				t.Errorf("AddDevice() = %v", err)
				return
			}
			mu.Lock()
			ids[d.ID]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(ids) != adders {
		t.Errorf("%d concurrent AddDevice calls on two nodes got %d distinct ids (%v), want %d", adders, len(ids), ids, adders)
	}
	if devs, err := nodes[1].Devices(ctx, acct.ID); err != nil || len(devs) != adders+1 {
		t.Errorf("Devices() = %d devices, %v; want %d", len(devs), err, adders+1)
	}
}

// TestEnqueueImpossibleDevice: device ids no device can have (0, above libsignal's 127,
// above the column's range) are unknown devices, not database errors.
func TestEnqueueImpossibleDevice(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	acct, _, err := s.Register(ctx, "+14155550194", []byte{5}, store.Device{ID: 1, CredentialHash: []byte{1}})
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	for _, dev := range []uint32{0, 128, 1 << 31, 1<<32 - 1} {
		good := &store.Envelope{ID: uuid.New(), Account: acct.ID, Device: 1, ServerTime: time.Now(), Body: []byte("x")}
		bad := &store.Envelope{ID: uuid.New(), Account: acct.ID, Device: dev, ServerTime: time.Now(), Body: []byte("x")}
		if err := s.Enqueue(ctx, []*store.Envelope{good, bad}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Enqueue(device %d) = %v, want ErrNotFound", dev, err)
		}
	}
	if envs, err := s.Pending(ctx, acct.ID, 1, 0, 10); err != nil || len(envs) != 0 {
		t.Errorf("Pending() = %d envelopes, %v; want none (all or nothing)", len(envs), err)
	}
}

// TestCloseUnderLoad closes a store while senders are inside Enqueue: every call returns
// (nil or an error), and every call that returned nil is stored.
func TestCloseUnderLoad(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Start(t)
	s, err := Open(ctx, dsn, nil)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	acct, _, err := s.Register(ctx, "+14155550193", []byte{5}, store.Device{ID: 1, CredentialHash: []byte{1}})
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	var (
		mu    sync.Mutex
		acked []uuid.UUID
		wg    sync.WaitGroup
	)
	enough := make(chan struct{})
	var once sync.Once
	for range 16 {
		wg.Go(func() {
			for {
				e := &store.Envelope{ID: uuid.New(), Account: acct.ID, Device: 1, ServerTime: time.Now(), Body: []byte("x")}
				if err := s.Enqueue(ctx, []*store.Envelope{e}); err != nil {
					if !errors.Is(err, errClosed) {
						t.Errorf("Enqueue() = %v, want nil or errClosed", err)
					}
					return
				}
				mu.Lock()
				acked = append(acked, e.ID)
				if len(acked) == 100 {
					once.Do(func() { close(enough) })
				}
				mu.Unlock()
			}
		})
	}
	<-enough
	s.Close()
	wg.Wait()

	check, err := Open(ctx, dsn, nil)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	defer check.Close()
	envs, err := check.Pending(ctx, acct.ID, 1, 0, 1<<20)
	if err != nil {
		t.Fatalf("Pending() = %v", err)
	}
	stored := map[uuid.UUID]bool{}
	for _, e := range envs {
		stored[e.ID] = true
	}
	for _, id := range acked {
		if !stored[id] {
			t.Errorf("envelope %v acknowledged before Close() is not stored", id)
		}
	}
}

// twoNodes opens two Stores on one database, as two bastiond nodes do; both are closed
// when the test ends.
func twoNodes(t *testing.T, dsn string) [2]*Store {
	t.Helper()
	var nodes [2]*Store
	for i := range nodes {
		s, err := Open(context.Background(), dsn, nil)
		if err != nil {
			t.Fatalf("Open() node %d = %v", i, err)
		}
		t.Cleanup(func() { s.Close() })
		nodes[i] = s
	}
	return nodes
}
