package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/channel/private"
	"github.com/bastionchat/bastion/protocol/senderkey"
)

// admissionLabel starts every admission signature: it keeps the owner's channel key's
// signatures over admissions apart from its signatures over posts and heads (package
// channel uses labels of its own), so one can never be passed off as the other.
const admissionLabel = "bastion channel admission v1\x00"

// admissionMessage is what a private channel's owner signs to admit recipient to the
// chain of signer: the label, the channel id (16), the recipient's account id (16), the
// signer's key (32) and SHA-256 of the distribution message. Naming the recipient stops
// a subscriber from forwarding its admission to someone else as theirs; naming the
// channel and the signer stops it from being moved to another channel or chain.
func admissionMessage(id channel.ID, recipient uuid.UUID, signer channel.PublicKey, dist []byte) []byte {
	h := sha256.Sum256(dist)
	m := make([]byte, 0, len(admissionLabel)+16+16+32+32)
	m = append(m, admissionLabel...)
	m = append(m, id[:]...)
	m = append(m, recipient[:]...)
	m = append(m, signer.Bytes()...)
	return append(m, h[:]...)
}

// signAdmission signs an admission with the owner's key (the key the genesis pins).
func signAdmission(owner *channel.SigningKey, id channel.ID, recipient uuid.UUID, signer channel.PublicKey, dist []byte) []byte {
	return ed25519.Sign(ed25519.NewKeyFromSeed(owner.Bytes()), admissionMessage(id, recipient, signer, dist))
}

// receiveChannelAdmission handles a Content that carries a private channel's Sender Key
// distribution (fields 9 to 12), which arrives inside a 1:1 session from account from.
// It never becomes a message. The rule (docs/channels.md, "Private channels"):
//
//   - the profile must already follow the channel: the genesis it pinned names the
//     owner's key;
//   - ChannelSigner must be the owner's key (only the owner posts in private channels;
//     admins' chains are not distributed);
//   - ChannelAdmissionSig must be the owner key's signature of admissionMessage for this
//     channel, this profile's account and that distribution: only the owner (whoever
//     holds its channel key, on whichever account) admits, so an account that merely
//     knows the profile follows cannot hand it a chain of its own first, and an
//     admission sent to another subscriber cannot be replayed to this one.
//
// The account that sent the last accepted admission is kept as the admitter, for
// display only. Anything else is dropped. Errors are the profile's own (it cannot be
// written); the envelope is then not acknowledged and comes again.
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
	if len(content.ChannelAdmissionSig) != ed25519.SignatureSize {
		return errAdmission("admission without the owner's signature")
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
	owner := cs.v.Owner()
	msg := admissionMessage(id, c.acc.AccountID, signer, content.ChannelDistribution)
	if !ed25519.Verify(ed25519.PublicKey(owner.Bytes()), msg, content.ChannelAdmissionSig) {
		return errAdmission("admission not signed by the channel's owner for this account")
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

// admittedAccount is one subscriber the owner admitted, kept (encrypted) in the
// owner's channel record so that a removal can re-admit everyone else.
type admittedAccount struct {
	Account uuid.UUID `json:"account"`
	Number  string    `json:"number"`
}

// AdmitToChannel admits the account registered with number to a private channel this
// profile owns: it sends the owner's Sender Key distribution for the channel over the
// 1:1 session (never in the clear), signed with the owner's channel key for that
// account. The subscriber must follow the channel first; it reads the posts made from
// then on. The profile remembers whom it admitted ([Client.RemoveFromChannel]).
func (c *Client) AdmitToChannel(ctx context.Context, handle, number string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.privateOwner(ctx, handle, "admits subscribers")
	if err != nil {
		return err
	}
	n, err := NormalizeNumber(number)
	if err != nil {
		return err
	}
	account, err := c.resolve(ctx, n)
	if err != nil {
		return err
	}
	dm, err := private.NewPoster(c.storesOn(c.db), cs.id, cs.key.Public()).Distribution(ctx)
	if err != nil {
		return err
	}
	if err := c.sendAdmission(ctx, cs, account, n, dm.Bytes()); err != nil {
		return err
	}
	if !slices.ContainsFunc(cs.rec.Admitted, func(a admittedAccount) bool { return a.Account == account }) {
		cs.rec.Admitted = append(cs.rec.Admitted, admittedAccount{Account: account, Number: n})
		return c.saveChannel(ctx, c.db, cs)
	}
	return nil
}

// RemoveFromChannel removes the subscriber registered with number from a private
// channel this profile owns: the owner's chain is replaced by a new one (a new chain
// id, chain key and signing key under the channel's distribution id, as a group's
// sender key is rotated) and the new chain is sent to every other admitted subscriber.
// Posts from then on are sealed on the new chain, which the removed subscriber never
// gets; what it read before stays readable to it. It returns how many subscribers were
// re-admitted; a failure to reach one is reported after the others were tried, and
// that one stays on the list (run remove or admit again).
func (c *Client) RemoveFromChannel(ctx context.Context, handle, number string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.privateOwner(ctx, handle, "removes subscribers")
	if err != nil {
		return 0, err
	}
	n, err := NormalizeNumber(number)
	if err != nil {
		return 0, err
	}
	i := slices.IndexFunc(cs.rec.Admitted, func(a admittedAccount) bool { return a.Number == n })
	if i < 0 {
		return 0, fmt.Errorf("%s was not admitted to %s by this profile", n, handle)
	}
	cs.rec.Admitted = slices.Delete(cs.rec.Admitted, i, i+1)
	owner := cs.key.Public()
	addr := private.Address(owner)
	// Forget the owner's chain in the same transaction that forgets the subscriber: the
	// next Distribution makes a new one, and no later post is sealed on the old chain.
	err = c.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM sender_keys WHERE account = ? AND device = ? AND distribution = ?",
			addr.Name, addr.DeviceID, private.DistributionID(cs.id).String()); err != nil {
			return fmt.Errorf("forgetting the channel chain: %w", err)
		}
		return c.saveChannel(ctx, tx, cs)
	})
	if err != nil {
		return 0, err
	}
	dm, err := private.NewPoster(c.storesOn(c.db), cs.id, owner).Distribution(ctx)
	if err != nil {
		return 0, err
	}
	var errs []error
	done := 0
	for _, a := range cs.rec.Admitted {
		if err := c.sendAdmission(ctx, cs, a.Account, a.Number, dm.Bytes()); err != nil {
			errs = append(errs, fmt.Errorf("re-admitting %s: %w", a.Number, err))
			continue
		}
		done++
	}
	if len(errs) > 0 {
		return done, fmt.Errorf("%d of %d subscribers not re-admitted: %w", len(errs), len(cs.rec.Admitted), errs[0])
	}
	return done, nil
}

