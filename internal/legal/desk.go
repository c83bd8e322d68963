package legal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/internal/phone"
	"github.com/bastionchat/bastion/internal/translog"
)

// Desk is the lawful-request desk over one legal.db. Create it with [NewDesk]; it is
// safe for concurrent use (the database serialises it).
type Desk struct {
	db             *DB
	key            *SigningKey
	log            *translog.Log
	subs           Subscribers
	notify         Notifier
	categories     []Category
	retention      time.Duration
	now            func() time.Time
	logger         *slog.Logger
	marketClose    func(ctx context.Context, country string) error
	marketsChanged func(ctx context.Context) error
	chans          Channels // channel reports and notices (moderation.go); nil: none

	flushMu sync.Mutex // one flush at a time, so that a pending entry is appended once

	reportMu    sync.Mutex
	reportCache *Report // the report of the tree size it names
}

// Config is what a [Desk] needs.
type Config struct {
	DB  *DB
	Key *SigningKey
	// Subscribers is the read-only view of phone numbers and the connection log. It may
	// be nil for a desk that only reads (the public report, markets).
	Subscribers Subscribers
	// Notifier delivers notices to users; nil holds them until a desk with one runs.
	Notifier Notifier
	// Categories is the data inventory's category list.
	Categories []Category
	// Retention is the connection log's window; entries older are never disclosed.
	Retention time.Duration
	Now       func() time.Time // nil means time.Now
	Logger    *slog.Logger     // nil discards
	// CloseMarket, if set, closes existing connections of accounts in a withdrawn
	// market, after a notice (market withdraw --close-existing).
	CloseMarket func(ctx context.Context, country string) error
	// MarketsChanged, if set, is called after every withdrawal and restoration has
	// committed, so that the server can tell its other nodes.
	MarketsChanged func(ctx context.Context) error
	// Channels, if set, is the view of public channels' reports and notices that the
	// operators' review of reports needs (moderation.go).
	Channels Channels
}

