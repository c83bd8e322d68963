package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/fingerprint"
)

// Contact is a phone number this profile has talked to, and what it knows of its key.
type Contact struct {
	Number    string    `json:"number"`
	AccountID uuid.UUID `json:"account_id"`
	// Trust is "unknown" (no key seen yet), "trusted", or "changed": the identity key
	// changed and sending is refused until [Client.Trust].
	Trust string `json:"trust"`
}

// Trust states of a [Contact].
const (
	TrustUnknown = "unknown"
	TrustTrusted = "trusted"
	TrustChanged = "changed"
)

// Contacts lists the profile's contacts by number.
func (c *Client) Contacts(ctx context.Context) ([]Contact, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rows, err := c.db.QueryContext(ctx, `SELECT c.number, c.account, i.trusted FROM contacts c
		LEFT JOIN identities i ON i.account = c.account ORDER BY c.number`)
	if err != nil {
		return nil, fmt.Errorf("reading contacts: %w", err)
	}
	defer rows.Close()
	var out []Contact
	for rows.Next() {
		var ct Contact
		var acct string
		var trusted sql.NullBool
		if err := rows.Scan(&ct.Number, &acct, &trusted); err != nil {
			return nil, fmt.Errorf("reading contacts: %w", err)
		}
		if ct.AccountID, err = uuid.Parse(acct); err != nil {
			return nil, fmt.Errorf("stored contact: %w", err)
		}
		switch {
		case !trusted.Valid:
			ct.Trust = TrustUnknown
		case trusted.Bool:
			ct.Trust = TrustTrusted
		default:
			ct.Trust = TrustChanged
		}
		out = append(out, ct)
	}
	return out, rows.Err()
}

// contactIdentity returns the account and stored identity of the contact with number.
func (c *Client) contactIdentity(ctx context.Context, number string) (uuid.UUID, *identityRow, error) {
	n, err := NormalizeNumber(number)
	if err != nil {
		return uuid.Nil, nil, err
	}
	var acct string
	err = c.db.QueryRowContext(ctx, "SELECT account FROM contacts WHERE number = ?", n).Scan(&acct)
	if errors.Is(err, sql.ErrNoRows) {
		return uuid.Nil, nil, fmt.Errorf("%s: %w", n, ErrUnknownContact)
	}
	if err != nil {
		return uuid.Nil, nil, fmt.Errorf("reading contacts: %w", err)
	}
	id, err := uuid.Parse(acct)
	if err != nil {
		return uuid.Nil, nil, fmt.Errorf("stored contact: %w", err)
	}
	row, err := c.storesOn(c.db).loadIdentity(ctx, acct)
	if err != nil {
		return uuid.Nil, nil, err
	}
	if row == nil {
		return uuid.Nil, nil, fmt.Errorf("%s: no identity key known yet (send or receive a message first): %w", n, ErrUnknownContact)
	}
	return id, row, nil
}

// SafetyNumber returns the 60-digit safety number between this profile and the contact
// with number, as Signal computes it (fingerprint version 2, 5200 iterations, each
// account id's 16 bytes as its identifier), in 12 groups of 5 digits. Both sides see
// the same number; comparing it in person or over a trusted channel proves that no one
// sits in the middle. It is computed over the key currently stored for the contact,
// which after a change is the new, untrusted one.
func (c *Client) SafetyNumber(ctx context.Context, number string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.requireAccount(); err != nil {
		return "", err
	}
	id, row, err := c.contactIdentity(ctx, number)
	if err != nil {
		return "", err
	}
	return safetyNumber(c.acc.AccountID, c.id.PublicKey(), id, row.key)
}

func safetyNumber(local uuid.UUID, localKey *curve.PublicKey, remote uuid.UUID, remoteKey *curve.PublicKey) (string, error) {
	f, err := fingerprint.New(fingerprint.Version, fingerprint.Iterations, local[:], localKey, remote[:], remoteKey)
	if err != nil {
		return "", fmt.Errorf("computing safety number: %w", err)
	}
	d := f.Displayable()
	groups := make([]string, 0, len(d)/5)
	for i := 0; i+5 <= len(d); i += 5 {
		groups = append(groups, d[i:i+5])
	}
	return strings.Join(groups, " "), nil
}

// Trust accepts the identity key currently stored for the contact with number, after
// the user compared safety numbers: sending to it is allowed again.
func (c *Client) Trust(ctx context.Context, number string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.requireAccount(); err != nil {
		return err
	}
	id, row, err := c.contactIdentity(ctx, number)
	if err != nil {
		return err
	}
	// A key the server did not log is refused even when the user says yes (kt.go).
	if err := c.ktVerifyAccountKey(ctx, id, row.key.Bytes()); err != nil {
		return err
	}
	_, err = c.db.ExecContext(ctx, "UPDATE identities SET trusted = 1, changed = 0, updated_ms = ? WHERE account = ?",
		c.now().UnixMilli(), id.String())
	return wrap("trusting identity", err)
}
