package legal

// Notice and action for public channel posts (EU Digital Services Act, Art. 16 and 17;
// docs/channels.md "Notice and action"). Anyone can report a post to the server, which
// stores the report in the shared store with no reporter identity. The desk takes every
// report in (numbering it and logging its receipt), and an operator decides it: dismiss,
// restrict in one country, or remove. A restriction or removal is a channel.Notice signed
// with the server's key over the post's hash, stored for every node to serve in place of
// the post's body, with the statement of reasons the channel's owner and its readers
// receive. Every receipt and every decision is an entry of the public legal log, from
// which the transparency report counts them.
//
// What this protects: that a post is withheld only by a decision an operator took and
// signed, that the statement of reasons travels with it, and that every notice and action
// is counted. What it does not: the judgement itself, and the reporter's anonymity
// against the network (the server stores no identity, but it sees the request).

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/channel"
)

// Channels is the desk's view of the public channels in the shared store: the reports
// received, the posts they name, and the operator notices. The server implements it over
// its store; it offers no account, number or reader data.
type Channels interface {
	// ChannelReports lists reports with a status ("" for all), oldest first.
	ChannelReports(ctx context.Context, status string) ([]ChannelReport, error)
	// ChannelReport returns one report; an error wrapping [ErrNoReport] if there is none.
	ChannelReport(ctx context.Context, id uuid.UUID) (ChannelReport, error)
	// DecideChannelReport moves an open report to status (ReportDismissed,
	// ReportRestricted or ReportRemoved); an error wrapping [ErrDecided] if it is not
	// open.
	DecideChannelReport(ctx context.Context, id uuid.UUID, status string, at time.Time) error
	// ChannelPost returns a post's signed bytes as its signer submitted them; an error
	// wrapping [ErrNoReport] if the post does not exist.
	ChannelPost(ctx context.Context, ch channel.ID, seq uint64) ([]byte, error)
	// ChannelNotices returns the encoded notices on a channel, oldest first.
	ChannelNotices(ctx context.Context, ch channel.ID) ([][]byte, error)
	// PutChannelNotice stores a signed notice; every node serves it from then on.
	PutChannelNotice(ctx context.Context, n *channel.Notice, at time.Time) error
}

// ChannelReport is a report about a post as the shared store holds it: no reporter.
type ChannelReport struct {
	ID       uuid.UUID
	Channel  channel.ID
	Seq      uint64
	Reason   string // the ground: [GroundIllegal] or [GroundTerms]
	Text     string // the notifier's explanation
	Received time.Time
	Status   string    // [ReportOpen] until decided
	Decided  time.Time // zero while open
}

// Report grounds, as the API names them (api.ReportIllegal, api.ReportTerms).
const (
	GroundIllegal = "illegal"
	GroundTerms   = "terms"
)

// Report statuses in the shared store.
const (
	ReportOpen       = "open"
	ReportDismissed  = "dismissed"
	ReportRestricted = "restricted"
	ReportRemoved    = "removed"
)

// Decisions on a report, as the desk records and the log publishes them. A duplicate is
// a dismissal of a report about a post an earlier decision already restricted or removed:
// the first action decides a post, later reports of it are counted but not acted on
// again. The store records a duplicate as [ReportDismissed].
const (
	ActionDismissed  = "dismissed"
	ActionDuplicate  = "duplicate"
	ActionRestricted = "restricted"
	ActionRemoved    = "removed"
)

// Errors the moderation desk's callers branch on.
var (
	// ErrNoReport: no such report, or the post it names does not exist.
	ErrNoReport = errors.New("no such report")
	// ErrDecided: a decision on a report that is decided already, or an action on a post
	// an earlier decision covers (dismiss that report as a duplicate instead).
	ErrDecided = errors.New("already decided")
)

// ReportSummary is one line of [Desk.Reports].
type ReportSummary struct {
	ID       uuid.UUID `json:"id"`
	Number   int64     `json:"number"` // the desk's number, as in the legal log
	Channel  string    `json:"channel"`
	Seq      uint64    `json:"seq"`
	Reason   string    `json:"reason"`
	Received time.Time `json:"received"`
	Status   string    `json:"status"`
	Action   string    `json:"action,omitempty"`
	// Actioned is true when the post is already restricted or removed by a notice: a
	// report of it can only be dismissed as a duplicate, or widen a restriction.
	Actioned bool `json:"actioned"`
}

