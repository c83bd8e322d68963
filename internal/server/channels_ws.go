package server

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/gobwas/ws"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/internal/store"
)

// Channel streaming over the WebSocket (docs/api.md "Channels"). A channel_subscribe
// frame sets the connection's subscriptions, held in memory only; the server answers
// with a channel_subscribe frame listing them, after which the client reads history
// after its newest post to close the gap. Each post the server stores is pushed to every
// subscribed connection as a channel_posts frame, with notices applied for the
// connection's jurisdiction.
//
// A poster never waits for a subscriber: frames go into a bounded per-connection queue
// that a goroutine of the connection writes out. A connection whose queue overflows (it
// reads slower than the channel posts) loses its subscriptions and gets a
// channel_subscribe frame with error code channel_overflow; it subscribes again and
// re-reads history.

// wsChannelQueue bounds the channel frames waiting for one connection. Posts are at most
// 64 KiB, so a full queue pins at most about 22 MiB (base64) and usually a few KiB.
const wsChannelQueue = 256

// codeChannelOverflow is the error code of the frame that ends a slow connection's
// subscriptions.
const codeChannelOverflow = "channel_overflow"

// chanSub is one connection's channel subscriptions and push queue.
type chanSub struct {
	c       *wsConn
	country string                  // the jurisdiction of the connection's account
	chans   map[channel.ID]struct{} // guarded by channelHub.subMu

	mu      sync.Mutex
	queue   [][]byte
	writing bool
}

// channelSubscribe handles a channel_subscribe frame (reader goroutine).
func (c *wsConn) channelSubscribe(hexIDs []string) (ws.StatusCode, string) {
	if len(hexIDs) > api.MaxSubscriptions {
		return ws.StatusPolicyViolation, fmt.Sprintf("at most %d channel subscriptions", api.MaxSubscriptions)
	}
	ids := make(map[channel.ID]struct{}, len(hexIDs))
	for _, h := range hexIDs {
		id, err := channel.ParseID(h)
		if err != nil {
			return ws.StatusInvalidFramePayloadData, "channel ids are 32 hex digits"
		}
		ids[id] = struct{}{}
	}
	hub := c.s.chans
	hub.subMu.RLock()
	sub := hub.conns[c]
	hub.subMu.RUnlock()
	if sub == nil && len(ids) > 0 {
		a, err := c.s.store.Account(c.ctx, c.account)
		if err != nil {
			if c.ctx.Err() == nil {
				c.s.log.Error("channels: reading a subscriber's account", "err", err)
			}
			return ws.StatusInternalServerError, "internal error"
		}
		sub = &chanSub{c: c, country: numberCountry(a.Number)}
	}
	if sub != nil {
		hub.setSubscriptions(sub, ids)
	}
	list := make([]string, 0, len(ids))
	for id := range ids {
		list = append(list, id.String())
	}
	p, _ := json.Marshal(api.Frame{Type: api.FrameChannelSubscribe, Channels: list})
	if sub != nil {
		sub.push(p)
	} else if err := c.write(ws.OpText, p); err != nil {
		return 0, ""
	}
	return 0, ""
}

// setSubscriptions replaces sub's channels with ids. The connection keeps its sub (and
// so the order of its frames) until it closes.
func (hub *channelHub) setSubscriptions(sub *chanSub, ids map[channel.ID]struct{}) {
	hub.subMu.Lock()
	defer hub.subMu.Unlock()
	for id := range sub.chans {
		if _, keep := ids[id]; !keep {
			hub.removeLocked(sub, id)
		}
	}
	if sub.chans == nil {
		sub.chans = make(map[channel.ID]struct{}, len(ids))
	}
	hub.conns[sub.c] = sub
	for id := range ids {
		sub.chans[id] = struct{}{}
		m := hub.subs[id]
		if m == nil {
			m = map[*chanSub]struct{}{}
			hub.subs[id] = m
		}
		m[sub] = struct{}{}
	}
}

func (hub *channelHub) removeLocked(sub *chanSub, id channel.ID) {
	delete(sub.chans, id)
	if m := hub.subs[id]; m != nil {
		delete(m, sub)
		if len(m) == 0 {
			delete(hub.subs, id)
		}
	}
}

// dropConn forgets a closed connection's subscriptions.
func (hub *channelHub) dropConn(c *wsConn) {
	if hub == nil {
		return
	}
	hub.subMu.Lock()
	defer hub.subMu.Unlock()
	sub := hub.conns[c]
	if sub == nil {
		return
	}
	for id := range sub.chans {
		hub.removeLocked(sub, id)
	}
	delete(hub.conns, c)
}

