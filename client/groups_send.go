package client

import (
	"bytes"
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
	"github.com/bastionchat/bastion/protocol/sealed"
)

// This file is the multi-recipient send (PUT /v1/messages, issue 8): one request carries
// an envelope for every device of several accounts. Group changes and sender keys use it
// with a 1:1 ciphertext per device; group messages with one sender-key ciphertext sealed
// once per device.

// bodyFunc makes the envelope body for the device addr, whose session's identity key is
// remote, inside the transaction of st.
type bodyFunc func(ctx context.Context, st *stores, addr protocol.Address, remote *curve.PublicKey) ([]byte, error)

// device is a recipient device as its session describes it.
type device struct {
	reg      uint32
	identity *curve.PublicKey
}

// liveDevices returns the devices of account with a current session, each with its
// registration id and identity key, reading each session once. Like
// dropReplacedSessions, it first deletes the sessions made with an identity key other
// than the trusted one stored for the account (after [Client.Trust] they are dead).
func liveDevices(ctx context.Context, st *stores, account string) (map[uint32]device, error) {
	row, err := st.loadIdentity(ctx, account)
	if err != nil {
		return nil, err
	}
	rows, err := st.q.QueryContext(ctx, "SELECT device FROM sessions WHERE account = ?", account)
	if err != nil {
		return nil, fmt.Errorf("listing sessions: %w", err)
	}
	var ds []uint32
	for rows.Next() {
		var d uint32
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing sessions: %w", err)
		}
		ds = append(ds, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing sessions: %w", err)
	}
	out := make(map[uint32]device, len(ds))
	for _, d := range ds {
		addr := protocol.Address{Name: account, DeviceID: d}
		rec, err := st.LoadSession(ctx, addr)
		if err != nil {
			return nil, err
		}
		if rec == nil || !rec.HasCurrentState() {
			continue
		}
		k, ok := rec.RemoteIdentityKey()
		if !ok {
			continue
		}
		if row != nil && row.trusted && !k.Equal(row.key) {
			if err := st.deleteSession(ctx, addr); err != nil {
				return nil, err
			}
			continue
		}
		reg, _ := rec.RemoteRegistrationID()
		out[d] = device{reg: reg, identity: k}
	}
	return out, nil
}

// multiResult is what a multi-recipient send reached.
type multiResult struct {
	// Devices are the devices the envelopes went to, by account.
	Devices    map[uuid.UUID][]uint32
	ServerTime time.Time
	// Gone are accounts the server no longer knows: nothing was sent to them.
	Gone []uuid.UUID
}

func (r multiResult) count() int {
	n := 0
	for _, d := range r.Devices {
		n += len(d)
	}
	return n
}

// multiSend sends one envelope to every device of every account in accounts (this device
// excepted; this account's other devices included when it is listed), each body made by
// body in one transaction so that ratchet steps are durable before anything leaves. It
// starts sessions from fetched bundles with accounts it has none with, and when the server
// answers that device lists are wrong (409, 410), it fixes every account it names and
// tries again, at most maxSendAttempts times, with each device's envelope id kept so that
// a retry never delivers twice. ready, when set, runs before the bodies of each attempt
// are made, with the devices about to be addressed (a group send hands them its sender key
// there). Accounts the server does not know are dropped and reported in Gone. The caller
// holds c.mu.
func (c *Client) multiSend(ctx context.Context, accounts []uuid.UUID, ready func(map[uuid.UUID][]uint32) error, body bodyFunc) (multiResult, error) {
	var res multiResult
	accounts = slices.Clone(accounts)
	slices.SortFunc(accounts, compareIDs)
	accounts = slices.Compact(accounts)
	ids := map[protocol.Address]uuid.UUID{}
	fetched := map[uuid.UUID]bool{}
	for attempt := 0; ; attempt++ {
		st := c.storesOn(c.db)
		devs := map[uuid.UUID][]uint32{}
		info := map[protocol.Address]device{}
		var live []uuid.UUID
		for _, acct := range accounts {
			name := acct.String()
			self := acct == c.acc.AccountID
			ds, err := liveDevices(ctx, st, name)
			if err != nil {
				return res, err
			}
			if len(ds) == 0 && !self && !fetched[acct] {
				fetched[acct] = true
				err := c.fetchBundles(ctx, acct, "", "*")
				if isCode(err, api.CodeNotFound) {
					res.Gone = append(res.Gone, acct)
					continue
				}
				if err != nil {
					return res, err
				}
				if ds, err = liveDevices(ctx, st, name); err != nil {
					return res, err
				}
			}
			live = append(live, acct)
			for d, dv := range ds {
				if self && d == c.acc.DeviceID {
					continue
				}
				devs[acct] = append(devs[acct], d)
				info[protocol.Address{Name: name, DeviceID: d}] = dv
			}
			slices.Sort(devs[acct])
		}
		accounts = live
		if len(accounts) == 0 {
			res.ServerTime = c.now()
			return res, nil
		}
		if ready != nil {
			if err := ready(devs); err != nil {
				return res, err
			}
		}
		req := api.MultiSendRequest{Recipients: make([]api.Recipient, 0, len(accounts))}
		err := c.inTx(ctx, func(tx *sql.Tx) error {
			st := c.storesOn(tx)
			for _, acct := range accounts {
				r := api.Recipient{Account: acct, Messages: []api.OutgoingEnvelope{}}
				for _, d := range devs[acct] {
					addr := protocol.Address{Name: acct.String(), DeviceID: d}
					b, err := body(ctx, st, addr, info[addr].identity)
					if err != nil {
						return err
					}
					id, ok := ids[addr]
					if !ok {
						id = uuid.New()
						ids[addr] = id
					}
					r.Messages = append(r.Messages, api.OutgoingEnvelope{DeviceID: d, RegistrationID: info[addr].reg, ID: id, Body: b})
				}
				req.Recipients = append(req.Recipients, r)
			}
			return nil
		})
		if err != nil {
			return res, err
		}
		var resp api.SendResponse
		err = c.putMulti(ctx, req, &resp)
		if err == nil {
			res.Devices, res.ServerTime = devs, time.UnixMilli(resp.ServerTime)
			c.log.Debug("multi-recipient send", "devices", res.count(), "attempts", attempt+1)
			return res, nil
		}
		var ae *APIError
		if !errors.As(err, &ae) || attempt+1 >= maxSendAttempts ||
			(ae.Body.Code != api.CodeMismatchedDevices && ae.Body.Code != api.CodeStaleDevices) {
			return res, fmt.Errorf("sending: %w", err)
		}
		if err := c.correctDevices(ctx, st, ae.Body.Accounts, ids, &accounts, &res); err != nil {
			return res, err
		}
		c.log.Debug("device lists corrected", "accounts", len(ae.Body.Accounts))
	}
}

