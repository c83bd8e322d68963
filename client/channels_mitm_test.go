package client_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/channel"
)

// mitm is a misbehaving server built around the real bastiond handler: every request
// goes to the real server, and the answers to GET /v1/channels/{id}/posts?after= are
// rewritten. tamper rewrites the channel's whole history as the real server serves it
// (forging, altering, dropping, reordering posts), and pages are then cut from the
// rewritten history, so the lie is told consistently read after read. It also plays
// the operator: it serves its own key at GET /v1/legal/key (the test server runs no
// legal desk) and can withhold a post with a notice signed by it, or by anyone.
type mitm struct {
	next http.Handler
	dir  string // the real server's data directory, for scans of its store

	mu      sync.Mutex
	op      ed25519.PrivateKey
	auth    string                       // credentials of the last channel request, for the helpers' own reads
	notices map[string]map[uint64][]byte // hex id -> seq -> injected notice
	tamper  func(page []api.ChannelPost) []api.ChannelPost
	newest  uint64   // if not zero, the newest seq the pages claim
	heads   [][]byte // every head submitted with PUT .../head
	pages   int      // GET .../posts requests served
	// countries: the jurisdiction of a reader (by account id) for the injected
	// restrictions; a reader not in it gets every restriction applied.
	countries map[string]string
}

// setCountry makes the injected restrictions apply to the reader with account id only
// in its own country, as the real server applies them by the reader's number.
func (m *mitm) setCountry(account, country string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.countries == nil {
		m.countries = map[string]string{}
	}
	m.countries[account] = country
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, api.Error{Code: code, Message: msg})
}

// startMITM starts the real server behind a mitm.
func startMITM(t *testing.T) (*testServer, *mitm) {
	t.Helper()
	_, op, _ := ed25519.GenerateKey(nil)
	m := &mitm{op: op, notices: map[string]map[uint64][]byte{}}
	s, err := newServerWith(func(next http.Handler) http.Handler { m.next = next; return m })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	m.dir = s.dir
	return s, m
}

func (m *mitm) setTamper(f func([]api.ChannelPost) []api.ChannelPost) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tamper = f
}

func (m *mitm) setNewest(n uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.newest = n
}

