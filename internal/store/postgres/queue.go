package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bastionchat/bastion/internal/store"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Group commit limits: a batch closes at whichever comes first. They bound the latency a
// batch adds to its first caller and the memory and statement size it pins.
const (
	maxBatch      = 256
	maxBatchBytes = 4 << 20
)

// batchTimeout bounds one batch transaction. Batches run under their own context, not a
// caller's: one caller giving up must not abort the others' commit.
const batchTimeout = 30 * time.Second

// expireChunk bounds how many envelopes one expiry statement deletes, so the janitor
// never holds a long transaction over the queue.
const expireChunk = 5000

// An enqReq is one Enqueue call waiting for a batch.
type enqReq struct {
	ctx  context.Context
	envs []store.Envelope // a copy: the caller may give up and reuse its slice
	size int
	seqs []int64
	err  error
	done chan struct{}
}

type devKey struct {
	account uuid.UUID
	device  int64
}

type envKey struct {
	devKey
	id uuid.UUID
}

// Enqueue implements [store.Queue]. The call joins the node's next batch and returns nil
// once the transaction holding its envelopes has committed. A call naming an unknown
// device fails alone with [store.ErrNotFound] and stores nothing.
func (s *Store) Enqueue(ctx context.Context, envs []*store.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("enqueueing: %w", err)
	}
	r := &enqReq{ctx: ctx, envs: make([]store.Envelope, len(envs)), done: make(chan struct{})}
	for i, e := range envs {
		if e == nil {
			return errors.New("enqueueing: nil envelope")
		}
		if e.Device == 0 || e.Device > maxDeviceID {
			// No such device can exist; the column could not even hold some of these ids.
			return fmt.Errorf("enqueueing: %w", store.ErrNotFound)
		}
		r.envs[i] = *e
		r.envs[i].ServerTime = dbTime(e.ServerTime)
		r.size += len(e.Body)
	}
	if err := s.enq.submit(ctx, r); err != nil {
		return fmt.Errorf("enqueueing: %w", err)
	}
	for i, e := range envs {
		e.Seq = r.seqs[i]
	}
	return nil
}

// commitBatch commits a batch of Enqueue calls and reports each outcome. If the batch
// fails for a reason other than one call's unknown device (which enqueueTx leaves out),
// each call is tried alone, so that no call fails for another's sake.
func (s *Store) commitBatch(batch []*enqReq) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err
			close(r.done)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	var stored bool
	err := s.retry(ctx, func() (err error) {
		stored, err = s.enqueueFast(ctx, live)
		return err
	})
	if err == nil && !stored {
		err = s.inTx(ctx, func(tx pgx.Tx) error { return enqueueTx(ctx, tx, live) })
	}
	if err != nil && len(live) > 1 {
		s.log.Warn("postgres: enqueue batch failed, retrying its calls one by one", "calls", len(live), "err", err)
		for _, r := range live {
			r.err = s.inTx(ctx, func(tx pgx.Tx) error { return enqueueTx(ctx, tx, []*enqReq{r}) })
			if r.err != nil {
				r.seqs = nil
			}
			close(r.done)
		}
		return
	}
	for _, r := range live {
		if err != nil {
			r.err, r.seqs = err, nil
		}
		close(r.done)
	}
}

// SQL shared by both enqueue paths.
const (
	// lockDevices locks the destination devices, in one global order so that enqueuers
	// never deadlock. NO KEY UPDATE conflicts with itself only: enqueues to one device
	// are serialised from here to commit (Seq order = commit order within a queue, see
	// the package doc), while reads, key uploads and foreign-key checks go on.
	lockDevices = `SELECT account_id, id FROM devices
		WHERE (account_id, id) IN (SELECT * FROM unnest($1::uuid[], $2::int8[]))
		ORDER BY account_id, id FOR NO KEY UPDATE`
	// insertEnvelopes inserts in input order (ORDER BY ord), so Seqs follow the calls'
	// order. ON CONFLICT DO NOTHING makes a retry (an id already queued for the device,
	// or twice in this batch) a no-op.
	insertEnvelopes = `INSERT INTO envelopes (account_id, device_id, id, server_time, body)
		SELECT account_id, device_id, id, server_time, body
		FROM unnest($1::uuid[], $2::int8[], $3::uuid[], $4::timestamptz[], $5::bytea[])
			WITH ORDINALITY AS u(account_id, device_id, id, server_time, body, ord)
		ORDER BY ord
		ON CONFLICT (account_id, device_id, id) DO NOTHING`
	// envelopeSeqs reads back the Seq of each input envelope, in input order.
	envelopeSeqs = `SELECT e.seq FROM unnest($1::uuid[], $2::int8[], $3::uuid[]) WITH ORDINALITY AS u(account_id, device_id, id, ord)
		LEFT JOIN envelopes e ON e.account_id = u.account_id AND e.device_id = u.device_id AND e.id = u.id
		ORDER BY u.ord`
)

