package client

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/client/group"
	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/senderkey"
)

// Receiving for groups: changes and sender keys arrive inside 1:1 sessions
// (receiveGroupControl), group messages as sealed sender-key messages naming their group
// (receiveGroupMessage). Both are stored in the messages table like 1:1 messages, as a
// message or as an event line.

// Fields appended to the Content stored for a group message or event. They never travel:
// what is stored is the received Content re-encoded (unknown fields dropped) plus these,
// and Content's decoder skips fields it does not know.
const (
	storedGroupTitle = 1000 // string: the group's title when the message arrived
	storedGroupEvent = 1001 // varint 1: Text is an event line, not a message
)

// encodeChanges writes changes as group.History does (the version byte, then each change
// as field 1): a history when they begin with the create, a list of changes otherwise.
func encodeChanges(cs []*group.Change) []byte {
	b := []byte{1}
	for _, ch := range cs {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, ch.Bytes())
	}
	return b
}

// maxChangesPerMessage bounds the changes one message may carry, as group.MaxChanges
// bounds a history.
const maxChangesPerMessage = group.MaxChanges

// decodeChanges reads what encodeChanges writes: at least one change, each valid.
func decodeChanges(b []byte) ([]*group.Change, error) {
	if len(b) == 0 || b[0] != 1 {
		return nil, errors.New("group changes: unknown version")
	}
	var out []*group.Change
	for rest := b[1:]; len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return nil, errors.New("group changes: unexpected field")
		}
		v, m := protowire.ConsumeBytes(rest[n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		rest = rest[n+m:]
		if len(out) == maxChangesPerMessage {
			return nil, errors.New("group changes: too many")
		}
		ch, err := group.NewChange(v)
		if err != nil {
			return nil, err
		}
		out = append(out, ch)
	}
	if len(out) == 0 {
		return nil, errors.New("group changes: none")
	}
	return out, nil
}

// receiveGroupControl handles a 1:1 Content naming a group, in the envelope's
// transaction tx: changes go through the state machine (only those sent by their own
// author count, apart from the history of an admin adding us), a sender key is stored if
// its sender is a member. What happened is stored as one event.
func (c *Client) receiveGroupControl(ctx context.Context, tx *sql.Tx, st *stores, e api.Envelope, sender protocol.Address,
	content *Content, now time.Time, markSeen func(querier) error) error {
	from, err := uuid.Parse(sender.Name)
	if err != nil {
		return errUndecryptable{err}
	}
	gid := group.ID(content.GroupID)
	r, err := c.loadReplica(ctx, tx, gid)
	if err != nil {
		return err
	}
	var lines []string
	dirty := false
	if len(content.GroupChanges) > 0 {
		var ls []string
		r, ls, err = c.takeChanges(ctx, tx, r, from, gid, content.GroupChanges, now)
		if err != nil {
			return err
		}
		lines = append(lines, ls...)
		dirty = r != nil
	}
	if len(content.SenderKeyDistribution) > 0 {
		dm, err := senderkey.NewDistributionMessage(content.SenderKeyDistribution)
		switch {
		case err != nil:
			c.log.Debug("malformed sender key dropped")
		case r == nil || !r.g.State().IsMember(from):
			// Only a member's chain is kept; its messages would be refused anyway.
			c.log.Debug("sender key from a non-member dropped")
		default:
			if err := senderkey.Process(ctx, st, sender, dm); err != nil {
				return err
			}
		}
	}
	if len(lines) > 0 {
		title := ""
		if r != nil {
			title = r.g.State().Title
		}
		ev := &Content{Text: strings.Join(lines, "\n"), SentMS: content.SentMS, GroupID: gid[:]}
		if err := c.storeGroupRecord(ctx, tx, e, sender, ev, title, true, false, now); err != nil {
			return err
		}
	}
	if r != nil {
		// The replica may now let held messages through (after the event that did it).
		retried, err := c.retryHeld(ctx, tx, st, r, now, false)
		if err != nil {
			return err
		}
		dirty = dirty || retried
	}
	if dirty {
		if err := c.saveReplica(ctx, tx, r); err != nil {
			return err
		}
	}
	return markSeen(tx)
}

