// Package postgres is the [store.Store] backend for several bastiond nodes sharing one
// PostgreSQL database (version 15 or newer), on github.com/jackc/pgx/v5.
//
// What it protects: the contract's durability and atomicity promises, with any number of
// nodes writing at once. A transaction commits with synchronous_commit on (Open refuses a
// server where it is off), so [Store.Enqueue] returns nil only once its envelopes are on
// disk. A one-time prekey is deleted in the transaction that hands it out, picked with
// FOR UPDATE SKIP LOCKED, so concurrent takers on any node never share one and never wait
// on each other. Deleting an account or device cascades to its keys and queue.
//
// Queue order across nodes: a Seq comes from one identity sequence, and sequences hand
// out numbers in call order, not commit order. Two nodes enqueueing for the same device
// could otherwise commit Seq 11 before Seq 10, and a reader whose cursor passed 11 would
// never see 10. Every enqueue therefore locks the destination devices' rows (in one sorted
// order, so enqueuers never deadlock) before it draws a Seq and holds them until it
// commits: within one device's queue, Seq order is commit order, which is what the
// "after" cursor of [Store.Pending] relies on.
//
// Group commit: concurrent Enqueue calls of one node are gathered into one transaction
// by [batchWorkers] workers: the device locks, the INSERT and the read-back of the Seqs
// go out pipelined in one round trip and commit with one WAL flush. If a call in the
// batch names an unknown device, the foreign key fails that transaction and the batch is
// redone statement by statement, leaving that call out: it fails alone with
// [store.ErrNotFound]. The benchmarks measure the gain over a transaction per call.
//
// What it does not protect: the database. Anyone who can read it reads what the data
// inventory lists (message bodies are end-to-end ciphertext); its access control,
// encryption at rest, backups and replication are the operator's.
//
// Schema changes are numbered, embedded SQL migrations (migrations/NNNN_name.sql),
// applied by [Open] in one transaction under an advisory lock, so several nodes starting
// at once apply each exactly once; a database written by a newer binary is refused.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bastionchat/bastion/internal/store"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// defaultMaxConns is the pool size when the DSN does not set pool_max_conns: the batch
// workers plus room for reads and the other writes. pgx's own default (4 on this
// machine) would leave readers queueing behind the workers.
const defaultMaxConns = 16

// batchWorkers is how many enqueue batches a node commits at once. Two, measured: a batch
// locks its destination devices, so concurrent batches to the same devices wait for each
// other anyway, and more workers only make smaller batches (at 64 callers over 16
// devices: 1-2 workers ~2,200-2,500 envelopes/s with 20-33 calls a commit; 4 workers
// ~1,900 with 9; 8 workers ~1,100 with 3). Two rather than one, so that a batch waiting
// for a lock another node holds does not stall every sender of this node.
const batchWorkers = 2

// maxTxAttempts bounds retries of a transaction PostgreSQL aborted to break a deadlock or
// a serialization conflict; both are transient by definition.
const maxTxAttempts = 5

// errClosed is returned by a write submitted after Close.
var errClosed = errors.New("postgres store closed")

// Store is a [store.Store] on a PostgreSQL database. Create it with [Open]; it is safe for
// concurrent use, and several Stores (nodes) may share one database.
type Store struct {
	log  *slog.Logger
	pool *pgxpool.Pool

	enq enqueuer
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at dsn (a postgres:// URL or key=value string, as libpq),
// brings its schema up to date and starts the group-commit workers. A nil logger
// discards.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message can quote the DSN, password included: keep it out of errors.
		return nil, errors.New("opening postgres store: cannot parse the DSN")
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = defaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	if err := checkServer(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	if err := migrate(ctx, pool, logger); err != nil {
		pool.Close()
		return nil, fmt.Errorf("opening postgres store: %w", err)
	}
	s := &Store{log: logger, pool: pool}
	s.enq.start(s, batchWorkers)
	return s, nil
}

// checkServer refuses a server that would acknowledge a commit before it is durable.
func checkServer(ctx context.Context, pool *pgxpool.Pool) error {
	var sc string
	if err := pool.QueryRow(ctx, `SELECT current_setting('synchronous_commit')`).Scan(&sc); err != nil {
		return fmt.Errorf("checking the server: %w", err)
	}
	if sc == "off" {
		return errors.New("synchronous_commit is off: a send would be acknowledged before it is durable; turn it on for bastiond's role or database")
	}
	return nil
}

// Close stops accepting writes, waits for every Enqueue already submitted to commit (or
// fail), and closes the pool. It is safe to call more than once.
func (s *Store) Close() error {
	s.enq.stop()
	s.pool.Close()
	return nil
}

// Pool is the store's connection pool, for tests and operational queries.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// inTx runs fn in a transaction and commits it, retrying the whole transaction when
// PostgreSQL aborted it to break a deadlock or a serialization conflict.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return s.retry(ctx, func() error { return pgx.BeginFunc(ctx, s.pool, fn) })
}

// retry runs fn, a whole transaction, again while PostgreSQL aborts it to break a
// deadlock or a serialization conflict.
func (s *Store) retry(ctx context.Context, fn func() error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = fn()
		if !retryable(err) || attempt == maxTxAttempts {
			return err
		}
		s.log.Warn("postgres: retrying an aborted transaction", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt) * 5 * time.Millisecond):
		}
	}
}