// ReportRecord is a report with the post it names and everything decided about it.
type ReportRecord struct {
	ReportSummary
	Text    string       `json:"text"`
	Post    *PostView    `json:"post,omitempty"`
	Notices []NoticeView `json:"notices"` // every notice on this post, oldest first
	// The decision: when, by whom, in which country (restriction), and the operator's
	// statement (the published statement of reasons for a restriction or removal).
	Decided      *time.Time `json:"decided,omitempty"`
	Operator     string     `json:"operator,omitempty"`
	Jurisdiction string     `json:"jurisdiction,omitempty"`
	Statement    string     `json:"statement,omitempty"`
}

// PostView is a reported post as the operator reviews it. Channel posts are public.
type PostView struct {
	Kind   string    `json:"kind"`
	Time   time.Time `json:"time"`
	Signer string    `json:"signer"`
	Hash   string    `json:"hash"`
	// Body is the post's text if it is UTF-8; BodyBytes the raw body otherwise.
	Body      string `json:"body,omitempty"`
	BodyBytes []byte `json:"body_bytes,omitempty"`
}

// NoticeView is one operator notice on a post.
type NoticeView struct {
	Action       string    `json:"action"`
	Jurisdiction string    `json:"jurisdiction,omitempty"`
	Reason       string    `json:"reason"`
	Time         time.Time `json:"time"`
	Post         string    `json:"post"` // the hash it names
	Notice       []byte    `json:"notice"`
}

// errNoChannels is what the moderation calls of a desk without a [Channels] return.
var errNoChannels = errors.New("this desk has no view of channel reports")

func (d *Desk) channels() (Channels, error) {
	if d.chans == nil {
		return nil, errNoChannels
	}
	return d.chans, nil
}

// ground maps a stored reason to a ground the log knows. The server accepts only the two,
// so another value is a store written by something else: counted, never dropped.
func ground(reason string) string {
	if reason == GroundIllegal || reason == GroundTerms {
		return reason
	}
	return "other"
}

// takeIn numbers a report the desk has not seen and queues its receipt for the log, in
// tx. It returns the desk's number either way.
func takeIn(ctx context.Context, tx *sql.Tx, r ChannelReport) (int64, error) {
	var n int64
	err := tx.QueryRowContext(ctx, `SELECT number FROM channel_reports WHERE report_id = ?`, r.ID.String()).Scan(&n)
	if err == nil {
		return n, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("reading channel report: %w", err)
	}
	received := r.Received.UTC().Truncate(time.Second)
	res, err := tx.ExecContext(ctx, `INSERT INTO channel_reports (report_id, ground, received_at) VALUES (?, ?, ?)`,
		r.ID.String(), ground(r.Reason), received.Unix())
	if err != nil {
		return 0, fmt.Errorf("taking in channel report: %w", err)
	}
	if n, err = res.LastInsertId(); err != nil {
		return 0, err
	}
	return n, queueLog(ctx, tx, LogEntry{Kind: KindNotice, Report: n, Ground: ground(r.Reason), Received: received})
}

// TakeInReport numbers one report the desk has not seen and logs its receipt: what the
// server calls after storing a report, when the desk runs on its node.
func (d *Desk) TakeInReport(ctx context.Context, r ChannelReport) error {
	tx, err := d.db.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := takeIn(ctx, tx, r); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("taking in channel report: %w", err)
	}
	return d.flushLog(ctx)
}

// TakeInReports numbers every open report the desk has not seen yet and logs its
// receipt, so that the transparency report counts it. The desk does it before every
// review, which is how reports received by other nodes reach it.
func (d *Desk) TakeInReports(ctx context.Context) error {
	chans, err := d.channels()
	if err != nil {
		return err
	}
	open, err := chans.ChannelReports(ctx, ReportOpen)
	if err != nil {
		return fmt.Errorf("reading channel reports: %w", err)
	}
	if len(open) == 0 {
		return nil
	}
	tx, err := d.db.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, r := range open {
		if _, err := takeIn(ctx, tx, r); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("taking in channel reports: %w", err)
	}
	return d.flushLog(ctx)
}

type deskReport struct {
	number       int64
	action       string
	jurisdiction string
	statement    string
	operator     string
	decided      *time.Time
}