// takeChanges folds the changes raw carries, from the account from, into r (nil: the
// group is new here) and returns the replica and the event lines to show.
func (c *Client) takeChanges(ctx context.Context, q querier, r *replica, from uuid.UUID, gid group.ID, raw []byte, now time.Time) (*replica, []string, error) {
	me := c.acc.AccountID
	who := c.token(from)
	changes, err := decodeChanges(raw)
	if err == nil {
		for _, ch := range changes {
			if ch.Group != gid {
				err = group.ErrOtherGroup
			}
		}
	}
	if err != nil {
		c.log.Debug("malformed group change dropped")
		if r == nil {
			return nil, nil, nil
		}
		return r, []string{fmt.Sprintf("a malformed group change from %s was refused", who)}, nil
	}
	var lines []string
	if r == nil {
		// An invitation: the create listing us, or the history of an admin adding us.
		g, u, err := group.Join(me, from, raw)
		if err == nil {
			r = &replica{rec: &groupRecord{}, g: g}
			c.applyPlan(ctx, q, r, u)
			s := g.State()
			if len(changes) == 1 {
				lines = []string{fmt.Sprintf("%s created the group %q with %s", who, s.Title, c.names(ctx, q, s.Members, from))}
			} else {
				lines = []string{fmt.Sprintf("%s added you to the group %q (members: %s)", who, s.Title, c.names(ctx, q, s.Members, uuid.Nil))}
			}
			// Changes that overtook this history now have a group to go into.
			late, err := c.foldPending(ctx, q, r, now)
			return r, append(lines, late...), err
		}
		if changes[0].Kind != group.KindCreate {
			// Changes of a group we do not hold (yet, or any more): they may have overtaken
			// the history of an admin adding us, so they wait for it.
			held, err := c.holdChanges(ctx, q, gid, from, raw, len(changes), now)
			if err != nil {
				return nil, nil, err
			}
			c.log.Debug("changes for an unknown group", "held", held)
			return nil, nil, nil
		}
		g, u, err = group.New(me, from, changes[0])
		if err != nil {
			c.log.Debug("group create refused", "err", err)
			return nil, nil, nil
		}
		r = &replica{rec: &groupRecord{}, g: g}
		c.applyPlan(ctx, q, r, u)
		lines = append(lines, c.describe(ctx, q, u))
		changes = changes[1:]
		late, err := c.foldPending(ctx, q, r, now)
		if err != nil {
			return nil, nil, err
		}
		lines = append(lines, late...)
	} else if changes[0].Kind == group.KindCreate && len(changes) > 1 {
		// A history: an admin adding us back. Otherwise each change counts only from its author.
		if u, err := r.g.Merge(from, raw); err == nil {
			c.applyPlan(ctx, q, r, u)
			return r, []string{fmt.Sprintf("%s added you to the group %q again", who, u.After.Title)}, nil
		}
	}
	return r, append(lines, c.receiveChanges(ctx, q, r, from, changes)...), nil
}

// receiveChanges folds changes, carried by the account from, into r (each counts only
// if from is its author) and returns the event lines to show.
func (c *Client) receiveChanges(ctx context.Context, q querier, r *replica, from uuid.UUID, changes []*group.Change) []string {
	who := c.token(from)
	var lines []string
	for _, ch := range changes {
		u, err := r.g.Receive(from, ch)
		switch {
		case errors.Is(err, group.ErrWrongAuthor):
			lines = append(lines, fmt.Sprintf("a %s in the name of %s, sent by %s, was refused: only its author can send a change",
				ch.Kind, c.token(ch.Author), who))
		case err != nil:
			lines = append(lines, fmt.Sprintf("a %s from %s was refused: %v", ch.Kind, who, err))
		case u.Duplicate:
		default:
			c.applyPlan(ctx, q, r, u)
			lines = append(lines, c.describe(ctx, q, u))
		}
	}
	return lines
}

