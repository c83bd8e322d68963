package client

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/channel/private"
)

// maxPublishAttempts bounds the retries of a post that lost the race for its place to
// another signer (409 channel_conflict): each retry fetches the newer posts first.
const maxPublishAttempts = 5

// PostToChannel publishes text as a new post; it returns the post's sequence number.
// In a private channel the text is sealed for the admitted subscribers first.
func (c *Client) PostToChannel(ctx context.Context, handle, text string) (uint64, error) {
	return c.publishText(ctx, handle, channel.KindPost, 0, text)
}

// EditChannelPost replaces the text of post seq; it returns the edit's sequence number.
func (c *Client) EditChannelPost(ctx context.Context, handle string, seq uint64, text string) (uint64, error) {
	return c.publishText(ctx, handle, channel.KindEdit, seq, text)
}

// DeleteChannelPost retracts post seq; it returns the delete's sequence number.
func (c *Client) DeleteChannelPost(ctx context.Context, handle string, seq uint64) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.signerFor(ctx, handle)
	if err != nil {
		return 0, err
	}
	return c.publish(ctx, cs, nil, func(uint64) channel.Draft {
		return channel.Draft{Kind: channel.KindDelete, Ref: seq, Time: c.now()}
	})
}

func (c *Client) publishText(ctx context.Context, handle string, kind channel.Kind, ref uint64, text string) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.signerFor(ctx, handle)
	if err != nil {
		return 0, err
	}
	body := []byte(text)
	var plain []byte
	if cs.v.Info().Private {
		if !cs.owner() {
			// An admin's chain would have to reach every subscriber from the admin's
			// own device; not supported yet (docs/channels.md, "Using channels").
			return 0, fmt.Errorf("%s: only the owner posts in a private channel", handle)
		}
		plain = body
		if body, err = private.NewPoster(c.storesOn(c.db), cs.id, cs.key.Public()).Seal(ctx, body); err != nil {
			return 0, err
		}
	}
	return c.publish(ctx, cs, plain, func(uint64) channel.Draft {
		return channel.Draft{Kind: kind, Ref: ref, Body: body, Time: c.now()}
	})
}

// signerFor loads a channel the profile may sign in. The caller holds c.mu.
func (c *Client) signerFor(ctx context.Context, handle string) (*chanState, error) {
	cs, err := c.channelFor(ctx, handle)
	if err != nil {
		return nil, err
	}
	if cs.key == nil {
		return nil, fmt.Errorf("%s: %w", handle, ErrNotChannelSigner)
	}
	return cs, nil
}

// publish signs draft(seq) after the newest post cs holds and submits it, with an
// owner head when cs is the owner's. If another signer took the place first (409
// channel_conflict), it fetches the newer posts, signs again after them and retries,
// up to maxPublishAttempts times. plain is the plaintext of a private post, kept so
// that the owner can read its own posts.
func (c *Client) publish(ctx context.Context, cs *chanState, plain []byte, draft func(seq uint64) channel.Draft) (uint64, error) {
	if !cs.owner() {
		// An admin learns of its own delegation, and of the posts of the others, only
		// by reading: catch up before signing.
		if err := c.catchUp(ctx, cs); err != nil {
			return 0, err
		}
	}
	for attempt := 1; ; attempt++ {
		last, _ := cs.v.Last()
		p, err := cs.v.Next(cs.key, draft(last+1))
		if err != nil {
			return 0, err
		}
		next, err := cloneVerifier(cs.v)
		if err != nil {
			return 0, err
		}
		if _, err := next.Accept(p); err != nil {
			// The rules forbid it (an edit of a deleted post, a revoked key): refuse
			// here rather than have the server refuse it.
			return 0, fmt.Errorf("%v: %w", cs.v.Info().Handle, err)
		}
		req := api.PostRequest{Post: p.Bytes()}
		if cs.owner() {
			head, err := next.SignHead(cs.key, c.now())
			if err != nil {
				return 0, err
			}
			req.Head = head.Bytes()
		}
		var resp api.PostResponse
		err = c.api.do(ctx, "POST", channelPath(cs.id, "/posts"), c.cred(), req, &resp)
		if err == nil {
			cs.v = next
			sp := &storedPost{Post: p.Bytes(), Plain: plain}
			if err := c.inTx(ctx, func(tx *sql.Tx) error {
				if err := c.putPost(ctx, tx, cs.id, p.Seq(), sp); err != nil {
					return err
				}
				return c.saveChannel(ctx, tx, cs)
			}); err != nil {
				return 0, err
			}
			return p.Seq(), nil
		}
		if !isCode(err, api.CodeChannelConflict) || attempt >= maxPublishAttempts {
			return 0, fmt.Errorf("posting to %v: %w", cs.v.Info().Handle, err)
		}
		c.log.Debug("channel post lost its place, signing again", "attempt", attempt)
		if err := c.catchUp(ctx, cs); err != nil {
			return 0, err
		}
	}
}

