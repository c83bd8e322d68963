package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/internal/store"
)

// owner is a channel owner's device as a test drives it: its key and its own verifier.
type owner struct {
	t       testing.TB
	key     *channel.SigningKey
	genesis *channel.Post
	v       *channel.Verifier
}

var postTime = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newOwner(t testing.TB, handle string) *owner {
	t.Helper()
	key, err := channel.GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := channel.Create(key, channel.Info{Handle: channel.Handle(handle), Title: "Title of " + handle}, postTime, nil)
	if err != nil {
		t.Fatalf("channel.Create() = %v", err)
	}
	v, err := channel.NewVerifier(g)
	if err != nil {
		t.Fatal(err)
	}
	return &owner{t: t, key: key, genesis: g, v: v}
}

func (o *owner) id() string { return o.genesis.Channel().String() }

// next signs the next post and accepts it on the owner's device.
func (o *owner) next(body string) *channel.Post {
	o.t.Helper()
	p, err := o.v.Next(o.key, channel.Draft{Kind: channel.KindPost, Body: []byte(body), Time: postTime})
	if err != nil {
		o.t.Fatalf("Next() = %v", err)
	}
	if _, err := o.v.Accept(p); err != nil {
		o.t.Fatalf("Accept(own post) = %v", err)
	}
	return p
}

func (o *owner) head() []byte {
	o.t.Helper()
	h, err := o.v.SignHead(o.key, postTime)
	if err != nil {
		o.t.Fatalf("SignHead() = %v", err)
	}
	return h.Bytes()
}

func (h *harness) createChannel(c *client, o *owner) api.ChannelInfo {
	h.t.Helper()
	r := h.do("POST", "/v1/channels", api.CreateChannelRequest{Genesis: o.genesis.Bytes(), Head: o.head()}, c)
	h.want(r, 200, "", "create channel")
	return decodeBody[api.ChannelInfo](h.t, r)
}

func (h *harness) post(c *client, id string, p []byte) response {
	h.t.Helper()
	return h.do("POST", "/v1/channels/"+id+"/posts", api.PostRequest{Post: p}, c)
}

func (h *harness) page(c *client, id, query string) api.PostsPage {
	h.t.Helper()
	r := h.do("GET", "/v1/channels/"+id+"/posts?"+query, nil, c)
	h.want(r, 200, "", "GET posts?"+query)
	return decodeBody[api.PostsPage](h.t, r)
}

// bodies returns the bodies of a page's posts, "<withheld>" for a withheld one.
func bodies(t testing.TB, pg api.PostsPage) []string {
	t.Helper()
	var out []string
	for _, cp := range pg.Posts {
		p, err := channel.ParsePost(cp.Post)
		if err != nil {
			t.Fatalf("ParsePost(served) = %v", err)
		}
		if p.Withheld() {
			out = append(out, fmt.Sprintf("<withheld %d>", p.Seq()))
			continue
		}
		out = append(out, string(p.Body()))
	}
	return out
}

