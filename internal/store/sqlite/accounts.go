package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/bastionchat/bastion/internal/store"
	"github.com/google/uuid"
)

// maxDeviceID is the largest device id libsignal accepts (its DeviceId is 1..=127).
const maxDeviceID = 127

// Times are stored as unix microseconds, PostgreSQL's precision, so both backends
// round-trip the same values.
func dbTime(t time.Time) int64 { return t.UnixMicro() }

func goTime(us int64) time.Time { return time.UnixMicro(us).UTC() }

// nowOr returns t, or the current time when t is zero.
func nowOr(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

func scanUUID(b []byte) (uuid.UUID, error) {
	id, err := uuid.FromBytes(b)
	if err != nil {
		return uuid.UUID{}, fmt.Errorf("stored id: %w", err)
	}
	return id, nil
}

// Register implements [store.Accounts].
func (s *Store) Register(ctx context.Context, number string, identityKey []byte, primary store.Device) (store.Account, bool, error) {
	if primary.ID != 1 {
		return store.Account{}, false, fmt.Errorf("registering: primary device id %d, want 1", primary.ID)
	}
	now := time.Now()
	acct := store.Account{Number: number, IdentityKey: bytesClone(identityKey)}
	var replaced bool
	dev := primary
	dev.CredentialHash = bytesClone(primary.CredentialHash)
	dev.CreatedAt = nowOr(primary.CreatedAt)
	err := s.write(ctx, 0, func(tx *wtx) error {
		var idb []byte
		var created int64
		err := tx.QueryRow(`SELECT id, created_at FROM accounts WHERE number = ?`, number).Scan(&idb, &created)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			replaced = false
			id, err := uuid.NewRandom()
			if err != nil {
				return err
			}
			acct.ID, acct.CreatedAt = id, goTime(dbTime(now))
			if _, err := tx.Exec(`INSERT INTO accounts (id, number, identity_key, created_at) VALUES (?, ?, ?, ?)`,
				acct.ID[:], number, acct.IdentityKey, dbTime(acct.CreatedAt)); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			// Re-registration: the account id stays (contacts address it), everything else
			// goes. Deleting the devices cascades to their prekeys and queues.
			replaced = true
			if acct.ID, err = scanUUID(idb); err != nil {
				return err
			}
			acct.CreatedAt = goTime(created)
			if _, err := tx.Exec(`DELETE FROM devices WHERE account_id = ?`, acct.ID[:]); err != nil {
				return err
			}
			if _, err := tx.Exec(`UPDATE accounts SET identity_key = ? WHERE id = ?`, acct.IdentityKey, acct.ID[:]); err != nil {
				return err
			}
		}
		_, err = tx.Exec(`INSERT INTO devices (account_id, id, registration_id, credential_hash, created_at) VALUES (?, 1, ?, ?, ?)`,
			acct.ID[:], dev.RegistrationID, dev.CredentialHash, dbTime(dev.CreatedAt))
		return err
	})
	if err != nil {
		return store.Account{}, false, fmt.Errorf("registering: %w", err)
	}
	return acct, replaced, nil
}

// Account implements [store.Accounts].
func (s *Store) Account(ctx context.Context, id uuid.UUID) (store.Account, error) {
	row := s.readRow(ctx, `SELECT id, number, identity_key, created_at FROM accounts WHERE id = ?`, id[:])
	a, err := scanAccount(row)
	if err != nil {
		return store.Account{}, fmt.Errorf("loading account: %w", err)
	}
	return a, nil
}

// AccountByNumber implements [store.Accounts].
func (s *Store) AccountByNumber(ctx context.Context, number string) (store.Account, error) {
	row := s.readRow(ctx, `SELECT id, number, identity_key, created_at FROM accounts WHERE number = ?`, number)
	a, err := scanAccount(row)
	if err != nil {
		return store.Account{}, fmt.Errorf("loading account by number: %w", err)
	}
	return a, nil
}

func scanAccount(row row) (store.Account, error) {
	var a store.Account
	var idb []byte
	var created int64
	if err := row.Scan(&idb, &a.Number, &a.IdentityKey, &created); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return store.Account{}, store.ErrNotFound
		}
		return store.Account{}, err
	}
	id, err := scanUUID(idb)
	if err != nil {
		return store.Account{}, err
	}
	a.ID, a.CreatedAt = id, goTime(created)
	return a, nil
}

