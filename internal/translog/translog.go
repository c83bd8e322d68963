// Package translog is the server side of an append-only Merkle log: the key
// transparency log now, and the public log of lawful requests later. It
// appends entries, keeps the RFC 6962 hashes of the tree in the stored-hash
// layout of golang.org/x/mod/sumdb/tlog, signs checkpoints in the C2SP
// tlog-checkpoint format (https://c2sp.org/tlog-checkpoint) with a
// golang.org/x/mod/sumdb/note signer, and serves inclusion proofs,
// consistency proofs, entry ranges and tlog hash tiles.
//
// What it protects: the order of durable writes. Entries and hashes are
// written before the tree head moves, so a crash never leaves a checkpoint
// that commits to data the storage lacks, and nothing is ever served beyond
// the committed tree. Appends in one process are serialized.
//
// What it does not protect: it does not decide what goes into the log (the
// caller does, and must keep phone numbers and other secrets out of it), it
// does not stop a dishonest operator from forking the log (clients detect
// that, with package kt), and it supports one appending process per Storage
// (see [Storage]).
package translog

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/bastionchat/bastion/kt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// MaxEntrySize bounds one entry. Log entries are small fixed-size bindings
// or short records; the bound keeps a faulty caller from growing the log
// with large blobs that every auditor must download.
const MaxEntrySize = 64 << 10

// MaxEntriesRange bounds the range [Log.Entries] returns at once: four full
// tiles of 256 entries, enough for tile-aligned cacheable serving while
// keeping one response small.
const MaxEntriesRange = 1024

// ErrConflict is returned by [TreeStore.WriteTree] when the stored tree is not
// the one the writer read, that is when another writer appended in between.
var ErrConflict = errors.New("translog: tree changed during append")

// A HashStore keeps the tree's hashes, addressed by tlog stored-hash index
// (tlog.StoredHashIndex).
type HashStore interface {
	// ReadHashes returns the hashes at the given indexes, in order. It
	// returns an error if any of them is not stored.
	ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
	// WriteHashes stores hashes at indexes start, start+1, ..., replacing
	// any hashes already stored there (left over from an append that
	// crashed before its tree was written). They must be durable when it
	// returns.
	WriteHashes(ctx context.Context, start int64, hashes []tlog.Hash) error
}

// An EntryStore keeps the entries, addressed by their index in the log.
type EntryStore interface {
	// ReadEntries returns the entries with indexes start <= i < end.
	// It returns an error if any of them is not stored.
	ReadEntries(ctx context.Context, start, end int64) ([][]byte, error)
	// WriteEntries stores entries at indexes start, start+1, ...,
	// replacing any already stored there, durably.
	WriteEntries(ctx context.Context, start int64, entries [][]byte) error
}

// A TreeStore keeps the committed tree: its size and root hash. A new,
// empty storage returns the zero tlog.Tree.
type TreeStore interface {
	ReadTree(ctx context.Context) (tlog.Tree, error)
	// WriteTree replaces the stored tree old by new, atomically and
	// durably. If the stored tree is not old, it changes nothing and
	// returns an error wrapping [ErrConflict].
	WriteTree(ctx context.Context, old, new tlog.Tree) error
}

// Storage is everything a [Log] keeps. A Log writes entries, then hashes,
// then the tree; readers only ever read below the stored tree's size, so an
// implementation needs no transaction spanning the three. It must allow one
// appending Log at a time: WriteTree's check turns a second writer into an
// error instead of a fork, but the second writer's hashes may by then have
// replaced the first's above the old size, so deployments with several
// nodes append from one node (or hold a lock across Append).
//
// The in-memory implementation is [MemStorage]; translogtest holds the
// conformance tests every implementation must pass.
type Storage interface {
	HashStore
	EntryStore
	TreeStore
}

// A Log is an append-only Merkle log on a [Storage], signed by one key. It
// is safe for concurrent use; appends are serialized.
type Log struct {
	store  Storage
	signer note.Signer

	appendMu sync.Mutex // serializes Append

	cacheMu    sync.Mutex
	cachedTree tlog.Tree
	cachedNote []byte
}

// New returns a Log on store whose checkpoints signer signs; the log's
// origin is the signer's name.
func New(store Storage, signer note.Signer) *Log {
	return &Log{store: store, signer: signer}
}

// Origin returns the log's origin line, the name of its key.
func (l *Log) Origin() string { return l.signer.Name() }