func TestChannelCreateAndLookup(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.register("+14155550201", 0)
	o := newOwner(t, "news_desk")
	info := h.createChannel(alice, o)
	if info.ID != o.id() || info.Handle != "news_desk" || info.Newest != 0 || !bytes.Equal(info.Genesis, o.genesis.Bytes()) || info.Head == nil {
		t.Fatalf("create channel = %+v, want id %s, handle news_desk, newest 0, the genesis and head", info, o.id())
	}
	for _, ref := range []string{o.id(), "@news_desk"} {
		r := h.do("GET", "/v1/channels/"+ref, nil, alice)
		h.want(r, 200, "", "GET channel "+ref)
		if got := decodeBody[api.ChannelInfo](t, r); got.ID != info.ID || !bytes.Equal(got.Genesis, info.Genesis) {
			t.Errorf("GET channel %s = %+v, want %+v", ref, got, info)
		}
	}
	// The same genesis again is the same channel; another owner's channel with the
	// handle is refused.
	h.want(h.do("POST", "/v1/channels", api.CreateChannelRequest{Genesis: o.genesis.Bytes()}, alice), 200, "", "create again")
	other := newOwner(t, "news_desk")
	h.want(h.do("POST", "/v1/channels", api.CreateChannelRequest{Genesis: other.genesis.Bytes()}, alice), 409, api.CodeHandleTaken, "create with a taken handle")

	forged := append([]byte(nil), other.genesis.Bytes()...)
	forged[len(forged)-1] ^= 1 // the signature
	tests := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"garbage genesis", api.CreateChannelRequest{Genesis: []byte("no post")}, 400, api.CodeBadPost},
		{"bad signature", api.CreateChannelRequest{Genesis: forged}, 400, api.CodeBadPost},
		{"not a genesis", api.CreateChannelRequest{Genesis: o.next("hello").Bytes()}, 400, api.CodeBadPost},
		{"head of another channel", api.CreateChannelRequest{Genesis: newOwner(t, "third_one").genesis.Bytes(), Head: o.head()}, 400, api.CodeBadPost},
	}
	for _, tc := range tests {
		h.want(h.do("POST", "/v1/channels", tc.body, alice), tc.status, tc.code, tc.name)
	}
	for _, ref := range []string{"@nobody_here", "00112233445566778899aabbccddeeff"} {
		h.want(h.do("GET", "/v1/channels/"+ref, nil, alice), 404, api.CodeNotFound, "GET unknown "+ref)
	}
	for _, ref := range []string{"zz", "@1bad", "@x"} {
		h.want(h.do("GET", "/v1/channels/"+ref, nil, alice), 404, api.CodeNotFound, "GET malformed ref "+ref)
	}
	h.want(h.post(alice, "not-hex", o.next("x").Bytes()), 404, api.CodeNotFound, "post to a malformed id")
	h.want(h.do("GET", "/v1/channels/@news_desk", nil, nil), 401, api.CodeUnauthorized, "GET without credentials")
}

