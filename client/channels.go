package client

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/channel/private"
)

// Broadcast channels (docs/channels.md, "Using channels"). The profile keeps, per
// channel it owns, administers or follows, one encrypted record in the channels table
// (handle, signing key, the channel.Verifier's state) and every post it accepted in
// channel_posts. Nothing the server serves is shown before this profile's Verifier
// accepted it; what the Verifier refuses comes back as an error wrapping package
// channel's sentinels (channel.ErrForged, ErrAltered, ErrGap via *channel.GapError,
// ErrReordered, ErrFork, ErrRevoked, ErrWithheld), and nothing of it is stored.

// Channel roles, as [Channel.Role] reports them.
const (
	ChannelRoleOwner    = "owner"    // this profile holds the owner's key
	ChannelRoleAdmin    = "admin"    // this profile holds an admin key (delegated or not yet)
	ChannelRoleFollower = "follower" // this profile follows the channel
)

// Errors of the channel methods.
var (
	// ErrNotFollowing: the profile neither owns nor follows the channel.
	ErrNotFollowing = errors.New("not following this channel (run follow first)")
	// ErrNotChannelSigner: the profile holds no key that may sign in the channel.
	ErrNotChannelSigner = errors.New("this profile holds no key of the channel")
	// ErrNotAdmitted marks a private post this profile cannot decrypt: the owner has not
	// admitted it (or not yet, or the post is from before its admission).
	ErrNotAdmitted = errors.New("cannot decrypt (not admitted)")
)

// maxPublishAttempts bounds the retries of a post that lost the race for its place to
// another signer (409 channel_conflict): each retry fetches the newer posts first.
const maxPublishAttempts = 5

// Channel describes a channel as this profile knows it.
type Channel struct {
	ID          string `json:"id"`
	Handle      string `json:"handle"` // with its "@"
	Title       string `json:"title"`
	Description string `json:"description,omitempty"`
	Private     bool   `json:"private"`
	Role        string `json:"role"`
	Newest      uint64 `json:"newest"`      // newest post this profile accepted
	Subscribers int64  `json:"subscribers"` // the server's aggregate count, when it said
	// Admitter is the account that admitted this profile to a private channel.
	Admitter string `json:"admitter,omitempty"`
}

// ChannelNotice is the operator's signed statement of reasons for withholding a post.
type ChannelNotice struct {
	Seq          uint64    `json:"seq"`
	Action       string    `json:"action"` // "restricted" or "removed"
	Jurisdiction string    `json:"jurisdiction,omitempty"`
	Reason       string    `json:"reason"`
	Time         time.Time `json:"time"`
}

// ChannelEntry is one accepted post as [Client.ReadChannel] shows it. Edits and deletes
// are folded into the post they change; delegations and revocations are entries of
// their own (Kind "delegate", "revoke", Text naming the key).
type ChannelEntry struct {
	Seq     uint64    `json:"seq"`
	Kind    string    `json:"kind"`
	Text    string    `json:"text,omitempty"`
	Time    time.Time `json:"time"`   // the signer's claim
	Signer  string    `json:"signer"` // hex Ed25519 key
	ByOwner bool      `json:"by_owner"`
	Views   int64     `json:"views"`
	Edited  bool      `json:"edited,omitempty"`
	Deleted bool      `json:"deleted,omitempty"`
	// Void: the signer's admin key was revoked from before this post; do not trust it.
	Void bool `json:"void,omitempty"`
	// Undecryptable: a private post this profile was not admitted to ([ErrNotAdmitted]).
	Undecryptable bool `json:"undecryptable,omitempty"`
	// Withheld: the operator withheld the body; this is its statement of reasons.
	Withheld *ChannelNotice `json:"withheld,omitempty"`
}

// ChannelAdmin is one delegated admin key.
type ChannelAdmin struct {
	Key         string `json:"key"`
	From        uint64 `json:"from"`
	Until       uint64 `json:"until,omitempty"`
	RevokedFrom uint64 `json:"revoked_from,omitempty"`
}

// channelRecord is what the channels table holds per channel, encrypted.
type channelRecord struct {
	Handle    string `json:"handle"`
	Key       []byte `json:"key,omitempty"` // the owner's or an admin's signing key seed
	Verifier  []byte `json:"verifier"`      // channel.Verifier.MarshalBinary
	Following bool   `json:"following"`
	// Older is the post the next history page must end with (AcceptOlder), for a
	// Verifier started from a head; zero when the whole history is held.
	Older       uint64 `json:"older,omitempty"`
	Admitter    string `json:"admitter,omitempty"`
	Subscribers int64  `json:"subscribers,omitempty"`
}

// storedPost is what channel_posts holds per accepted post, encrypted.
type storedPost struct {
	Post          []byte `json:"post"`
	Notice        []byte `json:"notice,omitempty"`
	Plain         []byte `json:"plain,omitempty"` // a private post's decrypted body
	Undecryptable bool   `json:"undecryptable,omitempty"`
	Void          bool   `json:"void,omitempty"`
	Views         int64  `json:"views,omitempty"`
}

// chanState is one channel loaded from the profile.
type chanState struct {
	id  channel.ID
	rec channelRecord
	v   *channel.Verifier
	key *channel.SigningKey // nil: no key
}

func (cs *chanState) owner() bool { return cs.key != nil && cs.key.Public().Equal(cs.v.Owner()) }

func (cs *chanState) role() string {
	switch {
	case cs.owner():
		return ChannelRoleOwner
	case cs.key != nil:
		return ChannelRoleAdmin
	}
	return ChannelRoleFollower
}

