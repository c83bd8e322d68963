package postgres

import (
	"context"
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
	tag, err := s.pool.Exec(ctx, `INSERT INTO verifications (id, number, code_hash, attempts, verified, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
		v.ID, v.Number, v.CodeHash, v.Attempts, v.Verified, dbTime(nowOr(v.CreatedAt)), dbTime(v.ExpiresAt))
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("creating verification: %w", err)
	}
	return nil
}

// Verification implements [store.Verifications].
func (s *Store) Verification(ctx context.Context, id string) (store.Verification, error) {
	v := store.Verification{ID: id}
	err := s.pool.QueryRow(ctx, `SELECT number, code_hash, attempts, verified, created_at, expires_at
		FROM verifications WHERE id = $1`, id).Scan(&v.Number, &v.CodeHash, &v.Attempts, &v.Verified, &v.CreatedAt, &v.ExpiresAt)
	if err != nil {
		return store.Verification{}, fmt.Errorf("loading verification: %w", notFound(err))
	}
	v.CreatedAt, v.ExpiresAt = v.CreatedAt.UTC(), v.ExpiresAt.UTC()
	return v, nil
}

// UpdateVerification implements [store.Verifications]. An unknown id fails with
// [store.ErrNotFound].
func (s *Store) UpdateVerification(ctx context.Context, v store.Verification) error {
	tag, err := s.pool.Exec(ctx, `UPDATE verifications SET attempts = $1, verified = $2 WHERE id = $3`, v.Attempts, v.Verified, v.ID)
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("updating verification: %w", err)
	}
	return nil
}

// DeleteVerification implements [store.Verifications]. Deleting an unknown id is not an
// error: the session is gone either way.
func (s *Store) DeleteVerification(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM verifications WHERE id = $1`, id); err != nil {
		return fmt.Errorf("deleting verification: %w", err)
	}
	return nil
}

// PruneVerifications implements [store.Verifications].
func (s *Store) PruneVerifications(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM verifications WHERE expires_at < $1`, dbTime(before))
	if err != nil {
		return 0, fmt.Errorf("pruning verifications: %w", err)
	}
	return tag.RowsAffected(), nil
}

// RecordConnection implements [store.ConnLog]. An unknown account fails with
// [store.ErrNotFound]. LastSeen never moves backwards, FirstSeen never forwards.
func (s *Store) RecordConnection(ctx context.Context, account uuid.UUID, ip netip.Addr, at time.Time) error {
	if !ip.IsValid() {
		return errors.New("recording connection: invalid ip address")
	}
	// Unmap so that one client seen over IPv4 and IPv4-mapped IPv6 is one row.
	addr := ip.Unmap().WithZone("").String()
	at = dbTime(at)
	_, err := s.pool.Exec(ctx, `INSERT INTO connections (account_id, ip, first_seen, last_seen) VALUES ($1, $2, $3, $3)
		ON CONFLICT (account_id, ip) DO UPDATE SET last_seen = GREATEST(connections.last_seen, excluded.last_seen),
			first_seen = LEAST(connections.first_seen, excluded.first_seen)`, account, addr, at)
	if pgCode(err) == codeForeignKeyViolation {
		err = store.ErrNotFound // the foreign key to accounts is the existence check
	}
	if err != nil {
		return fmt.Errorf("recording connection: %w", err)
	}
	return nil
}

// Connections implements [store.ConnLog]. An unknown account has no rows.
func (s *Store) Connections(ctx context.Context, account uuid.UUID) ([]store.Connection, error) {
	rows, err := s.pool.Query(ctx, `SELECT ip, first_seen, last_seen FROM connections
		WHERE account_id = $1 ORDER BY last_seen DESC, ip`, account)
	if err != nil {
		return nil, fmt.Errorf("listing connections: %w", err)
	}
	defer rows.Close()
	var cs []store.Connection
	for rows.Next() {
		c := store.Connection{Account: account}
		var ip string
		if err := rows.Scan(&ip, &c.FirstSeen, &c.LastSeen); err != nil {
			return nil, fmt.Errorf("listing connections: %w", err)
		}
		if c.IP, err = netip.ParseAddr(ip); err != nil {
			return nil, fmt.Errorf("listing connections: stored address: %w", err)
		}
		c.FirstSeen, c.LastSeen = c.FirstSeen.UTC(), c.LastSeen.UTC()
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing connections: %w", err)
	}
	return cs, nil
}

// PruneConnections implements [store.ConnLog].
func (s *Store) PruneConnections(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM connections WHERE last_seen < $1`, dbTime(before))
	if err != nil {
		return 0, fmt.Errorf("pruning connections: %w", err)
	}
	return tag.RowsAffected(), nil
}