func (d *Desk) deskReports(ctx context.Context) (map[uuid.UUID]deskReport, error) {
	rows, err := d.db.db.QueryContext(ctx, `SELECT c.report_id, c.number, c.action, c.jurisdiction, c.statement,
		coalesce(o.name, ''), c.decided_at FROM channel_reports c LEFT JOIN operators o ON o.id = c.operator_id`)
	if err != nil {
		return nil, fmt.Errorf("reading channel reports: %w", err)
	}
	defer rows.Close()
	out := map[uuid.UUID]deskReport{}
	for rows.Next() {
		var id string
		var r deskReport
		var decided sql.NullInt64
		if err := rows.Scan(&id, &r.number, &r.action, &r.jurisdiction, &r.statement, &r.operator, &decided); err != nil {
			return nil, err
		}
		u, err := uuid.Parse(id)
		if err != nil {
			return nil, fmt.Errorf("channel report %d: %w", r.number, err)
		}
		r.decided = fromNull(decided)
		out[u] = r
	}
	return out, rows.Err()
}

// postNotices returns the parsed notices on one post.
func postNotices(ctx context.Context, chans Channels, ch channel.ID, seq uint64) ([]*channel.Notice, error) {
	raw, err := chans.ChannelNotices(ctx, ch)
	if err != nil {
		return nil, fmt.Errorf("reading notices: %w", err)
	}
	var out []*channel.Notice
	for _, b := range raw {
		n, err := channel.ParseNotice(b)
		if err != nil {
			return nil, fmt.Errorf("a stored notice on %s: %w", ch, err)
		}
		if n.Seq == seq {
			out = append(out, n)
		}
	}
	return out, nil
}

// Reports lists the open reports, oldest first, or with all every report.
func (d *Desk) Reports(ctx context.Context, all bool) ([]ReportSummary, error) {
	chans, err := d.channels()
	if err != nil {
		return nil, err
	}
	if err := d.TakeInReports(ctx); err != nil {
		return nil, err
	}
	status := ReportOpen
	if all {
		status = ""
	}
	rs, err := chans.ChannelReports(ctx, status)
	if err != nil {
		return nil, fmt.Errorf("reading channel reports: %w", err)
	}
	desk, err := d.deskReports(ctx)
	if err != nil {
		return nil, err
	}
	actioned := map[channel.ID]map[uint64]bool{} // per channel, the seqs with a notice
	out := []ReportSummary{}
	for _, r := range rs {
		if actioned[r.Channel] == nil {
			raw, err := chans.ChannelNotices(ctx, r.Channel)
			if err != nil {
				return nil, fmt.Errorf("reading notices: %w", err)
			}
			seqs := map[uint64]bool{}
			for _, b := range raw {
				if n, err := channel.ParseNotice(b); err == nil {
					seqs[n.Seq] = true
				}
			}
			actioned[r.Channel] = seqs
		}
		dr := desk[r.ID]
		out = append(out, ReportSummary{
			ID: r.ID, Number: dr.number, Channel: r.Channel.String(), Seq: r.Seq, Reason: r.Reason,
			Received: r.Received.UTC(), Status: r.Status, Action: dr.action, Actioned: actioned[r.Channel][r.Seq],
		})
	}
	return out, nil
}

