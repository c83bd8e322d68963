package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/internal/store"
)

// Broadcast channels (issue 9, docs/channels.md "Server", docs/api.md "Channels").
//
// The server is one more subscriber that refuses to store what a subscriber would
// refuse: it keeps a channel.Verifier per channel and appends a post only if Accept
// takes it, so a forged, altered or out-of-order post never reaches the store, and two
// posters racing for one place get one place each at most. The verifier's state is
// persisted with every post in the same transaction, so any node can resume it from the
// store; a node whose cached state is stale learns so from a refused append (or a gap)
// and reloads it.
//
// What it keeps: no follower list, no per-reader record. Follows and views are counters,
// rate limited per account (not per account and channel: a bucket keyed by both would be
// a record, for as long as it lives, of who follows what); a WebSocket's subscriptions
// live in memory for the connection only.

// channelVerifierWindow is how many recent posts the server's verifier remembers
// (Verifier.Forget): enough to compare a late duplicate and check edit targets of
// recent posts, while the persisted state stays a few KiB however long the channel.
const channelVerifierWindow = 64

// channelBodyLimit bounds a channel request body: a 64 KiB post plus a head of up to
// 1,024 grants (57 KiB), in base64 and JSON.
const channelBodyLimit = 256 << 10

// defaultPostsPage is the page size when a request names none.
const defaultPostsPage = 100

// Per-account rate limits, keyed by the account alone so that no bucket names a channel
// next to an account: generous for a person (a new user follows a few dozen channels),
// costly for a script that would inflate a counter (it needs many registered numbers;
// each adds at most N to one channel's counter an hour).
var (
	channelCreateRate = Rate{N: 10, Per: time.Hour}  // channel creations
	channelFollowRate = Rate{N: 60, Per: time.Hour}  // follows and unfollows, all channels
	channelViewsRate  = Rate{N: 600, Per: time.Hour} // views requests, all channels
)

// channelBus carries new posts between nodes (internal/bus.NATS has it); without one
// the server is a single node.
type channelBus interface {
	PublishChannelPost(id [16]byte, seq uint64)
	SubscribeChannelPosts(fn func(id [16]byte, seq uint64)) (cancel func(), err error)
}

// channelHub is the server's channel state: cached verifiers, the connections'
// subscriptions, the rate limiters and the bus.
type channelHub struct {
	s   *Server
	bus channelBus // nil: one node

	mu    sync.Mutex
	chans map[channel.ID]*channelState

	subMu sync.RWMutex
	subs  map[channel.ID]map[*chanSub]struct{}
	conns map[*wsConn]*chanSub

	create, follow, views *limiter

	fanMu      sync.Mutex
	fanQueue   []fanJob // posts to push, in the order they were stored
	fanRunning bool
}

// fanJob is new posts of one channel to push to this node's subscribers.
type fanJob struct {
	id channel.ID
	ps []store.ChannelPost
}

// channelState guards one channel's verifier; mu serialises its posts on this node.
type channelState struct {
	mu sync.Mutex
	v  *channel.Verifier // nil: load from the store at next use
}

func (s *Server) channelRoutes(m *http.ServeMux, h func(handlerFunc) http.Handler) {
	hub := &channelHub{
		s: s, chans: map[channel.ID]*channelState{},
		subs: map[channel.ID]map[*chanSub]struct{}{}, conns: map[*wsConn]*chanSub{},
	}
	key := s.lookup.hashKey
	hub.create = newLimiter(channelCreateRate, key, s.now)
	hub.follow = newLimiter(channelFollowRate, key, s.now)
	hub.views = newLimiter(channelViewsRate, key, s.now)
	if rl := s.lookup.shared; rl != nil {
		hub.create.share("channel_create", rl)
		hub.follow.share("channel_follow", rl)
		hub.views.share("channel_views", rl)
	}
	if b, ok := s.notify.(channelBus); ok {
		if _, err := b.SubscribeChannelPosts(hub.remotePost); err != nil {
			s.log.Warn("channels: no cross-node fan-out", "err", err)
		} else {
			hub.bus = b
		}
	}
	s.chans = hub
	m.Handle("POST /v1/channels", h(s.authed(s.createChannel)))
	m.Handle("GET /v1/channels/{ref}", h(s.authed(s.getChannel)))
	m.Handle("POST /v1/channels/{id}/posts", h(s.authed(s.submitPost)))
	m.Handle("GET /v1/channels/{id}/posts", h(s.authed(s.channelPosts)))
	m.Handle("PUT /v1/channels/{id}/head", h(s.authed(s.putHead)))
	m.Handle("PUT /v1/channels/{id}/follow", h(s.authed(s.followChannel(+1))))
	m.Handle("DELETE /v1/channels/{id}/follow", h(s.authed(s.followChannel(-1))))
	m.Handle("POST /v1/channels/{id}/views", h(s.authed(s.countViews)))
}

