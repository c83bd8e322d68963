package client

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/channel/private"
)

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
	if perr == nil && herr == nil && ierr == nil && cs.owner() {
		c.refreshHead(ctx, cs, info.Head)
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

// headInterval is how old the server's newest owner head may grow before the owner's
// next read signs a new one: subscribers bound how much they may be missing by the
// newest head they saw (docs/channels.md, "Freshness"), so an owner who posts rarely
// still vouches for the channel's newest post at least this often while it reads.
const headInterval = time.Hour

// refreshHead has the owner sign and store a new head when the server's is older than
// headInterval. A failure only leaves the old head.
func (c *Client) refreshHead(ctx context.Context, cs *chanState, raw []byte) {
	if h, err := channel.ParseHead(raw); err == nil && c.now().Sub(h.Time()) < headInterval {
		return
	}
	h, err := cs.v.SignHead(cs.key, c.now())
	if err == nil {
		err = c.api.do(ctx, "PUT", channelPath(cs.id, "/head"), c.cred(), api.HeadRequest{Head: h.Bytes()}, nil)
	}
	if err != nil {
		c.log.Debug("refreshing the channel head failed", "err", err)
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
