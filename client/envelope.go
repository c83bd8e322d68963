package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/certificate"
	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/sealed"
)

// This file is the one place where envelope bodies are made and read: the seam between
// the Signal ciphertext and what the server stores. A body is a sealed-sender v1
// message (package protocol/sealed, libsignal's UnidentifiedSenderMessage): it names
// neither the sender's account nor its device nor its identity key to the server;
// inside it, the server-signed sender certificate tells the recipient who sent it.

// opened is a read envelope body.
type opened struct {
	sender     protocol.Address
	typ        protocol.MessageType
	ciphertext []byte
	// senderIdentity is the identity key the sender certificate vouches for: it must
	// equal the identity of the session that decrypts the ciphertext.
	senderIdentity *curve.PublicKey
	// groupID is the group a sender-key message (sealed.TypeSenderKey) names.
	groupID []byte
}

var errBadBody = errors.New("envelope: invalid body")

// certRefresh is how long before its expiry a sender certificate is replaced, so that
// a message queued for a while still carries a certificate valid when it is opened
// (the server issues them for 24 hours; recipients refuse expired ones).
const certRefresh = 12 * time.Hour

// senderCertificate returns this device's sender certificate, fetching a new one from
// the server when the stored one expires within certRefresh.
func (c *Client) senderCertificate(ctx context.Context) ([]byte, error) {
	b, err := getMeta(ctx, c.db, metaSenderCert)
	if err != nil {
		return nil, err
	}
	if len(b) > 0 {
		if cert, err := certificate.ParseSender(b); err == nil && cert.Expires.Sub(c.now()) > certRefresh {
			return b, nil
		}
	}
	var resp struct {
		Certificate []byte `json:"certificate"`
	}
	if err := c.api.do(ctx, "GET", "/v1/certificate/delivery", c.cred(), nil, &resp); err != nil {
		return nil, fmt.Errorf("fetching a sender certificate: %w", err)
	}
	cert, err := certificate.ParseSender(resp.Certificate)
	if err != nil {
		return nil, fmt.Errorf("server sent a bad sender certificate: %w", err)
	}
	root, err := c.trustRoot(ctx)
	if err != nil {
		return nil, err
	}
	// Checked here so that a bad certificate fails our send, not every recipient.
	if err := cert.Validate(root, c.now()); err != nil {
		return nil, fmt.Errorf("server sent an untrusted sender certificate: %w", err)
	}
	if !cert.IdentityKey.Equal(c.id.PublicKey()) || cert.SenderUUID != c.acc.AccountID || cert.DeviceID != c.acc.DeviceID {
		return nil, errors.New("server sent a sender certificate for another device or key")
	}
	if err := setMeta(ctx, c.db, metaSenderCert, resp.Certificate); err != nil {
		return nil, err
	}
	return resp.Certificate, nil
}

// trustRoot returns the sealed-sender trust root pinned in the profile.
func (c *Client) trustRoot(ctx context.Context) (*curve.PublicKey, error) {
	b, err := getMeta(ctx, c.db, metaTrustRoot)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		if err := c.fetchTrustRoot(ctx); err != nil {
			return nil, err
		}
		if b, err = getMeta(ctx, c.db, metaTrustRoot); err != nil {
			return nil, err
		}
	}
	return curve.NewPublicKey(b)
}

// fetchTrustRoot pins the server's sealed-sender trust root in the profile. It is
// fetched once, at registration, over the same connection that registers (trust on
// first use, like the server itself); a later change is never accepted silently.
func (c *Client) fetchTrustRoot(ctx context.Context) error {
	var resp struct {
		TrustRoot []byte `json:"trust_root"`
	}
	if err := c.api.do(ctx, "GET", "/v1/certificate/trust-root", nil, nil, &resp); err != nil {
		return fmt.Errorf("fetching the sealed-sender trust root: %w", err)
	}
	if _, err := curve.NewPublicKey(resp.TrustRoot); err != nil {
		return fmt.Errorf("server sent a bad trust root: %w", err)
	}
	return setMeta(ctx, c.db, metaTrustRoot, resp.TrustRoot)
}

// sealBody wraps one device's ciphertext, for the device with identity key recipient,
// into an envelope body, with this device's sender certificate cert inside.
func (c *Client) sealBody(cert []byte, recipient *curve.PublicKey, msg protocol.CiphertextMessage) ([]byte, error) {
	if recipient == nil {
		return nil, errors.New("no identity key for the recipient")
	}
	b, err := sealed.Encrypt(c.rand, recipient, c.id, cert, msg.Type(), msg.Bytes(), nil)
	if err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	return b, nil
}

// openBody reads an envelope body that the server accepted at serverTime. Every
// failure is errBadBody.
//
// The sender certificate is checked as of serverTime, as libsignal's apps do: it must
// have been valid when the message was sent, since a message may wait in the queue for
// longer than a certificate lives (24 hours). The server could lie about the time, but
// a lying server could as well issue a fresh certificate.
func (c *Client) openBody(root *curve.PublicKey, body []byte, serverTime time.Time) (*opened, error) {
	sc, err := sealed.DecryptFor(body, c.id, c.local(), root, serverTime)
	if err != nil {
		return nil, errBadBody
	}
	if sc.Type != protocol.TypeSignal && sc.Type != protocol.TypePreKey && sc.Type != sealed.TypeSenderKey {
		return nil, errBadBody // the plaintext type is not used yet
	}
	return &opened{sender: sc.Sender, typ: sc.Type, ciphertext: sc.Body, senderIdentity: sc.Certificate.IdentityKey, groupID: sc.GroupID}, nil
}