func (cs *chanState) describe() Channel {
	in := cs.v.Info()
	last, _ := cs.v.Last()
	return Channel{ID: cs.id.String(), Handle: in.Handle.String(), Title: in.Title, Description: in.Description,
		Private: in.Private, Role: cs.role(), Newest: last, Subscribers: cs.rec.Subscribers, Admitter: cs.rec.Admitter}
}

func channelWhere(id channel.ID) string { return "channel/" + id.String() }

func postWhere(id channel.ID, seq uint64) string { return fmt.Sprintf("channel_post/%s/%d", id, seq) }

// loadChannel reads the channel with id, or nil if the profile has none.
func (c *Client) loadChannel(ctx context.Context, q querier, id channel.ID) (*chanState, error) {
	var enc []byte
	err := q.QueryRowContext(ctx, "SELECT record_enc FROM channels WHERE id = ?", id[:]).Scan(&enc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading channel: %w", err)
	}
	return c.decodeChannel(id, enc)
}

func (c *Client) decodeChannel(id channel.ID, enc []byte) (*chanState, error) {
	raw, err := c.seal.open(enc, channelWhere(id))
	if err != nil {
		return nil, err
	}
	cs := &chanState{id: id}
	if err := json.Unmarshal(raw, &cs.rec); err != nil {
		return nil, fmt.Errorf("stored channel: %w", err)
	}
	if cs.v, err = channel.UnmarshalVerifier(cs.rec.Verifier); err != nil {
		return nil, fmt.Errorf("stored channel: %w", err)
	}
	if cs.v.ID() != id {
		return nil, errors.New("stored channel: verifier of another channel")
	}
	if len(cs.rec.Key) > 0 {
		if cs.key, err = channel.NewSigningKey(cs.rec.Key); err != nil {
			return nil, fmt.Errorf("stored channel key: %w", err)
		}
	}
	return cs, nil
}

// channelByHandle finds the channel with handle among the profile's (the handle is
// inside the encrypted record, so every record is opened; a profile has few).
func (c *Client) channelByHandle(ctx context.Context, q querier, handle channel.Handle) (*chanState, error) {
	rows, err := q.QueryContext(ctx, "SELECT id, record_enc FROM channels")
	if err != nil {
		return nil, fmt.Errorf("reading channels: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var idb, enc []byte
		if err := rows.Scan(&idb, &enc); err != nil {
			return nil, fmt.Errorf("reading channels: %w", err)
		}
		if len(idb) != channel.IDSize {
			return nil, errors.New("stored channel: bad id")
		}
		cs, err := c.decodeChannel(channel.ID(idb), enc)
		if err != nil {
			return nil, err
		}
		if cs.rec.Handle == string(handle) {
			return cs, nil
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading channels: %w", err)
	}
	return nil, fmt.Errorf("%v: %w", handle, ErrNotFollowing)
}

// saveChannel writes cs's record with the Verifier's current state.
func (c *Client) saveChannel(ctx context.Context, q querier, cs *chanState) error {
	st, err := cs.v.MarshalBinary()
	if err != nil {
		return err
	}
	cs.rec.Verifier = st
	if cs.key != nil {
		cs.rec.Key = cs.key.Bytes()
	}
	raw, err := json.Marshal(cs.rec)
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, `INSERT INTO channels (id, record_enc, updated_ms) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET record_enc = excluded.record_enc, updated_ms = excluded.updated_ms`,
		cs.id[:], c.seal.seal(raw, channelWhere(cs.id)), c.now().UnixMilli())
	return wrap("saving channel", err)
}

func (c *Client) putPost(ctx context.Context, q querier, id channel.ID, seq uint64, sp *storedPost) error {
	raw, err := json.Marshal(sp)
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, `INSERT INTO channel_posts (channel, seq, post_enc) VALUES (?, ?, ?)
		ON CONFLICT (channel, seq) DO UPDATE SET post_enc = excluded.post_enc`,
		id[:], seq, c.seal.seal(raw, postWhere(id, seq)))
	return wrap("storing channel post", err)
}

func (c *Client) getPost(ctx context.Context, q querier, id channel.ID, seq uint64) (*storedPost, error) {
	var enc []byte
	err := q.QueryRowContext(ctx, "SELECT post_enc FROM channel_posts WHERE channel = ? AND seq = ?", id[:], seq).Scan(&enc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading channel post: %w", err)
	}
	raw, err := c.seal.open(enc, postWhere(id, seq))
	if err != nil {
		return nil, err
	}
	sp := new(storedPost)
	if err := json.Unmarshal(raw, sp); err != nil {
		return nil, fmt.Errorf("stored channel post: %w", err)
	}
	return sp, nil
}

func channelPath(id channel.ID, rest string) string { return "/v1/channels/" + id.String() + rest }

// fetchInfo asks the server about a channel by handle or id.
func (c *Client) fetchInfo(ctx context.Context, ref string) (*api.ChannelInfo, error) {
	var info api.ChannelInfo
	if err := c.api.do(ctx, "GET", "/v1/channels/"+url.PathEscape(ref), c.cred(), nil, &info); err != nil {
		if isCode(err, api.CodeNotFound) {
			return nil, fmt.Errorf("channel %s: %w", ref, err)
		}
		return nil, fmt.Errorf("looking up channel %s: %w", ref, err)
	}
	return &info, nil
}

// operatorKey sets the server's notice key on v when it can be had: without it every
// withheld post is refused (ErrWithheld), which is the safe failure.
func (c *Client) operatorKey(ctx context.Context, v *channel.Verifier) {
	if k, err := c.noticeKey(ctx); err == nil {
		v.SetOperatorKey(k)
	} else {
		c.log.Debug("operator key unavailable", "err", err)
	}
}