func badPost(err error) *httpError {
	e := newError(http.StatusBadRequest, api.CodeBadPost, "post refused: "+err.Error())
	e.cause = err
	return e
}

func channelConflict(err error) *httpError {
	e := newError(http.StatusConflict, api.CodeChannelConflict,
		"not the next post of the channel: fetch the newest and sign again ("+err.Error()+")")
	e.cause = err
	return e
}

var errNoChannel = newError(http.StatusNotFound, api.CodeNotFound, "no such channel")

// stale reports whether err may come from a verifier behind the store (another node
// appended meanwhile): a gap, or a post at a place the cache holds differently.
func stale(err error) bool {
	return errors.Is(err, channel.ErrGap) || errors.Is(err, channel.ErrFork) || errors.Is(err, channel.ErrReordered)
}

// verdict maps a verifier refusal to its answer.
func verdict(err error) error {
	if stale(err) {
		return channelConflict(err)
	}
	return badPost(err)
}

// pathChannel parses the {id} of a path: 32 hex digits.
func pathChannel(r *http.Request) (channel.ID, error) {
	id, err := channel.ParseID(r.PathValue("id"))
	if err != nil {
		// As the reports endpoints answer: no channel has that name.
		return channel.ID{}, newError(http.StatusNotFound, api.CodeNotFound, "no such channel: want its id as 32 hex digits")
	}
	return id, nil
}

// loadChannel returns the stored channel, 404 if there is none.
func (s *Server) loadChannel(ctx context.Context, id channel.ID) (store.Channel, error) {
	c, err := s.store.Channel(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Channel{}, errNoChannel
	}
	return c, err
}

func channelInfo(c store.Channel) api.ChannelInfo {
	return api.ChannelInfo{
		ID: channel.ID(c.ID).String(), Handle: c.Handle, Private: c.Private, Genesis: c.Genesis,
		Head: c.Head, Newest: c.Newest, Subscribers: c.Subscribers,
	}
}

// maxCachedChannels bounds the verifiers a node keeps in memory (a few KiB each): past
// it, an idle one is dropped for each new one, and reloaded from the store when needed.
const maxCachedChannels = 10000

// state returns id's cache entry (created empty).
func (hub *channelHub) state(id channel.ID) *channelState {
	hub.mu.Lock()
	defer hub.mu.Unlock()
	cs := hub.chans[id]
	if cs == nil {
		if len(hub.chans) >= maxCachedChannels {
			hub.evictLocked()
		}
		cs = &channelState{}
		hub.chans[id] = cs
	}
	return cs
}

// evictLocked drops one cached verifier that no request is using. A request still
// holding a dropped entry finishes on it; should a second entry for the channel appear
// meanwhile, the store's append condition still lets only one post take each place.
func (hub *channelHub) evictLocked() {
	for id, cs := range hub.chans { // map order: a random victim
		if cs.mu.TryLock() {
			delete(hub.chans, id)
			cs.mu.Unlock()
			return
		}
	}
}

// invalidate drops id's cached verifier: another node appended.
func (hub *channelHub) invalidate(id channel.ID) {
	hub.mu.Lock()
	cs := hub.chans[id]
	hub.mu.Unlock()
	if cs != nil {
		cs.mu.Lock()
		cs.v = nil
		cs.mu.Unlock()
	}
}

// load (re)builds cs's verifier from the store. cs.mu is held.
func (hub *channelHub) load(ctx context.Context, id channel.ID) (*channel.Verifier, store.Channel, error) {
	c, err := hub.s.loadChannel(ctx, id)
	if err != nil {
		return nil, c, err
	}
	v, err := channel.UnmarshalVerifier(c.State)
	if err == nil {
		if last, hash := v.Last(); last == c.Newest && hash == c.NewestHash && v.ID() == id {
			return v, c, nil
		}
	}
	// No usable saved state (an older server, a damaged row): replay the stored posts,
	// each checked as when it was submitted.
	hub.s.log.Warn("channels: replaying a channel's history to rebuild its verifier", "err", err)
	g, err := channel.ParsePost(c.Genesis)
	if err != nil {
		return nil, c, fmt.Errorf("stored genesis: %w", err)
	}
	if v, err = channel.NewVerifier(g); err != nil {
		return nil, c, fmt.Errorf("stored genesis: %w", err)
	}
	for after := uint64(0); after < c.Newest; {
		ps, err := hub.s.store.ChannelPostsAfter(ctx, id, after, api.MaxPostsPage)
		if err != nil {
			return nil, c, err
		}
		if len(ps) == 0 {
			break
		}
		for _, sp := range ps {
			p, err := channel.ParsePost(sp.Post)
			if err == nil {
				_, err = v.Accept(p)
			}
			if err != nil {
				return nil, c, fmt.Errorf("stored post %d: %w", sp.Seq, err)
			}
			after = sp.Seq
		}
		v.Forget(after - min(after, channelVerifierWindow))
	}
	return v, c, nil
}

