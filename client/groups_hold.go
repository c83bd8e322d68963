package client

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/client/group"
	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/senderkey"
)

// Holding what arrives ahead of what it depends on (docs/groups.md, "What a receiver
// accepts"). Envelopes of different senders interleave in a device's queue, so a member
// can send under an epoch this profile reaches only when a removal from someone else
// arrives, and a member's change can overtake the history of the admin adding us. Such
// group messages wait in the group's record (still encrypted: the sender-key ciphertext,
// never a plaintext) and such changes in a pending store; both are retried when the
// replica changes, and both are bounded in count and age.

const (
	// maxHeldMessages bounds the messages held per group: a member can fill it, so it is
	// what one group can make this profile keep (256 sender-key messages, about 24 MiB at
	// the largest envelope), and enough for a burst while one removal is late.
	maxHeldMessages = 256
	// heldTTL is how long a message or change waits: the server queue keeps an envelope
	// for 30 days, but a change that was sent before a message reaches us within minutes
	// unless a device is offline; a week covers that and keeps nothing forever.
	heldTTL = 7 * 24 * time.Hour
	// maxPendingGroups bounds the groups not held yet that changes may wait for: any
	// contact can name a random group, so this caps what strangers can make us keep.
	maxPendingGroups = 64
	// maxPendingChanges bounds the changes waiting for one such group, as maxHeldMessages
	// bounds messages.
	maxPendingChanges = 256
)

// heldMessage is a group message whose distribution id the sender may not use yet.
type heldMessage struct {
	Sender     string    `json:"sender"` // account id
	Device     uint32    `json:"device"`
	Envelope   uuid.UUID `json:"envelope"`
	ServerMS   int64     `json:"server_ms"`
	HeldMS     int64     `json:"held_ms"`
	Ciphertext []byte    `json:"ciphertext"` // the sender-key message, as opened from the sealed envelope
}

func (h heldMessage) address() protocol.Address {
	return protocol.Address{Name: h.Sender, DeviceID: h.Device}
}

func (h heldMessage) envelope() api.Envelope {
	return api.Envelope{ID: h.Envelope, ServerTime: h.ServerMS}
}

// holdMessage keeps a sender-key message of a current member for r, unless r holds the
// maximum already; it reports whether it was kept.
func (c *Client) holdMessage(r *replica, e api.Envelope, sender protocol.Address, ciphertext []byte, now time.Time) bool {
	if len(r.rec.Held) >= maxHeldMessages {
		return false
	}
	r.rec.Held = append(r.rec.Held, heldMessage{Sender: sender.Name, Device: sender.DeviceID, Envelope: e.ID,
		ServerMS: e.ServerTime, HeldMS: now.UnixMilli(), Ciphertext: slices.Clone(ciphertext)})
	return true
}

// retryHeld goes through r's held messages in arrival order: each the sender may now use
// is decrypted and stored as a message, each that can no longer be accepted (the sender
// left the group, the epoch is known and the sender not in it, or it waited heldTTL) is
// stored as a refusal notice, and the rest stay. It reports whether r changed; the
// caller saves r. With onlyExpired (the replica did not change since the last retry, so
// nothing else can have changed for them) it only refuses those that waited too long.
func (c *Client) retryHeld(ctx context.Context, tx *sql.Tx, st *stores, r *replica, now time.Time, onlyExpired bool) (bool, error) {
	if len(r.rec.Held) == 0 {
		return false, nil
	}
	s := r.g.State()
	r.rec.noteEpoch(s) // the epoch a change just began, which saveReplica would note too
	gid := r.g.ID()
	var keep []heldMessage
	for _, h := range r.rec.Held {
		expired := now.Sub(time.UnixMilli(h.HeldMS)) >= heldTTL
		if onlyExpired && !expired {
			keep = append(keep, h)
			continue
		}
		from, err := uuid.Parse(h.Sender)
		if err != nil {
			continue // never stored by holdMessage
		}
		who := c.token(from)
		refuse := func(why string) error {
			return c.storeGroupRecord(ctx, tx, h.envelope(), h.address(), &Content{Text: why, GroupID: gid[:]}, s.Title, true, true, now)
		}
		msg, err := senderkey.NewMessage(h.Ciphertext)
		if err != nil {
			if err := refuse(fmt.Sprintf("a message from %s could not be decrypted", who)); err != nil {
				return false, err
			}
			continue
		}
		dist := msg.DistributionID()
		switch {
		case !s.IsMember(from):
			err = refuse(fmt.Sprintf("a message from %s was refused: not a member of the group", who))
		case r.rec.mayUse(dist, from):
			err = c.openGroupMessage(ctx, tx, st, h.envelope(), h.address(), from, h.Ciphertext, r, now)
			if errors.Is(err, errDuplicateGroupMessage) {
				err = nil // a copy was read already: nothing to store
			}
		case r.rec.knowsEpoch(dist):
			err = refuse(fmt.Sprintf("a message from %s was refused: not under a sender key of this group", who))
		case expired:
			err = refuse(fmt.Sprintf("a message from %s was refused: not under a sender key of this group (held %s for the change it needs)",
				who, heldTTL))
		default:
			keep = append(keep, h)
		}
		if err != nil {
			return false, err
		}
	}
	changed := len(keep) != len(r.rec.Held)
	r.rec.Held = keep
	return changed, nil
}

