package client

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/client/group"
	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/senderkey"
)

// Hooks for the group tests in package client_test: they reach what an attacker or a
// misbehaving client would, past the checks the public methods make.

// OpenSealedForTest opens an envelope body addressed to this device and returns the type
// and bytes of the message inside, without decrypting that.
func (c *Client) OpenSealedForTest(ctx context.Context, body []byte) (protocol.MessageType, []byte, error) {
	root, err := c.trustRoot(ctx)
	if err != nil {
		return 0, nil, err
	}
	o, err := c.openBody(root, body, time.Now())
	if err != nil {
		return 0, nil, err
	}
	return o.typ, o.ciphertext, nil
}

// SenderKeyDecryptForTest decrypts a sender-key message from sender with this profile's
// sender-key store, as receiving it would.
func (c *Client) SenderKeyDecryptForTest(ctx context.Context, sender protocol.Address, skm []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return senderkey.Decrypt(ctx, c.storesOn(c.db), sender, skm)
}

// GroupStateForTest returns this profile's state of the group ref.
func (c *Client) GroupStateForTest(ctx context.Context, ref string) (*group.State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := c.findGroup(ctx, ref)
	if err != nil {
		return nil, err
	}
	return r.g.State(), nil
}

// SendGroupChangeForTest sends ch over 1:1 sessions to the accounts to, whoever its
// author is and whatever it does: what a dishonest member's client could send.
func (c *Client) SendGroupChangeForTest(ctx context.Context, ch *group.Change, to []uuid.UUID) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cert, err := c.senderCertificate(ctx)
	if err != nil {
		return err
	}
	padded := encodeContent(&Content{GroupID: ch.Group[:], GroupChanges: encodeChanges([]*group.Change{ch}), SentMS: uint64(c.now().UnixMilli())})
	_, err = c.multiSend(ctx, to, nil, c.sessionBodies(cert, func(uuid.UUID) []byte { return padded }))
	return err
}

// SendGroupUncheckedForTest sends text to every device of accounts as a message of the
// group ref, on this device's chain for the group's current distribution id, without
// checking that this account is a member: what a removed member's client could send.
func (c *Client) SendGroupUncheckedForTest(ctx context.Context, ref string, accounts []uuid.UUID, text string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := c.findGroup(ctx, ref)
	if err != nil {
		return err
	}
	_, err = c.sendGroupMessage(ctx, r, r.g.State().DistributionID, accounts, text)
	return err
}
