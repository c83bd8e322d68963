package sqlite

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/internal/store"
)

// devicesOfChunk is how many accounts one DevicesOf query names. Every query has this
// many placeholders (a short last chunk repeats its first account), so one prepared
// statement serves them all; SQLite allows 32,766 parameters.
const devicesOfChunk = 256

var devicesOfQuery = `SELECT account_id, id, registration_id, created_at FROM devices
	WHERE account_id IN (?` + strings.Repeat(",?", devicesOfChunk-1) + `) ORDER BY account_id, id`

// DevicesOf lists the devices of many accounts, as Devices does for one, in one query per
// 256 accounts instead of one per account: a multi-recipient send checks the device lists
// of up to 10,000 accounts. CredentialHash is not read (nil): a device list check does
// not need it. An account with no devices (that is, no account) is absent from the map.
func (s *Store) DevicesOf(ctx context.Context, accounts []uuid.UUID) (map[uuid.UUID][]store.Device, error) {
	out := make(map[uuid.UUID][]store.Device, len(accounts))
	args := make([]any, devicesOfChunk)
	for start := 0; start < len(accounts); start += devicesOfChunk {
		chunk := accounts[start:min(start+devicesOfChunk, len(accounts))]
		for i := range args {
			a := chunk[0]
			if i < len(chunk) {
				a = chunk[i]
			}
			args[i] = a[:]
		}
		if err := s.devicesOf(ctx, args, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Store) devicesOf(ctx context.Context, args []any, out map[uuid.UUID][]store.Device) error {
	rows, err := s.readRows(ctx, devicesOfQuery, args...)
	if err != nil {
		return fmt.Errorf("listing devices: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d store.Device
		var acct []byte
		var created int64
		if err := rows.Scan(&acct, &d.ID, &d.RegistrationID, &created); err != nil {
			return fmt.Errorf("listing devices: %w", err)
		}
		if d.AccountID, err = scanUUID(acct); err != nil {
			return fmt.Errorf("listing devices: %w", err)
		}
		d.CreatedAt = goTime(created)
		out[d.AccountID] = append(out[d.AccountID], d)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing devices: %w", err)
	}
	return nil
}
