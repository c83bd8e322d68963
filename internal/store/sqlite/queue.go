package sqlite

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bastionchat/bastion/internal/store"
	"github.com/google/uuid"
	modernc "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// single returns the write options for a write of n statements.
func single(n int) []writeOpt {
	if n <= 1 {
		return []writeOpt{oneStatement}
	}
	return nil
}

// expireChunk bounds how many envelopes one expiry write deletes, so that the janitor
// never holds the writer (and every sender behind it) for long. A variable for tests.
var expireChunk = 2048

const insertEnvelope = `INSERT INTO envelopes (account_id, device_id, id, server_time, body) VALUES (?, ?, ?, ?, ?)
	ON CONFLICT (account_id, device_id, id) DO NOTHING`

// Enqueue implements [store.Queue]. The call joins the writer's next batch: it returns nil
// once the transaction holding its envelopes has committed with synchronous=FULL, that is,
// once they are on disk. It runs in its own savepoint (one insert is atomic without), so
// an unknown device fails this call alone with [store.ErrNotFound] and stores none of its
// envelopes, while other callers in the same batch commit.
func (s *Store) Enqueue(ctx context.Context, envs []*store.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	// The writer reads a shallow copy: a caller that gives up early may reuse envs. Bodies
	// are not copied; callers do not write to a body they handed over.
	in := make([]store.Envelope, len(envs))
	size := 0
	for i, e := range envs {
		if e == nil {
			return errors.New("enqueueing: nil envelope")
		}
		in[i] = *e
		if in[i].Body == nil {
			in[i].Body = []byte{} // an empty body is a body; nil would bind as NULL
		}
		size += len(e.Body)
	}
	seqs := make([]int64, len(in))
	err := s.write(ctx, size, func(tx *wtx) error {
		for i := range in {
			e := &in[i]
			res, err := tx.Exec(insertEnvelope, e.Account[:], e.Device, e.ID[:], dbTime(e.ServerTime), e.Body)
			if err != nil {
				// The foreign key on (account_id, device_id) is the device check: one
				// index probe inside the insert, not a query of its own.
				if isForeignKeyError(err) {
					return store.ErrNotFound
				}
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if n == 1 {
				if seqs[i], err = res.LastInsertId(); err != nil {
					return err
				}
				continue
			}
			// Already queued (a retry): a no-op that reports the stored Seq.
			if err := tx.QueryRow(`SELECT seq FROM envelopes WHERE account_id = ? AND device_id = ? AND id = ?`,
				e.Account[:], e.Device, e.ID[:]).Scan(&seqs[i]); err != nil {
				return err
			}
		}
		return nil
	}, single(len(in))...)
	if err != nil {
		return fmt.Errorf("enqueueing: %w", err)
	}
	for i, e := range envs {
		e.Seq = seqs[i]
	}
	return nil
}

// Pending implements [store.Queue]. An unknown device has an empty queue.
func (s *Store) Pending(ctx context.Context, account uuid.UUID, device uint32, after int64, limit int) ([]store.Envelope, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.readRows(ctx, `SELECT seq, id, server_time, body FROM envelopes
		WHERE account_id = ? AND device_id = ? AND seq > ? ORDER BY seq LIMIT ?`, account[:], device, after, limit)
	if err != nil {
		return nil, fmt.Errorf("reading queue: %w", err)
	}
	defer rows.Close()
	// Small to start: a live connection usually reads one or two envelopes, and a slice
	// sized for the limit (a few KiB) per read was most of the garbage of a delivery.
	envs := make([]store.Envelope, 0, min(limit, 4))
	for rows.Next() {
		e := store.Envelope{Account: account, Device: device}
		var idb []byte
		var at int64
		if err := rows.Scan(&e.Seq, &idb, &at, &e.Body); err != nil {
			return nil, fmt.Errorf("reading queue: %w", err)
		}
		if e.ID, err = scanUUID(idb); err != nil {
			return nil, fmt.Errorf("reading queue: %w", err)
		}
		e.ServerTime = goTime(at)
		envs = append(envs, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading queue: %w", err)
	}
	return envs, nil
}

// ackChunk is the most ids one DELETE names. SQLite allows 32766 parameters; a few
// hundred keeps the statement cache small.
const ackChunk = 256

// ackQueries[n] and expireQueries[n] are the DELETEs for n ids or seqs, n a power of two
// up to ackChunk.
var ackQueries, expireQueries = inLists("DELETE FROM envelopes WHERE account_id = ? AND device_id = ? AND id IN ("),
	inLists("DELETE FROM envelopes WHERE server_time < ? AND seq IN (")

// padLen rounds an IN list's length up to a power of two (repeating the last value, which
// IN ignores), so that at most nine statements per list are ever prepared.
func padLen(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return min(p, ackChunk)
}

// padIn pads the IN list that follows the first fixed args to padLen values, repeating
// its last one, so that the list matches one of the prepared statements.
func padIn(args []any, fixed int) []any {
	want := fixed + padLen(len(args)-fixed)
	for len(args) < want {
		args = append(args, args[len(args)-1])
	}
	return args
}

func inLists(prefix string) []string {
	qs := make([]string, ackChunk+1)
	for n := 1; n <= ackChunk; n *= 2 { // the lengths padLen returns
		qs[n] = prefix + "?" + strings.Repeat(", ?", n-1) + ")"
	}
	return qs
}

// Ack implements [store.Queue]. Acks from many devices share the writer's batches, so a
// burst of acknowledgements costs one fsync, not one each.
func (s *Store) Ack(ctx context.Context, account uuid.UUID, device uint32, ids []uuid.UUID) error {
	if len(ids) == 0 {
		return nil
	}
	ids = slices.Clone(ids) // the writer may outlive a caller that gave up
	// One DELETE per chunk of ids rather than one per id: the per-statement cost, not
	// the b-tree work, dominated a drain.
	args := make([]any, 0, 2+min(len(ids), ackChunk))
	err := s.write(ctx, 0, func(tx *wtx) error {
		for chunk := range slices.Chunk(ids, ackChunk) {
			args = append(args[:0], account[:], device)
			for _, id := range chunk {
				args = append(args, id[:])
			}
			args = padIn(args, 2)
			if _, err := tx.Exec(ackQueries[len(args)-2], args...); err != nil {
				return err
			}
		}
		return nil
	}, single((len(ids)+ackChunk-1)/ackChunk)...)
	if err != nil {
		return fmt.Errorf("acknowledging: %w", err)
	}
	return nil
}

// ExpireBefore implements [store.Queue]. There is no index on server_time (every enqueue
// and ack would pay for it to speed up an hourly janitor), so expired envelopes are found
// by scanning the table in seq order on a reader, a chunk at a time, and deleted by seq
// through the writer, so senders are never stuck behind one long delete.
func (s *Store) ExpireBefore(ctx context.Context, t time.Time) (int64, error) {
	var total int64
	seqs := make([]int64, 0, expireChunk)
	for after := int64(0); ; {
		seqs = seqs[:0]
		rows, err := s.readRows(ctx, `SELECT seq FROM envelopes WHERE seq > ? AND server_time < ? ORDER BY seq LIMIT ?`,
			after, dbTime(t), expireChunk)
		if err != nil {
			return total, fmt.Errorf("expiring envelopes: %w", err)
		}
		for rows.Next() {
			var seq int64
			if err := rows.Scan(&seq); err != nil {
				rows.Close()
				return total, fmt.Errorf("expiring envelopes: %w", err)
			}
			seqs = append(seqs, seq)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return total, fmt.Errorf("expiring envelopes: %w", err)
		}
		if len(seqs) == 0 {
			return total, nil
		}
		after = seqs[len(seqs)-1]
		var n int64
		err = s.write(ctx, 0, func(tx *wtx) error {
			args := make([]any, 0, 1+min(len(seqs), ackChunk))
			for chunk := range slices.Chunk(seqs, ackChunk) {
				args = append(args[:0], dbTime(t))
				for _, seq := range chunk {
					args = append(args, seq)
				}
				args = padIn(args, 1)
				// server_time again: the row read may have been acked and its seq is
				// never reused, but the check costs nothing and keeps the delete exact.
				res, err := tx.Exec(expireQueries[len(args)-1], args...)
				if err != nil {
					return err
				}
				m, err := res.RowsAffected()
				if err != nil {
					return err
				}
				n += m
			}
			return nil
		}, single((len(seqs)+ackChunk-1)/ackChunk)...)
		if err != nil {
			return total, fmt.Errorf("expiring envelopes: %w", err)
		}
		total += n
	}
}

// isForeignKeyError reports whether err is SQLite's foreign key violation.
func isForeignKeyError(err error) bool {
	var e *modernc.Error
	return errors.As(err, &e) && e.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}