// CreateChannel creates a channel owned by this profile: it makes the owner's signing
// key, signs the genesis and a head, keeps them (encrypted) in the profile, and then
// registers the channel with the server. A taken handle is an [*APIError] with code
// api.CodeHandleTaken.
func (c *Client) CreateChannel(ctx context.Context, handle, title, description string, private bool) (Channel, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.requireAccount(); err != nil {
		return Channel{}, err
	}
	h, err := channel.ParseHandle(handle)
	if err != nil {
		return Channel{}, err
	}
	key, err := channel.GenerateSigningKey(c.rand)
	if err != nil {
		return Channel{}, err
	}
	now := c.now()
	g, err := channel.Create(key, channel.Info{Handle: h, Title: title, Description: description, Private: private}, now, c.rand)
	if err != nil {
		return Channel{}, err
	}
	v, err := channel.NewVerifier(g)
	if err != nil {
		return Channel{}, err
	}
	c.operatorKey(ctx, v)
	head, err := v.SignHead(key, now)
	if err != nil {
		return Channel{}, err
	}
	cs := &chanState{id: g.Channel(), v: v, key: key, rec: channelRecord{Handle: string(h), Following: true}}
	// The key is saved before the server hears of the channel: a crash in between
	// leaves a key for a channel that does not exist, never a channel without a key.
	if err := c.saveChannel(ctx, c.db, cs); err != nil {
		return Channel{}, err
	}
	var info api.ChannelInfo
	err = c.api.do(ctx, "POST", "/v1/channels", c.cred(), api.CreateChannelRequest{Genesis: g.Bytes(), Head: head.Bytes()}, &info)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) {
			// Refused (a taken handle, say): the channel does not exist. After any other
			// failure it may, so the key stays.
			c.db.ExecContext(ctx, "DELETE FROM channels WHERE id = ?", cs.id[:])
		}
		return Channel{}, fmt.Errorf("creating %v: %w", h, err)
	}
	if info.ID != cs.id.String() {
		return Channel{}, fmt.Errorf("creating %v: the server answered for channel %s", h, info.ID)
	}
	return cs.describe(), nil
}

// FollowChannel follows a channel: it fetches the genesis and the owner's newest head
// from the server, pins the genesis, starts the channel's Verifier at the head and
// tells the server (which only counts followers). Following a channel the profile
// already follows or owns changes nothing.
func (c *Client) FollowChannel(ctx context.Context, handle string) (Channel, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.requireAccount(); err != nil {
		return Channel{}, err
	}
	h, err := channel.ParseHandle(handle)
	if err != nil {
		return Channel{}, err
	}
	cs, err := c.channelByHandle(ctx, c.db, h)
	if err != nil && !errors.Is(err, ErrNotFollowing) {
		return Channel{}, err
	}
	if cs != nil && cs.rec.Following {
		return cs.describe(), nil // counted once
	}
	if cs == nil {
		info, err := c.fetchInfo(ctx, h.String())
		if err != nil {
			return Channel{}, err
		}
		if cs, err = c.startChannel(ctx, h, info); err != nil {
			return Channel{}, err
		}
	}
	if err := c.api.do(ctx, "PUT", channelPath(cs.id, "/follow"), c.cred(), nil, nil); err != nil {
		return Channel{}, fmt.Errorf("following %v: %w", h, err)
	}
	if !cs.rec.Following {
		cs.rec.Subscribers++ // the count the server gave, now with this profile
	}
	cs.rec.Following = true
	if err := c.saveChannel(ctx, c.db, cs); err != nil {
		return Channel{}, err
	}
	return cs.describe(), nil
}

// startChannel checks what the server says about a channel and starts a Verifier.
func (c *Client) startChannel(ctx context.Context, h channel.Handle, info *api.ChannelInfo) (*chanState, error) {
	g, err := channel.ParsePost(info.Genesis)
	if err != nil {
		return nil, fmt.Errorf("the server sent a bad genesis for %v: %w", h, err)
	}
	if g.Kind() != channel.KindGenesis || g.Info().Handle != h || g.Channel().String() != info.ID {
		return nil, fmt.Errorf("the server sent the genesis of another channel for %v", h)
	}
	var v *channel.Verifier
	older := uint64(0)
	if len(info.Head) > 0 {
		head, err := channel.ParseHead(info.Head)
		if err != nil {
			return nil, fmt.Errorf("the server sent a bad head for %v: %w", h, err)
		}
		if v, err = channel.NewVerifierAt(g, head); err != nil {
			return nil, fmt.Errorf("%v: %w", h, err)
		}
		older = head.Seq()
	} else if v, err = channel.NewVerifier(g); err != nil {
		return nil, fmt.Errorf("%v: %w", h, err)
	}
	c.operatorKey(ctx, v)
	return &chanState{id: g.Channel(), v: v, rec: channelRecord{Handle: string(h), Older: older, Subscribers: info.Subscribers}}, nil
}

// UnfollowChannel stops following a channel and forgets its posts. The owner cannot
// unfollow its own channel (the profile holds its key).
func (c *Client) UnfollowChannel(ctx context.Context, handle string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.channelFor(ctx, handle)
	if err != nil {
		return err
	}
	if cs.key != nil {
		return fmt.Errorf("%s: this profile holds a key of the channel; it cannot unfollow it", handle)
	}
	if err := c.api.do(ctx, "DELETE", channelPath(cs.id, "/follow"), c.cred(), nil, nil); err != nil {
		return fmt.Errorf("unfollowing %s: %w", handle, err)
	}
	return c.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM channel_posts WHERE channel = ?", cs.id[:]); err != nil {
			return fmt.Errorf("forgetting channel posts: %w", err)
		}
		_, err := tx.ExecContext(ctx, "DELETE FROM channels WHERE id = ?", cs.id[:])
		return wrap("forgetting channel", err)
	})
}