// Append adds entries to the end of the log and returns the index of the
// first. When it returns without error, the entries, their hashes and the
// new tree are stored, in that order.
func (l *Log) Append(ctx context.Context, entries ...[]byte) (firstIndex int64, err error) {
	if len(entries) == 0 {
		return 0, errors.New("translog: append of no entries")
	}
	for i, e := range entries {
		// An empty entry is valid RFC 6962 but never a meaningful record.
		if len(e) == 0 || len(e) > MaxEntrySize {
			return 0, fmt.Errorf("translog: entry %d is %d bytes, want 1 to %d", i, len(e), MaxEntrySize)
		}
	}

	l.appendMu.Lock()
	defer l.appendMu.Unlock()

	old, err := l.store.ReadTree(ctx)
	if err != nil {
		return 0, fmt.Errorf("translog: reading tree: %w", err)
	}
	n := old.N
	start := tlog.StoredHashCount(n)
	r := &overlay{ctx: ctx, store: l.store, start: start}
	for i, e := range entries {
		hs, err := tlog.StoredHashes(n+int64(i), e, r)
		if err != nil {
			return 0, fmt.Errorf("translog: hashing entry %d: %w", n+int64(i), err)
		}
		r.pending = append(r.pending, hs...)
	}
	newN := n + int64(len(entries))
	root, err := tlog.TreeHash(newN, r)
	if err != nil {
		return 0, fmt.Errorf("translog: tree hash: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}

	// Durable order: the tree moves last, so it never commits to entries or
	// hashes that are not stored.
	if err := l.store.WriteEntries(ctx, n, entries); err != nil {
		return 0, fmt.Errorf("translog: writing entries: %w", err)
	}
	if err := l.store.WriteHashes(ctx, start, r.pending); err != nil {
		return 0, fmt.Errorf("translog: writing hashes: %w", err)
	}
	if err := l.store.WriteTree(ctx, old, tlog.Tree{N: newN, Hash: root}); err != nil {
		return 0, fmt.Errorf("translog: writing tree: %w", err)
	}
	return n, nil
}

// overlay reads hashes below start from the store and those at or above it
// from the hashes computed during this append.
type overlay struct {
	ctx     context.Context
	store   HashStore
	start   int64
	pending []tlog.Hash
}

func (o *overlay) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var stored []int64
	for i, x := range indexes {
		switch {
		case x >= o.start+int64(len(o.pending)):
			return nil, fmt.Errorf("hash %d not yet computed", x)
		case x >= o.start:
			out[i] = o.pending[x-o.start]
		default:
			stored = append(stored, x)
		}
	}
	if len(stored) == 0 {
		return out, nil
	}
	hs, err := readHashes(o.ctx, o.store, stored)
	if err != nil {
		return nil, err
	}
	j := 0
	for i, x := range indexes {
		if x < o.start {
			out[i] = hs[j]
			j++
		}
	}
	return out, nil
}

// readHashes calls the store and checks that it answered every index.
func readHashes(ctx context.Context, s HashStore, indexes []int64) ([]tlog.Hash, error) {
	hs, err := s.ReadHashes(ctx, indexes)
	if err != nil {
		return nil, err
	}
	if len(hs) != len(indexes) {
		return nil, fmt.Errorf("translog: store returned %d hashes for %d indexes", len(hs), len(indexes))
	}
	return hs, nil
}

// reader adapts the store to tlog.HashReader for one request.
func (l *Log) reader(ctx context.Context) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		return readHashes(ctx, l.store, indexes)
	})
}

// Tree returns the committed tree. The hash of the empty tree is the RFC
// 6962 hash of no entries.
func (l *Log) Tree(ctx context.Context) (tlog.Tree, error) {
	t, err := l.store.ReadTree(ctx)
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("translog: reading tree: %w", err)
	}
	if t.N == 0 {
		t.Hash, _ = tlog.TreeHash(0, nil) // needs no hashes, cannot fail
	}
	return t, nil
}

// Checkpoint returns the signed checkpoint of the committed tree, in the
// format [kt.VerifyCheckpoint] reads. Ed25519 signing is deterministic, so
// the same tree always gives the same bytes; the last one is cached.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, error) {
	t, err := l.Tree(ctx)
	if err != nil {
		return nil, err
	}
	l.cacheMu.Lock()
	defer l.cacheMu.Unlock()
	if l.cachedNote != nil && l.cachedTree == t {
		return l.cachedNote, nil
	}
	signed, err := kt.SignCheckpoint(l.signer, t)
	if err != nil {
		return nil, fmt.Errorf("translog: %w", err)
	}
	l.cachedTree, l.cachedNote = t, signed
	return signed, nil
}

