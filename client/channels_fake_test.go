package client_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/channel"
)

// channelServer speaks the channel endpoints of api/channels.go in memory, in front of
// the real bastiond handler (which serves everything else: registration, keys, 1:1
// messages). It checks every submitted post with a channel.Verifier as the real server
// does, and it can misbehave: tamper rewrites the history it serves pages of, so a test
// can forge, alter, drop or reorder posts and see what the client makes of it. It also
// serves its own operator key at GET /v1/legal/key, so that it can sign notices.
type channelServer struct {
	mu      sync.Mutex
	op      ed25519.PrivateKey
	chans   map[string]*fakeChannel // by hex id
	handles map[string]string       // handle -> hex id
	reports []api.ReportRequest
	tamper  func(page []api.ChannelPost) []api.ChannelPost
	// tamperNewest, if not zero, is the newest seq the pages claim.
	tamperNewest uint64
	requests     []string // method and path of each channel request, for tests that check them
}

type fakeChannel struct {
	v         *channel.Verifier
	genesis   []byte
	head      []byte
	posts     [][]byte // post seq is at index seq-1, as received
	notices   map[uint64][]byte
	views     map[uint64]int64
	followers int64
}

func newChannelServer() *channelServer {
	_, op, _ := ed25519.GenerateKey(nil)
	return &channelServer{op: op, chans: map[string]*fakeChannel{}, handles: map[string]string{}}
}

// startChannelServer starts the real server behind a channelServer.
func startChannelServer(t *testing.T) (*testServer, *channelServer) {
	t.Helper()
	cs := newChannelServer()
	s, err := newServerWith(cs.wrap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, cs
}

func (cs *channelServer) setTamper(f func([]api.ChannelPost) []api.ChannelPost) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.tamper = f
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, api.Error{Code: code, Message: msg})
}

func (cs *channelServer) wrap(next http.Handler) http.Handler {
	m := http.NewServeMux()
	m.Handle("/", next)
	m.HandleFunc("GET /v1/legal/key", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]string{"ed25519_public_key": base64.StdEncoding.EncodeToString(cs.op.Public().(ed25519.PublicKey))})
	})
	m.HandleFunc("POST /v1/channels", cs.create)
	m.HandleFunc("GET /v1/channels/{ref}", cs.info)
	m.HandleFunc("POST /v1/channels/{id}/posts", cs.post)
	m.HandleFunc("GET /v1/channels/{id}/posts", cs.page)
	m.HandleFunc("PUT /v1/channels/{id}/head", cs.putHead)
	m.HandleFunc("PUT /v1/channels/{id}/follow", func(w http.ResponseWriter, r *http.Request) { cs.follow(w, r, 1) })
	m.HandleFunc("DELETE /v1/channels/{id}/follow", func(w http.ResponseWriter, r *http.Request) { cs.follow(w, r, -1) })
	m.HandleFunc("POST /v1/channels/{id}/views", cs.countViews)
	m.HandleFunc("POST /v1/channels/{id}/reports", cs.report)
	m.HandleFunc("GET /v1/channels/{id}/notices", cs.listNotices)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/channels") {
			if _, _, ok := r.BasicAuth(); !ok {
				writeErr(w, 401, api.CodeUnauthorized, "credentials required")
				return
			}
			cs.mu.Lock()
			cs.requests = append(cs.requests, r.Method+" "+r.URL.Path)
			cs.mu.Unlock()
		}
		m.ServeHTTP(w, r)
	})
}

func (cs *channelServer) lookup(w http.ResponseWriter, ref string) *fakeChannel {
	if h, ok := strings.CutPrefix(ref, "@"); ok {
		ref = cs.handles[h]
	}
	ch := cs.chans[ref]
	if ch == nil {
		writeErr(w, 404, api.CodeNotFound, "no such channel")
	}
	return ch
}