// ShowReport returns one report with its post and the notices on it.
func (d *Desk) ShowReport(ctx context.Context, id uuid.UUID) (ReportRecord, error) {
	chans, err := d.channels()
	if err != nil {
		return ReportRecord{}, err
	}
	r, err := chans.ChannelReport(ctx, id)
	if err != nil {
		return ReportRecord{}, err
	}
	if r.Status == ReportOpen {
		if err := d.TakeInReports(ctx); err != nil {
			return ReportRecord{}, err
		}
	}
	desk, err := d.deskReports(ctx)
	if err != nil {
		return ReportRecord{}, err
	}
	dr := desk[id]
	rec := ReportRecord{
		ReportSummary: ReportSummary{
			ID: r.ID, Number: dr.number, Channel: r.Channel.String(), Seq: r.Seq, Reason: r.Reason,
			Received: r.Received.UTC(), Status: r.Status, Action: dr.action,
		},
		Text: r.Text, Decided: dr.decided, Operator: dr.operator, Jurisdiction: dr.jurisdiction, Statement: dr.statement,
		Notices: []NoticeView{},
	}
	if raw, err := chans.ChannelPost(ctx, r.Channel, r.Seq); err == nil {
		if p, err := channel.ParsePost(raw); err == nil {
			rec.Post = &PostView{Kind: p.Kind().String(), Time: p.Time(), Signer: p.Signer().String(), Hash: p.Hash().String()}
			if utf8.Valid(p.Body()) {
				rec.Post.Body = string(p.Body())
			} else {
				rec.Post.BodyBytes = p.Body()
			}
		}
	} else if !errors.Is(err, ErrNoReport) {
		return ReportRecord{}, fmt.Errorf("reading the reported post: %w", err)
	}
	ns, err := postNotices(ctx, chans, r.Channel, r.Seq)
	if err != nil {
		return ReportRecord{}, err
	}
	for _, n := range ns {
		rec.Notices = append(rec.Notices, NoticeView{
			Action: n.Action.String(), Jurisdiction: n.Jurisdiction, Reason: n.Reason, Time: n.Time,
			Post: n.Post.String(), Notice: n.Bytes(),
		})
	}
	rec.Actioned = len(ns) > 0
	return rec, nil
}

// Decision is an operator's decision on a report.
type Decision struct {
	// Action is ActionDismissed, ActionRestricted or ActionRemoved. A dismissal of a
	// report about a post already restricted or removed is recorded as ActionDuplicate.
	Action string `json:"action"`
	// Country is the ISO 3166-1 alpha-2 code a restriction applies in: readers whose
	// numbers belong to it no longer get the post's body.
	Country string `json:"country,omitempty"`
	// Reason is the statement of reasons (DSA Art. 17): for a restriction or removal it
	// is signed into the notice and published with the withheld post, so it names the
	// ground, the facts and the redress, and never the notifier; for a dismissal it is
	// kept in the desk.
	Reason string `json:"reason"`
}

