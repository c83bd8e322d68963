package legal

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionchat/bastion/internal/translog"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// DB is the desk's own SQLite database, legal.db in the server's data directory: the
// operators and their hashed tokens, the orders with their approvals and outcomes, the
// notices waiting for their date, the market withdrawals and the public legal log.
//
// It is kept apart from the user database on purpose. The desk is an operator tool, not
// part of the messaging service: its records can be backed up, handed to an auditor or
// moved to another machine without carrying a single user table along, and no query of
// the service can join a user's data with an order about them. The desk reaches user data
// only through [Subscribers].
//
// Several processes may open it (the server, and "bastiond legal operator add" beside
// it): SQLite's locks serialise their writes, and a busy connection waits for the lock.
type DB struct {
	db *sql.DB
}

// busyTimeoutMS: another process (an operator command) may hold the write lock briefly.
const busyTimeoutMS = 10000

//go:embed migrations/*.sql
var migrationFS embed.FS

// Open opens (creating if needed) legal.db at path and brings its schema up to date.
func Open(ctx context.Context, file string) (*DB, error) {
	if file == "" {
		return nil, errors.New("opening legal db: empty path")
	}
	// 0600 before SQLite creates it: the file holds orders naming their targets (the WAL
	// and shared-memory files take the database's mode).
	if f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("opening legal db: %w", err)
	} else {
		f.Close()
	}
	base := (&url.URL{Scheme: "file", OmitHost: true, Path: file}).String()
	// synchronous=FULL in WAL mode: a decision or a log entry is on disk when the call
	// returns. _txlock=immediate: write transactions take the lock at BEGIN (no upgrade
	// deadlock between processes).
	dsn := base + fmt.Sprintf("?_busy_timeout=%d&_foreign_keys=1&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate", busyTimeoutMS)
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening legal db: %w", err)
	}
	// One connection: the desk's traffic is a few requests a day, and one connection
	// makes every transaction serial within this process.
	db.SetMaxOpenConns(1)
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening legal db: %w", err)
	}
	return &DB{db: db}, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", base)
		}
		body, err := fs.ReadFile(migrationFS, name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{v, base, string(body)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: want version %d (numbered without gaps)", m.name, i+1)
		}
	}
	return ms, nil
}

// migrate applies the embedded migrations not yet applied, each in its own transaction
// with its version bump. A database newer than this binary is refused.
func migrate(ctx context.Context, db *sql.DB) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("creating schema_version: %w", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var current int
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&current)
	if errors.Is(err, sql.ErrNoRows) {
		_, err = tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`)
	}
	if err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if current > len(ms) {
		return fmt.Errorf("legal db schema version %d is newer than this binary's %d: upgrade bastiond", current, len(ms))
	}
	// One transaction for all pending steps: two processes opening a fresh file at once
	// serialise on the write lock taken at BEGIN, and the second sees the new version.
	for _, m := range ms[current:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, m.version); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	return tx.Commit()
}

// logStorage is the legal log's [translog.Storage] in legal.db.
type logStorage struct{ db *sql.DB }

var _ translog.Storage = logStorage{}

func (s logStorage) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		var b []byte
		if err := s.db.QueryRowContext(ctx, `SELECT hash FROM log_hashes WHERE idx = ?`, x).Scan(&b); err != nil {
			return nil, fmt.Errorf("reading hash %d: %w", x, err)
		}
		if len(b) != tlog.HashSize {
			return nil, fmt.Errorf("hash %d is %d bytes", x, len(b))
		}
		copy(out[i][:], b)
	}
	return out, nil
}

func (s logStorage) WriteHashes(ctx context.Context, start int64, hashes []tlog.Hash) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for i, h := range hashes {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO log_hashes (idx, hash) VALUES (?, ?)`, start+int64(i), h[:]); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (s logStorage) ReadEntries(ctx context.Context, start, end int64) ([][]byte, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT idx, data FROM log_entries WHERE idx >= ? AND idx < ? ORDER BY idx`, start, end)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var idx int64
		var b []byte
		if err := rows.Scan(&idx, &b); err != nil {
			return nil, err
		}
		if idx != start+int64(len(out)) {
			return nil, fmt.Errorf("log entry %d missing", start+int64(len(out)))
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if int64(len(out)) != end-start {
		return nil, fmt.Errorf("log entries [%d, %d): %d stored", start, end, len(out))
	}
	return out, nil
}

func (s logStorage) WriteEntries(ctx context.Context, start int64, entries [][]byte) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for i, e := range entries {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO log_entries (idx, data) VALUES (?, ?)`, start+int64(i), e); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (s logStorage) ReadTree(ctx context.Context) (tlog.Tree, error) {
	var t tlog.Tree
	var h []byte
	err := s.db.QueryRowContext(ctx, `SELECT size, hash FROM log_tree WHERE id = 1`).Scan(&t.N, &h)
	if errors.Is(err, sql.ErrNoRows) {
		return tlog.Tree{}, nil
	}
	if err != nil {
		return tlog.Tree{}, err
	}
	if len(h) != tlog.HashSize {
		return tlog.Tree{}, fmt.Errorf("tree hash is %d bytes", len(h))
	}
	copy(t.Hash[:], h)
	return t, nil
}

func (s logStorage) WriteTree(ctx context.Context, old, new tlog.Tree) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	cur, err := logStorage{}.readTreeTx(ctx, tx)
	if err != nil {
		return err
	}
	if cur != old {
		return fmt.Errorf("legal log: stored tree %d, expected %d: %w", cur.N, old.N, translog.ErrConflict)
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO log_tree (id, size, hash) VALUES (1, ?, ?)`, new.N, new.Hash[:]); err != nil {
		return err
	}
	return tx.Commit()
}

func (logStorage) readTreeTx(ctx context.Context, tx *sql.Tx) (tlog.Tree, error) {
	var t tlog.Tree
	var h []byte
	err := tx.QueryRowContext(ctx, `SELECT size, hash FROM log_tree WHERE id = 1`).Scan(&t.N, &h)
	if errors.Is(err, sql.ErrNoRows) {
		return tlog.Tree{}, nil
	}
	if err != nil {
		return tlog.Tree{}, err
	}
	copy(t.Hash[:], h)
	return t, nil
}
