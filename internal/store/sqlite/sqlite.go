// Package sqlite is the embedded default backend of [store.Store]: one SQLite file in the
// server's data directory.
//
// It uses modernc.org/sqlite, SQLite translated to pure Go, and not a cgo binding: the
// server stays a single static binary that cross-compiles with GOOS/GOARCH alone, and an
// operator needs no C toolchain to build or run it. The cost, SQL about twice as slow as
// the C library's, matters less than the fsync every commit pays.
//
// What it protects: durability and the contract's atomicity promises. The database runs
// in WAL mode with synchronous=FULL, so a commit is on disk when it returns, and
// [Store.Enqueue] returns nil only after the commit holding its envelopes did. A one-time
// prekey is deleted in the same transaction that hands it out, so it is never handed out
// twice, under concurrency or across a crash (TestCrash kills a writing process to check
// both). Foreign keys are on: deleting an account or device deletes its keys and queue.
//
// How (group commit): one writer goroutine owns the only write connection. Every write
// (enqueue, ack, key upload, bundle fetch, ...) is submitted to it, and the caller blocks
// until the transaction holding its write has committed. The writer drains whatever is
// waiting, up to 512 writes or 1 MiB of envelope bodies, into one transaction, each write
// in its own savepoint (unless it is a single statement), so that one fsync makes a whole
// batch durable and one caller's failure (an unknown device, say) rolls back only that
// caller's write. Under concurrent load it waits up to 500 microseconds for a batch to
// fill. With a single writer, SQLITE_BUSY never reaches a caller. Reads use a separate
// pool of read-only connections, which WAL lets run beside the writer, and WAL
// checkpoints run on a third connection, off the writer's path.
//
// What it does not protect: the file itself. Anyone who can read the data directory
// reads what the inventory lists (message bodies are end-to-end ciphertext); disk
// encryption and file permissions are the operator's. One process may open a database at
// a time. The store never logs an id, a number or an address.
//
// Schema changes are numbered, embedded SQL migrations (migrations/NNNN_name.sql), each
// applied in its own transaction with its version bump; a database written by a newer
// binary is refused.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bastionchat/bastion/internal/store"

	modernc "modernc.org/sqlite" // also registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// Group commit limits: a batch closes at whichever comes first. They bound the latency a
// batch adds to its first writer and the memory it pins, while 512 rows already amortise
// the fsync to a few microseconds a row.
const (
	maxBatch      = 512
	maxBatchBytes = 1 << 20
)

// busyTimeoutMS is how long a connection waits for a lock before SQLITE_BUSY. With one
// writer only a checkpoint can hold one, briefly.
const busyTimeoutMS = 10000

// errClosed is returned by a write submitted after Close.
var errClosed = errors.New("sqlite store closed")