// NewDesk returns the desk. It appends any log entry a crash left pending.
func NewDesk(ctx context.Context, c Config) (*Desk, error) {
	if c.DB == nil || c.Key == nil {
		return nil, errors.New("legal desk needs a database and a key")
	}
	d := &Desk{
		db: c.DB, key: c.Key, subs: c.Subscribers, notify: c.Notifier,
		categories: slices.Clone(c.Categories), retention: c.Retention, now: c.Now, logger: c.Logger,
		marketClose: c.CloseMarket, marketsChanged: c.MarketsChanged, chans: c.Channels,
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.logger == nil {
		d.logger = slog.New(slog.DiscardHandler)
	}
	d.log = translog.New(logStorage{c.DB.db}, c.Key.noteSigner())
	if err := d.flushLog(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// Log returns the public legal log.
func (d *Desk) Log() *translog.Log { return d.log }

// PublicKey returns the public half of the server's signing key.
func (d *Desk) PublicKey() []byte { return d.key.Public() }

// Operator is a desk operator.
type Operator struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// AddOperator creates an operator and returns its token, which is stored only as its
// SHA-256 and never shown again.
func AddOperator(ctx context.Context, db *DB, name string, now time.Time) (token string, err error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 64 || strings.ContainsAny(name, " \t\r\n") {
		return "", errors.New("operator name must be 1 to 64 characters without spaces")
	}
	b := make([]byte, 32) // 256 bits: the token alone authenticates an operator
	rand.Read(b)
	token = "blo_" + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	_, err = db.db.ExecContext(ctx, `INSERT INTO operators (name, token_hash, created_at) VALUES (?, ?, ?)`, name, sum[:], now.Unix())
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE") {
			return "", fmt.Errorf("operator %q exists", name)
		}
		return "", fmt.Errorf("adding operator: %w", err)
	}
	return token, nil
}

// Authenticate returns the operator whose token this is. The token is compared as its
// SHA-256 by an index lookup: it is 256 random bits, so timing reveals nothing usable.
func (d *Desk) Authenticate(ctx context.Context, token string) (Operator, error) {
	sum := sha256.Sum256([]byte(token))
	var op Operator
	err := d.db.db.QueryRowContext(ctx, `SELECT id, name FROM operators WHERE token_hash = ?`, sum[:]).Scan(&op.ID, &op.Name)
	if errors.Is(err, sql.ErrNoRows) {
		return Operator{}, ErrUnauthorized
	}
	if err != nil {
		return Operator{}, fmt.Errorf("authenticating operator: %w", err)
	}
	return op, nil
}

// Order statuses.
const (
	StatusPending   = "pending"   // waiting for approvals
	StatusApproved  = "approved"  // two operators approved; ready to disclose
	StatusConcluded = "concluded" // answered or rejected; see Outcome
)

// Outcomes, as published in the legal log.
const (
	OutcomeFulfilled = "fulfilled"           // everything requested was given
	OutcomePartial   = "partially_fulfilled" // some categories not held, or some targets not found
	OutcomeNotHeld   = "not_held"            // nothing requested is held or disclosable; nothing given
	OutcomeRejected  = "rejected"            // invalid, or refused by an operator
)

// Record is an order with everything the desk decided about it.
type Record struct {
	ID           int64      `json:"id"`
	Order        Order      `json:"order"`
	OrderSHA256  string     `json:"order_sha256"`
	Status       string     `json:"status"`
	Outcome      string     `json:"outcome,omitempty"`
	Received     time.Time  `json:"received"`
	Acknowledged *time.Time `json:"acknowledged,omitempty"`
	Concluded    *time.Time `json:"concluded,omitempty"`
	Approvals    []string   `json:"approvals"` // operator names
	Reasons      []Reason   `json:"reasons"`
	Disclosed    []string   `json:"categories_disclosed"`
	Notices      []Notice   `json:"notices,omitempty"`
}

// Notice is a user notice's state (without the account).
type Notice struct {
	Due  time.Time  `json:"due"`
	Sent *time.Time `json:"sent,omitempty"`
}

// Intake records an order. An invalid order (see [Validate]) is recorded as rejected
// with its reasons; an order whose every category is not held or not disclosable is
// answered "not held" at once, without any lookup. Everything else waits for approvals.
func (d *Desk) Intake(ctx context.Context, op Operator, raw []byte) (Record, error) {
	o, err := ParseOrder(raw, d.categories)
	if err != nil {
		return Record{}, err
	}
	now := d.now().UTC().Truncate(time.Second)
	hash := o.Hash()
	give, notGiven := split(o.Categories, d.categories)
	invalid := Validate(o)

	status, outcome := StatusPending, ""
	reasons := notGiven
	var concluded *time.Time
	switch {
	case len(invalid) > 0:
		status, outcome, reasons, concluded = StatusConcluded, OutcomeRejected, append(invalid, notGiven...), &now
	case len(give) == 0:
		status, outcome, concluded = StatusConcluded, OutcomeNotHeld, &now
	}
	var notifyAfter any
	if o.NotifyAfter != "" {
		t, _ := time.Parse(dateLayout, o.NotifyAfter) // checked by ParseOrder
		notifyAfter = t.Unix()
	}
	rj, _ := json.Marshal(nonNil(reasons))

	tx, err := d.db.db.BeginTx(ctx, nil)
	if err != nil {
		return Record{}, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO orders (order_json, order_hash, jurisdiction, status, outcome,
		received_at, acknowledged_at, concluded_at, notify_after, reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		o.Canonical(), hash[:], o.Jurisdiction, status, outcome, now.Unix(), unixOrNil(concluded), unixOrNil(concluded), notifyAfter, string(rj))
	if err != nil {
		return Record{}, fmt.Errorf("recording order: %w", err)
	}
	id, _ := res.LastInsertId()
	e := LogEntry{
		Kind: KindReceived, Order: id, OrderSHA256: hex.EncodeToString(hash[:]), Jurisdiction: o.Jurisdiction,
		DateIssued: o.DateIssued, Received: now, CategoriesRequested: o.Categories, Accounts: countTargets(o),
	}
	if err := queueLog(ctx, tx, e); err != nil {
		return Record{}, err
	}
	if concluded != nil {
		e := outcomeEntry(id, o, hash, now, now, now, outcome, nil, notGiven, 0)
		if err := queueLog(ctx, tx, e); err != nil {
			return Record{}, err
		}
	}
	if err := tx.Commit(); err != nil {
		return Record{}, fmt.Errorf("recording order: %w", err)
	}
	d.logger.Info("legal order received", "order", id, "operator", op.Name, "status", status, "outcome", outcome)
	if err := d.afterAction(ctx); err != nil {
		return Record{}, err
	}
	return d.Show(ctx, id)
}

func countTargets(o Order) int {
	n := 0
	for _, t := range o.Targets {
		if t != "" {
			n++
		}
	}
	return n
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func unixOrNil(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.Unix()
}

func outcomeEntry(id int64, o Order, hash [32]byte, received, acked, concluded time.Time, outcome string, disclosed []string, notGiven []Reason, accounts int) LogEntry {
	var notHeld []string
	for _, r := range notGiven {
		if r.Reason == "not held" {
			notHeld = append(notHeld, r.Subject)
		}
	}
	return LogEntry{
		Kind: KindOutcome, Order: id, OrderSHA256: hex.EncodeToString(hash[:]), Jurisdiction: o.Jurisdiction,
		DateIssued: o.DateIssued, Received: received, Acknowledged: &acked, Concluded: &concluded,
		CategoriesRequested: o.Categories, CategoriesDisclosed: nonNil(disclosed), CategoriesNotHeld: notHeld,
		Accounts: accounts, Outcome: outcome,
	}
}

// queueLog writes a log entry to log_pending in the deciding transaction.
func queueLog(ctx context.Context, tx *sql.Tx, e LogEntry) error {
	b, err := e.Encode()
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO log_pending (data) VALUES (?)`, b)
	return err
}

// flushLog appends pending entries to the legal log in order. An entry already in the log
// (a crash after the append, before the delete) is not appended again: every entry is
// unique, as it holds its order's hash and its kind.
func (d *Desk) flushLog(ctx context.Context) error {
	d.flushMu.Lock()
	defer d.flushMu.Unlock()
	for {
		var id int64
		var data []byte
		err := d.db.db.QueryRowContext(ctx, `SELECT id, data FROM log_pending ORDER BY id LIMIT 1`).Scan(&id, &data)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading pending log entries: %w", err)
		}
		var dup int
		if err := d.db.db.QueryRowContext(ctx, `SELECT count(*) FROM log_entries WHERE data = ?`, data).Scan(&dup); err != nil {
			return fmt.Errorf("reading legal log: %w", err)
		}
		if dup == 0 {
			if _, err := d.log.Append(ctx, data); err != nil {
				return fmt.Errorf("appending to legal log: %w", err)
			}
		}
		if _, err := d.db.db.ExecContext(ctx, `DELETE FROM log_pending WHERE id = ?`, id); err != nil {
			return fmt.Errorf("appending to legal log: %w", err)
		}
	}
}

// afterAction runs what every desk action ends with: pending log entries are appended
// and notices whose deferral has ended are delivered.
func (d *Desk) afterAction(ctx context.Context) error {
	if err := d.flushLog(ctx); err != nil {
		return err
	}
	_, err := d.DeliverDueNotices(ctx)
	return err
}

// Show returns one order.
func (d *Desk) Show(ctx context.Context, id int64) (Record, error) {
	var r Record
	var orderJSON []byte
	var hash []byte
	var recv int64
	var ack, concl sql.NullInt64
	var reasons, disclosed string
	err := d.db.db.QueryRowContext(ctx, `SELECT id, order_json, order_hash, status, outcome, received_at,
		acknowledged_at, concluded_at, reasons, disclosed FROM orders WHERE id = ?`, id).
		Scan(&r.ID, &orderJSON, &hash, &r.Status, &r.Outcome, &recv, &ack, &concl, &reasons, &disclosed)
	if errors.Is(err, sql.ErrNoRows) {
		return Record{}, fmt.Errorf("order %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Record{}, fmt.Errorf("reading order %d: %w", id, err)
	}
	if err := json.Unmarshal(orderJSON, &r.Order); err != nil {
		return Record{}, fmt.Errorf("reading order %d: %w", id, err)
	}
	if err := json.Unmarshal([]byte(reasons), &r.Reasons); err != nil {
		return Record{}, fmt.Errorf("reading order %d: %w", id, err)
	}
	if err := json.Unmarshal([]byte(disclosed), &r.Disclosed); err != nil {
		return Record{}, fmt.Errorf("reading order %d: %w", id, err)
	}
	r.OrderSHA256 = hex.EncodeToString(hash)
	r.Received = time.Unix(recv, 0).UTC()
	r.Acknowledged = fromNull(ack)
	r.Concluded = fromNull(concl)
	rows, err := d.db.db.QueryContext(ctx, `SELECT o.name FROM approvals a JOIN operators o ON o.id = a.operator_id
		WHERE a.order_id = ? ORDER BY a.approved_at, o.name`, id)
	if err != nil {
		return Record{}, err
	}
	r.Approvals = []string{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return Record{}, err
		}
		r.Approvals = append(r.Approvals, n)
	}
	rows.Close()
	nrows, err := d.db.db.QueryContext(ctx, `SELECT due_at, sent_at FROM notices WHERE order_id = ? ORDER BY id`, id)
	if err != nil {
		return Record{}, err
	}
	defer nrows.Close()
	for nrows.Next() {
		var due int64
		var sent sql.NullInt64
		if err := nrows.Scan(&due, &sent); err != nil {
			return Record{}, err
		}
		r.Notices = append(r.Notices, Notice{Due: time.Unix(due, 0).UTC(), Sent: fromNull(sent)})
	}
	return r, nrows.Err()
}

func fromNull(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := time.Unix(n.Int64, 0).UTC()
	return &t
}

// Summary is one line of [Desk.List].
type Summary struct {
	ID           int64     `json:"id"`
	Jurisdiction string    `json:"jurisdiction"`
	Status       string    `json:"status"`
	Outcome      string    `json:"outcome,omitempty"`
	Received     time.Time `json:"received"`
	Approvals    int       `json:"approvals"`
}

// List returns every order, newest first.
func (d *Desk) List(ctx context.Context) ([]Summary, error) {
	rows, err := d.db.db.QueryContext(ctx, `SELECT o.id, o.jurisdiction, o.status, o.outcome, o.received_at,
		(SELECT count(*) FROM approvals a WHERE a.order_id = o.id) FROM orders o ORDER BY o.id DESC`)
	if err != nil {
		return nil, fmt.Errorf("listing orders: %w", err)
	}
	defer rows.Close()
	out := []Summary{}
	for rows.Next() {
		var s Summary
		var recv int64
		if err := rows.Scan(&s.ID, &s.Jurisdiction, &s.Status, &s.Outcome, &recv, &s.Approvals); err != nil {
			return nil, err
		}
		s.Received = time.Unix(recv, 0).UTC()
		out = append(out, s)
	}
	return out, rows.Err()
}

// Approve records op's approval. The second approval by a different operator makes the
// order ready for disclosure; one operator approving twice is refused.
func (d *Desk) Approve(ctx context.Context, op Operator, id int64) (Record, error) {
	now := d.now().UTC().Truncate(time.Second)
	tx, err := d.db.db.BeginTx(ctx, nil)
	if err != nil {
		return Record{}, err
	}
	defer tx.Rollback()
	var status string
	if err := tx.QueryRowContext(ctx, `SELECT status FROM orders WHERE id = ?`, id).Scan(&status); errors.Is(err, sql.ErrNoRows) {
		return Record{}, fmt.Errorf("order %d: %w", id, ErrNotFound)
	} else if err != nil {
		return Record{}, err
	}
	if status == StatusConcluded {
		return Record{}, fmt.Errorf("order %d: %w", id, ErrConcluded)
	}
	var dup int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM approvals WHERE order_id = ? AND operator_id = ?`, id, op.ID).Scan(&dup); err != nil {
		return Record{}, err
	}
	if dup > 0 {
		return Record{}, fmt.Errorf("order %d: %w; a different operator must approve", id, ErrAlreadyApproved)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO approvals (order_id, operator_id, approved_at) VALUES (?, ?, ?)`, id, op.ID, now.Unix()); err != nil {
		return Record{}, fmt.Errorf("recording approval: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE orders SET acknowledged_at = coalesce(acknowledged_at, ?),
		status = CASE WHEN (SELECT count(*) FROM approvals WHERE order_id = ?) >= 2 THEN ? ELSE status END WHERE id = ?`,
		now.Unix(), id, StatusApproved, id); err != nil {
		return Record{}, fmt.Errorf("recording approval: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Record{}, fmt.Errorf("recording approval: %w", err)
	}
	d.logger.Info("legal order approved", "order", id, "operator", op.Name)
	if err := d.afterAction(ctx); err != nil {
		return Record{}, err
	}
	return d.Show(ctx, id)
}

// Reject refuses an order that is not yet concluded, with the operator's reason.
func (d *Desk) Reject(ctx context.Context, op Operator, id int64, reason string) (Record, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return Record{}, errors.New("a rejection needs a reason")
	}
	r, err := d.Show(ctx, id)
	if err != nil {
		return Record{}, err
	}
	if r.Status == StatusConcluded {
		return Record{}, fmt.Errorf("order %d: %w", id, ErrConcluded)
	}
	now := d.now().UTC().Truncate(time.Second)
	ack := now
	if r.Acknowledged != nil {
		ack = *r.Acknowledged
	}
	reasons := append(r.Reasons, Reason{"order", "rejected by " + op.Name + ": " + reason})
	rj, _ := json.Marshal(reasons)
	hash := r.Order.Hash()
	_, notGiven := split(r.Order.Categories, d.categories)
	tx, err := d.db.db.BeginTx(ctx, nil)
	if err != nil {
		return Record{}, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE orders SET status = ?, outcome = ?, acknowledged_at = ?, concluded_at = ?, reasons = ?
		WHERE id = ? AND status != ?`, StatusConcluded, OutcomeRejected, ack.Unix(), now.Unix(), string(rj), id, StatusConcluded)
	if err != nil {
		return Record{}, fmt.Errorf("recording rejection: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return Record{}, fmt.Errorf("order %d: %w", id, ErrConcluded)
	}
	if err := queueLog(ctx, tx, outcomeEntry(id, r.Order, hash, r.Received, ack, now, OutcomeRejected, nil, notGiven, 0)); err != nil {
		return Record{}, err
	}
	if err := tx.Commit(); err != nil {
		return Record{}, fmt.Errorf("recording rejection: %w", err)
	}
	d.logger.Info("legal order rejected", "order", id, "operator", op.Name)
	if err := d.afterAction(ctx); err != nil {
		return Record{}, err
	}
	return d.Show(ctx, id)
}

// Disclose answers an approved order: it reads, per target, the account registered with
// the number and its connection log inside the retention window, builds and signs the
// disclosure package, queues the notices, and records the outcome. Disclosing an order
// already answered returns the package given then.
func (d *Desk) Disclose(ctx context.Context, op Operator, id int64) (pkg, sig []byte, err error) {
	r, err := d.Show(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if r.Status == StatusConcluded {
		var p, s []byte
		if err := d.db.db.QueryRowContext(ctx, `SELECT package, signature FROM orders WHERE id = ?`, id).Scan(&p, &s); err != nil {
			return nil, nil, err
		}
		if p == nil {
			return nil, nil, fmt.Errorf("order %d was concluded %s and has no package: %w", id, r.Outcome, ErrConcluded)
		}
		return p, s, nil
	}
	if r.Status != StatusApproved || len(r.Approvals) < 2 {
		return nil, nil, fmt.Errorf("order %d has %d approval(s): %w", id, len(r.Approvals), ErrNeedsApproval)
	}
	if d.subs == nil {
		return nil, nil, errors.New("this desk has no view of subscriber data")
	}
	now := d.now().UTC().Truncate(time.Second)
	give, notGiven := split(r.Order.Categories, d.categories)
	reasons := slices.Clone(notGiven)
	wantConns := slices.Contains(give, CategoryConnectionLog)
	cutoff := now.Add(-d.retention)

	p := Package{
		Version: PackageVersion, OrderReference: r.Order.CaseReference, OrderSHA256: r.OrderSHA256,
		IssuingAuthority: r.Order.IssuingAuthority, GeneratedAt: now, RetentionDays: int(d.retention / (24 * time.Hour)),
		CategoriesDisclosed: give, CategoriesNotHeld: []string{}, Targets: []PackageTarget{},
	}
	for _, nr := range notGiven {
		p.CategoriesNotHeld = append(p.CategoriesNotHeld, nr.Subject)
	}
	var accounts []uuid.UUID
	for i, t := range r.Order.Targets {
		if t == "" {
			continue
		}
		num, err := phone.Normalise(t)
		if err != nil {
			reasons = append(reasons, Reason{fmt.Sprintf("target %d", i+1), "not a valid phone number in international form"})
			continue
		}
		acct, found, err := d.subs.AccountByNumber(ctx, num)
		if err != nil {
			return nil, nil, fmt.Errorf("looking up target %d: %w", i+1, err)
		}
		pt := PackageTarget{PhoneNumber: num, Registered: found, Connections: []PackageConnection{}}
		if !found {
			reasons = append(reasons, Reason{fmt.Sprintf("target %d", i+1), "no account is registered with this number"})
			p.Targets = append(p.Targets, pt)
			continue
		}
		accounts = append(accounts, acct)
		if wantConns {
			conns, err := d.subs.Connections(ctx, acct)
			if err != nil {
				return nil, nil, fmt.Errorf("reading connection log of target %d: %w", i+1, err)
			}
			for _, c := range conns {
				// The window is enforced here as well as by the janitor, so a late
				// janitor never widens what an order reaches.
				if c.LastSeen.Before(cutoff) || d.retention <= 0 {
					continue
				}
				pt.Connections = append(pt.Connections, PackageConnection{
					IP: c.IP.String(), FirstSeen: c.FirstSeen.UTC(), LastSeen: c.LastSeen.UTC(),
				})
			}
			slices.SortFunc(pt.Connections, func(a, b PackageConnection) int { return b.LastSeen.Compare(a.LastSeen) })
		}
		p.Targets = append(p.Targets, pt)
	}
	pkg, err = json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, nil, fmt.Errorf("encoding package: %w", err)
	}
	sig = d.key.Sign(pkg)

	outcome := OutcomeFulfilled
	if len(reasons) > 0 {
		outcome = OutcomePartial
	}
	ack := now
	if r.Acknowledged != nil {
		ack = *r.Acknowledged
	}
	due := now
	if r.Order.NotifyAfter != "" {
		if t, _ := time.Parse(dateLayout, r.Order.NotifyAfter); t.After(due) {
			due = t
		}
	}
	notice, err := json.Marshal(UserNotice{
		Type: "legal_notice", From: "operator", IssuingAuthority: r.Order.IssuingAuthority, Court: r.Order.Court,
		Jurisdiction: r.Order.Jurisdiction, LegalBasis: r.Order.LegalBasis, CaseReference: r.Order.CaseReference,
		DateIssued: r.Order.DateIssued, CategoriesRequested: r.Order.Categories, CategoriesDisclosed: give,
		DisclosedAt: now,
	})
	if err != nil {
		return nil, nil, err
	}
	rj, _ := json.Marshal(nonNil(reasons))
	dj, _ := json.Marshal(nonNil(give))

	tx, err := d.db.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE orders SET status = ?, outcome = ?, acknowledged_at = ?, concluded_at = ?,
		reasons = ?, disclosed = ?, package = ?, signature = ? WHERE id = ? AND status = ?`,
		StatusConcluded, outcome, ack.Unix(), now.Unix(), string(rj), string(dj), pkg, sig, id, StatusApproved)
	if err != nil {
		return nil, nil, fmt.Errorf("recording disclosure: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return nil, nil, fmt.Errorf("order %d changed during disclosure: %w", id, ErrConcluded)
	}
	for _, a := range accounts {
		if _, err := tx.ExecContext(ctx, `INSERT INTO notices (order_id, account_id, body, due_at) VALUES (?, ?, ?, ?)`,
			id, a.String(), notice, due.Unix()); err != nil {
			return nil, nil, fmt.Errorf("queueing notice: %w", err)
		}
	}
	if err := queueLog(ctx, tx, outcomeEntry(id, r.Order, r.Order.Hash(), r.Received, ack, now, outcome, give, notGiven, len(accounts))); err != nil {
		return nil, nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, fmt.Errorf("recording disclosure: %w", err)
	}
	d.logger.Info("legal order answered", "order", id, "operator", op.Name, "outcome", outcome, "accounts", len(accounts))
	if err := d.afterAction(ctx); err != nil {
		return nil, nil, err
	}
	return pkg, sig, nil
}

// UserNotice is the notice an affected user's devices receive: who asked, on what
// basis, for which categories, and what was given.
type UserNotice struct {
	Type                string    `json:"type"` // "legal_notice"
	From                string    `json:"from"` // "operator": the service, not a user
	IssuingAuthority    string    `json:"issuing_authority"`
	Court               string    `json:"court"`
	Jurisdiction        string    `json:"jurisdiction"`
	LegalBasis          string    `json:"legal_basis"`
	CaseReference       string    `json:"case_reference"`
	DateIssued          string    `json:"date_issued"`
	CategoriesRequested []string  `json:"categories_requested"`
	CategoriesDisclosed []string  `json:"categories_disclosed"`
	DisclosedAt         time.Time `json:"disclosed_at"`
}

// DeliverDueNotices hands every notice whose date has come to the notifier and returns
// how many were delivered. Without a notifier it delivers none. A failed delivery is
// retried at the next call.
func (d *Desk) DeliverDueNotices(ctx context.Context) (int, error) {
	if d.notify == nil {
		return 0, nil
	}
	now := d.now().UTC()
	type due struct {
		id      int64
		account string
		body    []byte
	}
	rows, err := d.db.db.QueryContext(ctx, `SELECT id, account_id, body FROM notices WHERE sent_at IS NULL AND due_at <= ? ORDER BY id`, now.Unix())
	if err != nil {
		return 0, fmt.Errorf("reading notices: %w", err)
	}
	var ds []due
	for rows.Next() {
		var x due
		if err := rows.Scan(&x.id, &x.account, &x.body); err != nil {
			rows.Close()
			return 0, err
		}
		ds = append(ds, x)
	}
	rows.Close()
	n := 0
	var errs []error
	for _, x := range ds {
		acct, err := uuid.Parse(x.account)
		if err != nil {
			errs = append(errs, fmt.Errorf("notice %d: %w", x.id, err))
			continue
		}
		if err := d.notify.NotifyAccount(ctx, acct, x.body); err != nil {
			errs = append(errs, fmt.Errorf("delivering notice %d: %w", x.id, err))
			continue
		}
		if _, err := d.db.db.ExecContext(ctx, `UPDATE notices SET sent_at = ? WHERE id = ?`, now.Unix(), x.id); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// RunNotices delivers due notices every interval until ctx is done, so that a deferral
// ends on its date even when no operator acts.
func (d *Desk) RunNotices(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := d.DeliverDueNotices(ctx); err != nil && ctx.Err() == nil {
			d.logger.Error("legal notices", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