// channelFor loads a channel the profile holds, by handle. The caller holds c.mu.
func (c *Client) channelFor(ctx context.Context, handle string) (*chanState, error) {
	if err := c.requireAccount(); err != nil {
		return nil, err
	}
	h, err := channel.ParseHandle(handle)
	if err != nil {
		return nil, err
	}
	cs, err := c.channelByHandle(ctx, c.db, h)
	if err != nil {
		return nil, err
	}
	c.operatorKey(ctx, cs.v)
	return cs, nil
}

// Channels lists the channels the profile owns, administers or follows.
func (c *Client) Channels(ctx context.Context) ([]Channel, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rows, err := c.db.QueryContext(ctx, "SELECT id, record_enc FROM channels")
	if err != nil {
		return nil, fmt.Errorf("reading channels: %w", err)
	}
	defer rows.Close()
	var out []Channel
	for rows.Next() {
		var idb, enc []byte
		if err := rows.Scan(&idb, &enc); err != nil {
			return nil, fmt.Errorf("reading channels: %w", err)
		}
		if len(idb) != channel.IDSize {
			return nil, errors.New("stored channel: bad id")
		}
		cs, err := c.decodeChannel(channel.ID(idb), enc)
		if err != nil {
			return nil, err
		}
		out = append(out, cs.describe())
	}
	slices.SortFunc(out, func(a, b Channel) int { return strings.Compare(a.Handle, b.Handle) })
	return out, rows.Err()
}

// pulled is one post a pull accepted.
type pulled struct {
	post   *channel.Post
	notice *channel.Notice
	raw    []byte // the notice as served
	views  int64
}

// pull fetches and verifies the posts after the newest cs holds, page by page, until
// the server's newest. It returns what it accepted (in order) and, if the server
// served something the Verifier refused, that error: the posts before it stay
// accepted, the refused one and everything after it are not.
func (c *Client) pull(ctx context.Context, cs *chanState) ([]pulled, []uint64, error) {
	var out []pulled
	var voided []uint64
	for {
		last, _ := cs.v.Last()
		var page api.PostsPage
		path := channelPath(cs.id, fmt.Sprintf("/posts?after=%d&limit=%d", last, api.MaxPostsPage))
		if err := c.api.do(ctx, "GET", path, c.cred(), nil, &page); err != nil {
			return out, voided, fmt.Errorf("fetching posts: %w", err)
		}
		posts, notices, raws, perr := parsePage(page.Posts, last)
		res, err := cs.v.AcceptPage(posts, notices)
		voided = append(voided, res.Voided...)
		now, _ := cs.v.Last()
		for i, p := range posts {
			if p.Seq() > last && p.Seq() <= now {
				out = append(out, pulled{post: p, notice: noticeOf(notices, p.Seq()), raw: raws[i], views: page.Posts[i].Views})
			}
		}
		if err == nil {
			err = perr
		}
		if err != nil {
			return out, voided, fmt.Errorf("%v: the server served a post this profile refuses: %w", cs.v.Info().Handle, err)
		}
		if now >= page.Newest {
			return out, voided, nil
		}
		if now == last {
			// The server says there is more but serves none of it.
			return out, voided, fmt.Errorf("%v: %w", cs.v.Info().Handle, &channel.GapError{From: now + 1, To: page.Newest})
		}
	}
}

// parsePage decodes a page. A post that does not parse ends the page there, with an
// error saying it was altered; a notice that does not parse is dropped (the Verifier
// then refuses its post as withheld without a notice).
func parsePage(served []api.ChannelPost, after uint64) ([]*channel.Post, []*channel.Notice, [][]byte, error) {
	var posts []*channel.Post
	var notices []*channel.Notice
	var raws [][]byte
	for i, sp := range served {
		p, err := channel.ParsePost(sp.Post)
		if err != nil {
			return posts, notices, raws, &channel.Error{Seq: after + uint64(i) + 1, Err: channel.ErrAltered, Detail: err.Error()}
		}
		posts = append(posts, p)
		raws = append(raws, nil)
		if len(sp.Notice) > 0 {
			if n, err := channel.ParseNotice(sp.Notice); err == nil && n.Seq == p.Seq() {
				notices = append(notices, n)
				raws[len(raws)-1] = sp.Notice
			}
		}
	}
	return posts, notices, raws, nil
}

func noticeOf(ns []*channel.Notice, seq uint64) *channel.Notice {
	for _, n := range ns {
		if n.Seq == seq {
			return n
		}
	}
	return nil
}

// keep stores accepted posts and cs's state in one transaction, decrypting the bodies
// of a private channel's posts as it goes (a Sender Key message decrypts only once).
func (c *Client) keep(ctx context.Context, cs *chanState, got []pulled, voided []uint64) error {
	return c.inTx(ctx, func(tx *sql.Tx) error {
		var reader *private.Reader
		if cs.v.Info().Private {
			reader = private.NewReader(c.storesOn(tx), cs.id)
		}
		for _, g := range got {
			sp := &storedPost{Post: g.post.Bytes(), Notice: g.raw, Views: g.views}
			if reader != nil && !g.post.Withheld() && (g.post.Kind() == channel.KindPost || g.post.Kind() == channel.KindEdit) {
				pt, err := reader.Open(ctx, g.post)
				if err != nil {
					c.log.Debug("private channel post does not decrypt", "err", err)
					sp.Undecryptable = true
				} else {
					sp.Plain = pt
				}
			}
			if err := c.putPost(ctx, tx, cs.id, g.post.Seq(), sp); err != nil {
				return err
			}
		}
		for _, s := range voided {
			sp, err := c.getPost(ctx, tx, cs.id, s)
			if err != nil || sp == nil {
				return err
			}
			sp.Void = true
			if err := c.putPost(ctx, tx, cs.id, s, sp); err != nil {
				return err
			}
		}
		return c.saveChannel(ctx, tx, cs)
	})
}

