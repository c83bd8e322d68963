package client

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/channel/private"
	"github.com/bastionchat/bastion/protocol/senderkey"
)

// receiveChannelAdmission handles a Content that carries a private channel's Sender Key
// distribution (fields 9 to 11), which arrives inside a 1:1 session from account from.
// It never becomes a message. The rule (docs/channels.md, "Using channels"):
//
//   - the profile must already follow the channel: the genesis it pinned names the
//     owner's key, and ChannelSigner must be that key (only the owner's chain is
//     distributed; admins do not post in private channels yet);
//   - the first account that admits the profile to a channel is recorded as the
//     channel's admitter (trust on first use; "bastion channel list --json" shows it); later
//     distributions (a new chain after the owner removed someone) are accepted only
//     from that same account.
//
// Anything else is dropped. A chain from the wrong account could not make the profile
// show anything: a private post is shown only if the owner's channel key signed it.
// Errors are the profile's own (it cannot be written); the envelope is then not
// acknowledged and comes again.
func (c *Client) receiveChannelAdmission(ctx context.Context, tx *sql.Tx, from string, content *Content, markSeen func(querier) error) error {
	if err := c.admitFrom(ctx, tx, from, content); err != nil {
		if _, peer := err.(errAdmission); !peer {
			return err
		}
		c.log.Debug("channel admission dropped", "why", err.Error())
	}
	return markSeen(tx)
}

// errAdmission is an admission refused for what the peer sent, not for the profile.
type errAdmission string

func (e errAdmission) Error() string { return string(e) }

func (c *Client) admitFrom(ctx context.Context, tx *sql.Tx, from string, content *Content) error {
	if len(content.ChannelID) != channel.IDSize || len(content.ChannelSigner) != channel.PublicKeySize {
		return errAdmission("admission without a channel id or signer")
	}
	id := channel.ID(content.ChannelID)
	cs, err := c.loadChannel(ctx, tx, id)
	if err != nil {
		return err
	}
	if cs == nil {
		return errAdmission("admission to a channel this profile does not follow")
	}
	if !cs.v.Info().Private {
		return errAdmission("admission to a public channel")
	}
	signer, err := channel.NewPublicKey(content.ChannelSigner)
	if err != nil || !signer.Equal(cs.v.Owner()) {
		return errAdmission("admission for a chain other than the owner's")
	}
	if cs.rec.Admitter != "" && cs.rec.Admitter != from {
		return errAdmission("admission from another account than the channel's admitter")
	}
	dm, err := senderkey.NewDistributionMessage(content.ChannelDistribution)
	if err != nil {
		return errAdmission("admission with a malformed distribution")
	}
	if err := private.NewReader(c.storesOn(tx), id).Admit(ctx, signer, dm); err != nil {
		return errAdmission(fmt.Sprintf("admission refused: %v", err))
	}
	cs.rec.Admitter = from
	return c.saveChannel(ctx, tx, cs)
}