// describe says what one received change did, as an event line.
func (c *Client) describe(ctx context.Context, q querier, u group.Update) string {
	ch := u.Change
	who := c.token(ch.Author)
	switch u.Outcome.Status {
	case group.StatusRejected:
		return fmt.Sprintf("%s: %s rejected: %s", who, ch.Kind, u.Outcome.Reason)
	case group.StatusPending:
		return fmt.Sprintf("%s: %s waits for changes not received yet", who, ch.Kind)
	}
	switch ch.Kind {
	case group.KindCreate:
		return fmt.Sprintf("%s created the group %q with %s", who, ch.Title, c.names(ctx, q, ch.Members, uuid.Nil))
	case group.KindAdd:
		return fmt.Sprintf("%s added %s", who, c.names(ctx, q, ch.Members, uuid.Nil))
	case group.KindRemove:
		return fmt.Sprintf("%s removed %s", who, c.names(ctx, q, ch.Members, uuid.Nil))
	case group.KindPromote:
		return fmt.Sprintf("%s made %s an admin", who, c.names(ctx, q, ch.Members, uuid.Nil))
	case group.KindRename:
		return fmt.Sprintf("%s renamed the group to %q", who, ch.Title)
	case group.KindLeave:
		return fmt.Sprintf("%s left", who)
	}
	return fmt.Sprintf("%s: %s", who, ch.Kind)
}

// names lists accounts for an event line, leaving out skip.
func (c *Client) names(ctx context.Context, q querier, ids []uuid.UUID, skip uuid.UUID) string {
	var out []string
	for _, id := range ids {
		if id != skip {
			out = append(out, c.token(id))
		}
	}
	if len(out) == 0 {
		return "nobody else"
	}
	return strings.Join(out, ", ")
}

// receiveGroupMessage handles an envelope carrying a sender-key message. It is accepted
// only from a current member of the group the envelope names, under a distribution id of
// that group that the sender was a member in; a current member's message under an epoch
// not known here yet is held until a change lets it in (groups_hold.go); anything else
// is stored as a refused notice, never as a message. It returns whether something was
// stored.
func (c *Client) receiveGroupMessage(ctx context.Context, e api.Envelope, o *opened, now time.Time, markSeen func(querier) error) (bool, error) {
	stored := true
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		st := c.storesOn(tx)
		refuse := func(gid []byte, title, why string) error {
			ev := &Content{Text: why, GroupID: gid}
			if err := c.storeGroupRecord(ctx, tx, e, o.sender, ev, title, true, true, now); err != nil {
				return err
			}
			return markSeen(tx)
		}
		from, err := uuid.Parse(o.sender.Name)
		if err != nil || len(o.groupID) != len(group.ID{}) {
			stored = false
			c.log.Debug("group message without a valid group or sender dropped")
			return markSeen(tx)
		}
		gid := group.ID(o.groupID)
		who := c.token(from)
		r, err := c.loadReplica(ctx, tx, gid)
		if err != nil {
			return err
		}
		if r == nil {
			return refuse(gid[:], "", fmt.Sprintf("a group message from %s was refused: you are not in that group", who))
		}
		s := r.g.State()
		if !s.IsMember(from) {
			return refuse(gid[:], s.Title, fmt.Sprintf("a message from %s was refused: not a member of the group", who))
		}
		// The certificate must vouch for the identity key this profile holds for the sender:
		// the one whose session carried the sender's chain.
		if !c.knownIdentity(ctx, st, from, o) {
			return refuse(gid[:], s.Title, fmt.Sprintf("a message from %s was refused: its sender certificate names another identity key", who))
		}
		msg, err := senderkey.NewMessage(o.ciphertext)
		if err != nil {
			return refuse(gid[:], s.Title, fmt.Sprintf("a message from %s could not be decrypted", who))
		}
		// Held messages that waited too long are refused now, before this one may be held.
		expired, err := c.retryHeld(ctx, tx, st, r, now, true)
		if err != nil {
			return err
		}
		save := func() error {
			if !expired {
				return nil
			}
			return c.saveReplica(ctx, tx, r)
		}
		dist := msg.DistributionID()
		if !r.rec.mayUse(dist, from) {
			// A current member under an epoch not reached here yet: the change that starts it
			// (another member's removal or leave) may still be on its way, so the message
			// waits for it. An epoch known here that the sender was not in is refused.
			if !r.rec.knowsEpoch(dist) && c.holdMessage(r, e, o.sender, o.ciphertext, now) {
				stored = false
				if err := c.saveReplica(ctx, tx, r); err != nil {
					return err
				}
				return markSeen(tx)
			}
			if err := save(); err != nil {
				return err
			}
			return refuse(gid[:], s.Title, fmt.Sprintf("a message from %s was refused: not under a sender key of this group", who))
		}
		if err := save(); err != nil {
			return err
		}
		err = c.openGroupMessage(ctx, tx, st, e, o.sender, from, o.ciphertext, r, now)
		if errors.Is(err, errDuplicateGroupMessage) {
			stored = false
			return markSeen(tx)
		}
		if err != nil {
			return err
		}
		return markSeen(tx)
	})
	if err != nil {
		return false, err
	}
	c.log.Debug("group envelope handled", "stored", stored)
	return stored, nil
}