// PostgreSQL error codes the store branches on.
const (
	codeUniqueViolation      = "23505"
	codeForeignKeyViolation  = "23503"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
)

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func retryable(err error) bool {
	c := pgCode(err)
	return c == codeSerializationFailure || c == codeDeadlockDetected
}

// notFound maps pgx's "no rows" to [store.ErrNotFound].
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// dbTime truncates to PostgreSQL's microsecond precision and drops the monotonic reading.
func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// nowOr returns t, or the current time when t is zero.
func nowOr(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// enqueuer gathers concurrent Enqueue calls into batches, each committed in one
// transaction, with at most [batchWorkers] batches in flight. There is no batching
// goroutine: a caller that finds a worker slot free becomes the leader and commits
// whatever is pending, its own call included, on its own goroutine, so an idle node adds
// no hand-off to a send's latency. Calls arriving while every slot is busy wait in
// pending, and the leader that finishes first commits them all as the next batch: the
// busier the node, the more a commit carries.
type enqueuer struct {
	s *Store

	// direct makes every call commit alone: the baseline the benchmarks compare group
	// commit with.
	direct bool

	batches, calls atomic.Int64 // group commit counters, for benchmarks

	mu      sync.Mutex
	closed  bool
	pending []*enqReq
	active  int            // batches in flight, at most workers
	workers int            // batchWorkers
	wg      sync.WaitGroup // one per active slot
}

func (e *enqueuer) start(s *Store, workers int) {
	e.s, e.workers = s, workers
}

// stop refuses new calls and waits until every pending one is committed.
func (e *enqueuer) stop() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.wg.Wait()
}

// submit commits r, leading a batch or joining the next one, and waits for its outcome
// or for ctx. A leader returns once its batch has committed, even if ctx ends first: the
// commit is under way on its goroutine.
func (e *enqueuer) submit(ctx context.Context, r *enqReq) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return errClosed
	}
	if e.direct {
		e.wg.Add(1)
		e.mu.Unlock()
		defer e.wg.Done()
		e.commit([]*enqReq{r})
		return r.err
	}
	e.pending = append(e.pending, r)
	var batch []*enqReq
	if e.active < e.workers {
		e.active++
		e.wg.Add(1)
		batch = e.takeLocked()
	}
	e.mu.Unlock()
	if batch != nil {
		e.commit(batch)
		// Calls that arrived meanwhile go on another goroutine, holding this slot, so
		// that this caller returns as soon as its own batch is in.
		if next := e.next(); next != nil {
			go e.lead(next)
		}
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// takeLocked removes the next batch from pending, up to the batch limits.
func (e *enqueuer) takeLocked() []*enqReq {
	n, size := 0, 0
	for n < len(e.pending) && n < maxBatch && (n == 0 || size+e.pending[n].size <= maxBatchBytes) {
		size += e.pending[n].size
		n++
	}
	batch := append([]*enqReq(nil), e.pending[:n]...)
	clear(e.pending[:n])
	e.pending = e.pending[n:]
	if len(e.pending) == 0 {
		e.pending = nil // let the backing array go
	}
	return batch
}

// next returns the next batch for the slot its caller holds, or releases the slot and
// returns nil when nothing is pending.
func (e *enqueuer) next() []*enqReq {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.pending) == 0 {
		e.active--
		e.wg.Done()
		return nil
	}
	return e.takeLocked()
}

// lead commits batches until nothing is pending.
func (e *enqueuer) lead(batch []*enqReq) {
	for batch != nil {
		e.commit(batch)
		batch = e.next()
	}
}

func (e *enqueuer) commit(batch []*enqReq) {
	e.batches.Add(1)
	e.calls.Add(int64(len(batch)))
	e.s.commitBatch(batch)
}
