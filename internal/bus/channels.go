package bus

import (
	"encoding/binary"
	"fmt"

	"github.com/nats-io/nats.go"
)

// Channel posts across nodes (docs/channels.md "Server"). A node that stores a new post
// of a public broadcast channel publishes the channel id and sequence number on
// <prefix>.channel; every other node reads the post from the shared store and pushes it
// to its own subscribed connections, and forgets its cached verifier state for that
// channel. The message holds only those 24 bytes: no account, no content.
//
// Posts published while NATS is down are not replayed: a subscriber learns of them when
// it next reads the channel's history (which it does after every (re)subscription).

// channelMsgSize is a channel id (16 bytes) and a big-endian sequence number (8).
const channelMsgSize = 16 + 8

func (n *NATS) channelSubject() string { return n.prefix + ".channel" }

// PublishChannelPost tells every other node that post seq of channel id is stored. It
// never blocks and does nothing while NATS is down.
func (n *NATS) PublishChannelPost(id [16]byte, seq uint64) {
	if !n.healthy.Load() {
		return
	}
	var b [channelMsgSize]byte
	copy(b[:16], id[:])
	binary.BigEndian.PutUint64(b[16:], seq)
	if err := n.nc.Publish(n.channelSubject(), b[:]); err != nil {
		n.log.Debug("bus: publishing channel post failed", "err", err)
	}
}

// SubscribeChannelPosts calls fn, on one goroutine and in arrival order, for every post
// another node publishes, until cancel is called. Malformed messages are dropped.
func (n *NATS) SubscribeChannelPosts(fn func(id [16]byte, seq uint64)) (cancel func(), err error) {
	sub, err := n.nc.Subscribe(n.channelSubject(), func(m *nats.Msg) {
		if len(m.Data) != channelMsgSize {
			return
		}
		var id [16]byte
		copy(id[:], m.Data[:16])
		fn(id, binary.BigEndian.Uint64(m.Data[16:]))
	})
	if err != nil {
		return nil, fmt.Errorf("subscribing to channel posts: %w", err)
	}
	if n.nc.IsConnected() {
		if err := n.nc.FlushTimeout(flushTimeout); err != nil {
			n.log.Debug("bus: flushing the channel subscription failed", "err", err)
		}
	}
	return func() { sub.Unsubscribe() }, nil
}