// correctDevices applies a 409/410 answer of a multi-recipient send: sessions with extra
// devices are dropped, missing and re-registered devices get sessions from fresh bundles,
// unknown accounts leave the send.
func (c *Client) correctDevices(ctx context.Context, st *stores, bad []api.AccountMismatch, ids map[protocol.Address]uuid.UUID, accounts *[]uuid.UUID, res *multiResult) error {
	for _, m := range bad {
		name := m.Account.String()
		if m.Unknown {
			*accounts = slices.DeleteFunc(*accounts, func(a uuid.UUID) bool { return a == m.Account })
			res.Gone = append(res.Gone, m.Account)
			continue
		}
		for _, d := range m.ExtraDevices {
			addr := protocol.Address{Name: name, DeviceID: d}
			if err := st.deleteSession(ctx, addr); err != nil {
				return err
			}
			delete(ids, addr)
		}
		// A re-registered (stale) device keeps its envelope id: the stale envelope was
		// never queued.
		for _, d := range append(slices.Clone(m.MissingDevices), m.StaleDevices...) {
			if err := c.fetchBundles(ctx, m.Account, "", fmt.Sprint(d)); err != nil {
				return err
			}
		}
	}
	return nil
}

// putMulti is put for PUT /v1/messages: the very same bytes are sent again when the
// connection fails before an answer, which the envelope ids make harmless.
func (c *Client) putMulti(ctx context.Context, req api.MultiSendRequest, resp *api.SendResponse) error {
	var err error
	for i, wait := range []time.Duration{0, 250 * time.Millisecond, time.Second} {
		if i > 0 {
			select {
			case <-ctx.Done():
				return err
			case <-time.After(wait):
			}
		}
		err = c.api.do(ctx, "PUT", "/v1/messages", c.cred(), req, resp)
		if !errors.Is(err, ErrUnreachable) {
			return err
		}
	}
	return err
}

// sessionBodies returns a bodyFunc that encrypts plaintext[account] (padded Content) in
// each device's 1:1 session and seals it.
func (c *Client) sessionBodies(cert []byte, plaintext func(account uuid.UUID) []byte) bodyFunc {
	return func(ctx context.Context, st *stores, addr protocol.Address, remote *curve.PublicKey) ([]byte, error) {
		acct, err := uuid.Parse(addr.Name)
		if err != nil {
			return nil, err
		}
		msg, err := c.cipherOn(st).Encrypt(ctx, addr, plaintext(acct), c.now())
		if errors.Is(err, protocol.ErrUntrustedIdentity) {
			return nil, &UntrustedIdentityError{Number: c.numberOn(ctx, st.q, acct), Account: acct}
		}
		if err != nil {
			return nil, fmt.Errorf("encrypting: %w", err)
		}
		return c.sealBody(cert, remote, msg)
	}
}

// senderKeyBodies returns a bodyFunc that seals one sender-key message for each device,
// naming the group (sealed sender v1, type SenderKey, with the group id, as libsignal's
// multi-recipient sends do).
func (c *Client) senderKeyBodies(cert, skm []byte, gid []byte) bodyFunc {
	return func(ctx context.Context, st *stores, addr protocol.Address, remote *curve.PublicKey) ([]byte, error) {
		b, err := sealed.Encrypt(c.rand, remote, c.id, cert, sealed.TypeSenderKey, skm, gid)
		if err != nil {
			return nil, fmt.Errorf("sealing: %w", err)
		}
		return b, nil
	}
}

func compareIDs(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) }
