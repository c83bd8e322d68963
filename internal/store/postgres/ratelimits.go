package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// takeTokenSQL is one token bucket check in one statement. The upsert takes the bucket's
// row lock, so concurrent takers on any node queue on the row, and PostgreSQL re-checks
// the WHERE against the newest row version before updating it (READ COMMITTED's
// EvalPlanQual): a token is never taken twice. A refused take writes nothing, since the
// refill is computed from updated_at; its wait comes from the statement's snapshot, which
// a concurrent taker may have made stale, so it is a hint (at least a microsecond), never
// a grant. $1 key, $2 capacity, $3 now, $4 refill in microseconds.
//
// avail is the bucket refilled up to now; a clock behind updated_at (another node's)
// refills nothing, and updated_at never moves backwards.
const takeTokenSQL = `WITH up AS (
	INSERT INTO rate_limits AS r (key, tokens, updated_at, full_at)
	VALUES ($1::bytea, $2::float8 - 1, $3::timestamptz, $3::timestamptz + $4::bigint * interval '1 microsecond')
	ON CONFLICT (key) DO UPDATE SET
		tokens = ` + availSQL + ` - 1,
		updated_at = GREATEST(r.updated_at, $3::timestamptz),
		full_at = GREATEST(r.updated_at, $3::timestamptz) + ($2::float8 - (` + availSQL + ` - 1)) * $4::bigint * interval '1 microsecond'
	WHERE ` + availSQL + ` >= 1
	RETURNING 1
)
SELECT true, 0::float8 FROM up
UNION ALL
SELECT false, (1 - ` + availSQL + `) * $4::bigint FROM rate_limits r
	WHERE r.key = $1::bytea AND NOT EXISTS (SELECT 1 FROM up)`

const availSQL = `LEAST($2::float8, r.tokens + GREATEST(0, EXTRACT(EPOCH FROM ($3::timestamptz - r.updated_at)) * 1000000) / $4::bigint)`

// TakeToken implements [store.RateLimits].
func (s *Store) TakeToken(ctx context.Context, key []byte, capacity int, refill time.Duration, now time.Time) (bool, time.Duration, error) {
	if capacity < 1 || refill < time.Microsecond {
		return false, 0, errors.New("taking rate limit token: capacity and refill must be positive")
	}
	rows, err := s.pool.Query(ctx, takeTokenSQL, key, float64(capacity), dbTime(now), refill.Microseconds())
	if err != nil {
		return false, 0, fmt.Errorf("taking rate limit token: %w", err)
	}
	defer rows.Close()
	// No row at all: the upsert was refused against a row another node inserted after
	// this statement's snapshot, so the snapshot cannot say how long to wait.
	ok, waitUS := false, float64(refill.Microseconds())
	if rows.Next() {
		if err := rows.Scan(&ok, &waitUS); err != nil {
			return false, 0, fmt.Errorf("taking rate limit token: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return false, 0, fmt.Errorf("taking rate limit token: %w", err)
	}
	if ok {
		return true, 0, nil
	}
	return false, max(time.Duration(waitUS)*time.Microsecond, time.Microsecond), nil
}

// PruneRateLimits implements [store.RateLimits].
func (s *Store) PruneRateLimits(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM rate_limits WHERE full_at < $1`, dbTime(before))
	if err != nil {
		return 0, fmt.Errorf("pruning rate limits: %w", err)
	}
	return tag.RowsAffected(), nil
}