// catchUp pulls and keeps the posts the server has after the newest cs holds.
func (c *Client) catchUp(ctx context.Context, cs *chanState) error {
	got, voided, err := c.pull(ctx, cs)
	if kerr := c.keep(ctx, cs, got, voided); kerr != nil {
		return kerr
	}
	return err
}

func cloneVerifier(v *channel.Verifier) (*channel.Verifier, error) {
	b, err := v.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return channel.UnmarshalVerifier(b)
}

// ChannelAdminKey returns this profile's admin key for a channel it follows, making
// it on first use. The owner delegates it with [Client.AddChannelAdmin]; until then
// posts signed with it are refused by everyone.
func (c *Client) ChannelAdminKey(ctx context.Context, handle string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.channelFor(ctx, handle)
	if err != nil {
		return "", err
	}
	if cs.owner() {
		return "", fmt.Errorf("%s: this profile owns the channel; its owner key needs no delegation", handle)
	}
	if cs.key == nil {
		if cs.key, err = channel.GenerateSigningKey(c.rand); err != nil {
			return "", err
		}
		if err := c.saveChannel(ctx, c.db, cs); err != nil {
			return "", err
		}
	}
	return cs.key.Public().String(), nil
}

func parseKeyHex(s string) (channel.PublicKey, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return channel.PublicKey{}, fmt.Errorf("admin key %q: want 64 hex digits", s)
	}
	k, err := channel.NewPublicKey(b)
	if err != nil {
		return channel.PublicKey{}, fmt.Errorf("admin key %q: %w", s, err)
	}
	return k, nil
}

// AddChannelAdmin delegates keyHex (an admin's [Client.ChannelAdminKey]) from the
// next post on, with no end. Only the owner can; it returns the delegation's seq.
func (c *Client) AddChannelAdmin(ctx context.Context, handle, keyHex string) (uint64, error) {
	return c.control(ctx, handle, keyHex, func(k channel.PublicKey, seq uint64) channel.Draft {
		return channel.Delegation{Key: k, From: seq + 1}.Draft(c.now())
	})
}

// RevokeChannelAdmin revokes keyHex from the next post on: every later post it signs
// is refused by every subscriber. Only the owner can; it returns the revocation's seq.
func (c *Client) RevokeChannelAdmin(ctx context.Context, handle, keyHex string) (uint64, error) {
	return c.control(ctx, handle, keyHex, func(k channel.PublicKey, seq uint64) channel.Draft {
		return channel.Revocation{Key: k, From: seq + 1}.Draft(c.now())
	})
}

func (c *Client) control(ctx context.Context, handle, keyHex string, draft func(channel.PublicKey, uint64) channel.Draft) (uint64, error) {
	k, err := parseKeyHex(keyHex)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.signerFor(ctx, handle)
	if err != nil {
		return 0, err
	}
	if !cs.owner() {
		return 0, fmt.Errorf("%s: only the owner delegates and revokes admin keys", handle)
	}
	return c.publish(ctx, cs, nil, func(seq uint64) channel.Draft { return draft(k, seq) })
}

// ChannelAdmins fetches and verifies the channel's new posts, then lists its admin
// keys as of the newest post the profile accepted (also when the server served
// something it refused, together with that error).
func (c *Client) ChannelAdmins(ctx context.Context, handle string) ([]ChannelAdmin, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, err := c.channelFor(ctx, handle)
	if err != nil {
		return nil, err
	}
	err = c.catchUp(ctx, cs)
	var out []ChannelAdmin
	for _, g := range cs.v.Grants() {
		out = append(out, ChannelAdmin{Key: g.Key.String(), From: g.From, Until: g.Until, RevokedFrom: g.RevokedFrom})
	}
	return out, err
}

// ReportChannelPost reports post seq to the operator (EU DSA Art. 16): reason is
// api.ReportIllegal or api.ReportTerms, text says why. The server keeps no record of
// who reported. It returns the report's id. The profile need not follow the channel.
func (c *Client) ReportChannelPost(ctx context.Context, handle string, seq uint64, reason, text string) (string, error) {
	if reason != api.ReportIllegal && reason != api.ReportTerms {
		return "", fmt.Errorf("report reason %q: want %s or %s", reason, api.ReportIllegal, api.ReportTerms)
	}
	if len(text) > api.MaxReportText {
		return "", fmt.Errorf("report text of %d bytes: the limit is %d", len(text), api.MaxReportText)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	id, err := c.resolveChannel(ctx, handle)
	if err != nil {
		return "", err
	}
	var resp api.ReportResponse
	if err := c.api.do(ctx, "POST", channelPath(id, "/reports"), c.cred(), api.ReportRequest{Seq: seq, Reason: reason, Text: text}, &resp); err != nil {
		return "", fmt.Errorf("reporting: %w", err)
	}
	return resp.ID, nil
}
