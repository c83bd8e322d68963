package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/gobwas/ws/wsutil"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/channel"
)

// Live channel posts (docs/channels.md, "Live posts"). While [Client.ListenWithChannels]
// runs, its WebSocket subscribes (channel_subscribe) to every channel the profile
// holds, and each channel_posts frame goes through the channel's Verifier exactly as a
// read does: only what it accepts is stored and delivered; a post that does not follow
// the newest held (a gap: posts pushed while the connection was down, or a frame lost)
// makes the client fetch the history after its newest post first, as ReadChannel does.

// ChannelLive is one update [Client.ListenWithChannels] delivers: a channel post (or
// the post an edit or delete changed, shown as it now is) that the profile's Verifier
// accepted, or, with Err set and no Entry, what the server served and the Verifier
// refused (errors.Is(Err, channel.ErrForged) and the others, as for ReadChannel). A
// refused post is never delivered.
type ChannelLive struct {
	Handle string        `json:"channel"` // with its "@"
	Entry  *ChannelEntry `json:"entry,omitempty"`
	Err    error         `json:"-"`
}

// ListenWithChannels is [Client.Listen] that also delivers the channels' new posts to
// posts as they are published (nil posts: exactly Listen). The channels are those the
// profile holds when each connection starts; one followed later is streamed from the
// next reconnection (its posts are read with ReadChannel meanwhile). An error from
// either handler stops it.
func (c *Client) ListenWithChannels(ctx context.Context, handle func(Message) error, posts func(ChannelLive) error) error {
	if posts == nil {
		return c.listen(ctx, handle, nil)
	}
	return c.listen(ctx, handle, &channelLive{c: c, deliver: posts})
}

// channelLive is the channel part of one Listen: the connection calls start once it is
// up and frame for each channel frame.
type channelLive struct {
	c       *Client
	deliver func(ChannelLive) error
}

// start subscribes the connection to every channel the profile holds. A nil l does
// nothing (Receive and plain Listen do not stream channels).
func (l *channelLive) start(ctx context.Context, w io.Writer) error {
	if l == nil {
		return nil
	}
	chs, err := l.c.Channels(ctx)
	if err != nil {
		return err
	}
	if len(chs) == 0 {
		return nil
	}
	ids := make([]string, 0, min(len(chs), api.MaxSubscriptions))
	for _, ch := range chs[:min(len(chs), api.MaxSubscriptions)] {
		ids = append(ids, ch.ID)
	}
	b, _ := json.Marshal(api.Frame{Type: api.FrameChannelSubscribe, Channels: ids})
	return wsutil.WriteClientText(w, b)
}

// frame handles a channel_subscribe answer (catch up on every channel subscribed, or
// subscribe again after an overflow) or a channel_posts frame. Errors are the profile's
// own or the handler's (errHandler); what the server did wrong is delivered as Err.
func (l *channelLive) frame(ctx context.Context, w io.Writer, f api.Frame) error {
	if l == nil {
		return nil
	}
	switch f.Type {
	case api.FrameChannelSubscribe:
		if f.Error != nil {
			// The connection read slower than the channels posted and lost its
			// subscriptions: subscribe again; the answer makes it read the history.
			l.c.log.Debug("channel subscriptions dropped by the server", "code", f.Error.Code)
			return l.start(ctx, w)
		}
		for _, hexID := range f.Channels {
			if err := l.update(ctx, hexID, nil, true); err != nil {
				return err
			}
		}
	case api.FrameChannelPosts:
		return l.update(ctx, f.Channel, f.Posts, false)
	}
	return nil
}

// update verifies and stores served (or, with fetch, the history after the newest post
// held) and delivers what was accepted.
func (l *channelLive) update(ctx context.Context, hexID string, served []api.ChannelPost, fetch bool) error {
	id, err := channel.ParseID(hexID)
	if err != nil {
		l.c.log.Debug("channel frame with a bad id")
		return nil
	}
	handle, entries, refused, err := l.c.acceptLive(ctx, id, served, fetch)
	if err != nil {
		return err
	}
	for i := range entries {
		if err := l.deliver(ChannelLive{Handle: handle, Entry: &entries[i]}); err != nil {
			return errHandler{err}
		}
	}
	if refused != nil {
		if err := l.deliver(ChannelLive{Handle: handle, Err: refused}); err != nil {
			return errHandler{err}
		}
	}
	return nil
}

// acceptLive runs served (or the history after the newest post held) through the
// channel's Verifier, keeps what it accepts and returns the entries that changed,
// oldest first. refused is what the Verifier refused; err is the profile's own.
func (c *Client) acceptLive(ctx context.Context, id channel.ID, served []api.ChannelPost, fetch bool) (handle string, out []ChannelEntry, refused, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.loadChannel(ctx, c.db, id)
	if err != nil || cs == nil {
		return "", nil, nil, err // a channel unfollowed since: nothing to show
	}
	handle = cs.v.Info().Handle.String()
	c.operatorKey(ctx, cs.v)
	var got []pulled
	var voided []uint64
	if !fetch {
		last, _ := cs.v.Last()
		posts, notices, raws, perr := parsePage(served, last)
		res, aerr := cs.v.AcceptPage(posts, notices)
		voided = res.Voided
		now, _ := cs.v.Last()
		for i, p := range posts {
			if p.Seq() > last && p.Seq() <= now {
				got = append(got, pulled{post: p, notice: noticeOf(notices, p.Seq()), raw: raws[i], views: served[i].Views})
			}
		}
		if aerr == nil {
			aerr = perr
		}
		var gap *channel.GapError
		switch {
		case errors.As(aerr, &gap):
			fetch = true // posts before these were not pushed to this connection
		case aerr != nil:
			refused = fmt.Errorf("%s: the server pushed a post this profile refuses: %w", handle, aerr)
		}
	}
	if fetch {
		more, v, perr := c.pull(ctx, cs)
		got, voided, refused = append(got, more...), append(voided, v...), perr
	}
	if len(got) == 0 && len(voided) == 0 {
		return handle, nil, refused, nil
	}
	if err := c.keep(ctx, cs, got, voided); err != nil {
		return "", nil, nil, err
	}
	c.countViews(ctx, cs, got)
	all, err := c.entries(ctx, cs, 0)
	if err != nil {
		return "", nil, nil, err
	}
	bySeq := make(map[uint64]int, len(all))
	for i, e := range all {
		bySeq[e.Seq] = i
	}
	shown := map[uint64]bool{}
	for _, g := range got {
		seq := g.post.Seq()
		if k := g.post.Kind(); k == channel.KindEdit || k == channel.KindDelete {
			seq = g.post.Ref() // shown as the post it changed, as it now reads
		}
		if i, ok := bySeq[seq]; ok && !shown[seq] {
			shown[seq] = true
			out = append(out, all[i])
		}
	}
	return handle, out, refused, nil
}
