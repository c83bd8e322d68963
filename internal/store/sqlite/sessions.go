package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/bastionchat/bastion/internal/store"
	"github.com/google/uuid"
)

// CreateVerification implements [store.Verifications]. An id already in use fails with
// [store.ErrConflict].
func (s *Store) CreateVerification(ctx context.Context, v store.Verification) error {
	v.CodeHash = bytesClone(v.CodeHash)
	err := s.write(ctx, 0, func(tx *wtx) error {
		res, err := tx.Exec(`INSERT INTO verifications (id, number, code_hash, attempts, verified, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			v.ID, v.Number, v.CodeHash, v.Attempts, v.Verified, dbTime(nowOr(v.CreatedAt)), dbTime(v.ExpiresAt))
		if err != nil {
			return err
		}
		return mustAffect(res, store.ErrConflict)
	}, oneStatement)
	if err != nil {
		return fmt.Errorf("creating verification: %w", err)
	}
	return nil
}

// Verification implements [store.Verifications].
func (s *Store) Verification(ctx context.Context, id string) (store.Verification, error) {
	v := store.Verification{ID: id}
	var created, expires int64
	err := s.readRow(ctx, `SELECT number, code_hash, attempts, verified, created_at, expires_at
		FROM verifications WHERE id = ?`, id).Scan(&v.Number, &v.CodeHash, &v.Attempts, &v.Verified, &created, &expires)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			err = store.ErrNotFound
		}
		return store.Verification{}, fmt.Errorf("loading verification: %w", err)
	}
	v.CreatedAt, v.ExpiresAt = goTime(created), goTime(expires)
	return v, nil
}

// UpdateVerification implements [store.Verifications]. An unknown id fails with
// [store.ErrNotFound].
func (s *Store) UpdateVerification(ctx context.Context, v store.Verification) error {
	err := s.write(ctx, 0, func(tx *wtx) error {
		res, err := tx.Exec(`UPDATE verifications SET attempts = ?, verified = ? WHERE id = ?`, v.Attempts, v.Verified, v.ID)
		if err != nil {
			return err
		}
		return mustAffect(res, store.ErrNotFound)
	}, oneStatement)
	if err != nil {
		return fmt.Errorf("updating verification: %w", err)
	}
	return nil
}

// DeleteVerification implements [store.Verifications]. Deleting an unknown id is not an
// error: the session is gone either way.
func (s *Store) DeleteVerification(ctx context.Context, id string) error {
	err := s.write(ctx, 0, func(tx *wtx) error {
		_, err := tx.Exec(`DELETE FROM verifications WHERE id = ?`, id)
		return err
	}, oneStatement)
	if err != nil {
		return fmt.Errorf("deleting verification: %w", err)
	}
	return nil
}

// PruneVerifications implements [store.Verifications].
func (s *Store) PruneVerifications(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.deleteCount(ctx, `DELETE FROM verifications WHERE expires_at < ?`, dbTime(before))
	if err != nil {
		return 0, fmt.Errorf("pruning verifications: %w", err)
	}
	return n, nil
}

// RecordConnection implements [store.ConnLog]. An unknown account fails with
// [store.ErrNotFound]. LastSeen never moves backwards.
func (s *Store) RecordConnection(ctx context.Context, account uuid.UUID, ip netip.Addr, at time.Time) error {
	if !ip.IsValid() {
		return errors.New("recording connection: invalid ip address")
	}
	// Unmap so that one client seen over IPv4 and IPv4-mapped IPv6 is one row.
	addr := ip.Unmap().WithZone("").String()
	err := s.write(ctx, 0, func(tx *wtx) error {
		var one int
		if err := tx.QueryRow(`SELECT 1 FROM accounts WHERE id = ?`, account[:]).Scan(&one); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return store.ErrNotFound
			}
			return err
		}
		_, err := tx.Exec(`INSERT INTO connections (account_id, ip, first_seen, last_seen) VALUES (?, ?, ?, ?)
			ON CONFLICT (account_id, ip) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen),
				first_seen = MIN(first_seen, excluded.first_seen)`,
			account[:], addr, dbTime(at), dbTime(at))
		return err
	}, oneStatement)
	if err != nil {
		return fmt.Errorf("recording connection: %w", err)
	}
	return nil
}

// Connections implements [store.ConnLog]. An unknown account has no rows.
func (s *Store) Connections(ctx context.Context, account uuid.UUID) ([]store.Connection, error) {
	rows, err := s.readRows(ctx, `SELECT ip, first_seen, last_seen FROM connections
		WHERE account_id = ? ORDER BY last_seen DESC, ip`, account[:])
	if err != nil {
		return nil, fmt.Errorf("listing connections: %w", err)
	}
	defer rows.Close()
	var cs []store.Connection
	for rows.Next() {
		c := store.Connection{Account: account}
		var ip string
		var first, last int64
		if err := rows.Scan(&ip, &first, &last); err != nil {
			return nil, fmt.Errorf("listing connections: %w", err)
		}
		if c.IP, err = netip.ParseAddr(ip); err != nil {
			return nil, fmt.Errorf("listing connections: stored address: %w", err)
		}
		c.FirstSeen, c.LastSeen = goTime(first), goTime(last)
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing connections: %w", err)
	}
	return cs, nil
}

// PruneConnections implements [store.ConnLog].
func (s *Store) PruneConnections(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.deleteCount(ctx, `DELETE FROM connections WHERE last_seen < ?`, dbTime(before))
	if err != nil {
		return 0, fmt.Errorf("pruning connections: %w", err)
	}
	return n, nil
}

// deleteCount runs one DELETE through the writer and returns the rows it deleted.
func (s *Store) deleteCount(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := s.write(ctx, 0, func(tx *wtx) error {
		res, err := tx.Exec(query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	}, oneStatement)
	return n, err
}

// mustAffect returns errNone when res changed no row.
func mustAffect(res sql.Result, errNone error) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return errNone
	}
	return nil
}
