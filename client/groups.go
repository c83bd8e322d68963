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

// Groups (docs/groups.md, issue 8). The state machine is package client/group; this file
// keeps each group's replica in the profile and carries out what each change's Plan says:
// changes and sender keys travel over the 1:1 sessions, group messages are encrypted once
// with this device's sender key and sealed once per recipient device.

// Errors of the group methods.
var (
	// ErrUnknownGroup: no group of this profile matches the name or id given.
	ErrUnknownGroup = errors.New("no such group")
	// ErrAmbiguousGroup: several groups match the name or id prefix given.
	ErrAmbiguousGroup = errors.New("several groups match; give more of the id")
)

// minGroupPrefix is the shortest hex prefix of a group id accepted to name a group: 8
// digits make a collision between one user's groups unlikely and are still typeable.
const minGroupPrefix = 8

// GroupInfo is a group as this profile sees it.
type GroupInfo struct {
	// ID is the group's 32-byte id in hex.
	ID       string        `json:"id"`
	Title    string        `json:"title"`
	Revision uint64        `json:"revision"`
	Epoch    uint64        `json:"epoch"`
	Members  []GroupMember `json:"members"`
	// Member says whether this account is still a member.
	Member bool `json:"member"`
	Admin  bool `json:"admin"`
	// Digest is the hex SHA-256 of the state (group.State.Digest): members holding the
	// same changes show the same digest.
	Digest string `json:"digest"`
}

// GroupMember is one member of a group.
type GroupMember struct {
	Account uuid.UUID `json:"account"`
	// Number is the member's phone number when the profile knows it (a contact, or a
	// number the member stated and the directory confirmed).
	Number string `json:"number,omitempty"`
	Admin  bool   `json:"admin,omitempty"`
	Me     bool   `json:"me,omitempty"`
}

// MessageGroup names the group of a received message or event.
type MessageGroup struct {
	ID string `json:"id"` // hex
	// Title is the group's title when the message arrived.
	Title string `json:"title"`
}

// groupRecord is what the groups table holds for one group, encrypted: the replica's
// history and this device's bookkeeping.
type groupRecord struct {
	History []byte `json:"history"`
	// MyDist is the distribution id of this device's current sending chain, and Holders
	// the devices ("account.device") that hold that chain already.
	MyDist  uuid.UUID `json:"my_dist"`
	Holders []string  `json:"holders,omitempty"`
	// Epochs are the latest sender-key epochs seen, oldest first, each with every
	// account that was a member during it: a member still sending under an earlier epoch
	// (it has not seen the change that ended it) is read only if it was in that epoch.
	Epochs []epochRecord `json:"epochs,omitempty"`
	// Outbox holds changes to send, in order; an entry leaves it once the server has it.
	Outbox []outboxEntry `json:"outbox,omitempty"`
	// Held are group messages under a distribution id the sender may not use yet, oldest
	// first, still encrypted (groups_hold.go).
	Held []heldMessage `json:"held,omitempty"`
}

type epochRecord struct {
	Dist    uuid.UUID   `json:"dist"`
	Members []uuid.UUID `json:"members"`
}

// maxEpochs is how many epochs are remembered: enough for a sender that missed a few
// removals, and a bound on what a peer can make us keep.
const maxEpochs = 16

// Outbox entry kinds.
const (
	sendChange    = "change"     // one change this device made, to every member past and present
	sendHistory   = "history"    // the whole history, to accounts this device added
	sendChangesBy = "changes_by" // this account's own changes, to accounts others added
)

type outboxEntry struct {
	Kind   string      `json:"kind"`
	Change []byte      `json:"change,omitempty"`
	To     []uuid.UUID `json:"to"`
}

// replica is a loaded group: its record and its state machine.
type replica struct {
	rec *groupRecord
	g   *group.Group
}

func groupWhere(id group.ID) string { return "group/" + id.String() }

