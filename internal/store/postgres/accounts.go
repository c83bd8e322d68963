package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bastionchat/bastion/internal/store"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// maxDeviceID is the largest device id libsignal accepts (its DeviceId is 1..=127).
const maxDeviceID = 127

// errRaced asks inTx's caller to run the transaction again: a concurrent one got there
// first (two registrations of one new number).
var errRaced = errors.New("raced with a concurrent write")

// Register implements [store.Accounts].
func (s *Store) Register(ctx context.Context, number string, identityKey []byte, primary store.Device) (store.Account, bool, error) {
	if primary.ID != 1 {
		return store.Account{}, false, fmt.Errorf("registering: primary device id %d, want 1", primary.ID)
	}
	var acct store.Account
	var replaced bool
	created := dbTime(nowOr(primary.CreatedAt))
	err := errRaced
	for attempt := 0; errors.Is(err, errRaced) && attempt < maxTxAttempts; attempt++ {
		err = s.inTx(ctx, func(tx pgx.Tx) error {
			acct = store.Account{Number: number, IdentityKey: identityKey}
			// NO KEY UPDATE serialises registrations of one number on every node without
			// blocking the foreign-key checks of writes that reference the account.
			err := tx.QueryRow(ctx, `SELECT id, created_at FROM accounts WHERE number = $1 FOR NO KEY UPDATE`, number).
				Scan(&acct.ID, &acct.CreatedAt)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				replaced = false
				id, err := uuid.NewRandom()
				if err != nil {
					return err
				}
				acct.ID, acct.CreatedAt = id, dbTime(time.Now())
				tag, err := tx.Exec(ctx, `INSERT INTO accounts (id, number, identity_key, created_at) VALUES ($1, $2, $3, $4)
					ON CONFLICT (number) DO NOTHING`, acct.ID, number, identityKey, acct.CreatedAt)
				if err != nil {
					return err
				}
				if tag.RowsAffected() == 0 {
					return errRaced // a concurrent registration inserted the number: take the re-registration path
				}
			case err != nil:
				return err
			default:
				// Re-registration: the account id stays (contacts address it), everything
				// else goes. Deleting the devices cascades to their prekeys and queues.
				replaced = true
				acct.CreatedAt = acct.CreatedAt.UTC()
				if _, err := tx.Exec(ctx, `DELETE FROM devices WHERE account_id = $1`, acct.ID); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `UPDATE accounts SET identity_key = $1 WHERE id = $2`, identityKey, acct.ID); err != nil {
					return err
				}
			}
			_, err = tx.Exec(ctx, `INSERT INTO devices (account_id, id, registration_id, credential_hash, created_at) VALUES ($1, 1, $2, $3, $4)`,
				acct.ID, int64(primary.RegistrationID), primary.CredentialHash, created)
			return err
		})
	}
	if err != nil {
		return store.Account{}, false, fmt.Errorf("registering: %w", err)
	}
	acct.IdentityKey = append([]byte(nil), identityKey...)
	return acct, replaced, nil
}

// Account implements [store.Accounts].
func (s *Store) Account(ctx context.Context, id uuid.UUID) (store.Account, error) {
	a, err := scanAccount(s.pool.QueryRow(ctx, `SELECT id, number, identity_key, created_at FROM accounts WHERE id = $1`, id))
	if err != nil {
		return store.Account{}, fmt.Errorf("loading account: %w", err)
	}
	return a, nil
}

// AccountByNumber implements [store.Accounts].
func (s *Store) AccountByNumber(ctx context.Context, number string) (store.Account, error) {
	a, err := scanAccount(s.pool.QueryRow(ctx, `SELECT id, number, identity_key, created_at FROM accounts WHERE number = $1`, number))
	if err != nil {
		return store.Account{}, fmt.Errorf("loading account by number: %w", err)
	}
	return a, nil
}

func scanAccount(row pgx.Row) (store.Account, error) {
	var a store.Account
	if err := row.Scan(&a.ID, &a.Number, &a.IdentityKey, &a.CreatedAt); err != nil {
		return store.Account{}, notFound(err)
	}
	a.CreatedAt = a.CreatedAt.UTC()
	return a, nil
}

