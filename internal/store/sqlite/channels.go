package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bastionchat/bastion/channel"
	"github.com/bastionchat/bastion/internal/store"
	"github.com/google/uuid"

	modernc "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// isUniqueError reports whether err is SQLite's unique or primary key violation.
func isUniqueError(err error) bool {
	var e *modernc.Error
	return errors.As(err, &e) && (e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

const channelColumns = `id, handle, private, genesis, head, head_seq, newest, newest_hash, state, subscribers, created_at`

// CreateChannel implements [store.Channels].
func (s *Store) CreateChannel(ctx context.Context, c store.Channel) error {
	c.Genesis, c.Head, c.State = bytesClone(c.Genesis), bytesClone(c.Head), bytesClone(c.State)
	if c.State == nil {
		c.State = []byte{}
	}
	err := s.write(ctx, 0, func(tx *wtx) error {
		_, err := tx.Exec(`INSERT INTO channels (`+channelColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID[:], c.Handle, c.Private, c.Genesis, c.Head, int64(c.HeadSeq), int64(c.Newest), c.NewestHash[:],
			c.State, max(c.Subscribers, 0), dbTime(nowOr(c.CreatedAt)))
		if isUniqueError(err) {
			return store.ErrConflict
		}
		return err
	}, oneStatement)
	if err != nil {
		return fmt.Errorf("creating channel: %w", err)
	}
	return nil
}

// Channel implements [store.Channels].
func (s *Store) Channel(ctx context.Context, id [16]byte) (store.Channel, error) {
	return s.channelWhere(ctx, `id = ?`, id[:])
}

// ChannelByHandle implements [store.Channels].
func (s *Store) ChannelByHandle(ctx context.Context, handle string) (store.Channel, error) {
	return s.channelWhere(ctx, `handle = ?`, handle)
}

func (s *Store) channelWhere(ctx context.Context, where string, arg any) (store.Channel, error) {
	var (
		c                   store.Channel
		id, hash            []byte
		headSeq, newest, at int64
	)
	err := s.readRow(ctx, `SELECT `+channelColumns+` FROM channels WHERE `+where, arg).Scan(
		&id, &c.Handle, &c.Private, &c.Genesis, &c.Head, &headSeq, &newest, &hash, &c.State, &c.Subscribers, &at)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			err = store.ErrNotFound
		}
		return store.Channel{}, fmt.Errorf("loading channel: %w", err)
	}
	copy(c.ID[:], id)
	copy(c.NewestHash[:], hash)
	c.HeadSeq, c.Newest, c.CreatedAt = uint64(headSeq), uint64(newest), goTime(at)
	return c, nil
}