func (cs *channelServer) create(w http.ResponseWriter, r *http.Request) {
	var req api.CreateChannelRequest
	if json.NewDecoder(r.Body).Decode(&req) != nil {
		writeErr(w, 400, api.CodeBadPost, "bad request")
		return
	}
	g, err := channel.ParsePost(req.Genesis)
	if err != nil {
		writeErr(w, 400, api.CodeBadPost, err.Error())
		return
	}
	v, err := channel.NewVerifier(g)
	if err != nil {
		writeErr(w, 400, api.CodeBadPost, err.Error())
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	h := string(g.Info().Handle)
	if _, taken := cs.handles[h]; taken {
		writeErr(w, 409, api.CodeHandleTaken, "handle taken")
		return
	}
	ch := &fakeChannel{v: v, genesis: req.Genesis, head: req.Head, notices: map[uint64][]byte{}, views: map[uint64]int64{}}
	cs.chans[g.Channel().String()], cs.handles[h] = ch, g.Channel().String()
	writeJSON(w, 200, cs.infoOf(ch))
}

func (cs *channelServer) infoOf(ch *fakeChannel) api.ChannelInfo {
	last, _ := ch.v.Last()
	in := ch.v.Info()
	return api.ChannelInfo{ID: ch.v.ID().String(), Handle: string(in.Handle), Private: in.Private,
		Genesis: ch.genesis, Head: ch.head, Newest: last, Subscribers: ch.followers}
}

func (cs *channelServer) info(w http.ResponseWriter, r *http.Request) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if ch := cs.lookup(w, r.PathValue("ref")); ch != nil {
		writeJSON(w, 200, cs.infoOf(ch))
	}
}

func (cs *channelServer) post(w http.ResponseWriter, r *http.Request) {
	var req api.PostRequest
	if json.NewDecoder(r.Body).Decode(&req) != nil {
		writeErr(w, 400, api.CodeBadPost, "bad request")
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	ch := cs.lookup(w, r.PathValue("id"))
	if ch == nil {
		return
	}
	p, err := channel.ParsePost(req.Post)
	if err != nil {
		writeErr(w, 400, api.CodeBadPost, err.Error())
		return
	}
	if _, err := ch.v.Accept(p); err != nil {
		var gap *channel.GapError
		if errors.Is(err, channel.ErrFork) || errors.Is(err, channel.ErrDuplicate) || errors.As(err, &gap) {
			writeErr(w, 409, api.CodeChannelConflict, err.Error())
			return
		}
		writeErr(w, 400, api.CodeBadPost, err.Error())
		return
	}
	ch.posts = append(ch.posts, req.Post)
	if len(req.Head) > 0 {
		if h, err := channel.ParseHead(req.Head); err == nil && ch.v.CheckHead(h) == nil {
			ch.head = req.Head
		}
	}
	writeJSON(w, 200, api.PostResponse{Seq: p.Seq()})
}

func (cs *channelServer) putHead(w http.ResponseWriter, r *http.Request) {
	var req api.HeadRequest
	json.NewDecoder(r.Body).Decode(&req)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	ch := cs.lookup(w, r.PathValue("id"))
	if ch == nil {
		return
	}
	h, err := channel.ParseHead(req.Head)
	if err != nil || ch.v.CheckHead(h) != nil {
		writeErr(w, 400, api.CodeBadPost, "bad head")
		return
	}
	ch.head = req.Head
	w.WriteHeader(204)
}

// served returns post seq as this server serves it: withheld with its notice when the
// operator acted on it.
func (ch *fakeChannel) served(seq uint64) api.ChannelPost {
	raw := ch.posts[seq-1]
	if n, ok := ch.notices[seq]; ok {
		p, _ := channel.ParsePost(raw)
		return api.ChannelPost{Post: p.Withhold().Bytes(), Notice: n, Views: ch.views[seq]}
	}
	return api.ChannelPost{Post: raw, Views: ch.views[seq]}
}

func (cs *channelServer) page(w http.ResponseWriter, r *http.Request) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	ch := cs.lookup(w, r.PathValue("id"))
	if ch == nil {
		return
	}
	q := r.URL.Query()
	limit, _ := strconv.ParseUint(q.Get("limit"), 10, 64)
	if limit == 0 || limit > api.MaxPostsPage {
		limit = 100
	}
	newest := uint64(len(ch.posts))
	out := api.PostsPage{Posts: []api.ChannelPost{}, Newest: newest}
	if b := q.Get("before"); b != "" {
		before, _ := strconv.ParseUint(b, 10, 64)
		for s := min(max(before, 1), newest+1) - 1; s >= 1 && uint64(len(out.Posts)) < limit; s-- {
			out.Posts = append(out.Posts, ch.served(s))
		}
	} else {
		// The server's whole history as it (mis)represents it, then the page of it:
		// a tampered history is served consistently, read after read.
		var all []api.ChannelPost
		for s := uint64(1); s <= newest; s++ {
			all = append(all, ch.served(s))
		}
		if cs.tamper != nil {
			all = cs.tamper(all)
		}
		after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
		for i := after; i < uint64(len(all)) && uint64(len(out.Posts)) < limit; i++ {
			out.Posts = append(out.Posts, all[i])
		}
		if cs.tamperNewest != 0 {
			out.Newest = cs.tamperNewest
		}
	}
	writeJSON(w, 200, out)
}