// ReadChannel fetches the posts published since the last read, verifies each,
// stores those the channel's Verifier accepts, counts them as viewed (in aggregate,
// on the server), checks the owner's newest head, and returns the newest limit entries
// the profile holds (limit <= 0: all). If the profile holds fewer than limit and
// started from a head, it fetches older history too, checked backwards against the
// head.
//
// If the server served something the Verifier refuses (a forged, altered, reordered
// or withheld-without-notice post, a gap, a fork) or holds back posts the owner's
// head names, ReadChannel returns the entries it holds together with an error wrapping
// the channel package's error: test it with errors.Is(err, channel.ErrForged) and the
// others, or errors.As(err, **channel.GapError). The refused post is not stored and
// not returned.
func (c *Client) ReadChannel(ctx context.Context, handle string, limit int) ([]ChannelEntry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.channelFor(ctx, handle)
	if err != nil {
		return nil, err
	}
	info, ierr := c.fetchInfo(ctx, cs.id.String())
	if ierr == nil {
		cs.rec.Subscribers = info.Subscribers
	}
	got, voided, perr := c.pull(ctx, cs)
	if perr == nil && limit > 0 && cs.rec.Older > 0 {
		perr = c.backfill(ctx, cs, limit)
	}
	var herr error
	if perr == nil && ierr == nil && len(info.Head) > 0 {
		herr = c.checkHead(cs, info.Head)
	}
	if err := c.keep(ctx, cs, got, voided); err != nil {
		return nil, err
	}
	if ierr == nil {
		c.applyLaterNotices(ctx, cs)
	}
	c.countViews(ctx, cs, got)
	entries, err := c.entries(ctx, cs, limit)
	if err != nil {
		return nil, err
	}
	return entries, errors.Join(perr, herr, ierr)
}

// applyLaterNotices withholds, in the profile, posts it read before the operator
// restricted them in this account's jurisdiction (the country of its number, as the
// server decides it) or removed them: the notice, signed by the server's key and naming
// the post by hash, replaces the body the profile kept. A notice that does not verify,
// or names a post the profile does not hold as it is, changes nothing. Failures only
// leave the posts as they were.
func (c *Client) applyLaterNotices(ctx context.Context, cs *chanState) {
	var resp api.NoticesResponse
	if err := c.api.do(ctx, "GET", channelPath(cs.id, "/notices"), c.cred(), nil, &resp); err != nil {
		c.log.Debug("fetching channel notices failed", "err", err)
		return
	}
	key, err := c.noticeKey(ctx)
	if err != nil || len(resp.Notices) == 0 {
		return
	}
	country := ""
	if n, err := phonenumbers.Parse(c.acc.Number, "ZZ"); err == nil {
		country = phonenumbers.GetRegionCodeForNumber(n)
	}
	for _, raw := range resp.Notices {
		n, err := channel.ParseNotice(raw)
		if err != nil || n.Channel != cs.id || !n.Verify(key) {
			continue
		}
		if n.Action == channel.ActionRestrict && (country == "" || !strings.EqualFold(n.Jurisdiction, country)) {
			continue
		}
		err = c.inTx(ctx, func(tx *sql.Tx) error {
			sp, err := c.getPost(ctx, tx, cs.id, n.Seq)
			if err != nil || sp == nil || len(sp.Notice) > 0 {
				return err
			}
			p, err := channel.ParsePost(sp.Post)
			if err != nil || p.Hash() != n.Post || p.Withhold() == p {
				return err
			}
			sp.Post, sp.Notice, sp.Plain, sp.Undecryptable = p.Withhold().Bytes(), raw, nil, false
			return c.putPost(ctx, tx, cs.id, n.Seq, sp)
		})
		if err != nil {
			c.log.Debug("applying a channel notice failed", "err", err)
		}
	}
}

// checkHead checks the owner's newest head against what the profile holds. A stale
// head (older than the history held) says nothing new and is ignored.
func (c *Client) checkHead(cs *chanState, raw []byte) error {
	h, err := channel.ParseHead(raw)
	if err != nil {
		return fmt.Errorf("%v: the server sent a bad owner head: %w", cs.v.Info().Handle, err)
	}
	err = cs.v.CheckHead(h)
	if err == nil || errors.Is(err, channel.ErrReordered) {
		return nil
	}
	var gap *channel.GapError
	if errors.As(err, &gap) {
		return fmt.Errorf("%v: the server has not delivered every post the owner published: %w", cs.v.Info().Handle, err)
	}
	return fmt.Errorf("%v: the owner's head does not match: %w", cs.v.Info().Handle, err)
}

// backfill fetches history older than the head the Verifier started from until the
// profile holds limit posts or the whole history, checked with AcceptOlder.
func (c *Client) backfill(ctx context.Context, cs *chanState, limit int) error {
	var n int
	if err := c.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM channel_posts WHERE channel = ?", cs.id[:]).Scan(&n); err != nil {
		return fmt.Errorf("counting channel posts: %w", err)
	}
	for n < limit && cs.rec.Older > 0 {
		want := min(limit-n+1, api.MaxPostsPage)
		var page api.PostsPage
		path := channelPath(cs.id, fmt.Sprintf("/posts?before=%d&limit=%d", cs.rec.Older+1, want))
		if err := c.api.do(ctx, "GET", path, c.cred(), nil, &page); err != nil {
			return fmt.Errorf("fetching older posts: %w", err)
		}
		if len(page.Posts) == 0 {
			return fmt.Errorf("%v: %w", cs.v.Info().Handle, &channel.GapError{From: 1, To: cs.rec.Older})
		}
		slices.Reverse(page.Posts) // served newest first; AcceptOlder takes them oldest first
		posts, notices, raws, err := parsePage(page.Posts, 0)
		if err != nil {
			return fmt.Errorf("%v: the server served a post this profile refuses: %w", cs.v.Info().Handle, err)
		}
		res, err := cs.v.AcceptOlder(posts, notices)
		if err != nil {
			return fmt.Errorf("%v: the server served a post this profile refuses: %w", cs.v.Info().Handle, err)
		}
		got := make([]pulled, len(posts))
		for i, p := range posts {
			got[i] = pulled{post: p, notice: noticeOf(notices, p.Seq()), raw: raws[i], views: page.Posts[i].Views}
		}
		cs.rec.Older = posts[0].Seq() - 1
		if err := c.keep(ctx, cs, got, res.Voided); err != nil {
			return err
		}
		n += len(posts)
	}
	return nil
}

