package client

import "context"

// SendChannelAdmissionForTest sends a Content with the channel fields set as given to
// the account registered with number, over the 1:1 session, as a hostile or confused
// peer could: tests check what the receiver makes of it.
func (c *Client) SendChannelAdmissionForTest(ctx context.Context, number string, id, signer, dist []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	account, err := c.resolve(ctx, number)
	if err != nil {
		return err
	}
	content := Content{ChannelID: id, ChannelSigner: signer, ChannelDistribution: dist}
	_, _, err = c.sendTo(ctx, account, number, encodeContent(&content))
	return err
}