func (cs *channelServer) follow(w http.ResponseWriter, r *http.Request, d int64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if ch := cs.lookup(w, r.PathValue("id")); ch != nil {
		ch.followers += d
		w.WriteHeader(204)
	}
}

func (cs *channelServer) countViews(w http.ResponseWriter, r *http.Request) {
	var req api.ViewsRequest
	json.NewDecoder(r.Body).Decode(&req)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if ch := cs.lookup(w, r.PathValue("id")); ch != nil {
		for _, s := range req.Seqs {
			ch.views[s]++
		}
		w.WriteHeader(204)
	}
}

func (cs *channelServer) report(w http.ResponseWriter, r *http.Request) {
	var req api.ReportRequest
	json.NewDecoder(r.Body).Decode(&req)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if ch := cs.lookup(w, r.PathValue("id")); ch != nil {
		cs.reports = append(cs.reports, req)
		writeJSON(w, 202, api.ReportResponse{ID: fmt.Sprintf("report-%d", len(cs.reports))})
	}
}

func (cs *channelServer) listNotices(w http.ResponseWriter, r *http.Request) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	ch := cs.lookup(w, r.PathValue("id"))
	if ch == nil {
		return
	}
	out := api.NoticesResponse{Notices: [][]byte{}}
	for s := uint64(1); s <= uint64(len(ch.posts)); s++ {
		if n, ok := ch.notices[s]; ok {
			out.Notices = append(out.Notices, n)
		}
	}
	writeJSON(w, 200, out)
}

// withhold has the operator (or, with key, someone else) withhold post seq of the
// channel with handle, with a signed statement of reasons.
func (cs *channelServer) withhold(t *testing.T, handle string, seq uint64, key ed25519.PrivateKey, jurisdiction, reason string) {
	t.Helper()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	ch := cs.chans[cs.handles[handle]]
	p, err := channel.ParsePost(ch.posts[seq-1])
	if err != nil {
		t.Fatal(err)
	}
	if key == nil {
		key = cs.op
	}
	action := channel.ActionRestrict
	if jurisdiction == "" {
		action = channel.ActionRemove
	}
	n, err := channel.SignNotice(key, channel.Notice{Channel: p.Channel(), Seq: seq, Post: p.Hash(), Action: action,
		Jurisdiction: jurisdiction, Reason: reason, Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	ch.notices[seq] = n.Bytes()
}

// stored returns every byte the server holds for the channel with handle: what a
// scan of its store would see.
func (cs *channelServer) stored(handle string) []byte {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	ch := cs.chans[cs.handles[handle]]
	var b bytes.Buffer
	b.Write(ch.genesis)
	b.Write(ch.head)
	for _, p := range ch.posts {
		b.Write(p)
	}
	return b.Bytes()
}

// rawPost returns post seq as the server received it.
func (cs *channelServer) rawPost(handle string, seq uint64) []byte {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return bytes.Clone(cs.chans[cs.handles[handle]].posts[seq-1])
}