// knowsEpoch reports whether dist is one of the remembered epochs.
func (rec *groupRecord) knowsEpoch(dist uuid.UUID) bool {
	return slices.ContainsFunc(rec.Epochs, func(e epochRecord) bool { return e.Dist == dist })
}

// openGroupMessage decrypts a sender-key message the sender may send in r and stores it,
// or a refusal notice when it does not decrypt or names another group. A duplicate is
// stored already and is skipped.
func (c *Client) openGroupMessage(ctx context.Context, tx *sql.Tx, st *stores, e api.Envelope, sender protocol.Address, from uuid.UUID,
	ciphertext []byte, r *replica, now time.Time) error {
	s := r.g.State()
	gid := r.g.ID()
	who := c.token(from)
	refuse := func(why string) error {
		return c.storeGroupRecord(ctx, tx, e, sender, &Content{Text: why, GroupID: gid[:]}, s.Title, true, true, now)
	}
	pt, err := senderkey.Decrypt(ctx, st, sender, ciphertext)
	if errors.Is(err, senderkey.ErrDuplicateMessage) {
		return errDuplicateGroupMessage
	}
	if err != nil {
		c.log.Debug("group message does not decrypt", "no_key", errors.Is(err, senderkey.ErrNoSenderKey))
		return refuse(fmt.Sprintf("a message from %s could not be decrypted; ask them to send it again", who))
	}
	content, err := decodeContent(pt)
	if err != nil || string(content.GroupID) != string(gid[:]) {
		return refuse(fmt.Sprintf("a message from %s was refused: it names another group", who))
	}
	m := &Content{Text: content.Text, SentMS: content.SentMS, GroupID: gid[:]}
	return c.storeGroupRecord(ctx, tx, e, sender, m, s.Title, false, false, now)
}

// errDuplicateGroupMessage: the sender-key message was decrypted before; nothing to store.
var errDuplicateGroupMessage = errors.New("duplicate group message")

// pendingChanges is what waits for a group this profile does not hold yet: the changes
// as received, each with the account whose session carried it.
type pendingChanges struct {
	Items []pendingItem `json:"items"`
}

type pendingItem struct {
	From    uuid.UUID `json:"from"`
	Changes []byte    `json:"changes"` // encodeChanges form
	Count   int       `json:"count"`
	HeldMS  int64     `json:"held_ms"`
}

// pendingKey is the meta key of the changes waiting for gid; the group id is in the
// clear there as it is in the groups table, everything else is sealed.
func pendingKey(gid group.ID) string { return pendingPrefix + gid.String() }

const pendingPrefix = "group_pending/"