func (s *Server) createChannel(w http.ResponseWriter, r *http.Request, d device) error {
	var req api.CreateChannelRequest
	if err := decodeJSON(w, r, channelBodyLimit, &req); err != nil {
		return err
	}
	if err := s.takeChannelToken(r.Context(), s.chans.create, "create", d.account[:]); err != nil {
		return err
	}
	g, err := channel.ParsePost(req.Genesis)
	if err != nil {
		return badPost(err)
	}
	if g.Kind() != channel.KindGenesis {
		return badPost(errors.New("not a genesis post"))
	}
	v, err := channel.NewVerifier(g)
	if err != nil {
		return badPost(err)
	}
	c := store.Channel{
		ID: v.ID(), Handle: string(v.Info().Handle), Private: v.Info().Private, Genesis: req.Genesis,
		NewestHash: g.Hash(), CreatedAt: s.now(),
	}
	if req.Head != nil {
		h, err := channel.ParseHead(req.Head)
		if err == nil {
			err = v.CheckHead(h)
		}
		if err != nil {
			return badPost(err)
		}
		c.Head = req.Head
	}
	if c.State, err = v.MarshalBinary(); err != nil {
		return fmt.Errorf("saving verifier state: %w", err)
	}
	err = s.store.CreateChannel(r.Context(), c)
	if errors.Is(err, store.ErrConflict) {
		// The same genesis again (a retried request) is the channel it created.
		if old, err := s.store.Channel(r.Context(), c.ID); err == nil && string(old.Genesis) == string(c.Genesis) {
			writeJSON(w, http.StatusOK, channelInfo(old))
			return nil
		}
		if _, err := s.store.ChannelByHandle(r.Context(), c.Handle); err == nil {
			return newError(http.StatusConflict, api.CodeHandleTaken, "another channel has this handle")
		}
		return channelConflict(errors.New("a channel with this id exists"))
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, channelInfo(c))
	return nil
}

func (s *Server) getChannel(w http.ResponseWriter, r *http.Request, d device) error {
	ref := r.PathValue("ref")
	var (
		c   store.Channel
		err error
	)
	if name, ok := strings.CutPrefix(ref, "@"); ok {
		h, perr := channel.ParseHandle(name)
		if perr != nil {
			return newError(http.StatusNotFound, api.CodeNotFound, "no such channel: not a valid handle")
		}
		c, err = s.store.ChannelByHandle(r.Context(), string(h))
		if errors.Is(err, store.ErrNotFound) {
			err = errNoChannel
		}
	} else {
		id, perr := channel.ParseID(ref)
		if perr != nil {
			return newError(http.StatusNotFound, api.CodeNotFound, `no such channel: a channel is named by 32 hex digits or "@handle"`)
		}
		c, err = s.loadChannel(r.Context(), id)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, channelInfo(c))
	return nil
}

func (s *Server) submitPost(w http.ResponseWriter, r *http.Request, d device) error {
	id, err := pathChannel(r)
	if err != nil {
		return err
	}
	var req api.PostRequest
	if err := decodeJSON(w, r, channelBodyLimit, &req); err != nil {
		return err
	}
	p, err := channel.ParsePost(req.Post)
	if err != nil {
		return badPost(err)
	}
	if p.Channel() != id {
		return badPost(channel.ErrWrongChannel)
	}
	var head *channel.Head
	if req.Head != nil {
		if head, err = channel.ParseHead(req.Head); err != nil {
			return badPost(err)
		}
	}
	seq, err := s.chans.append(r.Context(), id, p, req.Post, head, req.Head)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.PostResponse{Seq: seq})
	return nil
}

