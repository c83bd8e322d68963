package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/internal/store"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

const channelColumns = `id, handle, private, genesis, head, head_seq, newest, newest_hash, state, subscribers, created_at`

// CreateChannel implements [store.Channels].
func (s *Store) CreateChannel(ctx context.Context, c store.Channel) error {
	state := c.State
	if state == nil {
		state = []byte{}
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO channels (`+channelColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		c.ID[:], c.Handle, c.Private, c.Genesis, c.Head, int64(c.HeadSeq), int64(c.Newest), c.NewestHash[:],
		state, max(c.Subscribers, 0), dbTime(nowOr(c.CreatedAt)))
	if pgCode(err) == codeUniqueViolation {
		err = store.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("creating channel: %w", err)
	}
	return nil
}

// Channel implements [store.Channels].
func (s *Store) Channel(ctx context.Context, id [16]byte) (store.Channel, error) {
	return s.channelWhere(ctx, `id = $1`, id[:])
}

// ChannelByHandle implements [store.Channels].
func (s *Store) ChannelByHandle(ctx context.Context, handle string) (store.Channel, error) {
	return s.channelWhere(ctx, `handle = $1`, handle)
}

func (s *Store) channelWhere(ctx context.Context, where string, arg any) (store.Channel, error) {
	var (
		c               store.Channel
		id, hash        []byte
		headSeq, newest int64
	)
	err := s.pool.QueryRow(ctx, `SELECT `+channelColumns+` FROM channels WHERE `+where, arg).Scan(
		&id, &c.Handle, &c.Private, &c.Genesis, &c.Head, &headSeq, &newest, &hash, &c.State, &c.Subscribers, &c.CreatedAt)
	if err != nil {
		return store.Channel{}, fmt.Errorf("loading channel: %w", notFound(err))
	}
	copy(c.ID[:], id)
	copy(c.NewestHash[:], hash)
	c.HeadSeq, c.Newest, c.CreatedAt = uint64(headSeq), uint64(newest), c.CreatedAt.UTC()
	return c, nil
}

// AppendChannelPost implements [store.Channels]. The conditional update takes the
// channel's row lock, so a concurrent append on any node waits for this transaction and
// then finds newest moved on (READ COMMITTED re-checks the WHERE against the new row):
// exactly one of two posters gets seq n; the post's primary key backs that up.
func (s *Store) AppendChannelPost(ctx context.Context, p store.ChannelPost, hash [32]byte, state []byte) error {
	if p.Seq == 0 {
		return fmt.Errorf("appending channel post: post 0 is the genesis: %w", store.ErrConflict)
	}
	if state == nil {
		state = []byte{}
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE channels SET newest = $1, newest_hash = $2, state = $3 WHERE id = $4 AND newest = $5`,
			int64(p.Seq), hash[:], state, p.Channel[:], int64(p.Seq-1))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var one int
			if err := tx.QueryRow(ctx, `SELECT 1 FROM channels WHERE id = $1`, p.Channel[:]).Scan(&one); err != nil {
				return notFound(err)
			}
			return store.ErrConflict
		}
		_, err = tx.Exec(ctx, `INSERT INTO channel_posts (channel, seq, post, views) VALUES ($1, $2, $3, 0)`, p.Channel[:], int64(p.Seq), p.Post)
		if pgCode(err) == codeUniqueViolation {
			return store.ErrConflict
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("appending channel post: %w", err)
	}
	return nil
}

// SetChannelHead implements [store.Channels]. A head is newer than the one held if it
// names a later post, or the same post at a later time (newerHead).
func (s *Store) SetChannelHead(ctx context.Context, id [16]byte, seq uint64, head []byte) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var (
			held    []byte
			heldSeq int64
		)
		// FOR UPDATE: two nodes storing heads at once must not both compare with the
		// same held head and the older one win.
		if err := tx.QueryRow(ctx, `SELECT head, head_seq FROM channels WHERE id = $1 FOR UPDATE`, id[:]).Scan(&held, &heldSeq); err != nil {
			return notFound(err)
		}
		if !newerHead(held, uint64(heldSeq), head, seq) {
			return nil
		}
		_, err := tx.Exec(ctx, `UPDATE channels SET head = $1, head_seq = $2 WHERE id = $3`, head, int64(seq), id[:])
		return err
	})
	if err != nil {
		return fmt.Errorf("storing channel head: %w", err)
	}
	return nil
}