// enqueueFast stores reqs in one round trip, the common case: lock, insert and read back
// the Seqs, pipelined as one implicit transaction that commits at the end of the
// pipeline. When a call names an unknown device the foreign key fails the INSERT and
// with it the whole transaction: enqueueFast reports stored=false, having stored nothing,
// and enqueueTx sorts the calls out.
func (s *Store) enqueueFast(ctx context.Context, reqs []*enqReq) (stored bool, err error) {
	devSet := map[devKey]struct{}{}
	var (
		accts, ids []uuid.UUID
		devs       []int64
		times      []time.Time
		bodies     [][]byte
	)
	for _, r := range reqs {
		for _, e := range r.envs {
			devSet[devKey{e.Account, int64(e.Device)}] = struct{}{}
			accts, devs, ids = append(accts, e.Account), append(devs, int64(e.Device)), append(ids, e.ID)
			times, bodies = append(times, e.ServerTime), append(bodies, e.Body)
		}
	}
	lockAccts, lockDevs := make([]uuid.UUID, 0, len(devSet)), make([]int64, 0, len(devSet))
	for k := range devSet {
		lockAccts, lockDevs = append(lockAccts, k.account), append(lockDevs, k.device)
	}
	b := &pgx.Batch{}
	b.Queue(lockDevices, lockAccts, lockDevs)
	b.Queue(insertEnvelopes, accts, devs, ids, times, bodies)
	b.Queue(envelopeSeqs, accts, devs, ids)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return false, err
	}
	if _, err := br.Exec(); err != nil {
		if pgCode(err) == codeForeignKeyViolation {
			return false, nil
		}
		return false, err
	}
	rows, err := br.Query()
	if err != nil {
		return false, err
	}
	seqs := make([]*int64, 0, len(ids))
	for rows.Next() {
		var seq *int64
		if err := rows.Scan(&seq); err != nil {
			rows.Close()
			return false, err
		}
		seqs = append(seqs, seq)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, err
	}
	// Close waits for the commit: only now are the envelopes durable.
	if err := br.Close(); err != nil {
		return false, err
	}
	if len(seqs) != len(ids) {
		return false, fmt.Errorf("read back %d seqs for %d envelopes", len(seqs), len(ids))
	}
	i := 0
	for _, r := range reqs {
		r.err, r.seqs = nil, make([]int64, len(r.envs))
		for j := range r.envs {
			if seqs[i] == nil {
				return false, fmt.Errorf("envelope neither inserted nor found (device %d)", r.envs[j].Device) // broken invariant: committed in this transaction
			}
			r.seqs[j] = *seqs[i]
			i++
		}
	}
	return true, nil
}