// append accepts p as the next post of id and stores it, then pushes it to subscribers
// here and, through the bus, on every other node. A verifier that may be stale is
// reloaded from the store and asked again, once.
func (hub *channelHub) append(ctx context.Context, id channel.ID, p *channel.Post, raw []byte, head *channel.Head, rawHead []byte) (uint64, error) {
	cs := hub.state(id)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for attempt := 0; ; attempt++ {
		fresh := false
		if cs.v == nil {
			v, _, err := hub.load(ctx, id)
			if err != nil {
				return 0, err
			}
			cs.v, fresh = v, true
		}
		_, err := cs.v.Accept(p)
		if errors.Is(err, channel.ErrDuplicate) {
			return p.Seq(), nil // a retry of a post already stored
		}
		if err != nil {
			if stale(err) && !fresh && attempt == 0 {
				cs.v = nil
				continue
			}
			return 0, verdict(err)
		}
		// From here on cs.v holds p: any failure must drop it.
		if head != nil {
			if err := cs.v.CheckHead(head); err != nil {
				cs.v = nil
				return 0, badPost(fmt.Errorf("head: %w", err))
			}
		}
		cs.v.Forget(p.Seq() - min(p.Seq(), channelVerifierWindow))
		state, err := cs.v.MarshalBinary()
		if err != nil {
			cs.v = nil
			return 0, fmt.Errorf("saving verifier state: %w", err)
		}
		err = hub.s.store.AppendChannelPost(ctx, store.ChannelPost{Channel: id, Seq: p.Seq(), Post: raw}, p.Hash(), state)
		if err != nil {
			cs.v = nil
			if errors.Is(err, store.ErrConflict) && attempt == 0 {
				continue // another node took this place: ask the stored history
			}
			if errors.Is(err, store.ErrConflict) {
				return 0, channelConflict(err)
			}
			return 0, err
		}
		if head != nil {
			if err := hub.s.store.SetChannelHead(ctx, id, head.Seq(), rawHead); err != nil {
				hub.s.log.Error("channels: storing a head", "err", err)
			}
		}
		hub.queueFanOut(id, []store.ChannelPost{{Channel: id, Seq: p.Seq(), Post: raw}})
		if hub.bus != nil {
			hub.bus.PublishChannelPost(id, p.Seq())
		}
		return p.Seq(), nil
	}
}

// remotePost is the bus's news that another node stored post seq of id.
func (hub *channelHub) remotePost(id [16]byte, seq uint64) {
	hub.invalidate(id)
	if !hub.hasSubscribers(id) {
		return
	}
	ps, err := hub.s.store.ChannelPostsAfter(context.Background(), id, seq-min(seq, 1), 1)
	if err != nil || len(ps) == 0 || ps[0].Seq != seq {
		if err != nil {
			hub.s.log.Error("channels: reading a post another node stored", "err", err)
		}
		return
	}
	hub.queueFanOut(id, ps)
}