// holdChanges keeps raw (changes of the unknown group gid, from the account from) until
// the group arrives, within the bounds; it reports whether they were kept.
func (c *Client) holdChanges(ctx context.Context, q querier, gid group.ID, from uuid.UUID, raw []byte, count int, now time.Time) (bool, error) {
	p, err := c.loadPending(ctx, q, gid)
	if err != nil {
		return false, err
	}
	if p == nil {
		var n int
		if err := q.QueryRowContext(ctx, "SELECT COUNT(*) FROM meta WHERE k GLOB ?", pendingPrefix+"*").Scan(&n); err != nil {
			return false, fmt.Errorf("counting pending groups: %w", err)
		}
		if n >= maxPendingGroups {
			if n, err = c.prunePending(ctx, q, now); err != nil || n >= maxPendingGroups {
				return false, err
			}
		}
		p = &pendingChanges{}
	}
	p.expire(now)
	total := 0
	for _, it := range p.Items {
		total += it.Count
	}
	if total+count > maxPendingChanges {
		return false, nil
	}
	p.Items = append(p.Items, pendingItem{From: from, Changes: slices.Clone(raw), Count: count, HeldMS: now.UnixMilli()})
	b, err := json.Marshal(p)
	if err != nil {
		return false, err
	}
	k := pendingKey(gid)
	_, err = q.ExecContext(ctx, "INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", k, c.seal.seal(b, k))
	return err == nil, wrap("holding group changes", err)
}

func (p *pendingChanges) expire(now time.Time) {
	p.Items = slices.DeleteFunc(p.Items, func(it pendingItem) bool { return now.Sub(time.UnixMilli(it.HeldMS)) >= heldTTL })
}

// prunePending forgets the pending changes that waited heldTTL, and groups left with
// none, and returns how many groups still have some.
func (c *Client) prunePending(ctx context.Context, q querier, now time.Time) (int, error) {
	rows, err := q.QueryContext(ctx, "SELECT k FROM meta WHERE k GLOB ?", pendingPrefix+"*")
	if err != nil {
		return 0, fmt.Errorf("listing pending groups: %w", err)
	}
	var ids []group.ID
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return 0, fmt.Errorf("listing pending groups: %w", err)
		}
		b, err := hex.DecodeString(strings.TrimPrefix(k, pendingPrefix))
		if err == nil && len(b) == len(group.ID{}) {
			ids = append(ids, group.ID(b))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("listing pending groups: %w", err)
	}
	left := 0
	for _, id := range ids {
		p, err := c.loadPending(ctx, q, id)
		if err != nil {
			return 0, err
		}
		if p == nil {
			continue
		}
		p.expire(now)
		if len(p.Items) > 0 {
			left++
			continue // rewritten when it is next held or folded
		}
		if _, err := q.ExecContext(ctx, "DELETE FROM meta WHERE k = ?", pendingKey(id)); err != nil {
			return 0, fmt.Errorf("forgetting pending group changes: %w", err)
		}
	}
	return left, nil
}

// loadPending reads the changes waiting for gid; nil when there are none.
func (c *Client) loadPending(ctx context.Context, q querier, gid group.ID) (*pendingChanges, error) {
	k := pendingKey(gid)
	var enc []byte
	err := q.QueryRowContext(ctx, "SELECT v FROM meta WHERE k = ?", k).Scan(&enc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading pending group changes: %w", err)
	}
	b, err := c.seal.open(enc, k)
	if err != nil {
		return nil, err
	}
	var p pendingChanges
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("stored pending group changes: %w", err)
	}
	return &p, nil
}

// foldPending folds the changes that waited for r's group, each as from the account
// that sent it (a change counts only from its author), and forgets them. It returns the
// event lines to show.
func (c *Client) foldPending(ctx context.Context, q querier, r *replica, now time.Time) ([]string, error) {
	gid := r.g.ID()
	p, err := c.loadPending(ctx, q, gid)
	if err != nil || p == nil {
		return nil, err
	}
	if _, err := q.ExecContext(ctx, "DELETE FROM meta WHERE k = ?", pendingKey(gid)); err != nil {
		return nil, fmt.Errorf("forgetting pending group changes: %w", err)
	}
	p.expire(now)
	var lines []string
	for _, it := range p.Items {
		changes, err := decodeChanges(it.Changes)
		if err != nil {
			continue // checked when it was held
		}
		lines = append(lines, c.receiveChanges(ctx, q, r, it.From, changes)...)
	}
	return lines, nil
}
