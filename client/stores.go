package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/senderkey"
)

// stores implements every protocol store on the profile database, through q: the
// database itself, or one transaction when a decryption must commit together with the
// message it yields.
type stores struct {
	q        querier
	s        *sealer
	identity *protocol.IdentityKeyPair
	regID    uint32
	now      func() time.Time

	// replaced is set when SaveIdentity replaced a contact's key during this store's
	// life (one envelope's transaction), so the message can say the key changed.
	replaced bool
}

var (
	_ protocol.IdentityStore     = (*stores)(nil)
	_ protocol.SessionStore      = (*stores)(nil)
	_ protocol.PreKeyStore       = (*stores)(nil)
	_ protocol.SignedPreKeyStore = (*stores)(nil)
	_ protocol.KyberPreKeyStore  = (*stores)(nil)
	_ senderkey.Store            = (*stores)(nil)
)

func (st *stores) protocolStores() protocol.Stores {
	return protocol.Stores{Identity: st, Sessions: st, PreKeys: st, SignedPreKeys: st, KyberPreKeys: st}
}

// LocalIdentity implements [protocol.IdentityStore].
func (st *stores) LocalIdentity(context.Context) (*protocol.IdentityKeyPair, uint32, error) {
	if st.identity == nil {
		return nil, 0, ErrNotRegistered
	}
	return st.identity, st.regID, nil
}

// identityRow is a contact's identity as stored.
type identityRow struct {
	key     *curve.PublicKey
	trusted bool
	changed bool
}

func (st *stores) loadIdentity(ctx context.Context, account string) (*identityRow, error) {
	var key []byte
	var trusted, changed bool
	err := st.q.QueryRowContext(ctx, "SELECT key, trusted, changed FROM identities WHERE account = ?", account).Scan(&key, &trusted, &changed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading identity: %w", err)
	}
	k, err := curve.NewPublicKey(key)
	if err != nil {
		return nil, fmt.Errorf("stored identity: %w", err)
	}
	return &identityRow{key: k, trusted: trusted, changed: changed}, nil
}

// IsTrustedIdentity implements [protocol.IdentityStore] with Signal's rule: a key never
// seen is trusted (trust on first use); a message is accepted from a changed key (the
// change is recorded by SaveIdentity and reported); but nothing is sent to a key unless
// it is the one stored and the user has not been told of a change they did not accept.
func (st *stores) IsTrustedIdentity(ctx context.Context, addr protocol.Address, key *curve.PublicKey, d protocol.Direction) (bool, error) {
	row, err := st.loadIdentity(ctx, addr.Name)
	if err != nil || row == nil {
		return row == nil && err == nil, err
	}
	if d == protocol.Receiving {
		return true, nil
	}
	return row.trusted && row.key.Equal(key), nil
}

