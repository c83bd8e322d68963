package client

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/protocol"
)

// RequestCode asks the server to send a verification code to number by SMS (the
// development server prints it instead). The profile remembers the pending session, so
// [Client.Verify] may run in another process.
func (c *Client) RequestCode(ctx context.Context, number string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.acc != nil {
		return ErrAlreadyRegistered
	}
	n, err := NormalizeNumber(number)
	if err != nil {
		return err
	}
	var resp api.VerificationResponse
	if err := c.api.do(ctx, "POST", "/v1/verification", nil, api.CreateVerificationRequest{Number: n}, &resp); err != nil {
		return fmt.Errorf("requesting a code: %w", err)
	}
	c.log.Debug("verification code requested")
	return c.inTx(ctx, func(tx *sql.Tx) error {
		if err := setMeta(ctx, tx, metaNumber, []byte(n)); err != nil {
			return err
		}
		if err := setMeta(ctx, tx, metaServer, []byte(c.api.base.String())); err != nil {
			return err
		}
		return setMeta(ctx, tx, metaPending, []byte(resp.SessionID))
	})
}

// Number of one-time prekeys of each kind uploaded at registration and topped up to;
// the server accepts at most 100 per upload.
const (
	preKeyBatch  = 100
	preKeyRefill = 20 // replenish when fewer than this many are left on the server
)

// Verify proves the code sent by [Client.RequestCode], then registers: it generates the
// identity key, registration id, a signed prekey, a last-resort Kyber prekey and 100
// one-time prekeys of each kind, uploads the public halves and stores the private ones.
// A wrong code is a [*CodeError].
func (c *Client) Verify(ctx context.Context, code string) (Account, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.acc != nil {
		return Account{}, ErrAlreadyRegistered
	}
	session, err := getMeta(ctx, c.db, metaPending)
	if err != nil {
		return Account{}, err
	}
	if len(session) == 0 {
		return Account{}, ErrNoPendingCode
	}
	var vr api.VerificationResponse
	err = c.api.do(ctx, "PUT", "/v1/verification/"+string(session)+"/code", nil, api.SubmitCodeRequest{Code: code}, &vr)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Body.Code == api.CodeIncorrectCode {
			left := -1
			if ae.Body.AttemptsLeft != nil {
				left = *ae.Body.AttemptsLeft
			}
			return Account{}, &CodeError{AttemptsLeft: left}
		}
		return Account{}, fmt.Errorf("verifying the code: %w", err)
	}

	identity, err := protocol.GenerateIdentityKeyPair(c.rand)
	if err != nil {
		return Account{}, err
	}
	regID, err := newRegistrationID()
	if err != nil {
		return Account{}, err
	}
	now := c.now()
	spk, err := protocol.GenerateSignedPreKey(c.rand, identity, 1, now)
	if err != nil {
		return Account{}, err
	}
	lastResort, err := protocol.GenerateKyberPreKey(c.rand, identity, 1, now)
	if err != nil {
		return Account{}, err
	}
	pks, kpks, err := c.generateOneTime(identity, 2, 2, preKeyBatch, preKeyBatch)
	if err != nil {
		return Account{}, err
	}
	req := api.RegisterRequest{
		SessionID:       string(session),
		IdentityKey:     identity.PublicKey().Bytes(),
		RegistrationID:  regID,
		SignedPreKey:    signedWire(spk),
		KyberLastResort: kyberWire(lastResort),
		PreKeys:         preKeysWire(pks),
		KyberPreKeys:    kyberPreKeysWire(kpks),
	}
	var rr api.RegisterResponse
	if err := c.api.do(ctx, "POST", "/v1/accounts", nil, req, &rr); err != nil {
		return Account{}, fmt.Errorf("registering: %w", err)
	}
	c.log.Debug("registered", "reregistered", rr.Reregistered)

	number, err := getMeta(ctx, c.db, metaNumber)
	if err != nil {
		return Account{}, err
	}
	err = c.inTx(ctx, func(tx *sql.Tx) error {
		st := &stores{q: tx, s: c.seal, now: c.now}
		u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
		for k, v := range map[string][]byte{
			metaAccount:    []byte(rr.AccountID.String()),
			metaDevice:     u32(rr.DeviceID),
			metaRegID:      u32(regID),
			metaPassword:   c.seal.seal([]byte(rr.Password), metaPassword),
			metaIdentity:   c.seal.seal(identity.Bytes(), metaIdentity),
			metaNextSigned: u32(2),
			metaNextPreKey: u32(2 + preKeyBatch),
			metaNextKyber:  u32(2 + preKeyBatch),
		} {
			if err := setMeta(ctx, tx, k, v); err != nil {
				return err
			}
		}
		if err := delMeta(ctx, tx, metaPending); err != nil {
			return err
		}
		if err := st.storeSignedPreKey(ctx, spk); err != nil {
			return err
		}
		if err := st.storeKyberPreKey(ctx, lastResort, true); err != nil {
			return err
		}
		for _, p := range pks {
			if err := st.storePreKey(ctx, p); err != nil {
				return err
			}
		}
		for _, p := range kpks {
			if err := st.storeKyberPreKey(ctx, p, false); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// The server has the account but we could not store its keys: the user must
		// register again, which replaces them.
		return Account{}, fmt.Errorf("storing the new account (register again): %w", err)
	}
	c.id, c.reg, c.pw = identity, regID, rr.Password
	c.acc = &Account{
		Number: string(number), AccountID: rr.AccountID, DeviceID: rr.DeviceID,
		Server: c.api.base.String(), IdentityKey: identity.PublicKey().Bytes(),
	}
	if err := c.fetchTrustRoot(ctx); err != nil {
		// Registered all the same; the root is fetched again before it is needed.
		c.log.Debug("trust root not fetched", "err", err)
	}
	return *c.acc, nil
}

// newRegistrationID draws libsignal's registration id: 1..16380.
func newRegistrationID() (uint32, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(16380))
	if err != nil {
		return 0, err
	}
	return uint32(n.Int64()) + 1, nil
}