func TestChannelPostsAcceptedAndRefused(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.register("+14155550202", 0)
	o := newOwner(t, "daily_posts")
	h.createChannel(alice, o)
	id := o.id()

	var posts []*channel.Post
	for i := range 5 {
		p := o.next(fmt.Sprintf("post %d", i+1))
		posts = append(posts, p)
		r := h.post(alice, id, p.Bytes())
		h.want(r, 200, "", "post")
		if got := decodeBody[api.PostResponse](t, r).Seq; got != p.Seq() {
			t.Errorf("post seq = %d, want %d", got, p.Seq())
		}
	}
	h.want(h.post(alice, id, posts[4].Bytes()), 200, "", "a retried post") // idempotent

	stranger, _ := channel.GenerateSigningKey(nil)
	_, last := o.v.Last()
	forged, _ := channel.Sign(stranger, o.genesis.Channel(), 6, last, channel.Draft{Kind: channel.KindPost, Body: []byte("forged"), Time: postTime})
	good, _ := channel.Sign(o.key, o.genesis.Channel(), 6, last, channel.Draft{Kind: channel.KindPost, Body: []byte("good body"), Time: postTime})
	altered := bytes.Replace(good.Bytes(), []byte("good body"), []byte("evil body"), 1)
	ahead, _ := channel.Sign(o.key, o.genesis.Channel(), 7, last, channel.Draft{Kind: channel.KindPost, Body: []byte("ahead"), Time: postTime})
	fork, _ := channel.Sign(o.key, o.genesis.Channel(), 5, posts[3].Hash(), channel.Draft{Kind: channel.KindPost, Body: []byte("other 5"), Time: postTime})
	otherChannel := newOwner(t, "other_chan").next("elsewhere")
	tests := []struct {
		name   string
		post   []byte
		status int
		code   string
	}{
		{"forged", forged.Bytes(), 400, api.CodeBadPost},
		{"altered", altered, 400, api.CodeBadPost},
		{"withheld by the poster", good.Withhold().Bytes(), 400, api.CodeBadPost},
		{"garbage", []byte("not a post"), 400, api.CodeBadPost},
		{"another channel's", otherChannel.Bytes(), 400, api.CodeBadPost},
		{"out of order (gap)", ahead.Bytes(), 409, api.CodeChannelConflict},
		{"a second post 5", fork.Bytes(), 409, api.CodeChannelConflict},
	}
	for _, tc := range tests {
		h.want(h.post(alice, id, tc.post), tc.status, tc.code, "post "+tc.name)
	}
	if !bytes.Equal(altered[:20], good.Bytes()[:20]) || bytes.Equal(altered, good.Bytes()) {
		t.Fatal("the altered post is not an alteration of the good one")
	}
	h.want(h.post(alice, id, good.Bytes()), 200, "", "the real post 6")
	posts = append(posts, good)
	if _, err := o.v.Accept(good); err != nil {
		t.Fatal(err)
	}

	// Served unchanged, both ways.
	if got := bodies(t, h.page(alice, id, "after=0")); fmt.Sprint(got) != "[post 1 post 2 post 3 post 4 post 5 good body]" {
		t.Errorf("posts?after=0 = %q", got)
	}
	pageTests := []struct {
		query string
		want  []uint64
	}{
		{"after=0&limit=2", []uint64{1, 2}},
		{"after=2&limit=3", []uint64{3, 4, 5}},
		{"after=6", nil},
		{"before=7&limit=2", []uint64{6, 5}},
		{"before=3", []uint64{2, 1}},
		{"limit=1", []uint64{1}},
	}
	for _, tc := range pageTests {
		pg := h.page(alice, id, tc.query)
		var got []uint64
		for _, cp := range pg.Posts {
			p, _ := channel.ParsePost(cp.Post)
			got = append(got, p.Seq())
			if !bytes.Equal(cp.Post, posts[p.Seq()-1].Bytes()) {
				t.Errorf("posts?%s: post %d differs from the one submitted", tc.query, p.Seq())
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || pg.Newest != 6 {
			t.Errorf("posts?%s = %v (newest %d), want %v (newest 6)", tc.query, got, pg.Newest, tc.want)
		}
	}
	// A subscriber verifies a page from the stored head backwards (AcceptOlder takes
	// the page in ascending order; the server serves before= pages newest first).
	pg := h.page(alice, id, "before=7")
	var older []*channel.Post
	for _, cp := range pg.Posts {
		p, _ := channel.ParsePost(cp.Post)
		older = append([]*channel.Post{p}, older...)
	}
	head, _ := channel.ParseHead(o.head())
	sub, err := channel.NewVerifierAt(o.genesis, head)
	if err == nil {
		_, err = sub.AcceptOlder(older, nil)
	}
	if err != nil {
		t.Errorf("AcceptOlder(served page) = %v", err)
	}
	for _, q := range []string{"limit=0", "limit=501", "after=1&before=3", "after=-1", "before=x"} {
		h.want(h.do("GET", "/v1/channels/"+id+"/posts?"+q, nil, alice), 400, api.CodeBadRequest, "GET posts?"+q)
	}
	h.want(h.do("GET", "/v1/channels/00112233445566778899aabbccddeeff/posts", nil, alice), 404, api.CodeNotFound, "posts of no channel")

	// Heads: the owner's newest is stored; a forged one is refused.
	h.want(h.do("PUT", "/v1/channels/"+id+"/head", api.HeadRequest{Head: o.head()}, alice), 204, "", "PUT head")
	r := h.do("GET", "/v1/channels/"+id, nil, alice)
	if info := decodeBody[api.ChannelInfo](t, r); !bytes.Equal(info.Head, o.head()) || info.Newest != 6 {
		t.Errorf("channel after PUT head = head %x newest %d, want the owner's head at 6", info.Head, info.Newest)
	}
	badHead := o.head()
	badHead[len(badHead)-1] ^= 1
	h.want(h.do("PUT", "/v1/channels/"+id+"/head", api.HeadRequest{Head: badHead}, alice), 400, api.CodeBadPost, "PUT forged head")
}

// TestChannelConcurrentPosters has two admins race for the same place: one wins, the
// other is told to sign again after the winner.
func TestChannelConcurrentPosters(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.register("+14155550203", 0)
	o := newOwner(t, "race_track")
	h.createChannel(alice, o)
	for round := range 5 {
		racePost(t, o, round, alice, [2]*harness{h, h})
	}
	if got := len(h.page(alice, o.id(), "after=0").Posts); got != 5 {
		t.Errorf("stored %d posts, want 5", got)
	}
}

// racePost has the two nodes (or one node twice) take one post each for the same place
// at once and fails unless exactly one wins; the owner's verifier then takes the winner.
func racePost(t *testing.T, o *owner, round int, c *client, nodes [2]*harness) {
	t.Helper()
	seq, last := o.v.Last()
	var ps [2]*channel.Post
	for i := range ps {
		ps[i], _ = channel.Sign(o.key, o.genesis.Channel(), seq+1, last,
			channel.Draft{Kind: channel.KindPost, Body: fmt.Appendf(nil, "round %d poster %d", round, i), Time: postTime})
	}
	var status [2]int
	var wg sync.WaitGroup
	for i := range ps {
		wg.Go(func() {
			req, _ := json.Marshal(api.PostRequest{Post: ps[i].Bytes()})
			status[i] = nodes[i].do("POST", "/v1/channels/"+o.id()+"/posts", req, c).status
		})
	}
	wg.Wait()
	winner := -1
	switch {
	case status[0] == 200 && status[1] == 409:
		winner = 0
	case status[0] == 409 && status[1] == 200:
		winner = 1
	default:
		t.Fatalf("round %d: statuses %v, want one 200 and one 409", round, status)
	}
	if _, err := o.v.Accept(ps[winner]); err != nil {
		t.Fatal(err)
	}
}

// signNotice makes an operator notice for post p.
func signNotice(t testing.TB, key ed25519.PrivateKey, p *channel.Post, action channel.Action, country string) store.ChannelNotice {
	t.Helper()
	n, err := channel.SignNotice(key, channel.Notice{Channel: p.Channel(), Seq: p.Seq(), Post: p.Hash(), Action: action,
		Jurisdiction: country, Reason: "statement of reasons", Time: postTime})
	if err != nil {
		t.Fatalf("SignNotice() = %v", err)
	}
	return store.ChannelNotice{Channel: p.Channel(), Seq: p.Seq(), Action: uint8(action), Jurisdiction: country, Notice: n.Bytes(), CreatedAt: postTime}
}

// TestChannelNoticesApplied: a post restricted in DE is withheld, with its notice, from
// readers with a German number only; a removed post is withheld from everyone; both
// still verify as links of the chain.
func TestChannelNoticesApplied(t *testing.T) {
	h := newHarness(t, nil)
	us := h.register("+14155550204", 0)
	de := h.register("+4915112345678", 0)
	o := newOwner(t, "noticed_chan")
	h.createChannel(us, o)
	var ps []*channel.Post
	for i := range 3 {
		p := o.next(fmt.Sprintf("post %d", i+1))
		ps = append(ps, p)
		h.want(h.post(us, o.id(), p.Bytes()), 200, "", "post")
	}
	opPub, opKey, _ := ed25519.GenerateKey(nil)
	ctx := context.Background()
	for _, n := range []store.ChannelNotice{
		signNotice(t, opKey, ps[0], channel.ActionRestrict, "DE"),
		signNotice(t, opKey, ps[1], channel.ActionRestrict, "FR"),
		signNotice(t, opKey, ps[2], channel.ActionRemove, ""),
	} {
		if err := h.st.PutChannelNotice(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		reader *client
		want   string
	}{
		{us, "[post 1 post 2 <withheld 3>]"},
		{de, "[<withheld 1> post 2 <withheld 3>]"},
	} {
		pg := h.page(tc.reader, o.id(), "after=0")
		if got := fmt.Sprint(bodies(t, pg)); got != tc.want {
			t.Errorf("posts for %s = %s, want %s", tc.reader.number[:3], got, tc.want)
		}
		// A subscriber holding the operator key accepts the page, holes and all.
		sub, _ := channel.NewVerifier(o.genesis)
		sub.SetOperatorKey(opPub)
		var page []*channel.Post
		var notices []*channel.Notice
		for _, cp := range pg.Posts {
			p, _ := channel.ParsePost(cp.Post)
			page = append(page, p)
			if cp.Notice != nil {
				n, err := channel.ParseNotice(cp.Notice)
				if err != nil {
					t.Fatalf("ParseNotice(served) = %v", err)
				}
				notices = append(notices, n)
			}
		}
		if _, err := sub.AcceptPage(page, notices); err != nil {
			t.Errorf("AcceptPage(served to %s) = %v", tc.reader.number[:3], err)
		}
	}
}

func TestChannelCounters(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.register("+14155550205", 0)
	bob := h.register("+14155550206", 0)
	o := newOwner(t, "counted_one")
	h.createChannel(alice, o)
	for i := range 2 {
		h.want(h.post(alice, o.id(), o.next(fmt.Sprint(i)).Bytes()), 200, "", "post")
	}
	path := "/v1/channels/" + o.id()
	for _, c := range []*client{alice, bob} {
		h.want(h.do("PUT", path+"/follow", nil, c), 204, "", "follow")
		h.want(h.do("POST", path+"/views", api.ViewsRequest{Seqs: []uint64{1, 2, 2, 99}}, c), 204, "", "views")
	}
	info := decodeBody[api.ChannelInfo](t, h.do("GET", path, nil, alice))
	if info.Subscribers != 2 {
		t.Errorf("subscribers after two follows = %d, want 2", info.Subscribers)
	}
	pg := h.page(alice, o.id(), "after=0")
	if len(pg.Posts) != 2 || pg.Posts[0].Views != 2 || pg.Posts[1].Views != 2 {
		t.Errorf("views = %+v, want 2 and 2 (a seq repeated in one request counts once)", pg.Posts)
	}
	for range 3 {
		h.want(h.do("DELETE", path+"/follow", nil, bob), 204, "", "unfollow")
	}
	if info := decodeBody[api.ChannelInfo](t, h.do("GET", path, nil, alice)); info.Subscribers != 0 {
		t.Errorf("subscribers after three unfollows = %d, want 0 (never below)", info.Subscribers)
	}
	// A script following and unfollowing from one account runs into the limit.
	limited := false
	for range channelFollowRate.N + 1 {
		if r := h.do("PUT", path+"/follow", nil, alice); r.status == 429 {
			limited = true
			break
		}
	}
	if !limited {
		t.Errorf("%d follows from one account were all allowed, want a 429", channelFollowRate.N+1)
	}
	// The bucket is the account's, not the account's for this channel: a bucket naming
	// both would record who follows what. Another channel is limited too; another
	// account is not.
	other := newOwner(t, "counted_two")
	h.createChannel(bob, other)
	otherPath := "/v1/channels/" + other.id() + "/follow"
	h.want(h.do("PUT", otherPath, nil, alice), 429, api.CodeRateLimited, "follow of another channel by the limited account")
	h.want(h.do("PUT", otherPath, nil, bob), 204, "", "follow of another channel by another account")
	h.want(h.do("POST", path+"/views", api.ViewsRequest{Seqs: make([]uint64, api.MaxViewsBatch+1)}, alice), 400, api.CodeBadRequest, "too many views")
	h.want(h.do("PUT", "/v1/channels/00112233445566778899aabbccddeeff/follow", nil, bob), 404, api.CodeNotFound, "follow no channel")
}

// subscribe sends a channel_subscribe frame and waits for the server's answer.
func (w *wsClient) subscribe(ids ...string) {
	w.t.Helper()
	p, _ := json.Marshal(api.Frame{Type: api.FrameChannelSubscribe, Channels: ids})
	if err := wsutil.WriteClientText(w.conn, p); err != nil {
		w.t.Fatalf("writing channel_subscribe: %v", err)
	}
	for {
		f := w.next()
		if f.Type == api.FrameQueueEmpty {
			continue
		}
		if f.Type != api.FrameChannelSubscribe || len(f.Channels) != len(ids) || f.Error != nil {
			w.t.Fatalf("answer to channel_subscribe = %+v, want the %d channels", f, len(ids))
		}
		return
	}
}

// channelPosts reads the next channel_posts frame, skipping queue_empty.
func (w *wsClient) channelPosts() api.Frame {
	w.t.Helper()
	for {
		f := w.next()
		if f.Type == api.FrameQueueEmpty {
			continue
		}
		if f.Type != api.FrameChannelPosts {
			w.t.Fatalf("frame = %+v, want channel_posts", f)
		}
		return f
	}
}

// TestChannelStreaming: two subscribers get each new post pushed, in order, with the
// notices of their jurisdiction applied; an unsubscribed connection gets nothing.
func TestChannelStreaming(t *testing.T) {
	h := newHarness(t, nil)
	us := h.register("+14155550207", 0)
	de := h.register("+4915112345679", 0)
	o := newOwner(t, "streamed_one")
	h.createChannel(us, o)
	wUS, wDE := h.dial(us), h.dial(de)
	wUS.subscribe(o.id())
	wDE.subscribe(o.id(), "00112233445566778899aabbccddeeff")

	var ps []*channel.Post
	for i := range 3 {
		p := o.next(fmt.Sprintf("live %d", i+1))
		ps = append(ps, p)
		h.want(h.post(us, o.id(), p.Bytes()), 200, "", "post")
	}
	for _, w := range []*wsClient{wUS, wDE} {
		for i := range 3 {
			f := w.channelPosts()
			if f.Channel != o.id() || len(f.Posts) != 1 || !bytes.Equal(f.Posts[0].Post, ps[i].Bytes()) {
				t.Fatalf("push %d = %+v, want post %d", i, f, i+1)
			}
		}
	}
	// Pushes apply notices per reader: the next post is restricted in DE before it is
	// pushed (the notice is stored first, as if a notice arrived for a reposted text).
	_, opKey, _ := ed25519.GenerateKey(nil)
	p4 := o.next("restricted in DE")
	if err := h.st.PutChannelNotice(context.Background(), signNotice(t, opKey, p4, channel.ActionRestrict, "DE")); err != nil {
		t.Fatal(err)
	}
	h.want(h.post(us, o.id(), p4.Bytes()), 200, "", "post 4")
	if f := wUS.channelPosts(); !bytes.Equal(f.Posts[0].Post, p4.Bytes()) || f.Posts[0].Notice != nil {
		t.Errorf("push to US = %+v, want post 4 whole", f.Posts[0])
	}
	f := wDE.channelPosts()
	got, err := channel.ParsePost(f.Posts[0].Post)
	if err != nil || !got.Withheld() || got.Hash() != p4.Hash() || f.Posts[0].Notice == nil {
		t.Errorf("push to DE = %+v, want post 4 withheld with its notice", f.Posts[0])
	}

	// Unsubscribed: nothing more arrives; the next frame is the answer to a subscribe.
	// The fan-out runs after the poster's answer, so wait until the still-subscribed DE
	// reader has post 5: its fan-out has then picked its connections, before US
	// subscribes again.
	wUS.subscribe()
	h.want(h.post(us, o.id(), o.next("after unsubscribe").Bytes()), 200, "", "post 5")
	if f := wDE.channelPosts(); len(f.Posts) != 1 {
		t.Fatalf("push of post 5 to DE = %+v", f)
	} else if p, _ := channel.ParsePost(f.Posts[0].Post); p.Seq() != 5 {
		t.Fatalf("push to DE is post %d, want 5", p.Seq())
	}
	wUS.subscribe(o.id())
	h.want(h.post(us, o.id(), o.next("six").Bytes()), 200, "", "post 6")
	if f := wUS.channelPosts(); len(f.Posts) != 1 {
		t.Errorf("after resubscribing: %+v", f)
	} else if p, _ := channel.ParsePost(f.Posts[0].Post); p.Seq() != 6 {
		t.Errorf("after resubscribing the first push is post %d, want 6 (5 came while unsubscribed)", p.Seq())
	}
	// Malformed subscriptions close the connection.
	bad, _ := json.Marshal(api.Frame{Type: api.FrameChannelSubscribe, Channels: []string{"nothex"}})
	wsutil.WriteClientText(wDE.conn, bad)
	if code := wDE.closeCode(); code != ws.StatusInvalidFramePayloadData {
		t.Errorf("close code after a bad channel id = %d, want %d", code, ws.StatusInvalidFramePayloadData)
	}
}

// TestChannelSlowSubscriber: a connection that does not read loses its subscriptions
// when its queue overflows, and is told so; the poster never waits for it.
func TestChannelSlowSubscriber(t *testing.T) {
	h := newHarness(t, nil)
	server, peer := net.Pipe() // writes block until the peer reads: the slowest reader
	defer peer.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &wsConn{s: h.srv, conn: server, r: server, ctx: ctx, cancel: cancel}
	h.srv.wsWG.Add(1) // the connection's own count, as websocket() takes it
	defer h.srv.wsWG.Done()
	sub := &chanSub{c: c}
	id := channel.ID{1}
	h.srv.chans.setSubscriptions(sub, map[channel.ID]struct{}{id: {}})
	if !h.srv.chans.hasSubscribers(id) {
		t.Fatal("subscription not registered")
	}
	frame := []byte(`{"type":"channel_posts"}`)
	done := make(chan struct{})
	go func() {
		for range wsChannelQueue + 10 {
			h.srv.chans.fanOut(ctx, id, []store.ChannelPost{{Channel: id, Seq: 1, Post: frame}})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("fan-out blocked on a connection that does not read")
	}
	if h.srv.chans.hasSubscribers(id) {
		t.Errorf("the overflowing connection is still subscribed")
	}
	// The peer reads: the frame that was being written, then the overflow notice.
	var types []string
	var lastErr *api.Error
	for range 2 {
		peer.SetReadDeadline(time.Now().Add(10 * time.Second))
		p, err := wsutil.ReadServerText(peer)
		if err != nil {
			t.Fatalf("reading: %v", err)
		}
		var f api.Frame
		json.Unmarshal(p, &f)
		types = append(types, f.Type)
		lastErr = f.Error
	}
	if types[0] != api.FrameChannelPosts || types[1] != api.FrameChannelSubscribe || lastErr == nil || lastErr.Code != codeChannelOverflow {
		t.Errorf("frames = %v (error %+v), want channel_posts then channel_subscribe with %s", types, lastErr, codeChannelOverflow)
	}
}

// fakeBus links the servers of a test as NATS links nodes: a post stored on one is
// announced to the others. It is also each server's (in-process) Notifier.
type fakeBus struct {
	*LocalNotifier
	mu    sync.Mutex
	nodes []*fakeBus
	fn    func(id [16]byte, seq uint64)
}

func (b *fakeBus) PublishChannelPost(id [16]byte, seq uint64) {
	b.mu.Lock()
	nodes := b.nodes
	b.mu.Unlock()
	for _, n := range nodes {
		if n != b && n.fn != nil {
			n.fn(id, seq)
		}
	}
}

func (b *fakeBus) SubscribeChannelPosts(fn func(id [16]byte, seq uint64)) (func(), error) {
	b.fn = fn
	return func() {}, nil
}

// TestChannelTwoNodes runs two servers on one store: a post on either node is accepted
// after the other's (its cached verifier refreshes from the store), racing posters on
// different nodes get one place, and a subscriber on one node gets posts made on the
// other.
func TestChannelTwoNodes(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.register("+14155550208", 0)
	o := newOwner(t, "two_nodes")
	h.createChannel(alice, o)

	busA := &fakeBus{LocalNotifier: NewLocalNotifier()}
	busB := &fakeBus{LocalNotifier: NewLocalNotifier()}
	busA.nodes = []*fakeBus{busA, busB}
	busB.nodes = busA.nodes
	nodes := make([]*harness, 2)
	for i, b := range []*fakeBus{busA, busB} {
		srv, err := New(testConfig(), Options{Store: h.st, SMS: h.sms, Logger: h.srv.log, Now: h.clock.Now, Notifier: b})
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &harness{t: t, srv: srv, ts: newTestServer(t, srv), st: h.st, clock: h.clock, sms: h.sms, logs: h.logs}
	}
	a, b := nodes[0], nodes[1]
	wB := b.dial(alice)
	wB.subscribe(o.id())
	for i := range 4 {
		node := nodes[i%2]
		p := o.next(fmt.Sprintf("via node %d", i%2))
		node.want(node.post(alice, o.id(), p.Bytes()), 200, "", "post on alternating nodes")
		if f := wB.channelPosts(); !bytes.Equal(f.Posts[0].Post, p.Bytes()) {
			t.Fatalf("node B's subscriber got %+v, want post %d", f.Posts[0], p.Seq())
		}
	}
	// Both nodes hold a verifier at post 4; two posters race for 5 on different nodes.
	seq, last := o.v.Last()
	p1, _ := channel.Sign(o.key, o.genesis.Channel(), seq+1, last, channel.Draft{Kind: channel.KindPost, Body: []byte("A's"), Time: postTime})
	p2, _ := channel.Sign(o.key, o.genesis.Channel(), seq+1, last, channel.Draft{Kind: channel.KindPost, Body: []byte("B's"), Time: postTime})
	var s1, s2 int
	var wg sync.WaitGroup
	wg.Go(func() { s1 = a.post(alice, o.id(), p1.Bytes()).status })
	wg.Go(func() { s2 = b.post(alice, o.id(), p2.Bytes()).status })
	wg.Wait()
	if !(s1 == 200 && s2 == 409 || s1 == 409 && s2 == 200) {
		t.Fatalf("racing posts on two nodes: %d and %d, want one 200 and one 409", s1, s2)
	}
	winner := p1
	if s2 == 200 {
		winner = p2
	}
	o.v.Accept(winner)
	// Each node accepts the next post after the winner, whichever stored it.
	for _, node := range nodes {
		node.want(node.post(alice, o.id(), o.next("after the race").Bytes()), 200, "", "post after the race")
	}
}

func newTestServer(t *testing.T, srv *Server) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.closeWebSockets(ctx)
	})
	return ts
}

// TestChannelCacheBounded: the node keeps at most maxCachedChannels verifiers, and a
// channel whose verifier was dropped is served from the store as before.
func TestChannelCacheBounded(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.register("+14155550211", 0)
	o := newOwner(t, "evicted_one")
	h.createChannel(alice, o)
	h.want(h.post(alice, o.id(), o.next("before").Bytes()), 200, "", "post")
	for i := range maxCachedChannels + 5 {
		h.srv.chans.state(channel.ID{byte(i >> 16), byte(i >> 8), byte(i), 0xee})
	}
	if n := len(h.srv.chans.chans); n > maxCachedChannels {
		t.Errorf("%d cached verifiers, want at most %d", n, maxCachedChannels)
	}
	h.want(h.post(alice, o.id(), o.next("after").Bytes()), 200, "", "post after eviction")
	if got := bodies(t, h.page(alice, o.id(), "after=0")); fmt.Sprint(got) != "[before after]" {
		t.Errorf("posts = %q, want [before after]", got)
	}
}
