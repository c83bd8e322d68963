package client

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/sealed"
)

// Message is a received message, as stored in the profile.
type Message struct {
	// ID is the envelope id the sender chose: the same on every retry and resend.
	ID uuid.UUID `json:"id"`
	// From is the sender's account and device; FromNumber its phone number when the
	// profile knows it (a contact, or a number the sender stated and the directory
	// confirmed).
	From       uuid.UUID `json:"from_account"`
	FromDevice uint32    `json:"from_device"`
	FromNumber string    `json:"from_number,omitempty"`
	Text       string    `json:"text"`
	SentAt     time.Time `json:"sent_at"`     // the sender's clock
	ServerTime time.Time `json:"server_time"` // when the server accepted it
	ReceivedAt time.Time `json:"received_at"`
	// SafetyNumberChanged reports that this message came with an identity key different
	// from the one known for the sender: the contact re-registered, or someone is
	// attempting to intercept. Nothing is sent to the new key until [Client.Trust].
	SafetyNumberChanged bool `json:"safety_number_changed,omitempty"`
	// Undecryptable reports that a message from this sender arrived but could not be
	// decrypted (its session was lost or broken): it has no text; ask for it again.
	Undecryptable bool `json:"undecryptable,omitempty"`
	// FromOperator marks a notice from the service's operator (a lawful-request notice,
	// a market withdrawal), signed by the server; From is then the nil account.
	FromOperator bool `json:"from_operator,omitempty"`
	// SentTo is set on a copy of a message this account sent from another device.
	SentTo uuid.UUID `json:"sent_to,omitzero"`
	// Group is set on a group message and on a group event: the group, with its title
	// when it arrived (groups.go).
	Group *MessageGroup `json:"group,omitempty"`
	// GroupEvent describes what changed in the group (a member added, a change rejected,
	// a message refused); Text is then empty.
	GroupEvent string `json:"group_event,omitempty"`
}

// seenTTL is how long envelope ids are remembered to drop duplicates. An envelope is
// redelivered only while it is queued, at most the server's 30-day queue TTL; the margin
// covers a sender's retries after the first copy was acknowledged.
const seenTTL = 45 * 24 * time.Hour