// countViews tells the server, in batches, how many posts were newly read: it adds
// one to each post's counter and records nothing about the reader. A failure only
// loses a count.
func (c *Client) countViews(ctx context.Context, cs *chanState, got []pulled) {
	var seqs []uint64
	for _, g := range got {
		if g.post.Kind() == channel.KindPost {
			seqs = append(seqs, g.post.Seq())
		}
	}
	for len(seqs) > 0 {
		n := min(len(seqs), api.MaxViewsBatch)
		if err := c.api.do(ctx, "POST", channelPath(cs.id, "/views"), c.cred(), api.ViewsRequest{Seqs: seqs[:n]}, nil); err != nil {
			c.log.Debug("counting views failed", "err", err)
			return
		}
		seqs = seqs[n:]
	}
}

// entries renders the stored posts: edits and deletes folded into their targets, the
// newest limit content posts (and the control posts among them).
func (c *Client) entries(ctx context.Context, cs *chanState, limit int) ([]ChannelEntry, error) {
	rows, err := c.db.QueryContext(ctx, "SELECT seq, post_enc FROM channel_posts WHERE channel = ? ORDER BY seq", cs.id[:])
	if err != nil {
		return nil, fmt.Errorf("reading channel posts: %w", err)
	}
	defer rows.Close()
	owner := cs.v.Owner()
	var out []ChannelEntry
	index := map[uint64]int{}
	for rows.Next() {
		var seq uint64
		var enc []byte
		if err := rows.Scan(&seq, &enc); err != nil {
			return nil, fmt.Errorf("reading channel posts: %w", err)
		}
		raw, err := c.seal.open(enc, postWhere(cs.id, seq))
		if err != nil {
			return nil, err
		}
		var sp storedPost
		if err := json.Unmarshal(raw, &sp); err != nil {
			return nil, fmt.Errorf("stored channel post: %w", err)
		}
		p, err := channel.ParsePost(sp.Post)
		if err != nil {
			return nil, fmt.Errorf("stored channel post: %w", err)
		}
		text, undecryptable := string(p.Body()), sp.Undecryptable
		if cs.v.Info().Private {
			text = string(sp.Plain)
		}
		var withheld *ChannelNotice
		if len(sp.Notice) > 0 {
			if n, err := channel.ParseNotice(sp.Notice); err == nil {
				withheld = describeNotice(n)
				text = ""
			}
		}
		switch p.Kind() {
		case channel.KindEdit, channel.KindDelete:
			i, ok := index[p.Ref()]
			if !ok {
				continue // the target is older than the history held
			}
			e := &out[i]
			if p.Kind() == channel.KindDelete {
				e.Deleted, e.Text, e.Withheld, e.Undecryptable = true, "", nil, false
			} else if !e.Deleted {
				e.Edited, e.Text, e.Withheld, e.Undecryptable = true, text, withheld, undecryptable
			}
			continue
		case channel.KindDelegate:
			d := p.Delegation()
			text = fmt.Sprintf("admin key %v delegated from post %d", d.Key, d.From)
		case channel.KindRevoke:
			r := p.Revocation()
			text = fmt.Sprintf("admin key %v revoked from post %d", r.Key, r.From)
		}
		index[seq] = len(out)
		out = append(out, ChannelEntry{
			Seq: seq, Kind: p.Kind().String(), Text: text, Time: p.Time(), Signer: p.Signer().String(),
			ByOwner: p.Signer().Equal(owner), Views: sp.Views, Void: sp.Void, Undecryptable: undecryptable, Withheld: withheld,
		})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading channel posts: %w", err)
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

func describeNotice(n *channel.Notice) *ChannelNotice {
	return &ChannelNotice{Seq: n.Seq, Action: n.Action.String(), Jurisdiction: n.Jurisdiction, Reason: n.Reason, Time: n.Time}
}

// PostToChannel publishes text as a new post; it returns the post's sequence number.
// In a private channel the text is sealed for the admitted subscribers first.
func (c *Client) PostToChannel(ctx context.Context, handle, text string) (uint64, error) {
	return c.publishText(ctx, handle, channel.KindPost, 0, text)
}

// EditChannelPost replaces the text of post seq; it returns the edit's sequence number.
func (c *Client) EditChannelPost(ctx context.Context, handle string, seq uint64, text string) (uint64, error) {
	return c.publishText(ctx, handle, channel.KindEdit, seq, text)
}

// DeleteChannelPost retracts post seq; it returns the delete's sequence number.
func (c *Client) DeleteChannelPost(ctx context.Context, handle string, seq uint64) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.signerFor(ctx, handle)
	if err != nil {
		return 0, err
	}
	return c.publish(ctx, cs, nil, func(uint64) channel.Draft {
		return channel.Draft{Kind: channel.KindDelete, Ref: seq, Time: c.now()}
	})
}

func (c *Client) publishText(ctx context.Context, handle string, kind channel.Kind, ref uint64, text string) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.signerFor(ctx, handle)
	if err != nil {
		return 0, err
	}
	body := []byte(text)
	var plain []byte
	if cs.v.Info().Private {
		if !cs.owner() {
			// An admin's chain would have to reach every subscriber from the admin's
			// own device; not supported yet (docs/channels.md, "Using channels").
			return 0, fmt.Errorf("%s: only the owner posts in a private channel", handle)
		}
		plain = body
		if body, err = private.NewPoster(c.storesOn(c.db), cs.id, cs.key.Public()).Seal(ctx, body); err != nil {
			return 0, err
		}
	}
	return c.publish(ctx, cs, plain, func(uint64) channel.Draft {
		return channel.Draft{Kind: kind, Ref: ref, Body: body, Time: c.now()}
	})
}

