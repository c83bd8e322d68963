package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/bastionchat/bastion/internal/store"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// SetKeys implements [store.Keys]. An unknown device fails with [store.ErrNotFound].
func (s *Store) SetKeys(ctx context.Context, account uuid.UUID, device uint32, k store.KeyUpload) error {
	dev := int64(device)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// KEY SHARE: the device cannot be deleted under us, and uploads do not block sends.
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM devices WHERE account_id = $1 AND id = $2 FOR KEY SHARE`, account, dev).Scan(&one); err != nil {
			return notFound(err)
		}
		b := &pgx.Batch{}
		if k := k.SignedPreKey; k != nil {
			b.Queue(`INSERT INTO signed_prekeys (account_id, device_id, key_id, public_key, signature) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (account_id, device_id) DO UPDATE SET key_id = excluded.key_id, public_key = excluded.public_key, signature = excluded.signature`,
				account, dev, int64(k.ID), k.PublicKey, k.Signature)
		}
		if k := k.LastResortKyber; k != nil {
			b.Queue(`INSERT INTO kyber_last_resort_prekeys (account_id, device_id, key_id, public_key, signature) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (account_id, device_id) DO UPDATE SET key_id = excluded.key_id, public_key = excluded.public_key, signature = excluded.signature`,
				account, dev, int64(k.ID), k.PublicKey, k.Signature)
		}
		if len(k.PreKeys) > 0 {
			ids, pubs := make([]int64, len(k.PreKeys)), make([][]byte, len(k.PreKeys))
			for i, p := range k.PreKeys {
				ids[i], pubs[i] = int64(p.ID), p.PublicKey
			}
			// DISTINCT ON keeps the last of an id repeated within one upload: ON CONFLICT
			// cannot update a row twice in one statement.
			b.Queue(`INSERT INTO prekeys (account_id, device_id, key_id, public_key)
				SELECT DISTINCT ON (key_id) $1::uuid, $2::int8, key_id, public_key
				FROM unnest($3::int8[], $4::bytea[]) WITH ORDINALITY AS u(key_id, public_key, ord) ORDER BY key_id, ord DESC
				ON CONFLICT (account_id, device_id, key_id) DO UPDATE SET public_key = excluded.public_key`,
				account, dev, ids, pubs)
		}
		if len(k.KyberPreKeys) > 0 {
			n := len(k.KyberPreKeys)
			ids, pubs, sigs := make([]int64, n), make([][]byte, n), make([][]byte, n)
			for i, p := range k.KyberPreKeys {
				ids[i], pubs[i], sigs[i] = int64(p.ID), p.PublicKey, p.Signature
			}
			b.Queue(`INSERT INTO kyber_prekeys (account_id, device_id, key_id, public_key, signature)
				SELECT DISTINCT ON (key_id) $1::uuid, $2::int8, key_id, public_key, signature
				FROM unnest($3::int8[], $4::bytea[], $5::bytea[]) WITH ORDINALITY AS u(key_id, public_key, signature, ord) ORDER BY key_id, ord DESC
				ON CONFLICT (account_id, device_id, key_id) DO UPDATE SET public_key = excluded.public_key, signature = excluded.signature`,
				account, dev, ids, pubs, sigs)
		}
		if b.Len() == 0 {
			return nil
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("storing keys: %w", err)
	}
	return nil
}

// PreKeyCounts implements [store.Keys]. An unknown device fails with [store.ErrNotFound].
func (s *Store) PreKeyCounts(ctx context.Context, account uuid.UUID, device uint32) (ec, kyber int, err error) {
	var exists bool
	err = s.pool.QueryRow(ctx, `SELECT
			EXISTS (SELECT 1 FROM devices WHERE account_id = $1 AND id = $2),
			(SELECT COUNT(*) FROM prekeys WHERE account_id = $1 AND device_id = $2),
			(SELECT COUNT(*) FROM kyber_prekeys WHERE account_id = $1 AND device_id = $2)`,
		account, int64(device)).Scan(&exists, &ec, &kyber)
	if err != nil {
		return 0, 0, fmt.Errorf("counting prekeys: %w", err)
	}
	if !exists {
		return 0, 0, fmt.Errorf("counting prekeys: %w", store.ErrNotFound)
	}
	return ec, kyber, nil
}

// TakeBundle implements [store.Keys]. The one-time keys are picked and deleted in one
// transaction: DELETE ... WHERE key = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1), so a
// concurrent taker on any node skips a key another holds instead of waiting for it or
// getting it too, and a key handed out is gone once the bundle is returned (the commit is
// durable), so a crash cannot resurrect it. Lowest id first: clients upload ids in
// increasing order, so the oldest goes first. A taker that finds every remaining one-time
// key held by concurrent takers goes on without one (the last-resort Kyber key, no EC
// key) rather than wait: the bundle is valid either way, and a fetch never queues.
func (s *Store) TakeBundle(ctx context.Context, account uuid.UUID, device uint32) (store.Bundle, error) {
	dev := int64(device)
	var b store.Bundle
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		b = store.Bundle{DeviceID: device}
		batch := &pgx.Batch{}
		batch.Queue(`SELECT d.registration_id, a.identity_key,
				s.key_id, s.public_key, s.signature, l.key_id, l.public_key, l.signature
			FROM devices d JOIN accounts a ON a.id = d.account_id
			LEFT JOIN signed_prekeys s ON s.account_id = d.account_id AND s.device_id = d.id
			LEFT JOIN kyber_last_resort_prekeys l ON l.account_id = d.account_id AND l.device_id = d.id
			WHERE d.account_id = $1 AND d.id = $2`, account, dev)
		batch.Queue(`DELETE FROM kyber_prekeys WHERE account_id = $1 AND device_id = $2 AND key_id =
				(SELECT key_id FROM kyber_prekeys WHERE account_id = $1 AND device_id = $2
				 ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
			RETURNING key_id, public_key, signature`, account, dev)
		batch.Queue(`DELETE FROM prekeys WHERE account_id = $1 AND device_id = $2 AND key_id =
				(SELECT key_id FROM prekeys WHERE account_id = $1 AND device_id = $2
				 ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
			RETURNING key_id, public_key`, account, dev)
		br := tx.SendBatch(ctx, batch)
		defer br.Close()

		var reg int64
		var spID, lrID *int64
		var spPub, spSig, lrPub, lrSig []byte
		if err := br.QueryRow().Scan(&reg, &b.IdentityKey, &spID, &spPub, &spSig, &lrID, &lrPub, &lrSig); err != nil {
			return notFound(err)
		}
		b.RegistrationID = uint32(reg)
		if spID == nil {
			return store.ErrNoPreKeys // the deletes below roll back with the transaction
		}
		b.SignedPreKey = store.SignedPreKey{ID: uint32(*spID), PublicKey: spPub, Signature: spSig}

		var kid int64
		err := br.QueryRow().Scan(&kid, &b.KyberPreKey.PublicKey, &b.KyberPreKey.Signature)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if lrID == nil {
				return store.ErrNoPreKeys
			}
			b.KyberPreKey = store.SignedPreKey{ID: uint32(*lrID), PublicKey: lrPub, Signature: lrSig}
			b.KyberLastResort = true
		case err != nil:
			return err
		default:
			b.KyberPreKey.ID = uint32(kid)
		}

		var pk store.PreKey
		err = br.QueryRow().Scan(&kid, &pk.PublicKey)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// Out of one-time EC prekeys: the bundle goes without one, as in libsignal.
		case err != nil:
			return err
		default:
			pk.ID = uint32(kid)
			b.PreKey = &pk
		}
		return br.Close()
	})
	if err != nil {
		return store.Bundle{}, fmt.Errorf("taking bundle: %w", err)
	}
	return b, nil
}