// ChannelPostsAfter implements [store.Channels].
func (s *Store) ChannelPostsAfter(ctx context.Context, id [16]byte, after uint64, limit int) ([]store.ChannelPost, error) {
	a := int64(min(after, 1<<62))
	return s.channelPosts(ctx, id, `SELECT seq, post, views FROM channel_posts WHERE channel = $1 AND seq > $2 ORDER BY seq LIMIT $3`, a, limit)
}

// ChannelPostsBefore implements [store.Channels].
func (s *Store) ChannelPostsBefore(ctx context.Context, id [16]byte, before uint64, limit int) ([]store.ChannelPost, error) {
	b := int64(min(before, 1<<62))
	return s.channelPosts(ctx, id, `SELECT seq, post, views FROM channel_posts WHERE channel = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3`, b, limit)
}

func (s *Store) channelPosts(ctx context.Context, id [16]byte, query string, bound int64, limit int) ([]store.ChannelPost, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, query, id[:], bound, limit)
	if err != nil {
		return nil, fmt.Errorf("listing channel posts: %w", err)
	}
	defer rows.Close()
	var ps []store.ChannelPost
	for rows.Next() {
		p := store.ChannelPost{Channel: id}
		var seq int64
		if err := rows.Scan(&seq, &p.Post, &p.Views); err != nil {
			return nil, fmt.Errorf("listing channel posts: %w", err)
		}
		p.Seq = uint64(seq)
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing channel posts: %w", err)
	}
	return ps, nil
}

// AddChannelSubscribers implements [store.Channels].
func (s *Store) AddChannelSubscribers(ctx context.Context, id [16]byte, delta int64) error {
	tag, err := s.pool.Exec(ctx, `UPDATE channels SET subscribers = GREATEST(0, subscribers + $1) WHERE id = $2`, delta, id[:])
	if err == nil && tag.RowsAffected() == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("counting channel subscribers: %w", err)
	}
	return nil
}

// AddChannelViews implements [store.Channels].
func (s *Store) AddChannelViews(ctx context.Context, id [16]byte, seqs []uint64) error {
	ss := make([]int64, 0, len(seqs))
	for _, seq := range seqs {
		if seq < 1<<62 {
			ss = append(ss, int64(seq))
		}
	}
	slices.Sort(ss) // rows locked in one order, so concurrent batches cannot deadlock
	if len(ss) == 0 {
		return nil
	}
	// One row per occurrence: a batch naming a post twice counts it twice, as SQLite does.
	_, err := s.pool.Exec(ctx, `UPDATE channel_posts p SET views = p.views + v.n
		FROM (SELECT seq, count(*) AS n FROM unnest($2::bigint[]) AS seq GROUP BY seq) v
		WHERE p.channel = $1 AND p.seq = v.seq`, id[:], ss)
	if err != nil {
		return fmt.Errorf("counting channel views: %w", err)
	}
	return nil
}

