package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"

	"github.com/bastionchat/bastion/kt"
)

// AuditOptions configure [Audit].
type AuditOptions struct {
	// HTTPClient makes the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
	// LogKey pins the log's note verifier key, taken from somewhere other than the
	// server; empty accepts the key the server serves (and reports it).
	LogKey string
	// Previous is the checkpoint the last audit ended with (a signed note), or nil. The
	// log must extend it.
	Previous []byte
	// Checkpoints are more signed checkpoints of the log to check, for instance ones
	// clients saw: each must be a prefix of the log the auditor replays.
	Checkpoints [][]byte
}

// AuditReport says what [Audit] checked.
type AuditReport struct {
	LogKey     string `json:"log_key"`
	Checkpoint string `json:"checkpoint"` // the signed note the audit ended with
	Size       int64  `json:"size"`
	Accounts   int    `json:"accounts"`
	Devices    int    `json:"device_bindings"`
	Lookups    int    `json:"lookup_bindings"`
	Checked    int    `json:"checkpoints_checked"` // Previous and Checkpoints
}

// Audit replays the whole key transparency log of the server at base: it verifies the
// latest checkpoint's signature, downloads every entry, recomputes the Merkle root and
// compares it with the checkpoint, checks that every entry parses and that every
// account's history is coherent (sequence numbers 1, 2, 3, ... without a gap; a device
// added before it changes or goes; a lookup added before it is removed), and checks
// every checkpoint it is given (the last audit's, and any others) against the replayed
// log. Any inconsistency is an error wrapping [ErrKeyTransparency]; the report says what
// was checked up to there.
func Audit(ctx context.Context, base string, o AuditOptions) (AuditReport, error) {
	var rep AuditReport
	hc := o.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	r := ktRemote{base: strings.TrimRight(base, "/"), hc: hc}
	keys, err := r.keys(ctx)
	if err != nil {
		return rep, err
	}
	if o.LogKey != "" && keys.LogKey != o.LogKey {
		return rep, fmt.Errorf("%w: the server's log key %q is not the pinned %q", ErrKeyTransparency, keys.LogKey, o.LogKey)
	}
	rep.LogKey = keys.LogKey
	verifier, err := note.NewVerifier(keys.LogKey)
	if err != nil {
		return rep, fmt.Errorf("%w: the server's log key: %w", ErrKeyTransparency, err)
	}
	signed, err := r.checkpoint(ctx)
	if err != nil {
		return rep, err
	}
	cp, err := kt.VerifyCheckpoint(verifier, signed)
	if err != nil {
		return rep, fmt.Errorf("%w: %w", ErrKeyTransparency, err)
	}
	rep.Checkpoint, rep.Size = string(signed), cp.Size

	// The checkpoints to hold the replay against, by size.
	given := map[int64][]kt.Checkpoint{}
	for i, b := range append([][]byte{o.Previous}, o.Checkpoints...) {
		if b == nil {
			continue
		}
		g, err := kt.VerifyCheckpoint(verifier, b)
		if err != nil {
			return rep, fmt.Errorf("%w: given checkpoint %d: %w", ErrKeyTransparency, i, err)
		}
		if g.Size > cp.Size {
			return rep, fmt.Errorf("%w: a checkpoint of size %d exists, but the server's latest has size %d: it rolled back or forked", ErrKeyTransparency, g.Size, cp.Size)
		}
		given[g.Size] = append(given[g.Size], g)
	}
	if o.Previous != nil {
		// The server's own proof too, so that a server that cannot give one is caught
		// even where the replay agrees.
		prev, _ := kt.VerifyCheckpoint(verifier, o.Previous)
		proof, err := r.consistency(ctx, prev.Size, cp.Size)
		if err != nil {
			return rep, fmt.Errorf("%w: consistency proof from the last audit: %w", ErrKeyTransparency, err)
		}
		if err := kt.VerifyConsistency(prev, cp, proof); err != nil {
			return rep, fmt.Errorf("%w: %w", ErrKeyTransparency, err)
		}
	}

	type devKey struct {
		acct uuid.UUID
		dev  uint32
	}
	seqs := map[uuid.UUID]uint64{}
	devices := map[devKey]bool{}
	lookups := map[[kt.LookupIndexSize]byte]uuid.UUID{}
	var problems []error
	problem := func(format string, args ...any) {
		if len(problems) < 20 { // enough to act on; the rest would repeat
			problems = append(problems, fmt.Errorf(format, args...))
		}
	}
	f := &frontier{}
	check := func() {
		for _, g := range given[f.n] {
			if f.root() != g.Hash {
				problem("a checkpoint of size %d does not match the log's first %d entries: the server showed someone a forked log", g.Size, g.Size)
			}
			rep.Checked++
		}
	}
	check()
	err = r.entries(ctx, 0, cp.Size, func(i int64, b []byte) error {
		f.push(b)
		defer check()
		e, err := kt.ParseEntry(b)
		if err != nil {
			problem("entry %d: %v", i, err)
			return nil
		}
		acct := e.AccountID()
		var seq uint64
		switch e := e.(type) {
		case kt.DeviceBinding:
			rep.Devices++
			seq = e.Sequence
			k := devKey{acct, e.Device}
			switch {
			case e.State == kt.StateAdded && devices[k]:
				problem("entry %d adds device %d of %s, which is already there", i, e.Device, acct)
			case e.State != kt.StateAdded && !devices[k]:
				problem("entry %d says device %d of %s %v, but it was never added", i, e.Device, acct, e.State)
			}
			devices[k] = e.State != kt.StateRemoved
		case kt.LookupBinding:
			rep.Lookups++
			seq = e.Sequence
			owner, bound := lookups[e.Index]
			switch {
			case e.State == kt.StateAdded && bound:
				problem("entry %d binds a lookup key that already points to %s", i, owner)
			case e.State == kt.StateRemoved && (!bound || owner != acct):
				problem("entry %d removes a lookup binding that does not exist", i)
			}
			if e.State == kt.StateAdded {
				lookups[e.Index] = acct
			} else {
				delete(lookups, e.Index)
			}
		}
		if seq != seqs[acct]+1 {
			problem("entry %d has sequence %d for %s, after %d", i, seq, acct, seqs[acct])
		}
		seqs[acct] = max(seqs[acct], seq)
		return nil
	})
	if err != nil {
		return rep, err
	}
	rep.Accounts = len(seqs)
	if f.root() != cp.Hash {
		problem("the entries served are not the ones the checkpoint of size %d commits to", cp.Size)
	}
	if len(problems) > 0 {
		return rep, fmt.Errorf("%w: %w", ErrKeyTransparency, errors.Join(problems...))
	}
	return rep, nil
}