// ChannelAdmitted lists the numbers this profile admitted to a private channel it owns.
func (c *Client) ChannelAdmitted(ctx context.Context, handle string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.privateOwner(ctx, handle, "lists admitted subscribers")
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(cs.rec.Admitted))
	for _, a := range cs.rec.Admitted {
		out = append(out, a.Number)
	}
	return out, nil
}

// privateOwner loads a private channel this profile owns. The caller holds c.mu.
func (c *Client) privateOwner(ctx context.Context, handle, what string) (*chanState, error) {
	cs, err := c.signerFor(ctx, handle)
	if err != nil {
		return nil, err
	}
	if !cs.owner() || !cs.v.Info().Private {
		return nil, fmt.Errorf("%s: only the owner of a private channel %s", handle, what)
	}
	return cs, nil
}

// sendAdmission sends the owner's signed admission of account to the chain dist
// describes, over the 1:1 session.
func (c *Client) sendAdmission(ctx context.Context, cs *chanState, account uuid.UUID, number string, dist []byte) error {
	owner := cs.key.Public()
	content := Content{SentMS: uint64(c.now().UnixMilli()), ChannelID: bytes.Clone(cs.id[:]), ChannelSigner: owner.Bytes(),
		ChannelDistribution: dist, ChannelAdmissionSig: signAdmission(cs.key, cs.id, account, owner, dist)}
	if _, _, err := c.sendTo(ctx, account, number, encodeContent(&content)); err != nil {
		if isCode(err, api.CodeNotFound) {
			return fmt.Errorf("%s: %w", number, ErrUnknownNumber)
		}
		return err
	}
	return nil
}