func (s *Server) putHead(w http.ResponseWriter, r *http.Request, d device) error {
	id, err := pathChannel(r)
	if err != nil {
		return err
	}
	var req api.HeadRequest
	if err := decodeJSON(w, r, channelBodyLimit, &req); err != nil {
		return err
	}
	h, err := channel.ParseHead(req.Head)
	if err != nil {
		return badPost(err)
	}
	cs := s.chans.state(id)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for attempt := 0; ; attempt++ {
		fresh := false
		if cs.v == nil {
			v, _, err := s.chans.load(r.Context(), id)
			if err != nil {
				return err
			}
			cs.v, fresh = v, true
		}
		err := cs.v.CheckHead(h)
		if err != nil && stale(err) && !fresh && attempt == 0 {
			cs.v = nil
			continue
		}
		if err != nil {
			return verdict(err)
		}
		break
	}
	if err := s.store.SetChannelHead(r.Context(), id, h.Seq(), req.Head); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return errNoChannel
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) channelPosts(w http.ResponseWriter, r *http.Request, d device) error {
	id, err := pathChannel(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	num := func(name string, def uint64) (uint64, bool, error) {
		v := q.Get(name)
		if v == "" {
			return def, false, nil
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, true, badRequest(name + " must be a non-negative integer")
		}
		return n, true, nil
	}
	after, hasAfter, err := num("after", 0)
	if err != nil {
		return err
	}
	before, hasBefore, err := num("before", 0)
	if err != nil {
		return err
	}
	limit, _, err := num("limit", defaultPostsPage)
	if err != nil {
		return err
	}
	if hasAfter && hasBefore {
		return badRequest("give after or before, not both")
	}
	if limit == 0 || limit > api.MaxPostsPage {
		return badRequest(fmt.Sprintf("limit must be 1 to %d", api.MaxPostsPage))
	}
	c, err := s.loadChannel(r.Context(), id)
	if err != nil {
		return err
	}
	var ps []store.ChannelPost
	if hasBefore {
		ps, err = s.store.ChannelPostsBefore(r.Context(), id, before, int(limit))
	} else {
		ps, err = s.store.ChannelPostsAfter(r.Context(), id, after, int(limit))
	}
	if err != nil {
		return err
	}
	page := api.PostsPage{Posts: []api.ChannelPost{}, Newest: c.Newest}
	if len(ps) > 0 {
		notices, err := s.store.ChannelNotices(r.Context(), id)
		if err != nil {
			return err
		}
		country := ""
		if needsCountry(notices, ps) {
			if country, err = s.accountCountry(r.Context(), d); err != nil {
				return err
			}
		}
		page.Posts = applyNotices(ps, notices, country)
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// accountCountry is the jurisdiction of a reader: the region of its number.
func (s *Server) accountCountry(ctx context.Context, d device) (string, error) {
	a, err := s.store.Account(ctx, d.account)
	if err != nil {
		return "", fmt.Errorf("reading the reader's account: %w", err)
	}
	return numberCountry(a.Number), nil
}

// needsCountry reports whether a restriction applies to one of ps, so that serving them
// depends on the reader's jurisdiction.
func needsCountry(notices []store.ChannelNotice, ps []store.ChannelPost) bool {
	for _, n := range notices {
		if channel.Action(n.Action) != channel.ActionRestrict {
			continue
		}
		for _, p := range ps {
			if p.Seq == n.Seq {
				return true
			}
		}
	}
	return false
}

// applyNotices serves ps to a reader in country: a post removed, or restricted in that
// country, goes out withheld (header and body hash), with the operator's notice. A
// removal wins over a restriction.
func applyNotices(ps []store.ChannelPost, notices []store.ChannelNotice, country string) []api.ChannelPost {
	out := make([]api.ChannelPost, 0, len(ps))
	for _, sp := range ps {
		cp := api.ChannelPost{Post: sp.Post, Views: sp.Views}
		var notice []byte
	scan:
		for _, n := range notices {
			if n.Seq != sp.Seq {
				continue
			}
			switch channel.Action(n.Action) {
			case channel.ActionRemove:
				notice = n.Notice
				break scan // a removal wins over any restriction
			case channel.ActionRestrict:
				if notice == nil && country != "" && strings.EqualFold(n.Jurisdiction, country) {
					notice = n.Notice
				}
			}
		}
		if notice != nil {
			p, err := channel.ParsePost(sp.Post)
			if err == nil {
				cp.Post, cp.Notice = p.Withhold().Bytes(), notice
			} else {
				cp.Post, cp.Notice = nil, notice // never serve a body the operator withheld
			}
		}
		out = append(out, cp)
	}
	return out
}

// takeChannelToken takes a token from l for the key made of parts, or answers 429.
func (s *Server) takeChannelToken(ctx context.Context, l *limiter, name string, parts ...[]byte) error {
	ok, wait, err := l.take(ctx, parts...)
	if err != nil {
		return err
	}
	if !ok {
		s.metrics.limited.WithLabelValues("channel_" + name).Inc()
		return rateLimited(wait)
	}
	return nil
}

func (s *Server) followChannel(delta int64) authedFunc {
	return func(w http.ResponseWriter, r *http.Request, d device) error {
		id, err := pathChannel(r)
		if err != nil {
			return err
		}
		if err := s.takeChannelToken(r.Context(), s.chans.follow, "follow", d.account[:]); err != nil {
			return err
		}
		err = s.store.AddChannelSubscribers(r.Context(), id, delta)
		if errors.Is(err, store.ErrNotFound) {
			return errNoChannel
		}
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func (s *Server) countViews(w http.ResponseWriter, r *http.Request, d device) error {
	id, err := pathChannel(r)
	if err != nil {
		return err
	}
	var req api.ViewsRequest
	if err := decodeJSON(w, r, 16<<10, &req); err != nil {
		return err
	}
	if len(req.Seqs) > api.MaxViewsBatch {
		return badRequest(fmt.Sprintf("at most %d posts per views request", api.MaxViewsBatch))
	}
	// Each post once per request: a repeated seq would be a cheap way to inflate it.
	seen := make(map[uint64]bool, len(req.Seqs))
	seqs := make([]uint64, 0, len(req.Seqs))
	for _, q := range req.Seqs {
		if !seen[q] {
			seen[q] = true
			seqs = append(seqs, q)
		}
	}
	if err := s.takeChannelToken(r.Context(), s.chans.views, "views", d.account[:]); err != nil {
		return err
	}
	if _, err := s.loadChannel(r.Context(), id); err != nil {
		return err
	}
	if err := s.store.AddChannelViews(r.Context(), id, seqs); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
