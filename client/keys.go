package client

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/protocol"
)

// Signed prekey schedule. Signal rotates every few days to bound what a stolen signed
// prekey exposes; the old one is kept for as long as a message made from it can still
// arrive, which is the server's queue TTL (30 days).
const (
	SignedPreKeyRotation = 7 * 24 * time.Hour
	SignedPreKeyGrace    = 30 * 24 * time.Hour
)

// Maintain keeps the device's published keys healthy: it uploads one-time prekeys when
// the server has fewer than 20 of a kind left, and rotates the signed prekey and the
// last-resort Kyber prekey once they are older than [SignedPreKeyRotation], deleting
// replaced ones after [SignedPreKeyGrace]. Receive and Listen call it; a program that
// only sends should call it now and then.
func (c *Client) Maintain(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.requireAccount(); err != nil {
		return err
	}
	if err := c.rotate(ctx); err != nil {
		return err
	}
	return c.replenish(ctx)
}

func (c *Client) replenish(ctx context.Context) error {
	var count api.PreKeyCount
	if err := c.api.do(ctx, "GET", "/v1/keys", c.cred(), nil, &count); err != nil {
		return fmt.Errorf("counting prekeys: %w", err)
	}
	ecN, kyberN := 0, 0
	if count.Count < preKeyRefill {
		ecN = preKeyBatch - count.Count
	}
	if count.KyberCount < preKeyRefill {
		kyberN = preKeyBatch - count.KyberCount
	}
	if ecN == 0 && kyberN == 0 {
		return nil
	}
	ecFrom, err := c.nextID(ctx, metaNextPreKey, ecN)
	if err != nil {
		return err
	}
	kyberFrom, err := c.nextID(ctx, metaNextKyber, kyberN)
	if err != nil {
		return err
	}
	pks, kpks, err := c.generateOneTime(c.id, ecFrom, kyberFrom, ecN, kyberN)
	if err != nil {
		return err
	}
	// Private halves first: a key the server hands out must be one we can use.
	err = c.inTx(ctx, func(tx *sql.Tx) error {
		st := c.storesOn(tx)
		for _, p := range pks {
			if err := st.storePreKey(ctx, p); err != nil {
				return err
			}
		}
		for _, p := range kpks {
			if err := st.storeKyberPreKey(ctx, p, false); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	req := api.SetKeysRequest{PreKeys: preKeysWire(pks), KyberPreKeys: kyberPreKeysWire(kpks)}
	if err := c.api.do(ctx, "PUT", "/v1/keys", c.cred(), req, nil); err != nil {
		return fmt.Errorf("uploading prekeys: %w", err)
	}
	c.log.Debug("replenished prekeys", "ec", ecN, "kyber", kyberN)
	return nil
}

// nextID reserves n ids from the counter under key and returns the first. Ids wrap
// below 2^24, libsignal's prekey id space (its MEDIUM_MAX_VALUE).
func (c *Client) nextID(ctx context.Context, key string, n int) (uint32, error) {
	var first uint32
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		b, err := getMeta(ctx, tx, key)
		if err != nil {
			return err
		}
		first = 1
		if len(b) == 4 {
			first = binary.BigEndian.Uint32(b)
		}
		if first+uint32(n) >= 1<<24 {
			first = 1
		}
		return setMeta(ctx, tx, key, binary.BigEndian.AppendUint32(nil, first+uint32(n)))
	})
	return first, err
}

func (c *Client) rotate(ctx context.Context) error {
	var newest int64
	if err := c.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(created_ms), 0) FROM signed_prekeys").Scan(&newest); err != nil {
		return fmt.Errorf("reading signed prekeys: %w", err)
	}
	now := c.now()
	if now.Sub(time.UnixMilli(newest)) < SignedPreKeyRotation {
		return nil
	}
	sid, err := c.nextID(ctx, metaNextSigned, 1)
	if err != nil {
		return err
	}
	// The last-resort Kyber key rotates with it; its ids share the one-time counter.
	kid, err := c.nextID(ctx, metaNextKyber, 1)
	if err != nil {
		return err
	}
	spk, err := protocol.GenerateSignedPreKey(c.rand, c.id, sid, now)
	if err != nil {
		return err
	}
	lr, err := protocol.GenerateKyberPreKey(c.rand, c.id, kid, now)
	if err != nil {
		return err
	}
	err = c.inTx(ctx, func(tx *sql.Tx) error {
		st := c.storesOn(tx)
		if err := st.storeSignedPreKey(ctx, spk); err != nil {
			return err
		}
		return st.storeKyberPreKey(ctx, lr, true)
	})
	if err != nil {
		return err
	}
	s, k := signedWire(spk), kyberWire(lr)
	if err := c.api.do(ctx, "PUT", "/v1/keys", c.cred(), api.SetKeysRequest{SignedPreKey: &s, KyberLastResort: &k}, nil); err != nil {
		return fmt.Errorf("uploading rotated prekeys: %w", err)
	}
	// Replaced keys stay for the grace period: a queued message may have been made from
	// them. The newest of each kind stays whatever its age.
	cutoff := now.Add(-SignedPreKeyGrace).UnixMilli()
	if _, err := c.db.ExecContext(ctx, "DELETE FROM signed_prekeys WHERE created_ms < ? AND id != ?", cutoff, spk.ID); err != nil {
		return fmt.Errorf("pruning signed prekeys: %w", err)
	}
	if _, err := c.db.ExecContext(ctx, "DELETE FROM kyber_prekeys WHERE last_resort = 1 AND created_ms < ? AND id != ?", cutoff, lr.ID); err != nil {
		return fmt.Errorf("pruning kyber prekeys: %w", err)
	}
	// A deleted key's replay record is of no use: no message for it can decrypt.
	if _, err := c.db.ExecContext(ctx, "DELETE FROM kyber_used WHERE id NOT IN (SELECT id FROM kyber_prekeys)"); err != nil {
		return fmt.Errorf("pruning kyber prekey uses: %w", err)
	}
	c.log.Debug("rotated signed prekey")
	return nil
}
