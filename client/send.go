package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/curve"
)

// SendResult describes a message the server has accepted durably.
type SendResult struct {
	// Devices is how many of the recipient's devices it was encrypted for.
	Devices int `json:"devices"`
	// ServerTime is the server's timestamp on the envelopes.
	ServerTime time.Time `json:"server_time"`
	// SentAt is the time inside the message (the sender's clock).
	SentAt time.Time `json:"sent_at"`
}

// maxSendAttempts bounds the retries after the server corrects the device list; each
// correction fetches the devices' bundles, so more than a few means something is wrong.
const maxSendAttempts = 4

// Send encrypts text for every device of the account registered with number, and a copy
// for this account's other devices, and hands the envelopes to the server. It returns
// once the server holds them durably.
//
// The first message to a device starts a session from a freshly fetched prekey bundle.
// When the server answers that the device list is wrong (a device was added, removed or
// re-registered), Send fixes its sessions and retries with the same envelope ids, so the
// recipient never gets the message twice. It refuses, with an [*UntrustedIdentityError],
// to encrypt for an identity key that changed until the user accepts it with
// [Client.Trust]. An unknown number is [ErrUnknownNumber].
func (c *Client) Send(ctx context.Context, number, text string) (SendResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.requireAccount(); err != nil {
		return SendResult{}, err
	}
	n, err := NormalizeNumber(number)
	if err != nil {
		return SendResult{}, err
	}
	account, err := c.resolve(ctx, n)
	if err != nil {
		return SendResult{}, err
	}
	if account == c.acc.AccountID {
		return SendResult{}, errors.New("sending to your own number is not supported")
	}
	sent := c.now()
	content := Content{Text: text, SentMS: uint64(sent.UnixMilli()), SenderNumber: c.acc.Number, KTCheckpoint: c.ktGossipNote(ctx)}
	devs, st, err := c.sendTo(ctx, account, n, encodeContent(&content))
	if err != nil {
		if isCode(err, api.CodeNotFound) {
			// The account is gone: forget the stale directory answer.
			c.db.ExecContext(ctx, "DELETE FROM contacts WHERE number = ?", n)
			return SendResult{}, fmt.Errorf("%s: %w", n, ErrUnknownNumber)
		}
		return SendResult{}, err
	}
	// The copy for our own other devices. The message already reached the recipient:
	// a failure here is logged, not returned, so that nobody resends it.
	sync := Content{Text: text, SentMS: content.SentMS, SyncDestination: account}
	if _, _, err := c.sendTo(ctx, c.acc.AccountID, "", encodeContent(&sync)); err != nil {
		c.log.Debug("copy to own devices failed", "err", err)
	}
	return SendResult{Devices: devs, ServerTime: st, SentAt: time.UnixMilli(sent.UnixMilli())}, nil
}

// resolve returns the account registered with number: from the contacts, or from the
// server's directory (and then saved as a contact).
func (c *Client) resolve(ctx context.Context, number string) (uuid.UUID, error) {
	var s string
	err := c.db.QueryRowContext(ctx, "SELECT account FROM contacts WHERE number = ?", number).Scan(&s)
	if err == nil {
		return uuid.Parse(s)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return uuid.Nil, fmt.Errorf("reading contacts: %w", err)
	}
	id, err := c.lookup(ctx, number)
	if err != nil {
		return uuid.Nil, err
	}
	if _, err := c.db.ExecContext(ctx, "INSERT OR REPLACE INTO contacts (number, account) VALUES (?, ?)", number, id.String()); err != nil {
		return uuid.Nil, fmt.Errorf("saving contact: %w", err)
	}
	return id, nil
}

func (c *Client) lookup(ctx context.Context, number string) (uuid.UUID, error) {
	var lr api.LookupResponse
	err := c.api.do(ctx, "POST", "/v1/directory", c.cred(), api.LookupRequest{Number: number}, &lr)
	if isCode(err, api.CodeNotFound) {
		return uuid.Nil, fmt.Errorf("%s: %w", number, ErrUnknownNumber)
	}
	if err != nil {
		return uuid.Nil, fmt.Errorf("looking up the number: %w", err)
	}
	if err := c.ktVerifyLookup(ctx, number, &lr); err != nil {
		return uuid.Nil, err
	}
	return lr.AccountID, nil
}