func (hub *channelHub) hasSubscribers(id channel.ID) bool {
	hub.subMu.RLock()
	defer hub.subMu.RUnlock()
	return len(hub.subs[id]) > 0
}

// queueFanOut hands ps to the fan-out goroutine, started if none runs: the poster's
// answer waits for its commit, not for the frames of every subscriber. Jobs run in the
// order they were queued, and a channel's posts are queued in seq order (under its
// lock), so every connection gets a channel's posts in order.
func (hub *channelHub) queueFanOut(id channel.ID, ps []store.ChannelPost) {
	if !hub.hasSubscribers(id) {
		return
	}
	hub.fanMu.Lock()
	hub.fanQueue = append(hub.fanQueue, fanJob{id, ps})
	start := !hub.fanRunning
	hub.fanRunning = true
	hub.fanMu.Unlock()
	if start {
		go hub.fanLoop()
	}
}

func (hub *channelHub) fanLoop() {
	for {
		hub.fanMu.Lock()
		if len(hub.fanQueue) == 0 {
			hub.fanRunning = false
			hub.fanQueue = nil
			hub.fanMu.Unlock()
			return
		}
		j := hub.fanQueue[0]
		hub.fanQueue = hub.fanQueue[1:]
		hub.fanMu.Unlock()
		hub.fanOut(context.Background(), j.id, j.ps)
	}
}

// fanOut pushes ps (new posts of id, in order) to every connection subscribed to id
// on this node. It never waits for a connection.
func (hub *channelHub) fanOut(ctx context.Context, id channel.ID, ps []store.ChannelPost) {
	hub.subMu.RLock()
	subs := make([]*chanSub, 0, len(hub.subs[id]))
	for sub := range hub.subs[id] {
		subs = append(subs, sub)
	}
	hub.subMu.RUnlock()
	if len(subs) == 0 {
		return
	}
	notices, err := hub.s.store.ChannelNotices(ctx, id)
	if err != nil {
		// Without the notices a withheld post could go out whole: push nothing, the
		// subscribers read it with the history.
		hub.s.log.Error("channels: reading notices for a push", "err", err)
		return
	}
	byCountry := needsCountry(notices, ps)
	frames := map[string][]byte{}
	frame := func(country string) []byte {
		if !byCountry {
			country = ""
		}
		if f, ok := frames[country]; ok {
			return f
		}
		f, _ := json.Marshal(api.Frame{Type: api.FrameChannelPosts, Channel: id.String(), Posts: applyNotices(ps, notices, country)})
		frames[country] = f
		return f
	}
	for _, sub := range subs {
		sub.push(frame(sub.country))
	}
}

// push queues p for the connection and starts its writer if none runs. On overflow
// the connection loses its subscriptions and is told so.
func (sub *chanSub) push(p []byte) {
	sub.mu.Lock()
	if len(sub.queue) >= wsChannelQueue {
		sub.mu.Unlock()
		sub.c.s.chans.setSubscriptions(sub, nil)
		over, _ := json.Marshal(api.Frame{Type: api.FrameChannelSubscribe, Error: &api.Error{
			Code: codeChannelOverflow, Message: "channel posts arrived faster than this connection read them; subscribe again and read the history"}})
		sub.mu.Lock()
		sub.queue = append(sub.queue[:0], over)
	} else {
		sub.queue = append(sub.queue, p)
	}
	start := !sub.writing
	sub.writing = true
	sub.mu.Unlock()
	if !start {
		return
	}
	c := sub.c
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.s.wsWG.Add(1) // the connection's own count is held until close, so never from zero
	c.mu.Unlock()
	go sub.write()
}

// write sends queued frames until the queue is empty.
func (sub *chanSub) write() {
	defer sub.c.s.wsWG.Done()
	for {
		sub.mu.Lock()
		if len(sub.queue) == 0 {
			sub.writing = false
			sub.queue = nil // an idle connection keeps no buffer
			sub.mu.Unlock()
			return
		}
		p := sub.queue[0]
		sub.queue[0] = nil
		sub.queue = sub.queue[1:]
		sub.mu.Unlock()
		if err := sub.c.write(ws.OpText, p); err != nil {
			sub.c.close(0, "")
			sub.mu.Lock()
			sub.writing, sub.queue = false, nil
			sub.mu.Unlock()
			return
		}
	}
}