// Decide decides an open report. A restriction or removal signs a channel.Notice with the
// server's key over the post's hash and stores it, which withholds the post's body on
// every node from then on. The first action on a post decides it: a later report of a
// removed post, or of a post restricted in the same country, is refused with
// [ErrDecided] and can only be dismissed, which counts it as a duplicate.
func (d *Desk) Decide(ctx context.Context, op Operator, id uuid.UUID, dec Decision) (ReportRecord, error) {
	chans, err := d.channels()
	if err != nil {
		return ReportRecord{}, err
	}
	reason := strings.TrimSpace(dec.Reason)
	var act channel.Action
	var status, country string
	switch dec.Action {
	case ActionDismissed:
		status = ReportDismissed
		if reason == "" || len(reason) > maxStatement {
			return ReportRecord{}, fmt.Errorf("a dismissal needs a reason of 1 to %d bytes", maxStatement)
		}
	case ActionRestricted, ActionRemoved:
		status, act = ReportRestricted, channel.ActionRestrict
		if dec.Action == ActionRemoved {
			status, act = ReportRemoved, channel.ActionRemove
		} else if country, err = checkCountry(dec.Country); err != nil {
			return ReportRecord{}, err
		}
		// The limit of the signed notice: the statement travels inside it.
		if reason == "" || len(reason) > channel.MaxReasonLen || !utf8.ValidString(reason) {
			return ReportRecord{}, fmt.Errorf("a statement of reasons of 1 to %d bytes of UTF-8 is required: it is sent to the channel's owner and readers", channel.MaxReasonLen)
		}
	default:
		return ReportRecord{}, fmt.Errorf("unknown action %q: want dismissed, restricted or removed", dec.Action)
	}
	if dec.Action != ActionRestricted && strings.TrimSpace(dec.Country) != "" {
		return ReportRecord{}, errors.New("a country applies only to a restriction")
	}
	r, err := chans.ChannelReport(ctx, id)
	if err != nil {
		return ReportRecord{}, err
	}
	if r.Status != ReportOpen {
		return ReportRecord{}, fmt.Errorf("report %s is %s: %w", id, r.Status, ErrDecided)
	}
	now := d.now().UTC()

	// The transaction holds legal.db's write lock from BEGIN (the desk opens it with
	// _txlock=immediate), so two operators deciding at once are serialised and the
	// second finds the report decided.
	tx, err := d.db.db.BeginTx(ctx, nil)
	if err != nil {
		return ReportRecord{}, err
	}
	defer tx.Rollback()
	number, err := takeIn(ctx, tx, r)
	if err != nil {
		return ReportRecord{}, err
	}
	var done string
	if err := tx.QueryRowContext(ctx, `SELECT action FROM channel_reports WHERE number = ?`, number).Scan(&done); err != nil {
		return ReportRecord{}, err
	}
	if done != "" {
		return ReportRecord{}, fmt.Errorf("report %s was %s: %w", id, done, ErrDecided)
	}
	existing, err := postNotices(ctx, chans, r.Channel, r.Seq)
	if err != nil {
		return ReportRecord{}, err
	}
	action := dec.Action
	switch {
	case action == ActionDismissed && len(existing) > 0:
		action = ActionDuplicate
	case act != 0:
		for _, n := range existing {
			if n.Action == channel.ActionRemove || (act == channel.ActionRestrict && n.Jurisdiction == country) {
				return ReportRecord{}, fmt.Errorf("post %d of %s is already %s%s since %s: dismiss this report as a duplicate: %w",
					r.Seq, r.Channel, n.Action, in(n.Jurisdiction), n.Time.Format(time.DateOnly), ErrDecided)
			}
		}
		raw, err := chans.ChannelPost(ctx, r.Channel, r.Seq)
		if err != nil {
			return ReportRecord{}, fmt.Errorf("reading the reported post: %w", err)
		}
		p, err := channel.ParsePost(raw)
		if err != nil {
			return ReportRecord{}, fmt.Errorf("reading the reported post: %w", err)
		}
		if p.Channel() != r.Channel || p.Seq() != r.Seq {
			return ReportRecord{}, fmt.Errorf("the store returned post %d of %s for post %d of %s", p.Seq(), p.Channel(), r.Seq, r.Channel)
		}
		if k := p.Kind(); k != channel.KindPost && k != channel.KindEdit {
			// channel.Post.Withhold keeps a genesis, delete, delegation or revocation:
			// hiding a revocation would keep a revoked key in power.
			return ReportRecord{}, fmt.Errorf("post %d is a %s: only posts and edits can be withheld", r.Seq, k)
		}
		n, err := channel.SignNotice(d.key.priv, channel.Notice{
			Channel: r.Channel, Seq: r.Seq, Post: p.Hash(), Action: act, Jurisdiction: country, Reason: reason, Time: now,
		})
		if err != nil {
			return ReportRecord{}, err
		}
		if err := chans.PutChannelNotice(ctx, n, now); err != nil {
			return ReportRecord{}, fmt.Errorf("storing the notice: %w", err)
		}
	}
	if err := chans.DecideChannelReport(ctx, id, status, now); err != nil {
		return ReportRecord{}, fmt.Errorf("recording the decision in the store: %w", err)
	}
	decided := now.Truncate(time.Second)
	if _, err := tx.ExecContext(ctx, `UPDATE channel_reports SET action = ?, jurisdiction = ?, statement = ?, operator_id = ?, decided_at = ?
		WHERE number = ?`, action, country, reason, op.ID, decided.Unix(), number); err != nil {
		return ReportRecord{}, fmt.Errorf("recording the decision: %w", err)
	}
	var received int64
	if err := tx.QueryRowContext(ctx, `SELECT received_at FROM channel_reports WHERE number = ?`, number).Scan(&received); err != nil {
		return ReportRecord{}, err
	}
	if err := queueLog(ctx, tx, LogEntry{
		Kind: KindModeration, Report: number, Ground: ground(r.Reason), Action: action, Jurisdiction: country,
		Received: time.Unix(received, 0).UTC(), Concluded: &decided,
	}); err != nil {
		return ReportRecord{}, err
	}
	if err := tx.Commit(); err != nil {
		return ReportRecord{}, fmt.Errorf("recording the decision: %w", err)
	}
	d.logger.Info("channel report decided", "report", number, "action", action, "operator", op.Name)
	if err := d.afterAction(ctx); err != nil {
		return ReportRecord{}, err
	}
	return d.ShowReport(ctx, id)
}

func in(country string) string {
	if country == "" {
		return ""
	}
	return " in " + country
}