// sendTo encrypts padded for every device of account and sends it, correcting the
// device list on 409 and 410. Each device's envelope id is drawn once and kept across
// attempts. number names the contact in errors ("" for our own account).
func (c *Client) sendTo(ctx context.Context, account uuid.UUID, number string, padded []byte) (int, time.Time, error) {
	self := account == c.acc.AccountID
	name := account.String()
	ids := map[uint32]uuid.UUID{}
	fetchedAll := false
	cert, err := c.senderCertificate(ctx)
	if err != nil {
		return 0, time.Time{}, err
	}
	for attempt := 0; ; attempt++ {
		st := c.storesOn(c.db)
		if err := st.dropReplacedSessions(ctx, name); err != nil {
			return 0, time.Time{}, err
		}
		devs, err := st.sessionDevices(ctx, name)
		if err != nil {
			return 0, time.Time{}, err
		}
		if len(devs) == 0 && !self && !fetchedAll {
			fetchedAll = true
			// No session yet: one request fetches every device's bundle.
			if err := c.fetchBundles(ctx, account, number, "*"); err != nil {
				return 0, time.Time{}, err
			}
			if devs, err = st.sessionDevices(ctx, name); err != nil {
				return 0, time.Time{}, err
			}
		}
		req, err := c.encryptAll(ctx, cert, account, number, devs, ids, padded)
		if err != nil {
			return 0, time.Time{}, err
		}
		var resp api.SendResponse
		err = c.put(ctx, name, req, &resp)
		if err == nil {
			c.log.Debug("sent", "devices", len(req.Messages), "attempts", attempt+1)
			return len(req.Messages), time.UnixMilli(resp.ServerTime), nil
		}
		var ae *APIError
		if !errors.As(err, &ae) || attempt+1 >= maxSendAttempts {
			return 0, time.Time{}, fmt.Errorf("sending: %w", err)
		}
		switch ae.Body.Code {
		case api.CodeMismatchedDevices:
			for _, d := range ae.Body.ExtraDevices {
				if err := st.deleteSession(ctx, protocol.Address{Name: name, DeviceID: d}); err != nil {
					return 0, time.Time{}, err
				}
				delete(ids, d)
			}
			for _, d := range ae.Body.MissingDevices {
				if err := c.fetchBundles(ctx, account, number, fmt.Sprint(d)); err != nil {
					return 0, time.Time{}, err
				}
			}
		case api.CodeStaleDevices:
			// A re-registered device: a new session from its new bundle (the old state
			// is archived by ProcessPreKeyBundle). Its envelope id stays: the stale
			// envelope was never queued.
			for _, d := range ae.Body.StaleDevices {
				if err := c.fetchBundles(ctx, account, number, fmt.Sprint(d)); err != nil {
					return 0, time.Time{}, err
				}
			}
		default:
			return 0, time.Time{}, fmt.Errorf("sending: %w", err)
		}
		c.log.Debug("device list corrected", "missing", len(ae.Body.MissingDevices),
			"extra", len(ae.Body.ExtraDevices), "stale", len(ae.Body.StaleDevices))
	}
}

// put sends req, and sends the very same bytes again when the connection fails before
// an answer: the first attempt may have been queued, and a repeat with the same envelope
// ids is a no-op on the server while it is queued and dropped by the recipient after.
func (c *Client) put(ctx context.Context, account string, req api.SendRequest, resp *api.SendResponse) error {
	var err error
	for i, wait := range []time.Duration{0, 250 * time.Millisecond, time.Second} {
		if i > 0 {
			c.log.Debug("send interrupted, repeating it", "attempt", i+1)
			select {
			case <-ctx.Done():
				return err
			case <-time.After(wait):
			}
		}
		err = c.api.do(ctx, "PUT", "/v1/messages/"+account, c.cred(), req, resp)
		if !errors.Is(err, ErrUnreachable) {
			return err
		}
	}
	return err
}