// loadReplica reads a group from q; nil when the profile has none with that id.
func (c *Client) loadReplica(ctx context.Context, q querier, id group.ID) (*replica, error) {
	var enc []byte
	err := q.QueryRowContext(ctx, "SELECT record_enc FROM groups WHERE id = ?", id[:]).Scan(&enc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading group: %w", err)
	}
	return c.openReplica(id, enc)
}

func (c *Client) openReplica(id group.ID, enc []byte) (*replica, error) {
	b, err := c.seal.open(enc, groupWhere(id))
	if err != nil {
		return nil, err
	}
	var rec groupRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("stored group: %w", err)
	}
	g, err := restore(c.acc.AccountID, rec.History)
	if err != nil {
		return nil, fmt.Errorf("stored group: %w", err)
	}
	if g.ID() != id {
		return nil, errors.New("stored group: history of another group")
	}
	return &replica{rec: &rec, g: g}, nil
}

// restore rebuilds a replica from its stored history: the create, then every other
// change as if from its author (the history was checked when it arrived).
func restore(me uuid.UUID, history []byte) (*group.Group, error) {
	cs, err := group.NewHistory(history)
	if err != nil {
		return nil, err
	}
	g, _, err := group.New(me, cs[0].Author, cs[0])
	if err != nil {
		return nil, err
	}
	for _, ch := range cs[1:] {
		if _, err := g.Receive(ch.Author, ch); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// saveReplica writes r to q, noting its epoch first.
func (c *Client) saveReplica(ctx context.Context, q querier, r *replica) error {
	s := r.g.State()
	r.rec.History = r.g.History()
	r.rec.noteEpoch(s)
	b, err := json.Marshal(r.rec)
	if err != nil {
		return err
	}
	id := r.g.ID()
	_, err = q.ExecContext(ctx, `INSERT INTO groups (id, record_enc, updated_ms) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET record_enc = excluded.record_enc, updated_ms = excluded.updated_ms`,
		id[:], c.seal.seal(b, groupWhere(id)), c.now().UnixMilli())
	return wrap("saving group", err)
}

// noteEpoch records s's epoch and members.
func (rec *groupRecord) noteEpoch(s *group.State) {
	if n := len(rec.Epochs); n > 0 && rec.Epochs[n-1].Dist == s.DistributionID {
		e := &rec.Epochs[n-1]
		e.Members = unionIDs(e.Members, s.Members)
		return
	}
	rec.Epochs = append(rec.Epochs, epochRecord{Dist: s.DistributionID, Members: slices.Clone(s.Members)})
	if len(rec.Epochs) > maxEpochs {
		rec.Epochs = slices.Delete(rec.Epochs, 0, len(rec.Epochs)-maxEpochs)
	}
}

// mayUse reports whether account may send under dist in this group: dist is the current
// epoch's or an earlier epoch's that account was a member in.
func (rec *groupRecord) mayUse(dist, account uuid.UUID) bool {
	for _, e := range rec.Epochs {
		if e.Dist == dist && slices.Contains(e.Members, account) {
			return true
		}
	}
	return false
}

func unionIDs(a, b []uuid.UUID) []uuid.UUID {
	out := append(slices.Clone(a), b...)
	slices.SortFunc(out, compareIDs)
	return slices.Compact(out)
}

// allReplicas loads every group of the profile.
func (c *Client) allReplicas(ctx context.Context) ([]*replica, error) {
	rows, err := c.db.QueryContext(ctx, "SELECT id, record_enc FROM groups ORDER BY updated_ms")
	if err != nil {
		return nil, fmt.Errorf("listing groups: %w", err)
	}
	type row struct {
		id  group.ID
		enc []byte
	}
	var rs []row
	for rows.Next() {
		var id, enc []byte
		if err := rows.Scan(&id, &enc); err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing groups: %w", err)
		}
		if len(id) != len(group.ID{}) {
			continue
		}
		rs = append(rs, row{group.ID(id), enc})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing groups: %w", err)
	}
	out := make([]*replica, 0, len(rs))
	for _, r := range rs {
		rep, err := c.openReplica(r.id, r.enc)
		if err != nil {
			return nil, err
		}
		out = append(out, rep)
	}
	return out, nil
}

// findGroup resolves ref: a hex prefix of a group id of at least minGroupPrefix digits,
// or a title that exactly one group of the profile has.
func (c *Client) findGroup(ctx context.Context, ref string) (*replica, error) {
	ref = strings.TrimSpace(ref)
	all, err := c.allReplicas(ctx)
	if err != nil {
		return nil, err
	}
	var byID, byTitle []*replica
	lower := strings.ToLower(ref)
	isHex := len(ref) >= minGroupPrefix && len(ref) <= 2*len(group.ID{}) && strings.Trim(lower, "0123456789abcdef") == ""
	for _, r := range all {
		if isHex && strings.HasPrefix(r.g.ID().String(), lower) {
			byID = append(byID, r)
		}
		if r.g.State().Title == ref {
			byTitle = append(byTitle, r)
		}
	}
	switch {
	case len(byID) == 1:
		return byID[0], nil
	case len(byID) > 1:
		return nil, fmt.Errorf("%q: %w", ref, ErrAmbiguousGroup)
	case len(byTitle) == 1:
		return byTitle[0], nil
	case len(byTitle) > 1:
		return nil, fmt.Errorf("%d groups are called %q: %w", len(byTitle), ref, ErrAmbiguousGroup)
	}
	return nil, fmt.Errorf("%q: %w", ref, ErrUnknownGroup)
}

// numberOn returns the phone number the contacts know for account, or "".
func (c *Client) numberOn(ctx context.Context, q querier, account uuid.UUID) string {
	var n string
	if err := q.QueryRowContext(ctx, "SELECT number FROM contacts WHERE account = ?", account.String()).Scan(&n); err != nil {
		return ""
	}
	return n
}

func (c *Client) info(ctx context.Context, q querier, r *replica) GroupInfo {
	s := r.g.State()
	d := s.Digest()
	gi := GroupInfo{ID: s.Group.String(), Title: s.Title, Revision: s.Revision, Epoch: s.Epoch,
		Member: s.IsMember(c.acc.AccountID), Admin: s.IsAdmin(c.acc.AccountID), Digest: hex.EncodeToString(d[:])}
	for _, m := range s.Members {
		gm := GroupMember{Account: m, Number: c.numberOn(ctx, q, m), Admin: s.IsAdmin(m), Me: m == c.acc.AccountID}
		if gm.Me {
			gm.Number = c.acc.Number
		}
		gi.Members = append(gi.Members, gm)
	}
	return gi
}

// Groups lists the groups of this profile, including those it has left or was removed
// from (Member is then false).
func (c *Client) Groups(ctx context.Context) ([]GroupInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.requireAccount(); err != nil {
		return nil, err
	}
	all, err := c.allReplicas(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]GroupInfo, 0, len(all))
	for _, r := range all {
		out = append(out, c.info(ctx, c.db, r))
	}
	return out, nil
}