// Store is a [store.Store] on one SQLite file. Create it with [Open]; it is safe for
// concurrent use.
type Store struct {
	log *slog.Logger
	wdb *sql.DB // exactly one connection, owned by the writer goroutine
	rdb *sql.DB // read-only pool
	cdb *sql.DB // one connection for WAL checkpoints

	kick     chan struct{} // the writer asks for a checkpoint
	ckptDone chan struct{} // closed when the checkpointer has exited

	wconn  *sql.Conn            // wdb's one connection, held for good; writer goroutine only
	wstmts map[string]*sql.Stmt // statements prepared on wconn; writer goroutine only
	rstmts sync.Map             // query string -> *sql.Stmt prepared on rdb

	batches, writes atomic.Int64 // group commit counters, see Stats

	mu     sync.RWMutex // guards closed and sends on reqs against Close
	closed bool
	reqs   chan *writeReq
	done   chan struct{} // closed when the writer has drained and exited
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database at path, brings its schema up to date and
// starts the writer. A nil logger discards. path is a file name, not a DSN.
func Open(ctx context.Context, path string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if path == "" {
		return nil, errors.New("opening sqlite store: empty path")
	}
	// 0600: the file holds phone numbers and the connection log. SQLite gives the WAL and
	// shared-memory files the database file's mode, so creating it first is enough.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	f.Close()
	base := (&url.URL{Scheme: "file", OmitHost: true, Path: path}).String()

	// synchronous=FULL: WAL's default NORMAL may lose the last commits on power loss, and
	// a send is acknowledged only once durable. _txlock=immediate (and the writer's own
	// BEGIN IMMEDIATE): a write transaction takes the write lock at BEGIN, never by
	// upgrading a read lock, which could deadlock against another writer.
	// cache_size: 32 MiB keeps the queue's index pages in memory across batches.
	// wal_autocheckpoint=0: the checkpointer goroutine copies the WAL into the database
	// on its own connection, so the writer never pays for a checkpoint inside a commit.
	// journal_size_limit: a WAL that grew in a burst is cut back to 64 MiB when it restarts.
	// secure_delete=FAST: a deleted row (a pruned IP address, a deleted account's number)
	// is zeroed in its page rather than left in free space, wherever that costs no extra
	// write; freed overflow pages (large envelope bodies, ciphertext) are not zeroed.
	wdsn := base + fmt.Sprintf("?_busy_timeout=%d&_foreign_keys=1&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate"+
		"&_pragma=cache_size(-32768)&_pragma=wal_autocheckpoint(0)&_pragma=journal_size_limit(67108864)"+
		"&_pragma=secure_delete(FAST)", busyTimeoutMS)
	wdb, err := sql.Open("sqlite", wdsn)
	if err != nil {
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if err := wdb.PingContext(ctx); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	if err := migrate(ctx, wdb, logger); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}

	rdsn := base + fmt.Sprintf("?_busy_timeout=%d&_foreign_keys=1&_query_only=1", busyTimeoutMS)
	rdb, err := sql.Open("sqlite", rdsn)
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(readers)
	rdb.SetMaxIdleConns(readers)
	if err := rdb.PingContext(ctx); err != nil {
		wdb.Close()
		rdb.Close()
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}

	// The checkpointer's connection: it writes the database file, never a table.
	cdsn := base + fmt.Sprintf("?_busy_timeout=%d&_synchronous=FULL", busyTimeoutMS)
	cdb, err := sql.Open("sqlite", cdsn)
	if err != nil {
		wdb.Close()
		rdb.Close()
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	cdb.SetMaxOpenConns(1)

	s := &Store{
		log:      logger,
		wdb:      wdb,
		rdb:      rdb,
		cdb:      cdb,
		reqs:     make(chan *writeReq, maxBatch),
		done:     make(chan struct{}),
		kick:     make(chan struct{}, 1),
		ckptDone: make(chan struct{}),
	}
	// The writer keeps wdb's only connection, so that its prepared statements live as
	// long as the store: SQLite spends tens of microseconds preparing a statement, more
	// than running most of ours.
	if s.wconn, err = wdb.Conn(ctx); err != nil {
		wdb.Close()
		rdb.Close()
		cdb.Close()
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	s.wstmts = map[string]*sql.Stmt{}
	go s.writer()
	go s.checkpointer()
	return s, nil
}

// Close stops accepting writes, waits for every write already submitted to commit (or
// fail), and closes the database. It is safe to call more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closed = true
	close(s.reqs)
	s.mu.Unlock()
	<-s.done
	<-s.ckptDone // the writer closed kick on its way out

	for _, st := range s.wstmts {
		st.Close()
	}
	s.rstmts.Range(func(_, st any) bool {
		st.(*sql.Stmt).Close()
		return true
	})
	err := errors.Join(s.wconn.Close(), s.rdb.Close(), s.cdb.Close(), s.wdb.Close())
	if err != nil {
		return fmt.Errorf("closing sqlite store: %w", err)
	}
	return nil
}

// Stats counts the writer's work since Open.
type Stats struct {
	Commits int64 // transactions committed (or failed), each one fsync
	Writes  int64 // writes they carried: Writes/Commits is the mean group-commit batch
}

// Stats returns the group-commit counters, for metrics and benchmarks.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.batches.Load(), Writes: s.writes.Load()}
}

// A writeReq is one caller's write: fn runs inside the batch transaction on the writer
// goroutine, in a savepoint of its own unless it is a single statement.
type writeReq struct {
	ctx  context.Context
	fn   func(tx *wtx) error
	size int // bytes of envelope bodies, for the batch byte cap
	// oneStatement: fn changes the database with at most one statement, which SQLite
	// already makes atomic, so a failure needs no savepoint to undo half of it.
	oneStatement bool
	res          chan error // buffered: the writer never blocks on a caller that gave up
}

// writeOpt adjusts one write.
type writeOpt func(*writeReq)

// oneStatement marks a write whose fn changes the database with at most one statement.
func oneStatement(r *writeReq) { r.oneStatement = true }

// write runs fn in the writer's next transaction and returns once that transaction has
// committed (nil) or fn or the commit failed. If ctx ends first, write returns its error
// and the write may or may not still commit; fn must therefore not touch caller memory
// that the caller reuses after an early return.
//
// fn's errors: a [store] sentinel (ErrNotFound, ...) rolls back this write alone; any
// other error fails the whole batch, since SQLite may have rolled back the transaction
// under it (an I/O error, a full disk).
func (s *Store) write(ctx context.Context, size int, fn func(tx *wtx) error, opts ...writeOpt) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &writeReq{ctx: ctx, fn: fn, size: size, res: make(chan error, 1)}
	for _, o := range opts {
		o(r)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	select {
	case err := <-r.res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// commitWindow is the longest the writer waits for a batch to fill before committing it.
// It waits only when the previous batch had company, that is, under concurrent load, and
// only until the batch is as large as the previous one: an fsync costs more CPU than
// a hundred inserts here, so a fuller batch is cheaper per write, and a lone writer on an
// idle server never waits.
const commitWindow = 500 * time.Microsecond

// writer is the goroutine that owns wdb. It exits when reqs is closed and drained.
func (s *Store) writer() {
	defer close(s.done)
	defer close(s.kick)
	batch := make([]*writeReq, 0, maxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	last := 1 // size of the previous batch
	for {
		r, ok := <-s.reqs
		if !ok {
			return
		}
		batch = append(batch[:0], r)
		size := r.size
		closed := false
	drain:
		for len(batch) < maxBatch && size < maxBatchBytes {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					closed = true
					break drain
				}
				batch = append(batch, r)
				size += r.size
			default:
				break drain
			}
		}
		if !closed && last > 1 && len(batch) < min(last, maxBatch) && size < maxBatchBytes {
			timer.Reset(commitWindow)
		wait:
			for len(batch) < min(last, maxBatch) && size < maxBatchBytes {
				select {
				case r, ok := <-s.reqs:
					if !ok {
						break wait
					}
					batch = append(batch, r)
					size += r.size
				case <-timer.C:
					break wait
				}
			}
			timer.Stop()
		}
		last = len(batch)
		s.commit(batch)
		if s.batches.Add(1)%checkpointEvery == 0 {
			select {
			case s.kick <- struct{}{}:
			default: // one is already pending
			}
		}
		s.writes.Add(int64(len(batch)))
		clear(batch) // drop references to finished requests
		if closed {
			return
		}
	}
}

// commit runs one batch in one transaction and reports each request's outcome.
func (s *Store) commit(batch []*writeReq) {
	errs := make([]error, len(batch))
	fail := func(err error) {
		for i, r := range batch {
			if errs[i] == nil {
				errs[i] = err
			}
			r.res <- errs[i]
		}
	}
	// The statements run under Background, not the callers' contexts: cancelling one
	// caller must not interrupt a statement of the shared transaction.
	tx := &wtx{s: s}
	if _, err := tx.Exec("BEGIN IMMEDIATE"); err != nil {
		s.log.Error("sqlite: beginning write transaction", "err", err)
		fail(fmt.Errorf("beginning write transaction: %w", err))
		return
	}
	abort := func(err error) {
		tx.rollback()
		s.log.Error("sqlite: write batch failed", "err", err, "writes", len(batch))
		fail(err)
	}
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		savepoint := !r.oneStatement && len(batch) > 1
		if savepoint {
			if _, err := tx.Exec("SAVEPOINT w"); err != nil {
				abort(fmt.Errorf("opening savepoint: %w", err))
				return
			}
		}
		ferr := r.fn(tx)
		switch {
		case ferr == nil:
		case !isCallerError(ferr):
			abort(ferr)
			return
		case len(batch) == 1 && !r.oneStatement:
			tx.rollback()
			r.res <- ferr
			return
		default:
			errs[i] = ferr
			if savepoint {
				if _, err := tx.Exec("ROLLBACK TO w"); err != nil {
					abort(fmt.Errorf("rolling back savepoint: %w", err))
					return
				}
			}
		}
		if savepoint {
			if _, err := tx.Exec("RELEASE w"); err != nil {
				abort(fmt.Errorf("releasing savepoint: %w", err))
				return
			}
		}
	}
	if _, err := tx.Exec("COMMIT"); err != nil {
		tx.rollback() // a failed COMMIT may leave the transaction open
		s.log.Error("sqlite: committing write batch", "err", err, "writes", len(batch))
		fail(fmt.Errorf("committing: %w", err))
		return
	}
	for i, r := range batch {
		r.res <- errs[i]
	}
}

// isCallerError reports whether err concerns one caller's write only: one of the store's
// own outcomes (an unknown device, a conflict, no prekeys) or a statement SQLite refused
// (a constraint, a value too big). Such a statement is undone by SQLite and the
// transaction goes on; any other error may have ended the transaction itself.
func isCallerError(err error) bool {
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNoPreKeys) {
		return true
	}
	var e *modernc.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() & 0xff { // the primary result code
	case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_RANGE:
		return true
	}
	return false
}