// AppendChannelPost implements [store.Channels]. The conditional update of newest and
// the post's primary key both refuse a second post at one seq; the single writer
// serialises appends anyway.
func (s *Store) AppendChannelPost(ctx context.Context, p store.ChannelPost, hash [32]byte, state []byte) error {
	post, state := bytesClone(p.Post), bytesClone(state)
	if state == nil {
		state = []byte{}
	}
	err := s.write(ctx, len(post), func(tx *wtx) error {
		if p.Seq == 0 {
			return store.ErrConflict // post 0 is the genesis
		}
		res, err := tx.Exec(`UPDATE channels SET newest = ?, newest_hash = ?, state = ? WHERE id = ? AND newest = ?`,
			int64(p.Seq), hash[:], state, p.Channel[:], int64(p.Seq-1))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			var one int
			if err := tx.QueryRow(`SELECT 1 FROM channels WHERE id = ?`, p.Channel[:]).Scan(&one); errors.Is(err, sql.ErrNoRows) {
				return store.ErrNotFound
			} else if err != nil {
				return err
			}
			return store.ErrConflict
		}
		_, err = tx.Exec(`INSERT INTO channel_posts (channel, seq, post, views) VALUES (?, ?, ?, 0)`, p.Channel[:], int64(p.Seq), post)
		if isUniqueError(err) {
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
// names a later post, or the same post at a later time (newerHead); the single writer
// makes the read and the update one step.
func (s *Store) SetChannelHead(ctx context.Context, id [16]byte, seq uint64, head []byte) error {
	head = bytesClone(head)
	err := s.write(ctx, 0, func(tx *wtx) error {
		var (
			held    []byte
			heldSeq int64
		)
		if err := tx.QueryRow(`SELECT head, head_seq FROM channels WHERE id = ?`, id[:]).Scan(&held, &heldSeq); errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		} else if err != nil {
			return err
		}
		if !newerHead(held, uint64(heldSeq), head, seq) {
			return nil
		}
		_, err := tx.Exec(`UPDATE channels SET head = ?, head_seq = ? WHERE id = ?`, head, int64(seq), id[:])
		return err
	})
	if err != nil {
		return fmt.Errorf("storing channel head: %w", err)
	}
	return nil
}

// ChannelPostsAfter implements [store.Channels].
func (s *Store) ChannelPostsAfter(ctx context.Context, id [16]byte, after uint64, limit int) ([]store.ChannelPost, error) {
	return s.channelPosts(ctx, id, `SELECT seq, post, views FROM channel_posts WHERE channel = ? AND seq > ? ORDER BY seq LIMIT ?`, int64(after), limit)
}

// ChannelPostsBefore implements [store.Channels].
func (s *Store) ChannelPostsBefore(ctx context.Context, id [16]byte, before uint64, limit int) ([]store.ChannelPost, error) {
	b := int64(min(before, 1<<62))
	return s.channelPosts(ctx, id, `SELECT seq, post, views FROM channel_posts WHERE channel = ? AND seq < ? ORDER BY seq DESC LIMIT ?`, b, limit)
}

func (s *Store) channelPosts(ctx context.Context, id [16]byte, query string, bound int64, limit int) ([]store.ChannelPost, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.readRows(ctx, query, id[:], bound, limit)
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
	err := s.write(ctx, 0, func(tx *wtx) error {
		res, err := tx.Exec(`UPDATE channels SET subscribers = MAX(0, subscribers + ?) WHERE id = ?`, delta, id[:])
		if err != nil {
			return err
		}
		return mustAffect(res, store.ErrNotFound)
	}, oneStatement)
	if err != nil {
		return fmt.Errorf("counting channel subscribers: %w", err)
	}
	return nil
}

// AddChannelViews implements [store.Channels].
func (s *Store) AddChannelViews(ctx context.Context, id [16]byte, seqs []uint64) error {
	seqs = slices.Clone(seqs)
	err := s.write(ctx, 0, func(tx *wtx) error {
		for _, seq := range seqs {
			if seq >= 1<<62 {
				continue
			}
			if _, err := tx.Exec(`UPDATE channel_posts SET views = views + 1 WHERE channel = ? AND seq = ?`, id[:], int64(seq)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("counting channel views: %w", err)
	}
	return nil
}

// PutChannelNotice implements [store.Channels].
func (s *Store) PutChannelNotice(ctx context.Context, n store.ChannelNotice) error {
	notice := bytesClone(n.Notice)
	err := s.write(ctx, 0, func(tx *wtx) error {
		_, err := tx.Exec(`INSERT INTO channel_notices (channel, seq, action, jurisdiction, notice, created_at) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (channel, seq, action, jurisdiction) DO UPDATE SET notice = excluded.notice, created_at = excluded.created_at`,
			n.Channel[:], int64(n.Seq), n.Action, n.Jurisdiction, notice, dbTime(nowOr(n.CreatedAt)))
		return err
	}, oneStatement)
	if err != nil {
		return fmt.Errorf("storing channel notice: %w", err)
	}
	return nil
}

// ChannelNotices implements [store.Channels].
func (s *Store) ChannelNotices(ctx context.Context, channel [16]byte) ([]store.ChannelNotice, error) {
	rows, err := s.readRows(ctx, `SELECT seq, action, jurisdiction, notice, created_at FROM channel_notices
		WHERE channel = ? ORDER BY created_at, seq, action, jurisdiction`, channel[:])
	if err != nil {
		return nil, fmt.Errorf("listing channel notices: %w", err)
	}
	defer rows.Close()
	var ns []store.ChannelNotice
	for rows.Next() {
		n := store.ChannelNotice{Channel: channel}
		var seq, at int64
		if err := rows.Scan(&seq, &n.Action, &n.Jurisdiction, &n.Notice, &at); err != nil {
			return nil, fmt.Errorf("listing channel notices: %w", err)
		}
		n.Seq, n.CreatedAt = uint64(seq), goTime(at)
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
	var decided any
	if !r.DecidedAt.IsZero() {
		decided = dbTime(r.DecidedAt)
	}
	err := s.write(ctx, 0, func(tx *wtx) error {
		_, err := tx.Exec(`INSERT INTO channel_reports (id, channel, seq, reason, text, created_at, status, decided_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID[:], r.Channel[:], int64(r.Seq), r.Reason, r.Text, dbTime(nowOr(r.CreatedAt)), r.Status, decided)
		if isUniqueError(err) {
			return store.ErrConflict
		}
		return err
	}, oneStatement)
	if err != nil {
		return fmt.Errorf("storing channel report: %w", err)
	}
	return nil
}

const reportColumns = `id, channel, seq, reason, text, created_at, status, decided_at`

func scanReport(sc interface{ Scan(...any) error }) (store.ChannelReport, error) {
	var (
		r       store.ChannelReport
		id, ch  []byte
		seq, at int64
		decided sql.NullInt64
	)
	if err := sc.Scan(&id, &ch, &seq, &r.Reason, &r.Text, &at, &r.Status, &decided); err != nil {
		return store.ChannelReport{}, err
	}
	var err error
	if r.ID, err = scanUUID(id); err != nil {
		return store.ChannelReport{}, err
	}
	copy(r.Channel[:], ch)
	r.Seq, r.CreatedAt = uint64(seq), goTime(at)
	if decided.Valid {
		r.DecidedAt = goTime(decided.Int64)
	}
	return r, nil
}

// ChannelReports implements [store.Channels].
func (s *Store) ChannelReports(ctx context.Context, status string) ([]store.ChannelReport, error) {
	rows, err := s.readRows(ctx, `SELECT `+reportColumns+` FROM channel_reports
		WHERE ? = '' OR status = ? ORDER BY created_at, id`, status, status)
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
	r, err := scanReport(s.readRow(ctx, `SELECT `+reportColumns+` FROM channel_reports WHERE id = ?`, id[:]))
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			err = store.ErrNotFound
		}
		return store.ChannelReport{}, fmt.Errorf("loading channel report: %w", err)
	}
	return r, nil
}

// DecideChannelReport implements [store.Channels].
func (s *Store) DecideChannelReport(ctx context.Context, id uuid.UUID, status string, at time.Time) error {
	if !store.ValidDecision(status) {
		return fmt.Errorf("deciding channel report: status %q is not a decision", status)
	}
	err := s.write(ctx, 0, func(tx *wtx) error {
		res, err := tx.Exec(`UPDATE channel_reports SET status = ?, decided_at = ? WHERE id = ? AND status = ?`,
			status, dbTime(nowOr(at)), id[:], store.ReportOpen)
		if err != nil {
			return err
		}
		if err := mustAffect(res, store.ErrConflict); err == nil {
			return nil
		}
		var one int
		if err := tx.QueryRow(`SELECT 1 FROM channel_reports WHERE id = ?`, id[:]).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		} else if err != nil {
			return err
		}
		return store.ErrConflict
	})
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