// PutChannelNotice implements [store.Channels].
func (s *Store) PutChannelNotice(ctx context.Context, n store.ChannelNotice) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO channel_notices (channel, seq, action, jurisdiction, notice, created_at) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (channel, seq, action, jurisdiction) DO UPDATE SET notice = excluded.notice, created_at = excluded.created_at`,
		n.Channel[:], int64(n.Seq), int16(n.Action), n.Jurisdiction, n.Notice, dbTime(nowOr(n.CreatedAt)))
	if err != nil {
		return fmt.Errorf("storing channel notice: %w", err)
	}
	return nil
}

// ChannelNotices implements [store.Channels].
func (s *Store) ChannelNotices(ctx context.Context, channel [16]byte) ([]store.ChannelNotice, error) {
	rows, err := s.pool.Query(ctx, `SELECT seq, action, jurisdiction, notice, created_at FROM channel_notices
		WHERE channel = $1 ORDER BY created_at, seq, action, jurisdiction`, channel[:])
	if err != nil {
		return nil, fmt.Errorf("listing channel notices: %w", err)
	}
	defer rows.Close()
	var ns []store.ChannelNotice
	for rows.Next() {
		n := store.ChannelNotice{Channel: channel}
		var seq int64
		var action int16
		if err := rows.Scan(&seq, &action, &n.Jurisdiction, &n.Notice, &n.CreatedAt); err != nil {
			return nil, fmt.Errorf("listing channel notices: %w", err)
		}
		n.Seq, n.Action, n.CreatedAt = uint64(seq), uint8(action), n.CreatedAt.UTC()
		ns = append(ns, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing channel notices: %w", err)
	}
	return ns, nil
}

// AddChannelReport implements [store.Channels].
func (s *Store) AddChannelReport(ctx context.Context, r store.ChannelReport) error {
	if r.Status == "" {
		r.Status = store.ReportOpen
	}
	var decided *time.Time
	if !r.DecidedAt.IsZero() {
		d := dbTime(r.DecidedAt)
		decided = &d
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO channel_reports (id, channel, seq, reason, text, created_at, status, decided_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		r.ID, r.Channel[:], int64(r.Seq), r.Reason, r.Text, dbTime(nowOr(r.CreatedAt)), r.Status, decided)
	if pgCode(err) == codeUniqueViolation {
		err = store.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("storing channel report: %w", err)
	}
	return nil
}

const reportColumns = `id, channel, seq, reason, text, created_at, status, decided_at`

func scanReport(sc interface{ Scan(...any) error }) (store.ChannelReport, error) {
	var (
		r       store.ChannelReport
		ch      []byte
		seq     int64
		decided *time.Time
	)
	if err := sc.Scan(&r.ID, &ch, &seq, &r.Reason, &r.Text, &r.CreatedAt, &r.Status, &decided); err != nil {
		return store.ChannelReport{}, err
	}
	copy(r.Channel[:], ch)
	r.Seq, r.CreatedAt = uint64(seq), r.CreatedAt.UTC()
	if decided != nil {
		r.DecidedAt = decided.UTC()
	}
	return r, nil
}

// ChannelReports implements [store.Channels].
func (s *Store) ChannelReports(ctx context.Context, status string) ([]store.ChannelReport, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+reportColumns+` FROM channel_reports
		WHERE $1 = '' OR status = $1 ORDER BY created_at, id`, status)
	if err != nil {
		return nil, fmt.Errorf("listing channel reports: %w", err)
	}
	defer rows.Close()
	var rs []store.ChannelReport
	for rows.Next() {
		r, err := scanReport(rows)
		if err != nil {
			return nil, fmt.Errorf("listing channel reports: %w", err)
		}
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing channel reports: %w", err)
	}
	return rs, nil
}

// ChannelReport implements [store.Channels].
func (s *Store) ChannelReport(ctx context.Context, id uuid.UUID) (store.ChannelReport, error) {
	r, err := scanReport(s.pool.QueryRow(ctx, `SELECT `+reportColumns+` FROM channel_reports WHERE id = $1`, id))
	if err != nil {
		return store.ChannelReport{}, fmt.Errorf("loading channel report: %w", notFound(err))
	}
	return r, nil
}

// DecideChannelReport implements [store.Channels].
func (s *Store) DecideChannelReport(ctx context.Context, id uuid.UUID, status string, at time.Time) error {
	if !store.ValidDecision(status) {
		return fmt.Errorf("deciding channel report: status %q is not a decision", status)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE channel_reports SET status = $1, decided_at = $2 WHERE id = $3 AND status = $4`,
		status, dbTime(nowOr(at)), id, store.ReportOpen)
	if err == nil && tag.RowsAffected() == 0 {
		var one int
		err = s.pool.QueryRow(ctx, `SELECT 1 FROM channel_reports WHERE id = $1`, id).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			err = store.ErrNotFound
		} else if err == nil {
			err = store.ErrConflict
		}
	}
	if err != nil {
		return fmt.Errorf("deciding channel report: %w", err)
	}
	return nil
}

// newerHead reports whether head (naming post seq) should replace held (naming heldSeq):
// a later post, or the same post signed at a later time, since an owner re-signs its head
// periodically with no new post and a subscriber's freshness bound moves only with the
// time. A head that does not parse never replaces one (the server parses and verifies
// every head before storing it); one held that does not parse is replaced by any that does.
func newerHead(held []byte, heldSeq uint64, head []byte, seq uint64) bool {
	if held == nil {
		return true
	}
	if seq != heldSeq {
		return seq > heldSeq
	}
	h, err := channel.ParseHead(head)
	if err != nil {
		return false
	}
	old, err := channel.ParseHead(held)
	return err != nil || h.Time().After(old.Time())
}