func (c *Client) generateOneTime(identity *protocol.IdentityKeyPair, ecFrom, kyberFrom uint32, ecN, kyberN int) ([]*protocol.PreKeyRecord, []*protocol.KyberPreKeyRecord, error) {
	pks := make([]*protocol.PreKeyRecord, 0, ecN)
	for i := range ecN {
		p, err := protocol.GeneratePreKey(c.rand, ecFrom+uint32(i))
		if err != nil {
			return nil, nil, err
		}
		pks = append(pks, p)
	}
	kpks := make([]*protocol.KyberPreKeyRecord, 0, kyberN)
	now := c.now()
	for i := range kyberN {
		p, err := protocol.GenerateKyberPreKey(c.rand, identity, kyberFrom+uint32(i), now)
		if err != nil {
			return nil, nil, err
		}
		kpks = append(kpks, p)
	}
	return pks, kpks, nil
}

func signedWire(p *protocol.SignedPreKeyRecord) api.SignedPreKey {
	return api.SignedPreKey{KeyID: p.ID, PublicKey: p.PublicKey().Bytes(), Signature: p.Signature}
}

func kyberWire(p *protocol.KyberPreKeyRecord) api.SignedPreKey {
	return api.SignedPreKey{KeyID: p.ID, PublicKey: p.KeyPair.Public.Bytes(), Signature: p.Signature}
}

func preKeysWire(ps []*protocol.PreKeyRecord) []api.PreKey {
	out := make([]api.PreKey, len(ps))
	for i, p := range ps {
		out[i] = api.PreKey{KeyID: p.ID, PublicKey: p.PublicKey().Bytes()}
	}
	return out
}

func kyberPreKeysWire(ps []*protocol.KyberPreKeyRecord) []api.SignedPreKey {
	out := make([]api.SignedPreKey, len(ps))
	for i, p := range ps {
		out[i] = kyberWire(p)
	}
	return out
}