// SaveIdentity implements [protocol.IdentityStore]. The first key for an account is
// trusted; a different key later replaces it untrusted until [Client.Trust].
func (st *stores) SaveIdentity(ctx context.Context, addr protocol.Address, key *curve.PublicKey) (bool, error) {
	row, err := st.loadIdentity(ctx, addr.Name)
	if err != nil {
		return false, err
	}
	now := st.now().UnixMilli()
	switch {
	case row == nil:
		_, err = st.q.ExecContext(ctx, "INSERT INTO identities (account, key, trusted, changed, updated_ms) VALUES (?, ?, 1, 0, ?)",
			addr.Name, key.Bytes(), now)
		return false, wrap("saving identity", err)
	case row.key.Equal(key):
		return false, nil
	default:
		_, err = st.q.ExecContext(ctx, "UPDATE identities SET key = ?, trusted = 0, changed = 1, updated_ms = ? WHERE account = ?",
			key.Bytes(), now, addr.Name)
		if err == nil {
			st.replaced = true
		}
		return true, wrap("saving identity", err)
	}
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

func sessionWhere(addr protocol.Address) string { return "session/" + addr.String() }

// LoadSession implements [protocol.SessionStore].
func (st *stores) LoadSession(ctx context.Context, addr protocol.Address) (*protocol.SessionRecord, error) {
	var enc []byte
	err := st.q.QueryRowContext(ctx, "SELECT record_enc FROM sessions WHERE account = ? AND device = ?", addr.Name, addr.DeviceID).Scan(&enc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading session: %w", err)
	}
	b, err := st.s.open(enc, sessionWhere(addr))
	if err != nil {
		return nil, err
	}
	return protocol.NewSessionRecord(b)
}

// StoreSession implements [protocol.SessionStore].
func (st *stores) StoreSession(ctx context.Context, addr protocol.Address, rec *protocol.SessionRecord) error {
	_, err := st.q.ExecContext(ctx, `INSERT INTO sessions (account, device, record_enc) VALUES (?, ?, ?)
		ON CONFLICT (account, device) DO UPDATE SET record_enc = excluded.record_enc`,
		addr.Name, addr.DeviceID, st.s.seal(rec.Bytes(), sessionWhere(addr)))
	return wrap("storing session", err)
}

func (st *stores) deleteSession(ctx context.Context, addr protocol.Address) error {
	_, err := st.q.ExecContext(ctx, "DELETE FROM sessions WHERE account = ? AND device = ?", addr.Name, addr.DeviceID)
	return wrap("deleting session", err)
}

// sessionDevices returns the devices of account we hold a session with, and each one's
// registration id.
func (st *stores) sessionDevices(ctx context.Context, account string) (map[uint32]uint32, error) {
	rows, err := st.q.QueryContext(ctx, "SELECT device FROM sessions WHERE account = ?", account)
	if err != nil {
		return nil, fmt.Errorf("listing sessions: %w", err)
	}
	var devs []uint32
	for rows.Next() {
		var d uint32
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing sessions: %w", err)
		}
		devs = append(devs, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing sessions: %w", err)
	}
	out := make(map[uint32]uint32, len(devs))
	for _, d := range devs {
		rec, err := st.LoadSession(ctx, protocol.Address{Name: account, DeviceID: d})
		if err != nil {
			return nil, err
		}
		if rec == nil || !rec.HasCurrentState() {
			continue
		}
		reg, _ := rec.RemoteRegistrationID()
		out[d] = reg
	}
	return out, nil
}

// dropReplacedSessions deletes the sessions with account whose identity key is not the
// one stored and trusted for it: after the user accepted a new key ([Client.Trust]),
// sessions made with the old one are dead (the contact re-registered) and new ones are
// started from fresh bundles.
func (st *stores) dropReplacedSessions(ctx context.Context, account string) error {
	row, err := st.loadIdentity(ctx, account)
	if err != nil || row == nil || !row.trusted {
		return err
	}
	devs, err := st.sessionDevices(ctx, account)
	if err != nil {
		return err
	}
	for d := range devs {
		addr := protocol.Address{Name: account, DeviceID: d}
		rec, err := st.LoadSession(ctx, addr)
		if err != nil {
			return err
		}
		if k, ok := rec.RemoteIdentityKey(); ok && !k.Equal(row.key) {
			if err := st.deleteSession(ctx, addr); err != nil {
				return err
			}
		}
	}
	return nil
}

func (st *stores) loadBlob(ctx context.Context, table string, id uint32) ([]byte, error) {
	var enc []byte
	err := st.q.QueryRowContext(ctx, "SELECT record_enc FROM "+table+" WHERE id = ?", id).Scan(&enc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", table, err)
	}
	return st.s.open(enc, table+"/"+strconv.FormatUint(uint64(id), 10))
}

func (st *stores) sealID(table string, id uint32, b []byte) []byte {
	return st.s.seal(b, table+"/"+strconv.FormatUint(uint64(id), 10))
}

// LoadPreKey implements [protocol.PreKeyStore].
func (st *stores) LoadPreKey(ctx context.Context, id uint32) (*protocol.PreKeyRecord, error) {
	b, err := st.loadBlob(ctx, "prekeys", id)
	if err != nil || b == nil {
		return nil, err
	}
	return protocol.NewPreKeyRecord(b)
}

// RemovePreKey implements [protocol.PreKeyStore].
func (st *stores) RemovePreKey(ctx context.Context, id uint32) error {
	_, err := st.q.ExecContext(ctx, "DELETE FROM prekeys WHERE id = ?", id)
	return wrap("removing prekey", err)
}

func (st *stores) storePreKey(ctx context.Context, p *protocol.PreKeyRecord) error {
	_, err := st.q.ExecContext(ctx, "INSERT OR REPLACE INTO prekeys (id, record_enc) VALUES (?, ?)", p.ID, st.sealID("prekeys", p.ID, p.Bytes()))
	return wrap("storing prekey", err)
}

// LoadSignedPreKey implements [protocol.SignedPreKeyStore].
func (st *stores) LoadSignedPreKey(ctx context.Context, id uint32) (*protocol.SignedPreKeyRecord, error) {
	b, err := st.loadBlob(ctx, "signed_prekeys", id)
	if err != nil || b == nil {
		return nil, err
	}
	return protocol.NewSignedPreKeyRecord(b)
}

func (st *stores) storeSignedPreKey(ctx context.Context, p *protocol.SignedPreKeyRecord) error {
	_, err := st.q.ExecContext(ctx, "INSERT OR REPLACE INTO signed_prekeys (id, record_enc, created_ms) VALUES (?, ?, ?)",
		p.ID, st.sealID("signed_prekeys", p.ID, p.Bytes()), p.Timestamp.UnixMilli())
	return wrap("storing signed prekey", err)
}

// LoadKyberPreKey implements [protocol.KyberPreKeyStore].
func (st *stores) LoadKyberPreKey(ctx context.Context, id uint32) (*protocol.KyberPreKeyRecord, error) {
	b, err := st.loadBlob(ctx, "kyber_prekeys", id)
	if err != nil || b == nil {
		return nil, err
	}
	return protocol.NewKyberPreKeyRecord(b)
}

func (st *stores) storeKyberPreKey(ctx context.Context, p *protocol.KyberPreKeyRecord, lastResort bool) error {
	_, err := st.q.ExecContext(ctx, "INSERT OR REPLACE INTO kyber_prekeys (id, record_enc, last_resort, created_ms) VALUES (?, ?, ?, ?)",
		p.ID, st.sealID("kyber_prekeys", p.ID, p.Bytes()), lastResort, p.Timestamp.UnixMilli())
	return wrap("storing kyber prekey", err)
}

// errReusedLastResort refuses a replayed PreKeySignalMessage against a last-resort key.
var errReusedLastResort = errors.New("kyber last-resort prekey reused with the same base key")

// MarkKyberPreKeyUsed implements [protocol.KyberPreKeyStore]: a one-time key is deleted;
// a last-resort key remembers (signed prekey, base key) and refuses the pair a second
// time, which stops the replay of a session's first message.
func (st *stores) MarkKyberPreKeyUsed(ctx context.Context, id, signedID uint32, baseKey *curve.PublicKey) error {
	var lastResort bool
	err := st.q.QueryRowContext(ctx, "SELECT last_resort FROM kyber_prekeys WHERE id = ?", id).Scan(&lastResort)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading kyber prekey: %w", err)
	}
	if !lastResort {
		_, err := st.q.ExecContext(ctx, "DELETE FROM kyber_prekeys WHERE id = ?", id)
		return wrap("removing kyber prekey", err)
	}
	res, err := st.q.ExecContext(ctx, "INSERT OR IGNORE INTO kyber_used (id, signed_id, base_key) VALUES (?, ?, ?)", id, signedID, baseKey.Bytes())
	if err != nil {
		return fmt.Errorf("recording kyber prekey use: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errReusedLastResort
	}
	return nil
}

func senderKeyWhere(sender protocol.Address, dist uuid.UUID) string {
	return "sender_key/" + sender.String() + "/" + dist.String()
}

// LoadSenderKey implements [senderkey.Store].
func (st *stores) LoadSenderKey(ctx context.Context, sender protocol.Address, dist uuid.UUID) (*senderkey.Record, error) {
	var enc []byte
	err := st.q.QueryRowContext(ctx, "SELECT record_enc FROM sender_keys WHERE account = ? AND device = ? AND distribution = ?",
		sender.Name, sender.DeviceID, dist.String()).Scan(&enc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading sender key: %w", err)
	}
	b, err := st.s.open(enc, senderKeyWhere(sender, dist))
	if err != nil {
		return nil, err
	}
	return senderkey.NewRecord(b)
}

// StoreSenderKey implements [senderkey.Store].
func (st *stores) StoreSenderKey(ctx context.Context, sender protocol.Address, dist uuid.UUID, r *senderkey.Record) error {
	_, err := st.q.ExecContext(ctx, `INSERT INTO sender_keys (account, device, distribution, record_enc) VALUES (?, ?, ?, ?)
		ON CONFLICT (account, device, distribution) DO UPDATE SET record_enc = excluded.record_enc`,
		sender.Name, sender.DeviceID, dist.String(), st.s.seal(r.Bytes(), senderKeyWhere(sender, dist)))
	return wrap("storing sender key", err)
}