// checkpointEvery is how many commits the writer makes between checkpoint requests. At
// the WAL's usual few pages a commit this checkpoints every megabyte or so, keeping the
// WAL small (reads walk it) without checkpointing a page that is about to change again.
const checkpointEvery = 64

// checkpointInterval bounds how long a quiet database waits for a checkpoint.
const checkpointInterval = 5 * time.Second

// walRestartFrames is the WAL length (in 4 KiB frames, so 64 MiB) past which the
// checkpointer stops being polite. A PASSIVE checkpoint never waits, so under a steady
// stream of overlapping reads the WAL can keep growing; RESTART waits for the readers and
// briefly holds off the writer, and then the WAL starts again from its beginning.
const walRestartFrames = 16384

// checkpointer copies committed WAL pages into the database file, off the writer's path.
// PASSIVE never blocks the writer or a reader; what it cannot copy yet (a reader still
// needs it) the next round does. Durability does not depend on it: a commit is durable
// once in the WAL.
func (s *Store) checkpointer() {
	defer close(s.ckptDone)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case _, ok := <-s.kick:
			if !ok {
				s.checkpoint("TRUNCATE") // shrink the WAL on a clean close
				return
			}
		case <-t.C:
		}
		if frames := s.checkpoint("PASSIVE"); frames > walRestartFrames {
			s.checkpoint("RESTART")
		}
	}
}

