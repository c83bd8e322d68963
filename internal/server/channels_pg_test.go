package server

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"testing"
	"time"

	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/internal/pgtest"
	"github.com/bastionchat/bastion/internal/store"
	"github.com/bastionchat/bastion/internal/store/postgres"
)

// TestChannelRaceAcrossNodesPostgres runs two servers, each with its own connection
// pool to one PostgreSQL database, and has posters race for the same place through both
// at once, round after round: exactly one wins each round, and the stored chain verifies
// from the genesis (no place taken twice, no post lost). No bus links the nodes, so each
// learns of the other's posts only from the store.
func TestChannelRaceAcrossNodesPostgres(t *testing.T) {
	dsn := pgtest.Start(t)
	ctx := context.Background()
	clock := &fakeClock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	var nodes []*harness
	var stores []*postgres.Store
	for range 2 {
		st, err := postgres.Open(ctx, dsn, nil)
		if err != nil {
			t.Fatalf("postgres.Open() = %v", err)
		}
		t.Cleanup(func() { st.Close() })
		stores = append(stores, st)
		srv, err := New(testConfig(), Options{Store: st, SMS: &captureSMS{codes: map[string]string{}}, Now: clock.Now,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, &harness{t: t, srv: srv, ts: newTestServer(t, srv), clock: clock})
	}
	const password = "a device secret of enough length"
	sum := sha256.Sum256([]byte(password))
	acct, _, err := stores[0].Register(ctx, "+14155550210", append([]byte{5}, make([]byte, 32)...),
		store.Device{ID: 1, RegistrationID: 7, CredentialHash: sum[:]})
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	alice := &client{account: acct.ID, device: 1, password: password}
	o := newOwner(t, "pg_race")
	nodes[0].createChannel(alice, o)

	const rounds = 8
	for round := range rounds {
		racePost(t, o, round, alice, [2]*harness{nodes[0], nodes[1]})
	}
	// Whatever node served it, the history is one chain of the winners.
	_, want := o.v.Last()
	for _, n := range nodes {
		pg := n.page(alice, o.id(), "after=0")
		v, _ := channel.NewVerifier(o.genesis)
		var page []*channel.Post
		for _, cp := range pg.Posts {
			p, err := channel.ParsePost(cp.Post)
			if err != nil {
				t.Fatal(err)
			}
			page = append(page, p)
		}
		if _, err := v.AcceptPage(page, nil); err != nil || len(page) != rounds || pg.Newest != rounds {
			t.Errorf("stored history: %d posts, newest %d, AcceptPage = %v; want %d verifying posts", len(page), pg.Newest, err, rounds)
		}
		if seq, hash := v.Last(); seq != rounds || hash != want {
			t.Errorf("stored chain ends at %d, want the winners' chain", seq)
		}
	}
}