// Group returns the group named by ref: a hex prefix of its id (at least 8 digits) or its
// exact title, if only one group has it ([ErrUnknownGroup], [ErrAmbiguousGroup]).
func (c *Client) Group(ctx context.Context, ref string) (GroupInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.requireAccount(); err != nil {
		return GroupInfo{}, err
	}
	r, err := c.findGroup(ctx, ref)
	if err != nil {
		return GroupInfo{}, err
	}
	return c.info(ctx, c.db, r), nil
}

// resolveAll returns the accounts registered with numbers.
func (c *Client) resolveAll(ctx context.Context, numbers []string) ([]uuid.UUID, error) {
	out := make([]uuid.UUID, 0, len(numbers))
	for _, num := range numbers {
		n, err := NormalizeNumber(num)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", num, err)
		}
		id, err := c.resolve(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}

// CreateGroup makes a group titled title with this account as its admin and the accounts
// registered with numbers as its other members, and sends the create to all of them.
func (c *Client) CreateGroup(ctx context.Context, title string, numbers []string) (GroupInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.requireAccount(); err != nil {
		return GroupInfo{}, err
	}
	members, err := c.resolveAll(ctx, numbers)
	if err != nil {
		return GroupInfo{}, err
	}
	g, u, err := group.Create(c.rand, c.acc.AccountID, title, members)
	if err != nil {
		return GroupInfo{}, err
	}
	r := &replica{rec: &groupRecord{}, g: g}
	return c.commitChange(ctx, r, u)
}

// change makes one change on the group ref and sends it.
func (c *Client) change(ctx context.Context, ref string, numbers []string, f func(g *group.Group, members []uuid.UUID) (group.Update, error)) (GroupInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.requireAccount(); err != nil {
		return GroupInfo{}, err
	}
	r, err := c.findGroup(ctx, ref)
	if err != nil {
		return GroupInfo{}, err
	}
	members, err := c.resolveAll(ctx, numbers)
	if err != nil {
		return GroupInfo{}, err
	}
	u, err := f(r.g, members)
	if err != nil {
		return GroupInfo{}, err
	}
	return c.commitChange(ctx, r, u)
}

// AddToGroup adds the accounts registered with numbers to the group ref. Admins only: a
// non-admin gets group.ErrNotAdmin before anything is sent.
func (c *Client) AddToGroup(ctx context.Context, ref string, numbers []string) (GroupInfo, error) {
	return c.change(ctx, ref, numbers, func(g *group.Group, m []uuid.UUID) (group.Update, error) { return g.Add(c.rand, m...) })
}

// RemoveFromGroup removes the accounts registered with numbers from the group ref. Admins
// only. Every remaining member's next message goes out under a new sender key.
func (c *Client) RemoveFromGroup(ctx context.Context, ref string, numbers []string) (GroupInfo, error) {
	return c.change(ctx, ref, numbers, func(g *group.Group, m []uuid.UUID) (group.Update, error) { return g.Remove(c.rand, m...) })
}

// PromoteInGroup makes the members registered with numbers admins of the group ref.
// Admins only.
func (c *Client) PromoteInGroup(ctx context.Context, ref string, numbers []string) (GroupInfo, error) {
	return c.change(ctx, ref, numbers, func(g *group.Group, m []uuid.UUID) (group.Update, error) { return g.Promote(c.rand, m...) })
}

// RenameGroup sets the title of the group ref. Admins only.
func (c *Client) RenameGroup(ctx context.Context, ref, title string) (GroupInfo, error) {
	return c.change(ctx, ref, nil, func(g *group.Group, _ []uuid.UUID) (group.Update, error) { return g.Rename(c.rand, title) })
}

// LeaveGroup takes this account out of the group ref. The last admin of a group with
// other members gets group.ErrLastAdmin: promote someone first.
func (c *Client) LeaveGroup(ctx context.Context, ref string) (GroupInfo, error) {
	return c.change(ctx, ref, nil, func(g *group.Group, _ []uuid.UUID) (group.Update, error) { return g.Leave(c.rand) })
}

// commitChange stores the replica with what u's plan sends queued in its outbox, then
// sends it. A failed send stays queued and is retried by the next group command or
// receive; the error says it was not delivered yet.
func (c *Client) commitChange(ctx context.Context, r *replica, u group.Update) (GroupInfo, error) {
	c.applyPlan(ctx, c.db, r, u)
	p := u.Plan
	if len(p.SendHistoryTo) > 0 {
		// Newcomers first take the history, so the change reaches them inside it.
		r.rec.Outbox = append(r.rec.Outbox, outboxEntry{Kind: sendHistory, To: p.SendHistoryTo})
	}
	if u.Change != nil && u.Outcome.Status == group.StatusApplied {
		to := slices.DeleteFunc(slices.Clone(p.SendChangeTo), func(a uuid.UUID) bool { return slices.Contains(p.SendHistoryTo, a) })
		// This account's other devices take every change it makes.
		to = append(to, c.acc.AccountID)
		r.rec.Outbox = append(r.rec.Outbox, outboxEntry{Kind: sendChange, Change: u.Change.Bytes(), To: to})
	}
	if err := c.saveReplica(ctx, c.db, r); err != nil {
		return GroupInfo{}, err
	}
	if err := c.flushReplica(ctx, r); err != nil {
		return c.info(ctx, c.db, r), fmt.Errorf("the change is made here but not delivered yet (it is retried by the next group command or receive): %w", err)
	}
	return c.info(ctx, c.db, r), nil
}

// applyPlan does the part of a plan that sends nothing now: a rotation forgets this
// device's chain so the next message starts a new one, and changes for accounts someone
// else added are queued. q is the database or the transaction r is being changed in.
func (c *Client) applyPlan(ctx context.Context, q querier, r *replica, u group.Update) {
	p := u.Plan
	if p.RotateMySenderKey && u.After != nil {
		// A chain under this distribution id may exist only if this device held it before;
		// a rotation must never reuse one.
		q.ExecContext(ctx, "DELETE FROM sender_keys WHERE account = ? AND device = ? AND distribution = ?",
			c.acc.AccountID.String(), c.acc.DeviceID, u.After.DistributionID.String())
		r.rec.MyDist, r.rec.Holders = uuid.Nil, nil
	}
	if len(p.SendMyChangesTo) > 0 && len(r.g.ChangesBy(c.acc.AccountID)) > 0 {
		r.rec.Outbox = append(r.rec.Outbox, outboxEntry{Kind: sendChangesBy, To: p.SendMyChangesTo})
		c.groupsQueued = true
	}
}

// maxControlPlaintext is the largest padded Content a group control message may carry:
// an envelope body holds at most api.MaxEnvelopeBody, and the Signal message, the sealed
// sender layers and the sender certificate around the plaintext take well under 2 KiB.
const maxControlPlaintext = api.MaxEnvelopeBody - 2048

// flushReplica sends r's outbox in order, saving r after each entry that went out.
func (c *Client) flushReplica(ctx context.Context, r *replica) error {
	if len(r.rec.Outbox) == 0 {
		return nil
	}
	cert, err := c.senderCertificate(ctx)
	if err != nil {
		return err
	}
	gid := r.g.ID()
	for len(r.rec.Outbox) > 0 {
		e := r.rec.Outbox[0]
		var changes []byte
		switch e.Kind {
		case sendHistory:
			changes = r.g.History()
		case sendChangesBy:
			changes = encodeChanges(r.g.ChangesBy(c.acc.AccountID))
		case sendChange:
			ch, err := group.NewChange(e.Change)
			if err != nil {
				return fmt.Errorf("queued change: %w", err)
			}
			changes = encodeChanges([]*group.Change{ch})
		}
		padded := encodeContent(&Content{GroupID: gid[:], GroupChanges: changes, SenderNumber: c.acc.Number, SentMS: uint64(c.now().UnixMilli())})
		if len(padded) > maxControlPlaintext {
			// It would never fit an envelope: drop it rather than block every later change.
			r.rec.Outbox = r.rec.Outbox[1:]
			if err := c.saveReplica(ctx, c.db, r); err != nil {
				return err
			}
			return fmt.Errorf("the group's %s is %d bytes, more than one message can carry (%d): not sent", e.Kind, len(padded), maxControlPlaintext)
		}
		if _, err := c.multiSend(ctx, e.To, nil, c.sessionBodies(cert, func(uuid.UUID) []byte { return padded })); err != nil {
			return err
		}
		r.rec.Outbox = r.rec.Outbox[1:]
		if err := c.saveReplica(ctx, c.db, r); err != nil {
			return err
		}
	}
	return nil
}

// flushGroups sends what every group's outbox holds: changes queued while receiving
// (for accounts someone else added) or not delivered earlier. With onlyQueued it does
// nothing unless a received change queued something since the last flush (Listen calls
// it after every stored batch). Failures are logged, without detail that could name
// anyone, and retried next time.
func (c *Client) flushGroups(ctx context.Context, onlyQueued bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.acc == nil || onlyQueued && !c.groupsQueued {
		return
	}
	c.groupsQueued = false
	all, err := c.allReplicas(ctx)
	if err != nil {
		c.log.Debug("loading groups failed")
		return
	}
	for _, r := range all {
		if err := c.flushReplica(ctx, r); err != nil {
			c.groupsQueued = true
			c.log.Debug("sending queued group changes failed", "unreachable", errors.Is(err, ErrUnreachable),
				"untrusted_identity", errors.Is(err, ErrUntrustedIdentity))
		}
	}
}

// SendGroup encrypts text once with this device's sender key for the group ref, hands
// its current sender key first to every member device that lacks it (over the 1:1
// sessions), and sends one sealed envelope per device of every member (this account's
// other devices included) in one multi-recipient request. Devices returns how many
// received the message.
func (c *Client) SendGroup(ctx context.Context, ref, text string) (SendResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.requireAccount(); err != nil {
		return SendResult{}, err
	}
	r, err := c.findGroup(ctx, ref)
	if err != nil {
		return SendResult{}, err
	}
	if !r.g.State().IsMember(c.acc.AccountID) {
		return SendResult{}, group.ErrNotMember
	}
	if err := c.flushReplica(ctx, r); err != nil {
		return SendResult{}, fmt.Errorf("sending earlier group changes: %w", err)
	}
	s := r.g.State()
	return c.sendGroupMessage(ctx, r, s.DistributionID, s.Members, text)
}

// sendGroupMessage is SendGroup's work, on the chain dist, to every device of accounts.
func (c *Client) sendGroupMessage(ctx context.Context, r *replica, dist uuid.UUID, accounts []uuid.UUID, text string) (SendResult, error) {
	cert, err := c.senderCertificate(ctx)
	if err != nil {
		return SendResult{}, err
	}
	gid := r.g.ID()
	dm, err := senderkey.Create(ctx, c.storesOn(c.db), c.local(), dist)
	if err != nil {
		return SendResult{}, err
	}
	if r.rec.MyDist != dist {
		r.rec.MyDist, r.rec.Holders = dist, nil
		if err := c.saveReplica(ctx, c.db, r); err != nil {
			return SendResult{}, err
		}
	}
	// Every device takes this device's chain before its first message on it: the
	// distribution is queued first, and each device's queue keeps the order.
	ready := func(devs map[uuid.UUID][]uint32) error {
		holds := make(map[string]bool, len(r.rec.Holders))
		for _, h := range r.rec.Holders {
			holds[h] = true
		}
		var need []uuid.UUID
		for acct, ds := range devs {
			for _, d := range ds {
				if !holds[protocol.Address{Name: acct.String(), DeviceID: d}.String()] {
					need = append(need, acct)
					break
				}
			}
		}
		if len(need) == 0 {
			return nil
		}
		padded := encodeContent(&Content{GroupID: gid[:], SenderKeyDistribution: dm.Bytes(), SenderNumber: c.acc.Number})
		res, err := c.multiSend(ctx, need, nil, c.sessionBodies(cert, func(uuid.UUID) []byte { return padded }))
		if err != nil {
			return fmt.Errorf("sending the sender key: %w", err)
		}
		for acct, ds := range res.Devices {
			for _, d := range ds {
				if a := (protocol.Address{Name: acct.String(), DeviceID: d}).String(); !holds[a] {
					holds[a] = true
					r.rec.Holders = append(r.rec.Holders, a)
				}
			}
		}
		return c.saveReplica(ctx, c.db, r)
	}
	sent := c.now()
	plain := encodeContent(&Content{Text: text, SentMS: uint64(sent.UnixMilli()), GroupID: gid[:]})
	skm, err := senderkey.Encrypt(ctx, c.storesOn(c.db), c.local(), dist, plain)
	if err != nil {
		return SendResult{}, err
	}
	res, err := c.multiSend(ctx, accounts, ready, c.senderKeyBodies(cert, skm, gid[:]))
	if err != nil {
		return SendResult{}, err
	}
	return SendResult{Devices: res.count(), ServerTime: res.ServerTime, SentAt: time.UnixMilli(sent.UnixMilli())}, nil
}
