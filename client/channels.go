package client

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/channel"
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
	// Admitter is the account that sent this profile the owner's signed admission to a
	// private channel (shown only: the owner's channel key is what is checked).
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
	// Admitted: the subscribers the owner admitted to its private channel, re-admitted
	// to the new chain when one of them is removed.
	Admitted []admittedAccount `json:"admitted,omitempty"`
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

// storedChannels decodes every channel record of the profile (the handle is inside the
// encrypted record, so finding one by handle opens them all; a profile has few).
func (c *Client) storedChannels(ctx context.Context, q querier) ([]*chanState, error) {
	rows, err := q.QueryContext(ctx, "SELECT id, record_enc FROM channels")
	if err != nil {
		return nil, fmt.Errorf("reading channels: %w", err)
	}
	defer rows.Close()
	var out []*chanState
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
		out = append(out, cs)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading channels: %w", err)
	}
	return out, nil
}

// channelByHandle finds the channel with handle among the profile's.
func (c *Client) channelByHandle(ctx context.Context, q querier, handle channel.Handle) (*chanState, error) {
	all, err := c.storedChannels(ctx, q)
	if err != nil {
		return nil, err
	}
	for _, cs := range all {
		if cs.rec.Handle == string(handle) {
			return cs, nil
		}
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
	all, err := c.storedChannels(ctx, c.db)
	if err != nil {
		return nil, err
	}
	out := make([]Channel, len(all))
	for i, cs := range all {
		out[i] = cs.describe()
	}
	slices.SortFunc(out, func(a, b Channel) int { return strings.Compare(a.Handle, b.Handle) })
	return out, nil
}