// knownIdentity reports whether the identity key o's certificate names is the one held
// for account.
func (c *Client) knownIdentity(ctx context.Context, st *stores, account uuid.UUID, o *opened) bool {
	if o.senderIdentity == nil {
		return false
	}
	if account == c.acc.AccountID {
		return o.senderIdentity.Equal(c.id.PublicKey())
	}
	row, err := st.loadIdentity(ctx, account.String())
	return err == nil && row != nil && row.key.Equal(o.senderIdentity)
}

// storeGroupRecord stores a group message or event in the messages table.
func (c *Client) storeGroupRecord(ctx context.Context, tx *sql.Tx, e api.Envelope, sender protocol.Address, ct *Content,
	title string, event, undecryptable bool, now time.Time) error {
	b := ct.marshal()
	b = protowire.AppendTag(b, storedGroupTitle, protowire.BytesType)
	b = protowire.AppendString(b, title)
	if event {
		b = protowire.AppendTag(b, storedGroupEvent, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO messages (id, account, device, content_enc, server_ms, received_ms, identity_changed, undecryptable)
		VALUES (?, ?, ?, ?, ?, ?, 0, ?)`, e.ID.String(), sender.Name, sender.DeviceID,
		c.seal.seal(b, "message/"+e.ID.String()), e.ServerTime, now.UnixMilli(), undecryptable)
	return wrap("storing group message", err)
}

// token stands for account in an event line until it is shown: the line is stored when
// the envelope arrives, but the account's number may become known only after (from the
// number the same message states), so names are filled in when it is shown. The
// delimiter is a control byte, which titles, quoted with %q in event lines, cannot hold.
func (c *Client) token(account uuid.UUID) string {
	if account == c.acc.AccountID {
		return "you"
	}
	return "\x01" + account.String() + "\x01"
}

// fillNames replaces the tokens of line with numbers from the contacts, or the start of
// the account id when the number is not known.
func (c *Client) fillNames(ctx context.Context, q querier, line string) string {
	parts := strings.Split(line, "\x01")
	for i := 1; i < len(parts); i += 2 {
		id, err := uuid.Parse(parts[i])
		if err != nil {
			continue
		}
		if n := c.numberOn(ctx, q, id); n != "" {
			parts[i] = n
		} else {
			parts[i] = "account " + parts[i][:8]
		}
	}
	return strings.Join(parts, "")
}

// groupOfStored completes m from the stored fields of a group message or event (raw is
// the stored Content); a message without them is not a group's. q reads the contacts.
func (c *Client) groupOfStored(ctx context.Context, q querier, raw []byte, content *Content, m *Message) {
	var title string
	var isGroup, event bool
	for b := raw; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		switch {
		case num == storedGroupTitle && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return
			}
			title, isGroup, b = string(v), true, b[n:]
		case num == storedGroupEvent && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return
			}
			event, b = v == 1, b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return
			}
			b = b[n:]
		}
	}
	if !isGroup || len(content.GroupID) != len(group.ID{}) {
		return
	}
	m.Group = &MessageGroup{ID: hex.EncodeToString(content.GroupID), Title: title}
	if event {
		m.GroupEvent, m.Text = c.fillNames(ctx, q, m.Text), ""
	}
}