// committed returns the committed size and checks that size is within it.
func (l *Log) committed(ctx context.Context, size int64) error {
	t, err := l.store.ReadTree(ctx)
	if err != nil {
		return fmt.Errorf("translog: reading tree: %w", err)
	}
	if size > t.N {
		return fmt.Errorf("translog: tree size %d beyond the log's %d", size, t.N)
	}
	return nil
}

// InclusionProof proves that the entry at index is in the tree of size
// treeSize, which must not exceed the committed tree.
func (l *Log) InclusionProof(ctx context.Context, index, treeSize int64) (tlog.RecordProof, error) {
	if index < 0 || index >= treeSize {
		return nil, fmt.Errorf("translog: entry %d outside a tree of size %d", index, treeSize)
	}
	if err := l.committed(ctx, treeSize); err != nil {
		return nil, err
	}
	p, err := tlog.ProveRecord(treeSize, index, l.reader(ctx))
	if err != nil {
		return nil, fmt.Errorf("translog: proving entry %d: %w", index, err)
	}
	return p, nil
}

// ConsistencyProof proves that the tree of size oldSize is a prefix of the
// tree of size newSize. An empty proof links equal sizes and the empty tree.
func (l *Log) ConsistencyProof(ctx context.Context, oldSize, newSize int64) (tlog.TreeProof, error) {
	if oldSize < 0 || oldSize > newSize {
		return nil, fmt.Errorf("translog: no proof from size %d to %d", oldSize, newSize)
	}
	if err := l.committed(ctx, newSize); err != nil {
		return nil, err
	}
	if oldSize == 0 || oldSize == newSize {
		return tlog.TreeProof{}, nil
	}
	p, err := tlog.ProveTree(newSize, oldSize, l.reader(ctx))
	if err != nil {
		return nil, fmt.Errorf("translog: proving %d to %d: %w", oldSize, newSize, err)
	}
	return p, nil
}

// Entries returns the entries with indexes start <= i < end, at most
// [MaxEntriesRange] of them, all within the committed tree. Entries never
// change once committed, so a response for a full range can be cached
// forever.
func (l *Log) Entries(ctx context.Context, start, end int64) ([][]byte, error) {
	if start < 0 || start >= end || end-start > MaxEntriesRange {
		return nil, fmt.Errorf("translog: bad entry range [%d, %d)", start, end)
	}
	if err := l.committed(ctx, end); err != nil {
		return nil, err
	}
	es, err := l.store.ReadEntries(ctx, start, end)
	if err != nil {
		return nil, fmt.Errorf("translog: reading entries: %w", err)
	}
	if int64(len(es)) != end-start {
		return nil, fmt.Errorf("translog: store returned %d entries for %d", len(es), end-start)
	}
	return es, nil
}

// TileData returns the contents of a hash tile (level 0 or above) in the
// tlog tile scheme, for serving at the path t.Path(). The tile, full or
// partial, must lie within the committed tree; entry tiles (level -1) are
// served from [Log.Entries] instead.
func (l *Log) TileData(ctx context.Context, t tlog.Tile) ([]byte, error) {
	if t.H < 1 || t.H > 30 || t.L < 0 || t.N < 0 || t.W < 1 || t.W > 1<<t.H {
		return nil, fmt.Errorf("translog: invalid tile %+v", t)
	}
	tree, err := l.store.ReadTree(ctx)
	if err != nil {
		return nil, fmt.Errorf("translog: reading tree: %w", err)
	}
	// The tile's last hash covers entries up to (N*2^H + W) * 2^(L*H);
	// compare by shifting the tree size down to avoid overflow.
	shift := uint(t.L * t.H)
	if shift >= 63 || t.N > (tree.N>>shift)>>uint(t.H) || t.N<<uint(t.H)+int64(t.W) > tree.N>>shift {
		return nil, fmt.Errorf("translog: tile %s beyond the tree of size %d", t.Path(), tree.N)
	}
	data, err := tlog.ReadTileData(t, l.reader(ctx))
	if err != nil {
		return nil, fmt.Errorf("translog: reading tile %s: %w", t.Path(), err)
	}
	return data, nil
}
