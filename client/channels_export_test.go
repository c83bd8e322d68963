package client

import (
	"bytes"
	"context"
	"io"

	"github.com/bastionchat/bastion/api"

	"github.com/bastionchat/bastion/channel/private"
)

// SendChannelAdmissionForTest sends a Content with the channel fields set as given to
// the account registered with number, over the 1:1 session, as a hostile or confused
// peer could: tests check what the receiver makes of it.
func (c *Client) SendChannelAdmissionForTest(ctx context.Context, number string, id, signer, dist, sig []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	account, err := c.resolve(ctx, number)
	if err != nil {
		return err
	}
	content := Content{ChannelID: id, ChannelSigner: signer, ChannelDistribution: dist, ChannelAdmissionSig: sig}
	_, _, err = c.sendTo(ctx, account, number, encodeContent(&content))
	return err
}

// ChannelAdmissionForTest returns the admission fields the owner would send to the
// account registered with number, without sending them: a test hands them to a
// subscriber to replay.
func (c *Client) ChannelAdmissionForTest(ctx context.Context, handle, number string) (id, signer, dist, sig []byte, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.privateOwner(ctx, handle, "admits")
	if err != nil {
		return nil, nil, nil, nil, err
	}
	account, err := c.resolve(ctx, number)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	dm, err := private.NewPoster(c.storesOn(c.db), cs.id, cs.key.Public()).Distribution(ctx)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	owner := cs.key.Public()
	return bytes.Clone(cs.id[:]), owner.Bytes(), dm.Bytes(), signAdmission(cs.key, cs.id, account, owner, dm.Bytes()), nil
}

// ChannelFrameForTest handles f as if the listening connection had received it and
// returns what it delivered: tests push frames a server could send.
func (c *Client) ChannelFrameForTest(ctx context.Context, f api.Frame) ([]ChannelLive, error) {
	var out []ChannelLive
	l := &channelLive{c: c, deliver: func(u ChannelLive) error { out = append(out, u); return nil }}
	err := l.frame(ctx, io.Discard, f)
	return out, err
}