// signerFor loads a channel the profile may sign in. The caller holds c.mu.
func (c *Client) signerFor(ctx context.Context, handle string) (*chanState, error) {
	cs, err := c.channelFor(ctx, handle)
	if err != nil {
		return nil, err
	}
	if cs.key == nil {
		return nil, fmt.Errorf("%s: %w", handle, ErrNotChannelSigner)
	}
	return cs, nil
}

// publish signs draft(seq) after the newest post cs holds and submits it, with an
// owner head when cs is the owner's. If another signer took the place first (409
// channel_conflict), it fetches the newer posts, signs again after them and retries,
// up to maxPublishAttempts times. plain is the plaintext of a private post, kept so
// that the owner can read its own posts.
func (c *Client) publish(ctx context.Context, cs *chanState, plain []byte, draft func(seq uint64) channel.Draft) (uint64, error) {
	if !cs.owner() {
		// An admin learns of its own delegation, and of the posts of the others, only
		// by reading: catch up before signing.
		if err := c.catchUp(ctx, cs); err != nil {
			return 0, err
		}
	}
	for attempt := 1; ; attempt++ {
		last, _ := cs.v.Last()
		p, err := cs.v.Next(cs.key, draft(last+1))
		if err != nil {
			return 0, err
		}
		next, err := cloneVerifier(cs.v)
		if err != nil {
			return 0, err
		}
		if _, err := next.Accept(p); err != nil {
			// The rules forbid it (an edit of a deleted post, a revoked key): refuse
			// here rather than have the server refuse it.
			return 0, fmt.Errorf("%v: %w", cs.v.Info().Handle, err)
		}
		req := api.PostRequest{Post: p.Bytes()}
		if cs.owner() {
			head, err := next.SignHead(cs.key, c.now())
			if err != nil {
				return 0, err
			}
			req.Head = head.Bytes()
		}
		var resp api.PostResponse
		err = c.api.do(ctx, "POST", channelPath(cs.id, "/posts"), c.cred(), req, &resp)
		if err == nil {
			cs.v = next
			sp := &storedPost{Post: p.Bytes(), Plain: plain}
			if err := c.inTx(ctx, func(tx *sql.Tx) error {
				if err := c.putPost(ctx, tx, cs.id, p.Seq(), sp); err != nil {
					return err
				}
				return c.saveChannel(ctx, tx, cs)
			}); err != nil {
				return 0, err
			}
			return p.Seq(), nil
		}
		if !isCode(err, api.CodeChannelConflict) || attempt >= maxPublishAttempts {
			return 0, fmt.Errorf("posting to %v: %w", cs.v.Info().Handle, err)
		}
		c.log.Debug("channel post lost its place, signing again", "attempt", attempt)
		if err := c.catchUp(ctx, cs); err != nil {
			return 0, err
		}
	}
}

// catchUp pulls and keeps the posts the server has after the newest cs holds.
func (c *Client) catchUp(ctx context.Context, cs *chanState) error {
	got, voided, err := c.pull(ctx, cs)
	if kerr := c.keep(ctx, cs, got, voided); kerr != nil {
		return kerr
	}
	return err
}

func cloneVerifier(v *channel.Verifier) (*channel.Verifier, error) {
	b, err := v.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return channel.UnmarshalVerifier(b)
}

// ChannelAdminKey returns this profile's admin key for a channel it follows, making
// it on first use. The owner delegates it with [Client.AddChannelAdmin]; until then
// posts signed with it are refused by everyone.
func (c *Client) ChannelAdminKey(ctx context.Context, handle string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.channelFor(ctx, handle)
	if err != nil {
		return "", err
	}
	if cs.owner() {
		return "", fmt.Errorf("%s: this profile owns the channel; its owner key needs no delegation", handle)
	}
	if cs.key == nil {
		if cs.key, err = channel.GenerateSigningKey(c.rand); err != nil {
			return "", err
		}
		if err := c.saveChannel(ctx, c.db, cs); err != nil {
			return "", err
		}
	}
	return cs.key.Public().String(), nil
}

func parseKeyHex(s string) (channel.PublicKey, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return channel.PublicKey{}, fmt.Errorf("admin key %q: want 64 hex digits", s)
	}
	k, err := channel.NewPublicKey(b)
	if err != nil {
		return channel.PublicKey{}, fmt.Errorf("admin key %q: %w", s, err)
	}
	return k, nil
}

// AddChannelAdmin delegates keyHex (an admin's [Client.ChannelAdminKey]) from the
// next post on, with no end. Only the owner can; it returns the delegation's seq.
func (c *Client) AddChannelAdmin(ctx context.Context, handle, keyHex string) (uint64, error) {
	return c.control(ctx, handle, keyHex, func(k channel.PublicKey, seq uint64) channel.Draft {
		return channel.Delegation{Key: k, From: seq + 1}.Draft(c.now())
	})
}