// checkpoint runs one checkpoint and returns the WAL's length in frames (0 on error).
func (s *Store) checkpoint(mode string) int {
	var busy, frames, done int
	if err := s.cdb.QueryRow("PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &frames, &done); err != nil {
		s.log.Warn("sqlite: checkpoint", "mode", mode, "err", err)
		return 0
	}
	return frames
}

// wtx is the writer's open transaction as a write function sees it. Its statements run
// on the write connection inside the batch's BEGIN ... COMMIT, and each query string is
// prepared once for the life of the store.
type wtx struct{ s *Store }

func (t *wtx) stmt(query string) (*sql.Stmt, error) {
	if st, ok := t.s.wstmts[query]; ok {
		return st, nil
	}
	st, err := t.s.wconn.PrepareContext(context.Background(), query)
	if err != nil {
		return nil, err
	}
	t.s.wstmts[query] = st
	return st, nil
}

// Exec runs a statement in the transaction.
func (t *wtx) Exec(query string, args ...any) (sql.Result, error) {
	st, err := t.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.Exec(args...)
}

// QueryRow runs a query expected to return at most one row.
func (t *wtx) QueryRow(query string, args ...any) row {
	st, err := t.stmt(query)
	if err != nil {
		return row{err: err}
	}
	return row{row: st.QueryRow(args...)}
}

func (t *wtx) rollback() {
	if _, err := t.s.wconn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.s.log.Debug("sqlite: rollback", "err", err) // no transaction left to roll back
	}
}

// row is a [sql.Row] that may carry a preparation error.
type row struct {
	row *sql.Row
	err error
}

// Scan is [sql.Row.Scan].
func (r row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	return r.row.Scan(dest...)
}

// readStmt returns query prepared on the read pool (database/sql then prepares it once
// per pooled connection).
func (s *Store) readStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.rstmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.rdb.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.rstmts.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// readRow runs a one-row query on the read pool.
func (s *Store) readRow(ctx context.Context, query string, args ...any) row {
	st, err := s.readStmt(ctx, query)
	if err != nil {
		return row{err: err}
	}
	return row{row: st.QueryRowContext(ctx, args...)}
}

// readRows runs a query on the read pool.
func (s *Store) readRows(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.readStmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}