// encryptAll encrypts padded once per device in one transaction, so the ratchet steps
// are durable before anything leaves the device.
func (c *Client) encryptAll(ctx context.Context, cert []byte, account uuid.UUID, number string, devs map[uint32]uint32, ids map[uint32]uuid.UUID, padded []byte) (api.SendRequest, error) {
	order := make([]uint32, 0, len(devs))
	for d := range devs {
		order = append(order, d)
	}
	slices.Sort(order)
	req := api.SendRequest{Messages: []api.OutgoingEnvelope{}}
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		st := c.storesOn(tx)
		ci := c.cipherOn(st)
		for _, d := range order {
			addr := protocol.Address{Name: account.String(), DeviceID: d}
			msg, err := ci.Encrypt(ctx, addr, padded, c.now())
			if errors.Is(err, protocol.ErrUntrustedIdentity) {
				return &UntrustedIdentityError{Number: number, Account: account}
			}
			if err != nil {
				return fmt.Errorf("encrypting: %w", err)
			}
			rec, err := st.LoadSession(ctx, addr)
			if err != nil {
				return err
			}
			var remote *curve.PublicKey
			if rec != nil {
				remote, _ = rec.RemoteIdentityKey()
			}
			body, err := c.sealBody(cert, remote, msg)
			if err != nil {
				return err
			}
			id, ok := ids[d]
			if !ok {
				id = uuid.New()
				ids[d] = id
			}
			req.Messages = append(req.Messages, api.OutgoingEnvelope{DeviceID: d, RegistrationID: devs[d], ID: id, Body: body})
		}
		return nil
	})
	return req, err
}

// fetchBundles fetches the bundle of one device of account (or of all, with "*") and
// starts a session with each, after checking the identity key against the stored one.
func (c *Client) fetchBundles(ctx context.Context, account uuid.UUID, number, device string) error {
	var br api.BundleResponse
	if err := c.api.do(ctx, "GET", "/v1/keys/"+account.String()+"/"+device, c.cred(), nil, &br); err != nil {
		if isCode(err, api.CodeNoPreKeys) {
			return fmt.Errorf("the contact's device has no prekeys published: %w", err)
		}
		return fmt.Errorf("fetching prekeys: %w", err)
	}
	key, err := curve.NewPublicKey(br.IdentityKey)
	if err != nil {
		return fmt.Errorf("server sent a bad identity key: %w", err)
	}
	// Before any key of the bundle is trusted: its bindings must be in the log.
	if err := c.ktVerifyBundle(ctx, account, &br); err != nil {
		return err
	}
	return c.inTx(ctx, func(tx *sql.Tx) error {
		st := c.storesOn(tx)
		name := account.String()
		if account != c.acc.AccountID {
			row, err := st.loadIdentity(ctx, name)
			if err != nil {
				return err
			}
			if row != nil && (!row.key.Equal(key) || !row.trusted) {
				// Record the new key (untrusted) so that the user can compare its
				// safety number and accept it; then refuse.
				if _, err := st.SaveIdentity(ctx, protocol.Address{Name: name, DeviceID: 1}, key); err != nil {
					return err
				}
				return errCommitThen{&UntrustedIdentityError{Number: number, Account: account}}
			}
		} else if !key.Equal(c.id.PublicKey()) {
			return errors.New("server sent a foreign identity key for our own account")
		}
		ci := c.cipherOn(st)
		for _, d := range br.Devices {
			var pkID uint32
			var pk []byte
			if d.PreKey != nil {
				pkID, pk = d.PreKey.KeyID, d.PreKey.PublicKey
			}
			b, err := protocol.NewPreKeyBundle(d.RegistrationID, d.DeviceID, pkID, pk,
				d.SignedPreKey.KeyID, d.SignedPreKey.PublicKey, d.SignedPreKey.Signature,
				d.KyberPreKey.KeyID, d.KyberPreKey.PublicKey, d.KyberPreKey.Signature, br.IdentityKey)
			if err != nil {
				return fmt.Errorf("server sent a bad bundle: %w", err)
			}
			err = ci.ProcessPreKeyBundle(ctx, protocol.Address{Name: name, DeviceID: d.DeviceID}, b, c.now())
			if errors.Is(err, protocol.ErrUntrustedIdentity) {
				return &UntrustedIdentityError{Number: number, Account: account}
			}
			if err != nil {
				return fmt.Errorf("starting a session: %w", err)
			}
		}
		return nil
	})
}

// errCommitThen asks inTx's caller to commit and then return the wrapped error.
type errCommitThen struct{ err error }

func (e errCommitThen) Error() string { return e.err.Error() }
func (e errCommitThen) Unwrap() error { return e.err }