func (m *mitm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == "GET" && r.URL.Path == "/v1/legal/key" {
		writeJSON(w, 200, map[string]string{"ed25519_public_key": base64.StdEncoding.EncodeToString(m.op.Public().(ed25519.PublicKey))})
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/channels/")
	if !ok {
		m.next.ServeHTTP(w, r)
		return
	}
	m.mu.Lock()
	m.auth = r.Header.Get("Authorization")
	m.mu.Unlock()
	id, what, _ := strings.Cut(rest, "/")
	switch {
	case r.Method == "GET" && what == "posts":
		m.page(w, r, id)
	case r.Method == "GET" && what == "notices":
		m.listNotices(w, r, id)
	case r.Method == "PUT" && what == "head":
		body, _ := io.ReadAll(r.Body)
		var req api.HeadRequest
		json.Unmarshal(body, &req)
		m.mu.Lock()
		m.heads = append(m.heads, req.Head)
		m.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		m.next.ServeHTTP(w, r)
	default:
		m.next.ServeHTTP(w, r)
	}
}

// get asks the real server, with the last credentials seen.
func (m *mitm) get(path string, out any) error {
	req := httptest.NewRequest("GET", path, nil)
	m.mu.Lock()
	req.Header.Set("Authorization", m.auth)
	m.mu.Unlock()
	rec := httptest.NewRecorder()
	m.next.ServeHTTP(rec, req)
	if rec.Code != 200 {
		return fmt.Errorf("GET %s: %d %s", path, rec.Code, rec.Body)
	}
	return json.Unmarshal(rec.Body.Bytes(), out)
}

// history returns the channel's posts as the real server serves them, with the
// injected notices applied for a reader in country ("": every notice), before any
// tampering.
func (m *mitm) history(id, country string) (api.PostsPage, error) {
	var all api.PostsPage
	for {
		var page api.PostsPage
		if err := m.get(fmt.Sprintf("/v1/channels/%s/posts?after=%d&limit=%d", id, len(all.Posts), api.MaxPostsPage), &page); err != nil {
			return all, err
		}
		all.Posts, all.Newest = append(all.Posts, page.Posts...), page.Newest
		if len(page.Posts) == 0 || uint64(len(all.Posts)) >= page.Newest {
			break
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range all.Posts {
		if n, ok := m.notices[id][uint64(i)+1]; ok {
			if pn, err := channel.ParseNotice(n); err == nil && country != "" &&
				pn.Action == channel.ActionRestrict && !strings.EqualFold(pn.Jurisdiction, country) {
				continue // restricted elsewhere
			}
			p, err := channel.ParsePost(all.Posts[i].Post)
			if err != nil {
				return all, err
			}
			all.Posts[i] = api.ChannelPost{Post: p.Withhold().Bytes(), Notice: n, Views: all.Posts[i].Views}
		}
	}
	return all, nil
}

func (m *mitm) page(w http.ResponseWriter, r *http.Request, id string) {
	m.mu.Lock()
	m.pages++
	m.mu.Unlock()
	q := r.URL.Query()
	user, _, _ := r.BasicAuth()
	account, _, _ := strings.Cut(user, ".")
	m.mu.Lock()
	country := m.countries[account]
	m.mu.Unlock()
	all, err := m.history(id, country)
	if err != nil {
		writeErr(w, 500, "internal", err.Error())
		return
	}
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > api.MaxPostsPage {
		limit = 100
	}
	out := api.PostsPage{Posts: []api.ChannelPost{}, Newest: all.Newest}
	if b := q.Get("before"); b != "" {
		before, _ := strconv.Atoi(b)
		for i := min(before-1, len(all.Posts)); i >= 1 && len(out.Posts) < limit; i-- {
			out.Posts = append(out.Posts, all.Posts[i-1])
		}
		writeJSON(w, 200, out)
		return
	}
	m.mu.Lock()
	tamper, newest := m.tamper, m.newest
	m.mu.Unlock()
	posts := all.Posts
	if tamper != nil {
		posts = tamper(posts)
	}
	if newest != 0 {
		out.Newest = newest
	}
	after, _ := strconv.Atoi(q.Get("after"))
	for i := after; i < len(posts) && len(out.Posts) < limit; i++ {
		out.Posts = append(out.Posts, posts[i])
	}
	writeJSON(w, 200, out)
}

func (m *mitm) listNotices(w http.ResponseWriter, r *http.Request, id string) {
	var out api.NoticesResponse
	if err := m.get(r.URL.RequestURI(), &out); err != nil {
		writeErr(w, 500, "internal", err.Error())
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, seq := range slices.Sorted(maps.Keys(m.notices[id])) {
		out.Notices = append(out.Notices, m.notices[id][seq])
	}
	writeJSON(w, 200, out)
}

func (m *mitm) info(handle string) api.ChannelInfo {
	var info api.ChannelInfo
	if err := m.get("/v1/channels/"+url.PathEscape("@"+handle), &info); err != nil {
		panic(err)
	}
	return info
}

// withhold has the operator (or, with key, someone else) withhold post seq of the
// channel with handle, with a signed statement of reasons.
func (m *mitm) withhold(t *testing.T, handle string, seq uint64, key ed25519.PrivateKey, jurisdiction, reason string) {
	t.Helper()
	p, err := channel.ParsePost(m.rawPost(handle, seq))
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if key == nil {
		key = m.op
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
	id := p.Channel().String()
	if m.notices[id] == nil {
		m.notices[id] = map[uint64][]byte{}
	}
	m.notices[id][seq] = n.Bytes()
}

// pagesServed returns how many history pages clients have fetched.
func (m *mitm) pagesServed() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pages
}

// rawPost returns post seq as the real server stored it.
func (m *mitm) rawPost(handle string, seq uint64) []byte {
	var page api.PostsPage
	if err := m.get(fmt.Sprintf("/v1/channels/%s/posts?after=%d&limit=1", m.info(handle).ID, seq-1), &page); err != nil || len(page.Posts) != 1 {
		panic(fmt.Sprintf("post %d: %v", seq, err))
	}
	return page.Posts[0].Post
}

// views returns the real server's view counter of each message post.
func (m *mitm) views(handle string) []int64 {
	all, err := m.history(m.info(handle).ID, "")
	if err != nil {
		panic(err)
	}
	var out []int64
	for _, cp := range all.Posts {
		if p, err := channel.ParsePost(cp.Post); err == nil && p.Kind() == channel.KindPost {
			out = append(out, cp.Views)
		}
	}
	return out
}

func (m *mitm) followers(handle string) int64 { return m.info(handle).Subscribers }

// stored returns every byte of the real server's data directory (its SQLite database,
// write-ahead log included): what a scan of its store sees.
func (m *mitm) stored(string) []byte {
	var b bytes.Buffer
	filepath.Walk(m.dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			data, _ := os.ReadFile(path)
			b.Write(data)
		}
		return nil
	})
	return b.Bytes()
}

// submittedHeads returns the heads submitted with PUT .../head so far.
func (m *mitm) submittedHeads() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.heads)
}