// Devices implements [store.Accounts].
func (s *Store) Devices(ctx context.Context, account uuid.UUID) ([]store.Device, error) {
	rows, err := s.readRows(ctx, `SELECT id, registration_id, credential_hash, created_at FROM devices
		WHERE account_id = ? ORDER BY id`, account[:])
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	defer rows.Close()
	var ds []store.Device
	for rows.Next() {
		d := store.Device{AccountID: account}
		var created int64
		if err := rows.Scan(&d.ID, &d.RegistrationID, &d.CredentialHash, &created); err != nil {
			return nil, fmt.Errorf("listing devices: %w", err)
		}
		d.CreatedAt = goTime(created)
		ds = append(ds, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	if len(ds) == 0 {
		// Every account has its primary device: no devices means no account.
		return nil, fmt.Errorf("listing devices: %w", store.ErrNotFound)
	}
	return ds, nil
}

// Device implements [store.Accounts].
func (s *Store) Device(ctx context.Context, account uuid.UUID, id uint32) (store.Device, error) {
	d := store.Device{AccountID: account, ID: id}
	var created int64
	err := s.readRow(ctx, `SELECT registration_id, credential_hash, created_at FROM devices
		WHERE account_id = ? AND id = ?`, account[:], id).Scan(&d.RegistrationID, &d.CredentialHash, &created)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			err = store.ErrNotFound
		}
		return store.Device{}, fmt.Errorf("loading device: %w", err)
	}
	d.CreatedAt = goTime(created)
	return d, nil
}

// AddDevice implements [store.Accounts]. The new id is one more than the highest in use,
// or, once 127 is taken, the lowest free one; with all 127 in use it fails with
// [store.ErrConflict].
func (s *Store) AddDevice(ctx context.Context, account uuid.UUID, d store.Device) (store.Device, error) {
	d.AccountID = account
	d.CredentialHash = bytesClone(d.CredentialHash)
	d.CreatedAt = goTime(dbTime(nowOr(d.CreatedAt)))
	var id uint32
	err := s.write(ctx, 0, func(tx *wtx) error {
		var one int
		if err := tx.QueryRow(`SELECT 1 FROM accounts WHERE id = ?`, account[:]).Scan(&one); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return store.ErrNotFound
			}
			return err
		}
		var top uint32
		if err := tx.QueryRow(`SELECT COALESCE(MAX(id), 0) FROM devices WHERE account_id = ?`, account[:]).Scan(&top); err != nil {
			return err
		}
		id = top + 1
		if id > maxDeviceID {
			var free sql.NullInt64
			err := tx.QueryRow(`SELECT MIN(d.id + 1) FROM devices d WHERE d.account_id = ? AND d.id < ?
				AND NOT EXISTS (SELECT 1 FROM devices e WHERE e.account_id = d.account_id AND e.id = d.id + 1)`,
				account[:], maxDeviceID).Scan(&free)
			if err != nil {
				return err
			}
			if !free.Valid {
				return fmt.Errorf("all %d device ids in use: %w", maxDeviceID, store.ErrConflict)
			}
			id = uint32(free.Int64)
		}
		_, err := tx.Exec(`INSERT INTO devices (account_id, id, registration_id, credential_hash, created_at) VALUES (?, ?, ?, ?, ?)`,
			account[:], id, d.RegistrationID, d.CredentialHash, dbTime(d.CreatedAt))
		return err
	}, oneStatement)
	if err != nil {
		return store.Device{}, fmt.Errorf("adding device: %w", err)
	}
	d.ID = id
	return d, nil
}

// RemoveDevice implements [store.Accounts]. Removing the primary device fails with
// [store.ErrConflict]; delete the account instead.
func (s *Store) RemoveDevice(ctx context.Context, account uuid.UUID, id uint32) error {
	if id == 1 {
		return fmt.Errorf("removing device: the primary device cannot be removed: %w", store.ErrConflict)
	}
	err := s.write(ctx, 0, func(tx *wtx) error {
		res, err := tx.Exec(`DELETE FROM devices WHERE account_id = ? AND id = ?`, account[:], id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotFound
		}
		return nil
	}, oneStatement)
	if err != nil {
		return fmt.Errorf("removing device: %w", err)
	}
	return nil
}

// DeleteAccount implements [store.Accounts].
func (s *Store) DeleteAccount(ctx context.Context, id uuid.UUID) error {
	err := s.write(ctx, 0, func(tx *wtx) error {
		res, err := tx.Exec(`DELETE FROM accounts WHERE id = ?`, id[:])
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotFound
		}
		return nil
	}, oneStatement)
	if err != nil {
		return fmt.Errorf("deleting account: %w", err)
	}
	return nil
}

// bytesClone copies b, keeping nil as nil. The writer goroutine may outlive a caller that
// gave up, so it never reads memory the caller could reuse.
func bytesClone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
