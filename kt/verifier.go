package kt

import (
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// A ForkError says that two checkpoints of one log cannot both be honest:
// the log has shown different histories to different readers, or to the same
// reader at different times. A client shows it to the user as an alert and
// keeps both checkpoints as evidence.
type ForkError struct {
	// Trusted is the checkpoint the reader already held.
	Trusted Checkpoint
	// Received is the checkpoint that contradicts it.
	Received Checkpoint
	// Err is why the two conflict: nil when they have the same size and
	// different hashes, else the failed consistency proof.
	Err error
}

// Error describes the fork without any entry contents.
func (e *ForkError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("kt: log %q forked: two trees of size %d with different hashes", e.Trusted.Origin, e.Trusted.Size)
	}
	return fmt.Sprintf("kt: log %q forked: tree of size %d is not a prefix of tree of size %d: %v",
		e.Trusted.Origin, min(e.Trusted.Size, e.Received.Size), max(e.Trusted.Size, e.Received.Size), e.Err)
}

// Unwrap returns the failed proof's error, if any.
func (e *ForkError) Unwrap() error { return e.Err }

// Provable reports whether the two signed checkpoints alone prove the fork to
// a third party: two signed trees of the same size with different hashes. A
// failed consistency proof is not such evidence by itself (anyone can make a
// bad proof); it is still a reason to stop trusting the log.
func (e *ForkError) Provable() bool {
	return e.Err == nil && e.Trusted.Size == e.Received.Size && e.Trusted.Hash != e.Received.Hash &&
		e.Trusted.Note != nil && e.Received.Note != nil
}

// CompareCheckpoints checks two verified checkpoints of one log, for
// example one this client holds and one another client gossiped to it. proof
// is a consistency proof from the smaller tree to the larger one (ignored
// when the sizes are equal). It returns a [*ForkError] if the two cannot
// both be honest, another error if they cannot be compared.
func CompareCheckpoints(a, b Checkpoint, proof tlog.TreeProof) error {
	if a.Origin != b.Origin {
		return fmt.Errorf("kt: checkpoints of different logs %q and %q", a.Origin, b.Origin)
	}
	if a.Size == b.Size {
		if a.Hash != b.Hash {
			return &ForkError{Trusted: a, Received: b}
		}
		return nil
	}
	older, newer := a, b
	if older.Size > newer.Size {
		older, newer = newer, older
	}
	if err := VerifyConsistency(older, newer, proof); err != nil {
		return &ForkError{Trusted: a, Received: b, Err: err}
	}
	return nil
}

// A Verifier is what a client keeps about one log: its key and the largest
// checkpoint it has verified. Every checkpoint it is shown afterwards must be
// consistent with that one. It is safe for concurrent use.
type Verifier struct {
	key note.Verifier

	mu     sync.Mutex
	latest Checkpoint
	have   bool
}

// NewVerifier returns a Verifier for the log whose checkpoints key signs.
// latest is the signed checkpoint the client stored last time, or nil on
// first use, in which case the first checkpoint given to
// [Verifier.Advance] is trusted as it is.
func NewVerifier(key note.Verifier, latest []byte) (*Verifier, error) {
	v := &Verifier{key: key}
	if latest != nil {
		cp, err := VerifyCheckpoint(key, latest)
		if err != nil {
			return nil, fmt.Errorf("kt: stored checkpoint: %w", err)
		}
		v.latest, v.have = cp, true
	}
	return v, nil
}

// Latest returns the largest checkpoint verified so far; false if none.
// Its Note is what the client stores to pass to [NewVerifier] next time.
func (v *Verifier) Latest() (Checkpoint, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.latest, v.have
}

// Advance verifies signed, a checkpoint note, against the key and against
// the latest checkpoint, using proof, a consistency proof between the two
// trees (from the smaller to the larger). A larger consistent checkpoint
// becomes the latest; a smaller consistent one (from a lagging server) is
// accepted and changes nothing. It returns the verified checkpoint.
//
// A bad signature or a malformed note is a plain error. Two checkpoints that
// cannot both be honest give a [*ForkError]; the latest checkpoint is then
// kept, so that the client keeps refusing the fork.
func (v *Verifier) Advance(signed []byte, proof tlog.TreeProof) (Checkpoint, error) {
	cp, err := VerifyCheckpoint(v.key, signed)
	if err != nil {
		return Checkpoint{}, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.have {
		v.latest, v.have = cp, true
		return cp, nil
	}
	if err := CompareCheckpoints(v.latest, cp, proof); err != nil {
		return Checkpoint{}, err
	}
	if cp.Size > v.latest.Size {
		v.latest = cp
	}
	return cp, nil
}