// RevokeChannelAdmin revokes keyHex from the next post on: every later post it signs
// is refused by every subscriber. Only the owner can; it returns the revocation's seq.
func (c *Client) RevokeChannelAdmin(ctx context.Context, handle, keyHex string) (uint64, error) {
	return c.control(ctx, handle, keyHex, func(k channel.PublicKey, seq uint64) channel.Draft {
		return channel.Revocation{Key: k, From: seq + 1}.Draft(c.now())
	})
}

func (c *Client) control(ctx context.Context, handle, keyHex string, draft func(channel.PublicKey, uint64) channel.Draft) (uint64, error) {
	k, err := parseKeyHex(keyHex)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.signerFor(ctx, handle)
	if err != nil {
		return 0, err
	}
	if !cs.owner() {
		return 0, fmt.Errorf("%s: only the owner delegates and revokes admin keys", handle)
	}
	return c.publish(ctx, cs, nil, func(seq uint64) channel.Draft { return draft(k, seq) })
}

// ChannelAdmins fetches and verifies the channel's new posts, then lists its admin
// keys as of the newest post the profile accepted (also when the server served
// something it refused, together with that error).
func (c *Client) ChannelAdmins(ctx context.Context, handle string) ([]ChannelAdmin, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.channelFor(ctx, handle)
	if err != nil {
		return nil, err
	}
	err = c.catchUp(ctx, cs)
	var out []ChannelAdmin
	for _, g := range cs.v.Grants() {
		out = append(out, ChannelAdmin{Key: g.Key.String(), From: g.From, Until: g.Until, RevokedFrom: g.RevokedFrom})
	}
	return out, err
}

// ReportChannelPost reports post seq to the operator (EU DSA Art. 16): reason is
// api.ReportIllegal or api.ReportTerms, text says why. The server keeps no record of
// who reported. It returns the report's id. The profile need not follow the channel.
func (c *Client) ReportChannelPost(ctx context.Context, handle string, seq uint64, reason, text string) (string, error) {
	if reason != api.ReportIllegal && reason != api.ReportTerms {
		return "", fmt.Errorf("report reason %q: want %s or %s", reason, api.ReportIllegal, api.ReportTerms)
	}
	if len(text) > api.MaxReportText {
		return "", fmt.Errorf("report text of %d bytes: the limit is %d", len(text), api.MaxReportText)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	id, err := c.resolveChannel(ctx, handle)
	if err != nil {
		return "", err
	}
	var resp api.ReportResponse
	if err := c.api.do(ctx, "POST", channelPath(id, "/reports"), c.cred(), api.ReportRequest{Seq: seq, Reason: reason, Text: text}, &resp); err != nil {
		return "", fmt.Errorf("reporting: %w", err)
	}
	return resp.ID, nil
}

// resolveChannel returns a channel's id: from the profile, else from the server.
func (c *Client) resolveChannel(ctx context.Context, handle string) (channel.ID, error) {
	if err := c.requireAccount(); err != nil {
		return channel.ID{}, err
	}
	h, err := channel.ParseHandle(handle)
	if err != nil {
		return channel.ID{}, err
	}
	if cs, err := c.channelByHandle(ctx, c.db, h); err == nil {
		return cs.id, nil
	} else if !errors.Is(err, ErrNotFollowing) {
		return channel.ID{}, err
	}
	info, err := c.fetchInfo(ctx, h.String())
	if err != nil {
		return channel.ID{}, err
	}
	return channel.ParseID(info.ID)
}

// ChannelNotices returns the operator's notices on a channel (restrictions and
// removals, each with its statement of reasons), oldest first: how an owner learns
// what was withheld and why. Notices not signed by the server's key are left out
// and reported in the error.
func (c *Client) ChannelNotices(ctx context.Context, handle string) ([]ChannelNotice, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, err := c.resolveChannel(ctx, handle)
	if err != nil {
		return nil, err
	}
	var resp api.NoticesResponse
	if err := c.api.do(ctx, "GET", channelPath(id, "/notices"), c.cred(), nil, &resp); err != nil {
		return nil, fmt.Errorf("fetching notices: %w", err)
	}
	key, err := c.noticeKey(ctx)
	if err != nil {
		return nil, err
	}
	var out []ChannelNotice
	bad := 0
	for _, raw := range resp.Notices {
		n, err := channel.ParseNotice(raw)
		if err != nil || n.Channel != id || !n.Verify(key) {
			bad++
			continue
		}
		out = append(out, *describeNotice(n))
	}
	if bad > 0 {
		return out, fmt.Errorf("%d notice(s) the server served are not signed by its key", bad)
	}
	return out, nil
}

// AdmitToChannel admits the account registered with number to a private channel this
// profile owns: it sends the owner's Sender Key distribution for the channel over the
// 1:1 session (never in the clear). The subscriber must follow the channel first;
// it reads the posts made from then on.
func (c *Client) AdmitToChannel(ctx context.Context, handle, number string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.signerFor(ctx, handle)
	if err != nil {
		return err
	}
	if !cs.owner() || !cs.v.Info().Private {
		return fmt.Errorf("%s: only the owner of a private channel admits subscribers", handle)
	}
	n, err := NormalizeNumber(number)
	if err != nil {
		return err
	}
	account, err := c.resolve(ctx, n)
	if err != nil {
		return err
	}
	owner := cs.key.Public()
	dm, err := private.NewPoster(c.storesOn(c.db), cs.id, owner).Distribution(ctx)
	if err != nil {
		return err
	}
	content := Content{SentMS: uint64(c.now().UnixMilli()), ChannelID: bytes.Clone(cs.id[:]), ChannelSigner: owner.Bytes(), ChannelDistribution: dm.Bytes()}
	if _, _, err := c.sendTo(ctx, account, n, encodeContent(&content)); err != nil {
		if isCode(err, api.CodeNotFound) {
			return fmt.Errorf("%s: %w", n, ErrUnknownNumber)
		}
		return err
	}
	return nil
}
