package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/bastionchat/bastion/internal/store"
	"github.com/google/uuid"
)

// deviceExists reports whether the device is stored, inside the write transaction.
func deviceExists(tx *wtx, account uuid.UUID, device uint32) (bool, error) {
	var one int
	err := tx.QueryRow(`SELECT 1 FROM devices WHERE account_id = ? AND id = ?`, account[:], device).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func cloneSigned(k *store.SignedPreKey) *store.SignedPreKey {
	if k == nil {
		return nil
	}
	return &store.SignedPreKey{ID: k.ID, PublicKey: bytesClone(k.PublicKey), Signature: bytesClone(k.Signature)}
}

// SetKeys implements [store.Keys]. An unknown device fails with [store.ErrNotFound].
func (s *Store) SetKeys(ctx context.Context, account uuid.UUID, device uint32, k store.KeyUpload) error {
	// Copy what the writer reads (see bytesClone).
	up := store.KeyUpload{
		SignedPreKey:    cloneSigned(k.SignedPreKey),
		LastResortKyber: cloneSigned(k.LastResortKyber),
		PreKeys:         make([]store.PreKey, len(k.PreKeys)),
		KyberPreKeys:    make([]store.SignedPreKey, len(k.KyberPreKeys)),
	}
	size := 0
	for i, p := range k.PreKeys {
		up.PreKeys[i] = store.PreKey{ID: p.ID, PublicKey: bytesClone(p.PublicKey)}
		size += len(p.PublicKey)
	}
	for i, p := range k.KyberPreKeys {
		up.KyberPreKeys[i] = *cloneSigned(&p)
		size += len(p.PublicKey) + len(p.Signature)
	}
	err := s.write(ctx, size, func(tx *wtx) error {
		ok, err := deviceExists(tx, account, device)
		if err != nil {
			return err
		}
		if !ok {
			return store.ErrNotFound
		}
		if k := up.SignedPreKey; k != nil {
			if _, err := tx.Exec(`INSERT INTO signed_prekeys (account_id, device_id, key_id, public_key, signature) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (account_id, device_id) DO UPDATE SET key_id = excluded.key_id, public_key = excluded.public_key, signature = excluded.signature`,
				account[:], device, k.ID, k.PublicKey, k.Signature); err != nil {
				return err
			}
		}
		if k := up.LastResortKyber; k != nil {
			if _, err := tx.Exec(`INSERT INTO kyber_last_resort_prekeys (account_id, device_id, key_id, public_key, signature) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (account_id, device_id) DO UPDATE SET key_id = excluded.key_id, public_key = excluded.public_key, signature = excluded.signature`,
				account[:], device, k.ID, k.PublicKey, k.Signature); err != nil {
				return err
			}
		}
		for _, p := range up.PreKeys {
			if _, err := tx.Exec(`INSERT INTO prekeys (account_id, device_id, key_id, public_key) VALUES (?, ?, ?, ?)
				ON CONFLICT (account_id, device_id, key_id) DO UPDATE SET public_key = excluded.public_key`,
				account[:], device, p.ID, p.PublicKey); err != nil {
				return err
			}
		}
		for _, p := range up.KyberPreKeys {
			if _, err := tx.Exec(`INSERT INTO kyber_prekeys (account_id, device_id, key_id, public_key, signature) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (account_id, device_id, key_id) DO UPDATE SET public_key = excluded.public_key, signature = excluded.signature`,
				account[:], device, p.ID, p.PublicKey, p.Signature); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storing keys: %w", err)
	}
	return nil
}

// PreKeyCounts implements [store.Keys]. An unknown device fails with [store.ErrNotFound].
func (s *Store) PreKeyCounts(ctx context.Context, account uuid.UUID, device uint32) (ec, kyber int, err error) {
	var exists int
	err = s.readRow(ctx, `SELECT
			(SELECT COUNT(*) FROM devices WHERE account_id = ?1 AND id = ?2),
			(SELECT COUNT(*) FROM prekeys WHERE account_id = ?1 AND device_id = ?2),
			(SELECT COUNT(*) FROM kyber_prekeys WHERE account_id = ?1 AND device_id = ?2)`,
		account[:], device).Scan(&exists, &ec, &kyber)
	if err != nil {
		return 0, 0, fmt.Errorf("counting prekeys: %w", err)
	}
	if exists == 0 {
		return 0, 0, fmt.Errorf("counting prekeys: %w", store.ErrNotFound)
	}
	return ec, kyber, nil
}

// TakeBundle implements [store.Keys]. The read and the deletes run in one write
// transaction on the single writer, so two concurrent callers can never be handed the
// same one-time key, and the delete is durable before the bundle is returned: a crash
// cannot resurrect a key that was handed out.
func (s *Store) TakeBundle(ctx context.Context, account uuid.UUID, device uint32) (store.Bundle, error) {
	var b store.Bundle
	err := s.write(ctx, 0, func(tx *wtx) error {
		b = store.Bundle{DeviceID: device}
		err := tx.QueryRow(`SELECT d.registration_id, a.identity_key FROM devices d JOIN accounts a ON a.id = d.account_id
			WHERE d.account_id = ? AND d.id = ?`, account[:], device).Scan(&b.RegistrationID, &b.IdentityKey)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		} else if err != nil {
			return err
		}
		err = tx.QueryRow(`SELECT key_id, public_key, signature FROM signed_prekeys WHERE account_id = ? AND device_id = ?`,
			account[:], device).Scan(&b.SignedPreKey.ID, &b.SignedPreKey.PublicKey, &b.SignedPreKey.Signature)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNoPreKeys
		} else if err != nil {
			return err
		}

		// Lowest id first: clients upload ids in increasing order, so the oldest goes first.
		err = tx.QueryRow(`SELECT key_id, public_key, signature FROM kyber_prekeys WHERE account_id = ? AND device_id = ?
			ORDER BY key_id LIMIT 1`, account[:], device).Scan(&b.KyberPreKey.ID, &b.KyberPreKey.PublicKey, &b.KyberPreKey.Signature)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			err = tx.QueryRow(`SELECT key_id, public_key, signature FROM kyber_last_resort_prekeys WHERE account_id = ? AND device_id = ?`,
				account[:], device).Scan(&b.KyberPreKey.ID, &b.KyberPreKey.PublicKey, &b.KyberPreKey.Signature)
			if errors.Is(err, sql.ErrNoRows) {
				return store.ErrNoPreKeys
			} else if err != nil {
				return err
			}
			b.KyberLastResort = true
		case err != nil:
			return err
		default:
			if _, err := tx.Exec(`DELETE FROM kyber_prekeys WHERE account_id = ? AND device_id = ? AND key_id = ?`,
				account[:], device, b.KyberPreKey.ID); err != nil {
				return err
			}
		}

		var pk store.PreKey
		err = tx.QueryRow(`SELECT key_id, public_key FROM prekeys WHERE account_id = ? AND device_id = ? ORDER BY key_id LIMIT 1`,
			account[:], device).Scan(&pk.ID, &pk.PublicKey)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// Out of one-time EC prekeys: the bundle goes without one, as in libsignal.
		case err != nil:
			return err
		default:
			if _, err := tx.Exec(`DELETE FROM prekeys WHERE account_id = ? AND device_id = ? AND key_id = ?`,
				account[:], device, pk.ID); err != nil {
				return err
			}
			b.PreKey = &pk
		}
		return nil
	})
	if err != nil {
		return store.Bundle{}, fmt.Errorf("taking bundle: %w", err)
	}
	return b, nil
}
