package postgres

import (
	"context"
	"fmt"

	"github.com/bastionchat/bastion/internal/store"
)

// SetMarketWithdrawal implements [store.Markets].
func (s *Store) SetMarketWithdrawal(ctx context.Context, w store.MarketWithdrawal) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO market_withdrawals (country, since, reason) VALUES ($1, $2, $3)
		ON CONFLICT (country) DO UPDATE SET since = excluded.since, reason = excluded.reason`,
		w.Country, dbTime(w.Since), w.Reason)
	if err != nil {
		return fmt.Errorf("recording market withdrawal: %w", err)
	}
	return nil
}

// ClearMarketWithdrawal implements [store.Markets].
func (s *Store) ClearMarketWithdrawal(ctx context.Context, country string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM market_withdrawals WHERE country = $1`, country); err != nil {
		return fmt.Errorf("clearing market withdrawal: %w", err)
	}
	return nil
}

// MarketWithdrawals implements [store.Markets].
func (s *Store) MarketWithdrawals(ctx context.Context) ([]store.MarketWithdrawal, error) {
	rows, err := s.pool.Query(ctx, `SELECT country, since, reason FROM market_withdrawals ORDER BY country`)
	if err != nil {
		return nil, fmt.Errorf("listing market withdrawals: %w", err)
	}
	defer rows.Close()
	var ws []store.MarketWithdrawal
	for rows.Next() {
		var w store.MarketWithdrawal
		if err := rows.Scan(&w.Country, &w.Since, &w.Reason); err != nil {
			return nil, fmt.Errorf("listing market withdrawals: %w", err)
		}
		w.Since = w.Since.UTC()
		ws = append(ws, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing market withdrawals: %w", err)
	}
	return ws, nil
}