// Receive fetches what the server holds for this device, stores each message in the
// profile and only then acknowledges it, and returns every message not returned before
// (also ones stored by an earlier run that stopped before returning them). Then it
// runs [Client.Maintain].
func (c *Client) Receive(ctx context.Context) ([]Message, error) {
	if err := c.checkRegistered(); err != nil {
		return nil, err
	}
	if err := c.connection(ctx, true, nil, nil); err != nil {
		return nil, err
	}
	c.flushGroups(ctx, false) // group changes queued while receiving (groups.go)
	msgs, err := c.unshown(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.Maintain(ctx); err != nil {
		return msgs, fmt.Errorf("maintaining prekeys: %w", err)
	}
	return msgs, nil
}

// Listen streams messages to handle until ctx is done, reconnecting (with backoff) when
// the connection drops; it fails at once with [ErrUnreachable] if the server cannot be
// reached when it starts. Each message is stored before it is acknowledged and handed to
// handle after; an error from handle stops Listen. It returns nil when ctx is done.
// [Client.ListenWithChannels] also streams the channels' posts.
func (c *Client) Listen(ctx context.Context, handle func(Message) error) error {
	return c.listen(ctx, handle, nil)
}

// listen is Listen; live, when not nil, streams channel posts (channels_live.go).
func (c *Client) listen(ctx context.Context, handle func(Message) error, live *channelLive) error {
	if err := c.checkRegistered(); err != nil {
		return err
	}
	if err := c.Maintain(ctx); err != nil && ctx.Err() == nil {
		if errors.Is(err, ErrUnreachable) {
			return err // the server is not there at all: say so rather than wait
		}
		c.log.Debug("maintenance failed", "err", err)
	}
	onStored := func() error {
		c.flushGroups(ctx, true) // group changes queued while receiving (groups.go)
		msgs, err := c.unshown(ctx)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if err := handle(m); err != nil {
				return errHandler{err}
			}
		}
		return nil
	}
	if err := onStored(); err != nil {
		return unwrapHandler(err)
	}
	backoff := time.Second
	for {
		start := time.Now()
		err := c.connection(ctx, false, onStored, live)
		if ctx.Err() != nil {
			return nil
		}
		var he errHandler
		if errors.As(err, &he) || isCode(err, api.CodeUnauthorized) {
			return unwrapHandler(err)
		}
		if time.Since(start) > time.Minute {
			backoff = time.Second
		}
		c.log.Debug("connection lost, reconnecting", "err", err, "after", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

type errHandler struct{ err error }

func (e errHandler) Error() string { return e.err.Error() }

func unwrapHandler(err error) error {
	var he errHandler
	if errors.As(err, &he) {
		return he.err
	}
	return err
}

func (c *Client) checkRegistered() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requireAccount()
}

// connection runs one WebSocket connection: it stores and acknowledges every envelope,
// and returns after the first queue_empty frame when drain is set, else when the
// connection ends. live, when not nil, subscribes to the profile's channels and gets
// their frames (channels_live.go).
func (c *Client) connection(ctx context.Context, drain bool, onStored func() error, live *channelLive) error {
	root, err := c.trustRoot(ctx)
	if err != nil {
		return err
	}
	u := *c.api.base
	u.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	u.Path += "/v1/websocket"
	cred := c.cred()
	req := &http.Request{Header: http.Header{}}
	req.SetBasicAuth(cred.user, cred.password)
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(req.Header), Timeout: 15 * time.Second}
	conn, br, _, err := d.Dial(ctx, u.String())
	if err != nil {
		var se ws.StatusError
		if errors.As(err, &se) {
			if int(se) == http.StatusUnauthorized {
				return &APIError{Status: int(se), Body: api.Error{Code: api.CodeUnauthorized, Message: "the server does not know this device's credentials"}}
			}
			return &APIError{Status: int(se)}
		}
		return unreachable(c.api.base, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var src io.Reader = conn
	if br != nil {
		src = io.MultiReader(br, conn)
		defer ws.PutReader(br)
	}
	ctrl := wsutil.ControlFrameHandler(conn, ws.StateClientSide)
	// Frames are at most about 512 KiB (docs/api.md); 2 MiB, also for a fragmented
	// message as a whole, leaves room and no more.
	rd := &wsutil.Reader{Source: src, State: ws.StateClientSide, MaxFrameSize: 2 << 20, MaxMessageSize: 2 << 20, OnIntermediate: ctrl}
	if err := live.start(ctx, conn); err != nil {
		return c.connErr(ctx, err)
	}
	for {
		// The server pings every 30 s: silence for much longer means a dead peer.
		conn.SetReadDeadline(time.Now().Add(95 * time.Second))
		hdr, err := rd.NextFrame()
		if err != nil {
			return c.connErr(ctx, err)
		}
		if hdr.OpCode.IsControl() {
			if err := ctrl(hdr, rd); err != nil {
				return c.connErr(ctx, err)
			}
			continue
		}
		if hdr.OpCode != ws.OpText {
			if err := rd.Discard(); err != nil {
				return c.connErr(ctx, err)
			}
			continue
		}
		data, err := io.ReadAll(rd)
		if err != nil {
			return c.connErr(ctx, err)
		}
		var f api.Frame
		if err := json.Unmarshal(data, &f); err != nil {
			return fmt.Errorf("server sent a malformed frame: %w", err)
		}
		switch f.Type {
		case api.FrameEnvelopes:
			acks := make([]uuid.UUID, 0, len(f.Envelopes))
			stored := false
			for _, e := range f.Envelopes {
				ok, err := c.handleEnvelope(ctx, root, e)
				if err != nil {
					return err // not acknowledged: delivered again next time
				}
				stored = stored || ok
				acks = append(acks, e.ID)
			}
			if err := c.ack(conn, acks); err != nil {
				return c.connErr(ctx, err)
			}
			if stored && onStored != nil {
				if err := onStored(); err != nil {
					return err
				}
			}
		case api.FrameChannelSubscribe, api.FrameChannelPosts:
			if err := live.frame(ctx, conn, f); err != nil {
				return err
			}
		case api.FrameQueueEmpty:
			if drain {
				wsutil.WriteClientMessage(conn, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
				return nil
			}
		}
	}
}

func (c *Client) connErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ce wsutil.ClosedError
	if errors.As(err, &ce) {
		return fmt.Errorf("%w at %s: connection closed (%d %s)", ErrUnreachable, c.api.base.Redacted(), ce.Code, ce.Reason)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w at %s: %v", ErrUnreachable, c.api.base.Redacted(), err)
	}
	return err
}

// ack acknowledges ids, at most 1,000 per frame (the server's limit).
func (c *Client) ack(w io.Writer, ids []uuid.UUID) error {
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		b, _ := json.Marshal(api.Frame{Type: api.FrameAck, IDs: ids[:n]})
		if err := wsutil.WriteClientText(w, b); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// handleEnvelope stores what e carries. It returns whether a new message was stored; an
// error means e must not be acknowledged (the profile could not be written). A body
// that does not open or decrypt is dropped (acknowledged, recorded as seen): it can
// never decrypt later, and keeping it would block the queue.
func (c *Client) handleEnvelope(ctx context.Context, root *curve.PublicKey, e api.Envelope) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int
	if err := c.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM seen WHERE id = ?", e.ID.String()).Scan(&n); err != nil {
		return false, fmt.Errorf("reading seen envelopes: %w", err)
	}
	if n > 0 {
		c.log.Debug("duplicate envelope dropped")
		return false, nil
	}
	now := c.now()
	expires := now.Add(seenTTL).UnixMilli()
	markSeen := func(q querier) error {
		_, err := q.ExecContext(ctx, "INSERT OR IGNORE INTO seen (id, expires_ms) VALUES (?, ?)", e.ID.String(), expires)
		return wrap("recording envelope", err)
	}
	if text, ok := c.openNotice(ctx, e.Body); ok {
		return true, c.storeNotice(ctx, e, text, markSeen)
	}
	o, err := c.openBody(root, e.Body, time.UnixMilli(e.ServerTime))
	if err != nil {
		c.log.Debug("envelope body does not open")
		return false, markSeen(c.db)
	}
	if o.typ == sealed.TypeSenderKey { // a group message (groups_receive.go)
		return c.receiveGroupMessage(ctx, e, o, now, markSeen)
	}
	var content *Content
	var changed bool
	err = c.inTx(ctx, func(tx *sql.Tx) error {
		st := c.storesOn(tx)
		msg, err := protocol.ParseCiphertextMessage(o.typ, o.ciphertext)
		if err != nil {
			return errUndecryptable{err}
		}
		pt, err := c.cipherOn(st).Decrypt(ctx, o.sender, msg)
		if err != nil {
			return errUndecryptable{err}
		}
		if o.senderIdentity != nil {
			rec, err := st.LoadSession(ctx, o.sender)
			if err != nil {
				return err
			}
			if k, ok := rec.RemoteIdentityKey(); !ok || !k.Equal(o.senderIdentity) {
				return errUndecryptable{errors.New("certificate identity differs from the session's")}
			}
		}
		if content, err = decodeContent(pt); err != nil {
			return errUndecryptable{err}
		}
		if content.SyncDestination != uuid.Nil && o.sender.Name != c.acc.AccountID.String() {
			return errUndecryptable{errors.New("sync copy from another account")}
		}
		if len(content.ChannelDistribution) > 0 { // an admission to a private channel (channels_admit.go)
			return c.receiveChannelAdmission(ctx, tx, o.sender.Name, content, markSeen)
		}
		if len(content.GroupID) > 0 && (len(content.GroupChanges) > 0 || len(content.SenderKeyDistribution) > 0) {
			// A group change or sender key (groups_receive.go).
			return c.receiveGroupControl(ctx, tx, st, e, o.sender, content, now, markSeen)
		}
		changed = st.replaced
		if _, err := tx.ExecContext(ctx, `INSERT INTO messages (id, account, device, content_enc, server_ms, received_ms, identity_changed)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, e.ID.String(), o.sender.Name, o.sender.DeviceID,
			c.seal.seal(content.marshal(), "message/"+e.ID.String()), e.ServerTime, now.UnixMilli(), changed); err != nil {
			return fmt.Errorf("storing message: %w", err)
		}
		return markSeen(tx)
	})
	var ue errUndecryptable
	if errors.As(err, &ue) {
		dup := errors.Is(ue.err, protocol.ErrDuplicateMessage)
		c.log.Debug("envelope does not decrypt", "duplicate", dup)
		if dup {
			// A resent envelope whose key is used: the message is stored already.
			return false, markSeen(c.db)
		}
		// The sender is known (its certificate checked out) but its message is lost:
		// say so, as Signal does, so the user can ask for it again.
		err := c.inTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO messages (id, account, device, content_enc, server_ms, received_ms, identity_changed, undecryptable)
				VALUES (?, ?, ?, ?, ?, ?, 0, 1)`, e.ID.String(), o.sender.Name, o.sender.DeviceID,
				c.seal.seal((&Content{}).marshal(), "message/"+e.ID.String()), e.ServerTime, now.UnixMilli()); err != nil {
				return fmt.Errorf("storing notice: %w", err)
			}
			return markSeen(tx)
		})
		return err == nil, err
	}
	if err != nil {
		return false, err
	}
	c.log.Debug("message stored", "safety_number_changed", changed)
	if content.SenderNumber != "" {
		c.learnNumber(ctx, o.sender.Name, content.SenderNumber)
	}
	c.ktGossip(ctx, content.KTCheckpoint)
	return true, nil
}

type errUndecryptable struct{ err error }

func (e errUndecryptable) Error() string { return "undecryptable: " + e.err.Error() }

// learnNumber adds the number a sender stated to the contacts, if the directory says it
// belongs to that sender's account (a sender cannot make us show a number not theirs).
func (c *Client) learnNumber(ctx context.Context, account, stated string) {
	var n int
	if err := c.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM contacts WHERE account = ?", account).Scan(&n); err != nil || n > 0 {
		return
	}
	number, err := NormalizeNumber(stated)
	if err != nil {
		return
	}
	id, err := c.lookup(ctx, number)
	if err != nil || id.String() != account {
		c.log.Debug("stated number not confirmed by the directory")
		return
	}
	c.db.ExecContext(ctx, "INSERT OR REPLACE INTO contacts (number, account) VALUES (?, ?)", number, account)
}

