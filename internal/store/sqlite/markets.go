package sqlite

import (
	"context"
	"fmt"

	"github.com/bastionchat/bastion/internal/store"
)

// SetMarketWithdrawal implements [store.Markets].
func (s *Store) SetMarketWithdrawal(ctx context.Context, w store.MarketWithdrawal) error {
	err := s.write(ctx, 0, func(tx *wtx) error {
		_, err := tx.Exec(`INSERT INTO market_withdrawals (country, since, reason) VALUES (?, ?, ?)
			ON CONFLICT (country) DO UPDATE SET since = excluded.since, reason = excluded.reason`,
			w.Country, dbTime(w.Since), w.Reason)
		return err
	}, oneStatement)
	if err != nil {
		return fmt.Errorf("recording market withdrawal: %w", err)
	}
	return nil
}

// ClearMarketWithdrawal implements [store.Markets].
func (s *Store) ClearMarketWithdrawal(ctx context.Context, country string) error {
	err := s.write(ctx, 0, func(tx *wtx) error {
		_, err := tx.Exec(`DELETE FROM market_withdrawals WHERE country = ?`, country)
		return err
	}, oneStatement)
	if err != nil {
		return fmt.Errorf("clearing market withdrawal: %w", err)
	}
	return nil
}

// MarketWithdrawals implements [store.Markets].
func (s *Store) MarketWithdrawals(ctx context.Context) ([]store.MarketWithdrawal, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT country, since, reason FROM market_withdrawals ORDER BY country`)
	if err != nil {
		return nil, fmt.Errorf("listing market withdrawals: %w", err)
	}
	defer rows.Close()
	var ws []store.MarketWithdrawal
	for rows.Next() {
		var w store.MarketWithdrawal
		var since int64
		if err := rows.Scan(&w.Country, &since, &w.Reason); err != nil {
			return nil, fmt.Errorf("listing market withdrawals: %w", err)
		}
		w.Since = goTime(since)
		ws = append(ws, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing market withdrawals: %w", err)
	}
	return ws, nil
}