// Devices implements [store.Accounts].
func (s *Store) Devices(ctx context.Context, account uuid.UUID) ([]store.Device, error) {
	// One statement, so that the existence check and the list see one snapshot: the
	// LEFT JOIN yields one row with NULL device columns for an account without devices.
	rows, err := s.pool.Query(ctx, `SELECT d.id, d.registration_id, d.credential_hash, d.created_at
		FROM accounts a LEFT JOIN devices d ON d.account_id = a.id WHERE a.id = $1 ORDER BY d.id`, account)
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	defer rows.Close()
	var ds []store.Device
	exists := false
	for rows.Next() {
		exists = true
		var id, reg *int64
		var cred []byte
		var created *time.Time
		if err := rows.Scan(&id, &reg, &cred, &created); err != nil {
			return nil, fmt.Errorf("listing devices: %w", err)
		}
		if id == nil {
			continue
		}
		ds = append(ds, store.Device{AccountID: account, ID: uint32(*id), RegistrationID: uint32(*reg),
			CredentialHash: cred, CreatedAt: created.UTC()})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	if !exists {
		return nil, fmt.Errorf("listing devices: %w", store.ErrNotFound)
	}
	return ds, nil
}

// Device implements [store.Accounts].
func (s *Store) Device(ctx context.Context, account uuid.UUID, id uint32) (store.Device, error) {
	d := store.Device{AccountID: account, ID: id}
	var reg int64
	err := s.pool.QueryRow(ctx, `SELECT registration_id, credential_hash, created_at FROM devices
		WHERE account_id = $1 AND id = $2`, account, int64(id)).Scan(&reg, &d.CredentialHash, &d.CreatedAt)
	if err != nil {
		return store.Device{}, fmt.Errorf("loading device: %w", notFound(err))
	}
	d.RegistrationID, d.CreatedAt = uint32(reg), d.CreatedAt.UTC()
	return d, nil
}

// AddDevice implements [store.Accounts]. The new id is one more than the highest in use,
// or, once 127 is taken, the lowest free one; with all 127 in use it fails with
// [store.ErrConflict]. The account row is locked, so concurrent additions on any node
// get different ids.
func (s *Store) AddDevice(ctx context.Context, account uuid.UUID, d store.Device) (store.Device, error) {
	d.AccountID = account
	d.CreatedAt = dbTime(nowOr(d.CreatedAt))
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var one int // the lock serialises AddDevice calls for one account
		if err := tx.QueryRow(ctx, `SELECT 1 FROM accounts WHERE id = $1 FOR NO KEY UPDATE`, account).Scan(&one); err != nil {
			return notFound(err)
		}
		var top int64
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(id), 0) FROM devices WHERE account_id = $1`, account).Scan(&top); err != nil {
			return err
		}
		id := top + 1
		if id > maxDeviceID {
			var free *int64
			err := tx.QueryRow(ctx, `SELECT MIN(d.id + 1) FROM devices d WHERE d.account_id = $1 AND d.id < $2
				AND NOT EXISTS (SELECT 1 FROM devices e WHERE e.account_id = d.account_id AND e.id = d.id + 1)`,
				account, maxDeviceID).Scan(&free)
			if err != nil {
				return err
			}
			if free == nil {
				return fmt.Errorf("all %d device ids in use: %w", maxDeviceID, store.ErrConflict)
			}
			id = *free
		}
		if _, err := tx.Exec(ctx, `INSERT INTO devices (account_id, id, registration_id, credential_hash, created_at) VALUES ($1, $2, $3, $4, $5)`,
			account, id, int64(d.RegistrationID), d.CredentialHash, d.CreatedAt); err != nil {
			return err
		}
		d.ID = uint32(id)
		return nil
	})
	if err != nil {
		return store.Device{}, fmt.Errorf("adding device: %w", err)
	}
	return d, nil
}

// RemoveDevice implements [store.Accounts]. Removing the primary device fails with
// [store.ErrConflict]; delete the account instead.
func (s *Store) RemoveDevice(ctx context.Context, account uuid.UUID, id uint32) error {
	if id == 1 {
		return fmt.Errorf("removing device: the primary device cannot be removed: %w", store.ErrConflict)
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM devices WHERE account_id = $1 AND id = $2`, account, int64(id))
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("removing device: %w", err)
	}
	return nil
}

// DeleteAccount implements [store.Accounts].
func (s *Store) DeleteAccount(ctx context.Context, id uuid.UUID) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM accounts WHERE id = $1`, id)
		if err == nil && tag.RowsAffected() == 0 {
			err = store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("deleting account: %w", err)
	}
	return nil
}
