package legal

import (
	"context"
	"crypto/ed25519"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionchat/bastion/internal/translog"
	"github.com/bastionchat/bastion/kt"
)

// LogSource is where a verifier reads the legal log from: a server's public endpoints or
// a local legal.db.
type LogSource interface {
	Checkpoint(ctx context.Context) ([]byte, error)
	// Entries returns entries [start, end); it may return fewer (a page), never none.
	Entries(ctx context.Context, start, end int64) ([][]byte, error)
}

// VerifyLog reads the signed checkpoint and every entry from src, checks the checkpoint's
// signature with pub (via package kt) and recomputes the Merkle tree of the entries,
// which must hash to the checkpoint's root. It returns the checkpoint and the entries,
// each of which parses as a [LogEntry].
func VerifyLog(ctx context.Context, src LogSource, pub ed25519.PublicKey) (kt.Checkpoint, [][]byte, error) {
	vkey, err := VerifierKey(pub)
	if err != nil {
		return kt.Checkpoint{}, nil, err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return kt.Checkpoint{}, nil, err
	}
	signed, err := src.Checkpoint(ctx)
	if err != nil {
		return kt.Checkpoint{}, nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	cp, err := kt.VerifyCheckpoint(v, signed)
	if err != nil {
		return kt.Checkpoint{}, nil, err
	}
	var entries [][]byte
	var hashes []tlog.Hash
	reader := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ix))
		for i, x := range ix {
			if x < 0 || x >= int64(len(hashes)) {
				return nil, fmt.Errorf("hash %d not computed", x)
			}
			out[i] = hashes[x]
		}
		return out, nil
	})
	for int64(len(entries)) < cp.Size {
		start := int64(len(entries))
		es, err := src.Entries(ctx, start, min(start+1024, cp.Size))
		if err != nil {
			return kt.Checkpoint{}, nil, fmt.Errorf("reading entries from %d: %w", start, err)
		}
		if len(es) == 0 || int64(len(es)) > cp.Size-start {
			return kt.Checkpoint{}, nil, fmt.Errorf("reading entries from %d: got %d", start, len(es))
		}
		for i, e := range es {
			if _, err := ParseLogEntry(e); err != nil {
				return kt.Checkpoint{}, nil, fmt.Errorf("entry %d: %w", start+int64(i), err)
			}
			hs, err := tlog.StoredHashes(start+int64(i), e, reader)
			if err != nil {
				return kt.Checkpoint{}, nil, err
			}
			hashes = append(hashes, hs...)
			entries = append(entries, e)
		}
	}
	root, err := tlog.TreeHash(cp.Size, reader)
	if err != nil {
		return kt.Checkpoint{}, nil, err
	}
	if root != cp.Hash {
		return kt.Checkpoint{}, nil, fmt.Errorf("%w: the entries do not hash to the signed root", kt.ErrInvalidProof)
	}
	return cp, entries, nil
}

// LocalLog reads the legal log from a local legal.db, for verifying it on the server's
// machine. It never appends.
type LocalLog struct{ log *translog.Log }

// OpenLocalLog returns the legal log of db, with checkpoints signed by key.
func OpenLocalLog(db *DB, key *SigningKey) LocalLog {
	return LocalLog{translog.New(logStorage{db.db}, key.noteSigner())}
}

// Checkpoint implements [LogSource].
func (l LocalLog) Checkpoint(ctx context.Context) ([]byte, error) { return l.log.Checkpoint(ctx) }

// Entries implements [LogSource].
func (l LocalLog) Entries(ctx context.Context, start, end int64) ([][]byte, error) {
	return l.log.Entries(ctx, start, end)
}
