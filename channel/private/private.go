// Package private encrypts the posts of Bastion's private channels with Signal's
// Sender Keys (package protocol/senderkey), the way groups are encrypted.
//
// Each signer of a private channel (its owner, and each admin) has a sending chain
// under the channel's distribution id ([DistributionID]); the owner hands the
// chains' distribution messages to each subscriber it admits, over the 1:1
// sessions. A post's body is the Sender Key ciphertext, and the post's channel
// signature covers that ciphertext (package channel signs the body's hash), so the
// server still checks signatures and the hash chain of a private channel without
// reading it.
//
// What it protects: the content of posts against the server and anyone never
// admitted (they hold no chain key), and each signer's posts against forgery by
// other members (Sender Key messages are signed by the chain's key, the post by the
// channel key). What it does not: the channel's handle, title and description,
// the number, size and times of posts, and who signed each are visible to the
// server; an admitted subscriber reads from its admission on, not before; removing
// a subscriber needs the signers to start new chains and re-admit the others
// (as for groups), which this package leaves to its caller; and a body decrypts
// once (Sender Keys refuse a replay), so clients keep what they decrypted.
package private

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/senderkey"
)

// ErrNotPrivate is returned by [Reader.Open] for a post that carries no
// ciphertext: another kind, a withheld body, or another channel.
var ErrNotPrivate = errors.New("private: not an encrypted post of this channel")

// DistributionID returns the Sender Key distribution id of a channel: its 16-byte
// id, read as a UUID. Distinct channels have distinct ids, so a ciphertext cannot
// be replayed from one into another.
func DistributionID(id channel.ID) uuid.UUID { return uuid.UUID(id) }

// Address returns the Sender Key address of a channel signer. It is not an
// account address: the "channel-signer." prefix keeps a signer's chains apart from
// any group chain of an account in the same store.
func Address(signer channel.PublicKey) protocol.Address {
	return protocol.Address{Name: "channel-signer." + signer.String(), DeviceID: 1}
}

// Poster encrypts the posts one signer makes in one private channel.
type Poster struct {
	store senderkey.Store
	dist  uuid.UUID
	addr  protocol.Address
}

// NewPoster returns the Poster of signer in channel id; store keeps its chain.
func NewPoster(store senderkey.Store, id channel.ID, signer channel.PublicKey) *Poster {
	return &Poster{store: store, dist: DistributionID(id), addr: Address(signer)}
}

// Distribution returns the distribution message of the signer's chain, creating
// the chain on first use. Send it to each admitted subscriber over a 1:1 session,
// never in the clear: it lets its holder read every later post on the chain.
func (p *Poster) Distribution(ctx context.Context) (*senderkey.DistributionMessage, error) {
	m, err := senderkey.Create(ctx, p.store, p.addr, p.dist)
	if err != nil {
		return nil, fmt.Errorf("private channel chain: %w", err)
	}
	return m, nil
}

// Seal encrypts plaintext as the body of the signer's next post or edit.
func (p *Poster) Seal(ctx context.Context, plaintext []byte) ([]byte, error) {
	ct, err := senderkey.Encrypt(ctx, p.store, p.addr, p.dist, plaintext)
	if err != nil {
		return nil, fmt.Errorf("sealing private post: %w", err)
	}
	if len(ct) > channel.MaxBodySize {
		return nil, fmt.Errorf("sealing private post: ciphertext of %d bytes, limit %d", len(ct), channel.MaxBodySize)
	}
	return ct, nil
}

// Reader decrypts the posts of one private channel for an admitted subscriber.
type Reader struct {
	store senderkey.Store
	id    channel.ID
}

// NewReader returns the Reader of channel id; store keeps the chains it is given.
func NewReader(store senderkey.Store, id channel.ID) *Reader {
	return &Reader{store: store, id: id}
}

// Admit stores the chain of signer that m carries. m must have reached the
// subscriber inside an authenticated 1:1 session with the channel's owner.
func (r *Reader) Admit(ctx context.Context, signer channel.PublicKey, m *senderkey.DistributionMessage) error {
	if m.DistributionID() != DistributionID(r.id) {
		return fmt.Errorf("admitting to private channel: %w", ErrNotPrivate)
	}
	if err := senderkey.Process(ctx, r.store, Address(signer), m); err != nil {
		return fmt.Errorf("admitting to private channel: %w", err)
	}
	return nil
}

// Open decrypts the body of a post or edit, which must already have been accepted
// by the subscriber's [channel.Verifier]. Failures wrap the errors of
// protocol/senderkey: ErrNoSenderKey for a signer whose chain the subscriber was
// never given (a non-subscriber, or a post from before its admission).
func (r *Reader) Open(ctx context.Context, p *channel.Post) ([]byte, error) {
	if p.Channel() != r.id || (p.Kind() != channel.KindPost && p.Kind() != channel.KindEdit) || p.Withheld() {
		return nil, ErrNotPrivate
	}
	body := p.Body()
	m, err := senderkey.NewMessage(body)
	if err != nil {
		return nil, fmt.Errorf("opening private post %d: %w", p.Seq(), senderkey.ErrInvalidMessage)
	}
	// The chain is looked up by the message's own distribution id: refuse one that
	// names another group or channel.
	if m.DistributionID() != DistributionID(r.id) {
		return nil, fmt.Errorf("opening private post %d: %w", p.Seq(), ErrNotPrivate)
	}
	pt, err := senderkey.Decrypt(ctx, r.store, Address(p.Signer()), body)
	if err != nil {
		return nil, fmt.Errorf("opening private post %d: %w", p.Seq(), err)
	}
	return pt, nil
}
