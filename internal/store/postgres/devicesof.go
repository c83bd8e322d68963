package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/internal/store"
)

// DevicesOf lists the devices of many accounts, as Devices does for one, in one query: a
// multi-recipient send checks the device lists of up to 10,000 accounts. CredentialHash
// is not read (nil): a device list check does not need it. An account with no devices
// (that is, no account) is absent from the map.
func (s *Store) DevicesOf(ctx context.Context, accounts []uuid.UUID) (map[uuid.UUID][]store.Device, error) {
	out := make(map[uuid.UUID][]store.Device, len(accounts))
	if len(accounts) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT account_id, id, registration_id, created_at FROM devices
		WHERE account_id = ANY($1::uuid[]) ORDER BY account_id, id`, accounts)
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d store.Device
		var id, reg int64
		var created time.Time
		if err := rows.Scan(&d.AccountID, &id, &reg, &created); err != nil {
			return nil, fmt.Errorf("listing devices: %w", err)
		}
		d.ID, d.RegistrationID, d.CreatedAt = uint32(id), uint32(reg), created.UTC()
		out[d.AccountID] = append(out[d.AccountID], d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	return out, nil
}