// unshown returns the stored messages not returned before, oldest first, and marks them
// returned. It also forgets envelope ids past their time.
func (c *Client) unshown(ctx context.Context) ([]Message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var msgs []Message
	err := c.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM seen WHERE expires_ms < ?", c.now().UnixMilli()); err != nil {
			return fmt.Errorf("pruning seen envelopes: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `SELECT m.seq, m.id, m.account, m.device, m.content_enc, m.server_ms, m.received_ms,
			m.identity_changed, m.undecryptable, COALESCE(c.number, '') FROM messages m LEFT JOIN contacts c ON c.account = m.account
			WHERE m.shown = 0 ORDER BY m.seq`)
		if err != nil {
			return fmt.Errorf("reading messages: %w", err)
		}
		defer rows.Close()
		var last int64
		for rows.Next() {
			var m Message
			var id, acct string
			var enc []byte
			var serverMS, recvMS int64
			if err := rows.Scan(&last, &id, &acct, &m.FromDevice, &enc, &serverMS, &recvMS, &m.SafetyNumberChanged, &m.Undecryptable, &m.FromNumber); err != nil {
				return fmt.Errorf("reading messages: %w", err)
			}
			if m.ID, err = uuid.Parse(id); err != nil {
				return fmt.Errorf("stored message id: %w", err)
			}
			if m.From, err = uuid.Parse(acct); err != nil {
				return fmt.Errorf("stored message sender: %w", err)
			}
			m.FromOperator = m.From == uuid.Nil
			raw, err := c.seal.open(enc, "message/"+id)
			if err != nil {
				return err
			}
			content, err := unmarshalContent(raw)
			if err != nil {
				return fmt.Errorf("stored message: %w", err)
			}
			m.Text, m.SentTo = content.Text, content.SyncDestination
			c.groupOfStored(ctx, tx, raw, content, &m) // groups_receive.go
			m.SentAt = time.UnixMilli(int64(content.SentMS))
			if m.Undecryptable {
				m.SentAt = time.UnixMilli(serverMS)
			}
			m.ServerTime, m.ReceivedAt = time.UnixMilli(serverMS), time.UnixMilli(recvMS)
			msgs = append(msgs, m)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reading messages: %w", err)
		}
		rows.Close()
		_, err = tx.ExecContext(ctx, "UPDATE messages SET shown = 1 WHERE shown = 0 AND seq <= ?", last)
		return wrap("marking messages", err)
	})
	return msgs, err
}