// enqueueTx stores the envelopes of reqs in tx and fills each request's seqs, or its err
// (ErrNotFound) when it names an unknown device. It may run more than once for the same
// reqs (a retried transaction), so it sets every outcome from scratch.
func enqueueTx(ctx context.Context, tx pgx.Tx, reqs []*enqReq) error {
	// 1. Lock the destination devices, in one global order so enqueuers never deadlock.
	// NO KEY UPDATE conflicts with itself only: enqueues to one device are serialised from
	// here to commit (Seq order = commit order within a queue, see the package doc), while
	// reads, key uploads and foreign-key checks go on.
	want := map[devKey]bool{}
	for _, r := range reqs {
		for _, e := range r.envs {
			want[devKey{e.Account, int64(e.Device)}] = false
		}
	}
	accts, devs := make([]uuid.UUID, 0, len(want)), make([]int64, 0, len(want))
	for k := range want {
		accts, devs = append(accts, k.account), append(devs, k.device)
	}
	rows, err := tx.Query(ctx, lockDevices, accts, devs)
	if err != nil {
		return err
	}
	for rows.Next() {
		var k devKey
		if err := rows.Scan(&k.account, &k.device); err != nil {
			rows.Close()
			return err
		}
		want[k] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}

	// 2. Insert every envelope of the calls whose devices all exist, in call order.
	var (
		good             []*enqReq
		ins              []envKey
		times            []time.Time
		bodies           [][]byte
		insAccts, insIDs []uuid.UUID
		insDevs          []int64
	)
	for _, r := range reqs {
		r.err, r.seqs = nil, make([]int64, len(r.envs))
		ok := true
		for _, e := range r.envs {
			if !want[devKey{e.Account, int64(e.Device)}] {
				ok = false
				break
			}
		}
		if !ok {
			r.err = store.ErrNotFound
			continue
		}
		good = append(good, r)
		for _, e := range r.envs {
			k := envKey{devKey{e.Account, int64(e.Device)}, e.ID}
			ins = append(ins, k)
			insAccts, insDevs, insIDs = append(insAccts, e.Account), append(insDevs, k.device), append(insIDs, e.ID)
			times, bodies = append(times, e.ServerTime), append(bodies, e.Body)
		}
	}
	if len(good) == 0 {
		return nil
	}
	seqs := make(map[envKey]int64, len(ins))
	// ORDER BY ord: Seqs follow the calls' order. ON CONFLICT DO NOTHING makes a retry
	// (an id already queued for the device, or twice in this batch) a no-op.
	rows, err = tx.Query(ctx, `INSERT INTO envelopes (account_id, device_id, id, server_time, body)
		SELECT account_id, device_id, id, server_time, body
		FROM unnest($1::uuid[], $2::int8[], $3::uuid[], $4::timestamptz[], $5::bytea[])
			WITH ORDINALITY AS u(account_id, device_id, id, server_time, body, ord)
		ORDER BY ord
		ON CONFLICT (account_id, device_id, id) DO NOTHING
		RETURNING account_id, device_id, id, seq`, insAccts, insDevs, insIDs, times, bodies)
	if err != nil {
		return err
	}
	if err := scanSeqs(rows, seqs); err != nil {
		return err
	}

	// 3. Retries report the Seq already stored.
	if len(seqs) < len(ins) {
		var la, li []uuid.UUID
		var ld []int64
		for _, k := range ins {
			if _, ok := seqs[k]; !ok {
				la, ld, li = append(la, k.account), append(ld, k.device), append(li, k.id)
			}
		}
		rows, err := tx.Query(ctx, `SELECT account_id, device_id, id, seq FROM envelopes
			WHERE (account_id, device_id, id) IN (SELECT * FROM unnest($1::uuid[], $2::int8[], $3::uuid[]))`, la, ld, li)
		if err != nil {
			return err
		}
		if err := scanSeqs(rows, seqs); err != nil {
			return err
		}
	}
	for _, r := range good {
		for i, e := range r.envs {
			seq, ok := seqs[envKey{devKey{e.Account, int64(e.Device)}, e.ID}]
			if !ok {
				return fmt.Errorf("envelope neither inserted nor found (device %d)", e.Device) // broken invariant: the device is locked
			}
			r.seqs[i] = seq
		}
	}
	return nil
}

func scanSeqs(rows pgx.Rows, seqs map[envKey]int64) error {
	defer rows.Close()
	for rows.Next() {
		var k envKey
		var seq int64
		if err := rows.Scan(&k.account, &k.device, &k.id, &seq); err != nil {
			return err
		}
		seqs[k] = seq
	}
	return rows.Err()
}

// Pending implements [store.Queue]. An unknown device has an empty queue.
func (s *Store) Pending(ctx context.Context, account uuid.UUID, device uint32, after int64, limit int) ([]store.Envelope, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, id, server_time, body FROM envelopes
		WHERE account_id = $1 AND device_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`, account, int64(device), after, limit)
	if err != nil {
		return nil, fmt.Errorf("reading queue: %w", err)
	}
	defer rows.Close()
	envs := make([]store.Envelope, 0, min(limit, 256))
	for rows.Next() {
		e := store.Envelope{Account: account, Device: device}
		if err := rows.Scan(&e.Seq, &e.ID, &e.ServerTime, &e.Body); err != nil {
			return nil, fmt.Errorf("reading queue: %w", err)
		}
		e.ServerTime = e.ServerTime.UTC()
		envs = append(envs, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading queue: %w", err)
	}
	return envs, nil
}

// Ack implements [store.Queue]: one statement, whatever the number of ids.
func (s *Store) Ack(ctx context.Context, account uuid.UUID, device uint32, ids []uuid.UUID) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM envelopes WHERE account_id = $1 AND device_id = $2 AND id = ANY($3::uuid[])`,
		account, int64(device), ids); err != nil {
		return fmt.Errorf("acknowledging: %w", err)
	}
	return nil
}

// ExpireBefore implements [store.Queue]. It deletes in chunks, each its own statement.
func (s *Store) ExpireBefore(ctx context.Context, t time.Time) (int64, error) {
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM envelopes WHERE seq IN
			(SELECT seq FROM envelopes WHERE server_time < $1 LIMIT $2)`, dbTime(t), expireChunk)
		if err != nil {
			return total, fmt.Errorf("expiring envelopes: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < expireChunk {
			return total, nil
		}
	}
}
