package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/internal/store"
	"github.com/google/uuid"
)

var handles atomic.Int64

func newChannel(t *testing.T, s store.Store) store.Channel {
	t.Helper()
	c := store.Channel{
		Handle:    fmt.Sprintf("chan_%d", handles.Add(1)),
		Genesis:   randBytes(200),
		State:     randBytes(64),
		CreatedAt: now(),
	}
	copy(c.ID[:], randBytes(16))
	copy(c.NewestHash[:], randBytes(32))
	if err := s.CreateChannel(context.Background(), c); err != nil {
		t.Fatalf("CreateChannel(%s) = %v", c.Handle, err)
	}
	return c
}

// testChannels checks create and lookup by id and handle, taken ids and handles, appends
// only at newest+1 with the state and hash they carry, heads that only move forward, and
// pages both ways.
func testChannels(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newChannel(t, s)
	for name, get := range map[string]func() (store.Channel, error){
		"Channel":         func() (store.Channel, error) { return s.Channel(ctx, c.ID) },
		"ChannelByHandle": func() (store.Channel, error) { return s.ChannelByHandle(ctx, c.Handle) },
	} {
		got, err := get()
		if err != nil {
			t.Fatalf("%s() = %v", name, err)
		}
		if got.ID != c.ID || got.Handle != c.Handle || !bytes.Equal(got.Genesis, c.Genesis) || !bytes.Equal(got.State, c.State) ||
			got.NewestHash != c.NewestHash || got.Newest != 0 || got.Head != nil || got.Subscribers != 0 || !got.CreatedAt.Equal(c.CreatedAt) {
			t.Errorf("%s() = %+v, want %+v", name, got, c)
		}
	}
	if _, err := s.Channel(ctx, [16]byte{1}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Channel(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.ChannelByHandle(ctx, "nobody_here"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ChannelByHandle(unknown) = %v, want ErrNotFound", err)
	}
	sameHandle := store.Channel{Handle: c.Handle, Genesis: []byte{1}}
	copy(sameHandle.ID[:], randBytes(16))
	sameID := store.Channel{ID: c.ID, Handle: "other_handle", Genesis: []byte{1}}
	for name, d := range map[string]store.Channel{"handle": sameHandle, "id": sameID} {
		if err := s.CreateChannel(ctx, d); !errors.Is(err, store.ErrConflict) {
			t.Errorf("CreateChannel(taken %s) = %v, want ErrConflict", name, err)
		}
	}

	// Appends: only newest+1.
	var posts [][]byte
	for seq := uint64(1); seq <= 5; seq++ {
		p := randBytes(100 + int(seq))
		var h [32]byte
		copy(h[:], randBytes(32))
		state := randBytes(10 + int(seq))
		for _, bad := range []uint64{0, seq + 1, seq - 1} {
			if bad == seq-1 && bad == 0 {
				continue
			}
			err := s.AppendChannelPost(ctx, store.ChannelPost{Channel: c.ID, Seq: bad, Post: p}, h, state)
			if !errors.Is(err, store.ErrConflict) {
				t.Errorf("AppendChannelPost(seq %d, newest %d) = %v, want ErrConflict", bad, seq-1, err)
			}
		}
		if err := s.AppendChannelPost(ctx, store.ChannelPost{Channel: c.ID, Seq: seq, Post: p}, h, state); err != nil {
			t.Fatalf("AppendChannelPost(seq %d) = %v", seq, err)
		}
		posts = append(posts, p)
		got, err := s.Channel(ctx, c.ID)
		if err != nil || got.Newest != seq || got.NewestHash != h || !bytes.Equal(got.State, state) {
			t.Fatalf("Channel() after append %d = newest %d, hash %x, state %x, %v; want %d, %x, %x", seq, got.Newest, got.NewestHash, got.State, err, seq, h, state)
		}
	}
	if err := s.AppendChannelPost(ctx, store.ChannelPost{Channel: [16]byte{2}, Seq: 1, Post: []byte{1}}, [32]byte{}, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AppendChannelPost(unknown channel) = %v, want ErrNotFound", err)
	}

	// Pages.
	seqs := func(ps []store.ChannelPost) []uint64 {
		var out []uint64
		for _, p := range ps {
			out = append(out, p.Seq)
			if p.Channel != c.ID || !bytes.Equal(p.Post, posts[p.Seq-1]) {
				t.Errorf("post %d = %x, want %x", p.Seq, p.Post, posts[p.Seq-1])
			}
		}
		return out
	}
	pageTests := []struct {
		before bool
		bound  uint64
		limit  int
		want   []uint64
	}{
		{false, 0, 100, []uint64{1, 2, 3, 4, 5}},
		{false, 0, 2, []uint64{1, 2}},
		{false, 2, 2, []uint64{3, 4}},
		{false, 5, 10, nil},
		{true, 6, 2, []uint64{5, 4}},
		{true, 4, 10, []uint64{3, 2, 1}},
		{true, 1, 10, nil},
		{true, 1 << 63, 1, []uint64{5}},
		{false, 0, 0, nil},
	}
	for _, tc := range pageTests {
		var ps []store.ChannelPost
		var err error
		if tc.before {
			ps, err = s.ChannelPostsBefore(ctx, c.ID, tc.bound, tc.limit)
		} else {
			ps, err = s.ChannelPostsAfter(ctx, c.ID, tc.bound, tc.limit)
		}
		if got := seqs(ps); err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ChannelPosts(before %v, %d, limit %d) = %v, %v; want %v", tc.before, tc.bound, tc.limit, got, err, tc.want)
		}
	}

	// Heads move forward only, by post and, at one post, by signing time: an owner's
	// periodic head at the same newest post replaces the one held when it is later.
	heads := signedHeads(t)
	for _, h := range []struct {
		name string
		want string
	}{
		{"3@t1", "3@t1"},
		{"2@t9", "3@t1"}, // an older post, however late, is ignored
		{"3@t0", "3@t1"}, // the same post signed earlier is ignored
		{"3@t1", "3@t1"},
		{"3@t2", "3@t2"}, // the same post signed later replaces it
		{"5@t0", "5@t0"}, // a later post replaces it whatever its time
		{"3@t9", "5@t0"},
	} {
		head := heads[h.name]
		if err := s.SetChannelHead(ctx, c.ID, head.Seq(), head.Bytes()); err != nil {
			t.Fatalf("SetChannelHead(%s) = %v", h.name, err)
		}
		got, _ := s.Channel(ctx, c.ID)
		if want := heads[h.want]; got.HeadSeq != want.Seq() || !bytes.Equal(got.Head, want.Bytes()) {
			t.Errorf("after SetChannelHead(%s): head at %d, want %s", h.name, got.HeadSeq, h.want)
		}
	}
	if err := s.SetChannelHead(ctx, [16]byte{3}, 1, []byte{1}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetChannelHead(unknown) = %v, want ErrNotFound", err)
	}
}

// testChannelAppendConcurrent has many posters append the same seq at once: exactly one
// wins, the others get ErrConflict, and the stored post is the winner's.
func testChannelAppendConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newChannel(t, s)
	const n = 16
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners [][]byte
	)
	start := make(chan struct{})
	for range n {
		p := randBytes(50)
		wg.Go(func() {
			<-start
			err := s.AppendChannelPost(ctx, store.ChannelPost{Channel: c.ID, Seq: 1, Post: p}, [32]byte{1}, []byte{1})
			switch {
			case err == nil:
				mu.Lock()
				winners = append(winners, p)
				mu.Unlock()
			case !errors.Is(err, store.ErrConflict):
				t.Errorf("AppendChannelPost() concurrently = %v, want nil or ErrConflict", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d concurrent appends of seq 1 succeeded, want exactly 1", len(winners))
	}
	ps, err := s.ChannelPostsAfter(ctx, c.ID, 0, 10)
	if err != nil || len(ps) != 1 || !bytes.Equal(ps[0].Post, winners[0]) {
		t.Errorf("ChannelPostsAfter() = %d posts, %v; want the winner's only", len(ps), err)
	}
}

// testChannelCounters checks that subscribers never go below zero and views count per
// post, also under concurrency.
func testChannelCounters(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newChannel(t, s)
	for seq := uint64(1); seq <= 2; seq++ {
		if err := s.AppendChannelPost(ctx, store.ChannelPost{Channel: c.ID, Seq: seq, Post: []byte{byte(seq)}}, [32]byte{}, nil); err != nil {
			t.Fatalf("AppendChannelPost(%d) = %v", seq, err)
		}
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if err := s.AddChannelSubscribers(ctx, c.ID, 1); err != nil {
				t.Errorf("AddChannelSubscribers(+1) = %v", err)
			}
			if err := s.AddChannelViews(ctx, c.ID, []uint64{1, 2, 2, 99}); err != nil {
				t.Errorf("AddChannelViews() = %v", err)
			}
		})
	}
	wg.Wait()
	got, _ := s.Channel(ctx, c.ID)
	if got.Subscribers != 10 {
		t.Errorf("Subscribers after 10 follows = %d, want 10", got.Subscribers)
	}
	for range 12 {
		if err := s.AddChannelSubscribers(ctx, c.ID, -1); err != nil {
			t.Fatalf("AddChannelSubscribers(-1) = %v", err)
		}
	}
	if got, _ := s.Channel(ctx, c.ID); got.Subscribers != 0 {
		t.Errorf("Subscribers after 12 unfollows = %d, want 0 (never below)", got.Subscribers)
	}
	ps, _ := s.ChannelPostsAfter(ctx, c.ID, 0, 10)
	if len(ps) != 2 || ps[0].Views != 10 || ps[1].Views != 20 {
		t.Errorf("views = %+v, want 10 and 20", ps)
	}
	if err := s.AddChannelSubscribers(ctx, [16]byte{4}, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AddChannelSubscribers(unknown) = %v, want ErrNotFound", err)
	}
}

// testChannelNotices checks notices: stored, replaced by (seq, action, jurisdiction),
// listed oldest first per channel.
func testChannelNotices(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := newChannel(t, s)
	t0 := now()
	ns := []store.ChannelNotice{
		{Channel: c.ID, Seq: 3, Action: 1, Jurisdiction: "DE", Notice: []byte("n1"), CreatedAt: t0},
		{Channel: c.ID, Seq: 1, Action: 2, Notice: []byte("n2"), CreatedAt: t0.Add(time.Second)},
		{Channel: c.ID, Seq: 3, Action: 1, Jurisdiction: "FR", Notice: []byte("n3"), CreatedAt: t0.Add(2 * time.Second)},
		{Channel: [16]byte{9}, Seq: 3, Action: 2, Notice: []byte("other"), CreatedAt: t0},
	}
	for _, n := range ns {
		if err := s.PutChannelNotice(ctx, n); err != nil {
			t.Fatalf("PutChannelNotice() = %v", err)
		}
	}
	replaced := ns[0]
	replaced.Notice, replaced.CreatedAt = []byte("n1b"), t0.Add(3*time.Second)
	if err := s.PutChannelNotice(ctx, replaced); err != nil {
		t.Fatalf("PutChannelNotice(again) = %v", err)
	}
	got, err := s.ChannelNotices(ctx, c.ID)
	if err != nil {
		t.Fatalf("ChannelNotices() = %v", err)
	}
	want := []store.ChannelNotice{ns[1], ns[2], replaced}
	if len(got) != len(want) {
		t.Fatalf("ChannelNotices() = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Channel != w.Channel || g.Seq != w.Seq || g.Action != w.Action || g.Jurisdiction != w.Jurisdiction ||
			!bytes.Equal(g.Notice, w.Notice) || !g.CreatedAt.Equal(w.CreatedAt) {
			t.Errorf("ChannelNotices()[%d] = %+v, want %+v", i, g, w)
		}
	}
	if got, err := s.ChannelNotices(ctx, [16]byte{8}); err != nil || len(got) != 0 {
		t.Errorf("ChannelNotices(none) = %v, %v; want none", got, err)
	}
}

// testChannelReports checks reports: stored open, listed by status, decided once.
func testChannelReports(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := now()
	r1 := store.ChannelReport{ID: uuid.New(), Channel: [16]byte{1}, Seq: 4, Reason: "illegal", Text: "why", CreatedAt: t0, Status: store.ReportOpen}
	r2 := store.ChannelReport{ID: uuid.New(), Channel: [16]byte{2}, Seq: 1, Reason: "terms", Text: "spam", CreatedAt: t0.Add(time.Second), Status: store.ReportOpen}
	for _, r := range []store.ChannelReport{r1, r2} {
		if err := s.AddChannelReport(ctx, r); err != nil {
			t.Fatalf("AddChannelReport() = %v", err)
		}
	}
	if err := s.AddChannelReport(ctx, r1); !errors.Is(err, store.ErrConflict) {
		t.Errorf("AddChannelReport(same id) = %v, want ErrConflict", err)
	}
	got, err := s.ChannelReport(ctx, r1.ID)
	if err != nil || got != r1 {
		t.Errorf("ChannelReport() = %+v, %v; want %+v", got, err, r1)
	}
	if _, err := s.ChannelReport(ctx, uuid.New()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ChannelReport(unknown) = %v, want ErrNotFound", err)
	}
	at := t0.Add(time.Minute)
	if err := s.DecideChannelReport(ctx, r1.ID, store.ReportRestricted, at); err != nil {
		t.Fatalf("DecideChannelReport() = %v", err)
	}
	if err := s.DecideChannelReport(ctx, r1.ID, store.ReportRemoved, at); !errors.Is(err, store.ErrConflict) {
		t.Errorf("DecideChannelReport(decided) = %v, want ErrConflict", err)
	}
	if err := s.DecideChannelReport(ctx, uuid.New(), store.ReportRemoved, at); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DecideChannelReport(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.DecideChannelReport(ctx, r2.ID, store.ReportOpen, at); err == nil {
		t.Errorf("DecideChannelReport(status open) = nil, want an error")
	}
	decided := r1
	decided.Status, decided.DecidedAt = store.ReportRestricted, at
	for _, tc := range []struct {
		status string
		want   []store.ChannelReport
	}{
		{"", []store.ChannelReport{decided, r2}},
		{store.ReportOpen, []store.ChannelReport{r2}},
		{store.ReportRestricted, []store.ChannelReport{decided}},
		{store.ReportDismissed, nil},
	} {
		got, err := s.ChannelReports(ctx, tc.status)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ChannelReports(%q) = %+v, %v; want %+v", tc.status, got, err, tc.want)
		}
	}
}

// signedHeads returns owner heads of one channel by "seq@time": posts 2, 3 and 5, signed
// at times t0 < t1 < t2 < t9.
func signedHeads(t *testing.T) map[string]*channel.Head {
	t.Helper()
	key, err := channel.GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	genesis, err := channel.Create(key, channel.Info{Handle: "heads", Title: "Heads"}, start, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := channel.NewVerifier(genesis)
	if err != nil {
		t.Fatal(err)
	}
	heads := map[string]*channel.Head{}
	prev := genesis.Hash()
	for seq := uint64(1); seq <= 5; seq++ {
		p, err := channel.Sign(key, genesis.Channel(), seq, prev, channel.Draft{Kind: channel.KindPost, Body: []byte("post"), Time: start})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Accept(p); err != nil {
			t.Fatalf("Accept(post %d) = %v", seq, err)
		}
		prev = p.Hash()
		for _, at := range []int{0, 1, 2, 9} {
			h, err := v.SignHead(key, start.Add(time.Duration(at)*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			heads[fmt.Sprintf("%d@t%d", seq, at)] = h
		}
	}
	return heads
}
