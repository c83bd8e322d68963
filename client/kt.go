package client

// Key transparency, the client's half (docs/key-transparency.md). Before the SDK trusts
// a contact's identity key it checks the key's binding in the server's log: the bundle's
// entry must bind this account, device and key, and be included under a checkpoint the
// profile verified; a directory answer's VRF proof must verify for the number asked and
// its entry must bind the proved index to the account. The profile keeps the newest
// checkpoint it verified and accepts a new one only with a consistency proof. The owner's
// entries are monitored ([Client.KTMonitor]) for devices and keys it did not make, and
// every message carries the sender's newest checkpoint so that the receiver can compare
// it with its own: a server showing two people different logs is caught when they talk.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/kt"
	"github.com/bastionchat/bastion/kt/vrf"
)

// ErrKeyTransparency is wrapped by every key transparency failure: a binding missing
// from the log, a proof that does not verify, a fork. Nothing was sent to the key.
var ErrKeyTransparency = errors.New("key transparency check failed")

// Keys of the meta table for key transparency.
const (
	metaKTLogKey     = "kt_log_key"    // the pinned note verifier key text
	metaKTVRFKey     = "kt_vrf_key"    // the pinned 32-byte VRF public key
	metaKTCheckpoint = "kt_checkpoint" // the newest verified signed checkpoint
	metaKTMonitor    = "kt_monitor"    // monitor position: size, then the frontier
	metaKTOwnSeq     = "kt_own_seq"    // the last sequence seen for the own account
	metaKTAlerts     = "kt_alerts"     // JSON list of KTAlert
	metaKTCheckedAt  = "kt_checked_ms" // when the server's checkpoint was last fetched
)

// ktGossipRefresh is how old the profile's checkpoint may be before a send fetches a
// new one to carry: recent enough that a fork shows within minutes of its making, rare
// enough to cost nothing next to the sends.
const ktGossipRefresh = 10 * time.Minute

// maxKTAlerts bounds the stored alerts; the oldest are dropped first.
const maxKTAlerts = 100

// KTAlert is something key transparency found wrong: the user must be told.
type KTAlert struct {
	// Kind is "ghost_device" (a device of this account the profile did not add),
	// "foreign_key" (an identity key of this account that is not the profile's),
	// "sequence" (the account's entries skip or repeat a number), "fork" (two
	// checkpoints of the log that cannot both be honest) or "log" (the log's entries
	// do not match its checkpoint).
	Kind   string    `json:"kind"`
	Detail string    `json:"detail"`
	At     time.Time `json:"at"`
	// Evidence holds the signed checkpoints involved in a fork, as proof.
	Evidence [][]byte `json:"evidence,omitempty"`
}

func (a KTAlert) String() string { return a.Kind + ": " + a.Detail }

// KTStatus is what the profile knows of the server's log.
type KTStatus struct {
	LogKey     string    `json:"log_key"`
	VRFKey     []byte    `json:"vrf_key"`
	Size       int64     `json:"size"`       // of the newest verified checkpoint
	RootHash   string    `json:"root_hash"`  // base64
	Checkpoint string    `json:"checkpoint"` // the signed note
	Monitored  int64     `json:"monitored"`  // entries the monitor has read
	Alerts     []KTAlert `json:"alerts"`
}

// ktRemote speaks the key transparency endpoints of docs/api.md; they need no
// credentials.
type ktRemote struct {
	base string
	hc   *http.Client
}

func (r ktRemote) get(ctx context.Context, path string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", r.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		u, _ := url.Parse(r.base)
		return nil, unreachable(u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		ae := &APIError{Status: resp.StatusCode}
		json.Unmarshal(b, &ae.Body)
		return nil, ae
	}
	return b, nil
}

func (r ktRemote) getJSON(ctx context.Context, path string, out any) error {
	b, err := r.get(ctx, path, maxResponse)
	if err != nil {
		return fmt.Errorf("GET %s: %w", strings.SplitN(path, "?", 2)[0], err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decoding %s: %w", strings.SplitN(path, "?", 2)[0], err)
	}
	return nil
}

func (r ktRemote) keys(ctx context.Context) (api.KTKeys, error) {
	var k api.KTKeys
	err := r.getJSON(ctx, "/v1/kt/keys", &k)
	return k, err
}

// maxCheckpoint bounds a checkpoint note read from the server (kt's own limit).
const maxCheckpoint = 16 << 10

func (r ktRemote) checkpoint(ctx context.Context) ([]byte, error) {
	b, err := r.get(ctx, "/v1/kt/checkpoint", maxCheckpoint+1)
	if err != nil {
		return nil, fmt.Errorf("fetching the checkpoint: %w", err)
	}
	return b, nil
}

func proofHashes(bs [][]byte) ([]tlog.Hash, error) {
	// A proof has at most 2*63 hashes; more is not a proof.
	if len(bs) > 128 {
		return nil, fmt.Errorf("proof of %d hashes", len(bs))
	}
	out := make([]tlog.Hash, len(bs))
	for i, b := range bs {
		if len(b) != tlog.HashSize {
			return nil, fmt.Errorf("proof hash of %d bytes", len(b))
		}
		out[i] = tlog.Hash(b)
	}
	return out, nil
}

func (r ktRemote) inclusion(ctx context.Context, index, size int64) (tlog.RecordProof, error) {
	var p api.KTInclusionProof
	if err := r.getJSON(ctx, fmt.Sprintf("/v1/kt/inclusion?index=%d&size=%d", index, size), &p); err != nil {
		return nil, err
	}
	return proofHashes(p.Proof)
}

func (r ktRemote) consistency(ctx context.Context, old, new int64) (tlog.TreeProof, error) {
	if old == 0 || old == new {
		return tlog.TreeProof{}, nil
	}
	var p api.KTConsistencyProof
	if err := r.getJSON(ctx, fmt.Sprintf("/v1/kt/consistency?old=%d&new=%d", old, new), &p); err != nil {
		return nil, err
	}
	return proofHashes(p.Proof)
}

// entries returns the entries start <= i < end, in as many requests as it takes.
func (r ktRemote) entries(ctx context.Context, start, end int64, each func(i int64, e []byte) error) error {
	const page = 1024 // the server's limit
	for start < end {
		stop := min(end, start+page)
		var es api.KTEntries
		if err := r.getJSON(ctx, fmt.Sprintf("/v1/kt/entries?start=%d&end=%d", start, stop), &es); err != nil {
			return err
		}
		if es.Start != start || int64(len(es.Entries)) != stop-start {
			return fmt.Errorf("%w: asked for entries [%d, %d), got %d from %d", ErrKeyTransparency, start, stop, len(es.Entries), es.Start)
		}
		for i, e := range es.Entries {
			if err := each(start+int64(i), e); err != nil {
				return err
			}
		}
		start = stop
	}
	return nil
}

// A frontier is a compact Merkle tree over the first n entries: the roots of the
// perfect subtrees that n's binary digits decompose it into, largest first. Appending
// entries to it and folding it give the RFC 6962 root of any larger tree, so the
// monitor and the auditor check a range of entries against a checkpoint without keeping
// the tree or trusting the server for it.
type frontier struct {
	n      int64
	levels []uint8
	hashes []tlog.Hash
}

func (f *frontier) push(entry []byte) {
	h := tlog.RecordHash(entry)
	level := uint8(0)
	for len(f.levels) > 0 && f.levels[len(f.levels)-1] == level {
		last := len(f.levels) - 1
		h = tlog.NodeHash(f.hashes[last], h)
		f.levels, f.hashes = f.levels[:last], f.hashes[:last]
		level++
	}
	f.levels = append(f.levels, level)
	f.hashes = append(f.hashes, h)
	f.n++
}

// root returns the RFC 6962 root of the tree over the entries pushed so far.
func (f *frontier) root() tlog.Hash {
	if len(f.hashes) == 0 {
		h, _ := tlog.TreeHash(0, nil) // the empty tree needs no hashes
		return h
	}
	h := f.hashes[len(f.hashes)-1]
	for i := len(f.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(f.hashes[i], h)
	}
	return h
}

func (f *frontier) marshal() []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(f.n))
	for i := range f.hashes {
		b = append(b, f.levels[i])
		b = append(b, f.hashes[i][:]...)
	}
	return b
}

func parseFrontier(b []byte) (*frontier, error) {
	f := &frontier{}
	if len(b) == 0 {
		return f, nil
	}
	if len(b) < 8 || (len(b)-8)%(1+tlog.HashSize) != 0 {
		return nil, errors.New("profile: corrupt kt monitor state")
	}
	f.n = int64(binary.BigEndian.Uint64(b))
	for b = b[8:]; len(b) > 0; b = b[1+tlog.HashSize:] {
		f.levels = append(f.levels, b[0])
		f.hashes = append(f.hashes, tlog.Hash(b[1:1+tlog.HashSize]))
	}
	return f, nil
}

// ktLog is the profile's view of the log for one operation.
type ktLog struct {
	remote ktRemote
	logKey note.Verifier
	vrf    *vrf.PublicKey
	v      *kt.Verifier
}

func (c *Client) ktRemote() ktRemote {
	hc := c.api.client
	return ktRemote{base: c.api.base.String(), hc: hc}
}

// ktOpen loads the pinned keys, fetching and pinning them on first use, and the newest
// checkpoint the profile verified.
func (c *Client) ktOpen(ctx context.Context) (*ktLog, error) {
	r := c.ktRemote()
	logKey, err := getMeta(ctx, c.db, metaKTLogKey)
	if err != nil {
		return nil, err
	}
	vrfKey, err := getMeta(ctx, c.db, metaKTVRFKey)
	if err != nil {
		return nil, err
	}
	if len(logKey) == 0 || len(vrfKey) == 0 {
		// Trust on first use, like the identity keys of contacts: the first server
		// answer is pinned, and a later change of key is an error, never followed.
		k, err := r.keys(ctx)
		if err != nil {
			return nil, fmt.Errorf("fetching the log's keys: %w", err)
		}
		logKey, vrfKey = []byte(k.LogKey), k.VRFKey
		if _, err := note.NewVerifier(k.LogKey); err != nil {
			return nil, fmt.Errorf("%w: server's log key: %v", ErrKeyTransparency, err)
		}
		if _, err := vrf.NewPublicKey(k.VRFKey); err != nil {
			return nil, fmt.Errorf("%w: server's VRF key: %v", ErrKeyTransparency, err)
		}
		if err := setMeta(ctx, c.db, metaKTLogKey, logKey); err != nil {
			return nil, err
		}
		if err := setMeta(ctx, c.db, metaKTVRFKey, vrfKey); err != nil {
			return nil, err
		}
	}
	l := &ktLog{remote: r}
	if l.logKey, err = note.NewVerifier(string(logKey)); err != nil {
		return nil, fmt.Errorf("profile: kt log key: %w", err)
	}
	if l.vrf, err = vrf.NewPublicKey(vrfKey); err != nil {
		return nil, fmt.Errorf("profile: kt vrf key: %w", err)
	}
	latest, err := getMeta(ctx, c.db, metaKTCheckpoint)
	if err != nil {
		return nil, err
	}
	if len(latest) == 0 {
		latest = nil
	}
	if l.v, err = kt.NewVerifier(l.logKey, latest); err != nil {
		return nil, err
	}
	return l, nil
}

// ktAdvance verifies signed against the newest checkpoint the profile holds, with a
// consistency proof from the server, and stores it if it is newer. A fork is recorded as
// an alert and returned.
func (c *Client) ktAdvance(ctx context.Context, l *ktLog, signed []byte) (kt.Checkpoint, error) {
	cp, err := kt.VerifyCheckpoint(l.logKey, signed)
	if err != nil {
		return kt.Checkpoint{}, fmt.Errorf("%w: %w", ErrKeyTransparency, err)
	}
	var proof tlog.TreeProof
	if prev, ok := l.v.Latest(); ok && prev.Size != cp.Size {
		if proof, err = l.remote.consistency(ctx, min(prev.Size, cp.Size), max(prev.Size, cp.Size)); err != nil {
			var ae *APIError
			if !errors.As(err, &ae) {
				return kt.Checkpoint{}, err
			}
			proof = tlog.TreeProof{} // the server cannot prove it: a fork, below
		}
	}
	prev, had := l.v.Latest()
	got, err := l.v.Advance(signed, proof)
	if err != nil {
		var fe *kt.ForkError
		if errors.As(err, &fe) {
			c.ktAlert(ctx, KTAlert{Kind: "fork", Detail: fmt.Sprintf("the server's log of size %d does not extend the one of size %d this profile saw: it shows different logs to different people, or rewrote history", cp.Size, prev.Size),
				Evidence: [][]byte{prev.Note, signed}})
		}
		return kt.Checkpoint{}, fmt.Errorf("%w: %w", ErrKeyTransparency, err)
	}
	if !had || got.Size > prev.Size {
		if err := setMeta(ctx, c.db, metaKTCheckpoint, signed); err != nil {
			return kt.Checkpoint{}, err
		}
	}
	return got, nil
}

// ktFresh fetches the server's checkpoint and verifies it against the stored one.
func (c *Client) ktFresh(ctx context.Context, l *ktLog) (kt.Checkpoint, error) {
	signed, err := l.remote.checkpoint(ctx)
	if err != nil {
		return kt.Checkpoint{}, err
	}
	cp, err := c.ktAdvance(ctx, l, signed)
	if err == nil {
		err = setMeta(ctx, c.db, metaKTCheckedAt, binary.BigEndian.AppendUint64(nil, uint64(c.now().UnixMilli())))
	}
	return cp, err
}

// ktIncluded checks that entry is at index in the log under a fresh checkpoint.
func (c *Client) ktIncluded(ctx context.Context, l *ktLog, index int64, entry []byte) error {
	cp, err := c.ktFresh(ctx, l)
	if err != nil {
		return err
	}
	if index < 0 || index >= cp.Size {
		return fmt.Errorf("%w: entry %d is beyond the checkpoint of size %d", ErrKeyTransparency, index, cp.Size)
	}
	proof, err := l.remote.inclusion(ctx, index, cp.Size)
	if err != nil {
		return fmt.Errorf("%w: fetching an inclusion proof: %w", ErrKeyTransparency, err)
	}
	if err := kt.VerifyInclusion(cp, index, entry, proof); err != nil {
		return fmt.Errorf("%w: %w", ErrKeyTransparency, err)
	}
	return nil
}

// ktVerifyBundle checks every device of a bundle against the log before any of its keys
// is used. c.mu is held.
func (c *Client) ktVerifyBundle(ctx context.Context, account uuid.UUID, br *api.BundleResponse) error {
	l, err := c.ktOpen(ctx)
	if err != nil {
		return err
	}
	for _, d := range br.Devices {
		if d.KT == nil {
			return fmt.Errorf("%w: the server sent device %d's key without its log entry", ErrKeyTransparency, d.DeviceID)
		}
		e, err := kt.ParseEntry(d.KT.Entry)
		if err != nil {
			return fmt.Errorf("%w: device %d: %w", ErrKeyTransparency, d.DeviceID, err)
		}
		db, ok := e.(kt.DeviceBinding)
		switch {
		case !ok:
			return fmt.Errorf("%w: device %d's log entry is not a device binding", ErrKeyTransparency, d.DeviceID)
		case db.Account != account || db.Device != d.DeviceID:
			return fmt.Errorf("%w: device %d's log entry is about another device", ErrKeyTransparency, d.DeviceID)
		case !bytes.Equal(db.IdentityKey[:], br.IdentityKey):
			return fmt.Errorf("%w: the identity key the server sent for device %d is not the one in the log", ErrKeyTransparency, d.DeviceID)
		case db.State == kt.StateRemoved:
			return fmt.Errorf("%w: device %d's log entry says it was removed", ErrKeyTransparency, d.DeviceID)
		}
		if err := c.ktIncluded(ctx, l, d.KT.LogIndex, d.KT.Entry); err != nil {
			return fmt.Errorf("device %d: %w", d.DeviceID, err)
		}
	}
	return nil
}

// ktVerifyLookup checks a directory answer for number against the log. c.mu is held.
func (c *Client) ktVerifyLookup(ctx context.Context, number string, lr *api.LookupResponse) error {
	if lr.KT == nil {
		return fmt.Errorf("%w: the directory answer has no log entry", ErrKeyTransparency)
	}
	l, err := c.ktOpen(ctx)
	if err != nil {
		return err
	}
	index, err := kt.VerifyLookup(l.vrf, kt.KindPhoneNumber, number, lr.KT.VRFProof)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKeyTransparency, err)
	}
	e, err := kt.ParseEntry(lr.KT.Entry)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKeyTransparency, err)
	}
	lb, ok := e.(kt.LookupBinding)
	if !ok || lb.Kind != kt.KindPhoneNumber || lb.Index != index || lb.Account != lr.AccountID || lb.State != kt.StateAdded {
		return fmt.Errorf("%w: the directory's log entry does not bind this number to the account it named", ErrKeyTransparency)
	}
	return c.ktIncluded(ctx, l, lr.KT.LogIndex, lr.KT.Entry)
}

// ktGossipNote returns the newest checkpoint the profile verified, to travel in a
// message, or nil.
func (c *Client) ktGossipNote(ctx context.Context) string {
	at, _ := getMeta(ctx, c.db, metaKTCheckedAt)
	if len(at) != 8 || c.now().Sub(time.UnixMilli(int64(binary.BigEndian.Uint64(at)))) > ktGossipRefresh {
		// Stale or never fetched: a checkpoint worth comparing is a recent one.
		if l, err := c.ktOpen(ctx); err != nil {
			c.log.Debug("kt: opening the log", "err", err)
		} else if _, err := c.ktFresh(ctx, l); err != nil {
			c.log.Debug("kt: refreshing the checkpoint", "err", err)
		}
	}
	b, err := getMeta(ctx, c.db, metaKTCheckpoint)
	if err != nil {
		return ""
	}
	return string(b)
}

// ktGossip checks a checkpoint a peer saw against the profile's: signed by the pinned
// key and consistent with what the profile holds. A fork becomes an alert; a failure to
// reach the server is only logged (the next message tries again).
func (c *Client) ktGossip(ctx context.Context, note string) {
	if note == "" {
		return
	}
	l, err := c.ktOpen(ctx)
	if err != nil {
		c.log.Debug("kt gossip: opening the log", "err", err)
		return
	}
	// ktAdvance verifies the signature first: a checkpoint of another server's log (the
	// peer uses another server) or garbage is refused there with nothing compared.
	if _, err := c.ktAdvance(ctx, l, []byte(note)); err != nil {
		c.log.Debug("kt gossip: checkpoint refused", "err", err)
	}
}

// ktAlert records an alert in the profile.
func (c *Client) ktAlert(ctx context.Context, a KTAlert) {
	if a.At.IsZero() {
		a.At = c.now()
	}
	alerts, _ := c.ktAlerts(ctx)
	alerts = append(alerts, a)
	if len(alerts) > maxKTAlerts {
		alerts = alerts[len(alerts)-maxKTAlerts:]
	}
	b, _ := json.Marshal(alerts)
	if err := setMeta(ctx, c.db, metaKTAlerts, b); err != nil {
		c.log.Debug("kt: storing an alert", "err", err)
	}
	c.log.Debug("kt alert", "kind", a.Kind)
}

func (c *Client) ktAlerts(ctx context.Context) ([]KTAlert, error) {
	b, err := getMeta(ctx, c.db, metaKTAlerts)
	if err != nil || len(b) == 0 {
		return nil, err
	}
	var alerts []KTAlert
	if err := json.Unmarshal(b, &alerts); err != nil {
		return nil, fmt.Errorf("profile: kt alerts: %w", err)
	}
	return alerts, nil
}

// KTAlerts returns every key transparency alert the profile recorded, oldest first.
func (c *Client) KTAlerts(ctx context.Context) ([]KTAlert, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ktAlerts(ctx)
}

// KTStatus returns the profile's view of the log, after checking the server's newest
// checkpoint against it.
func (c *Client) KTStatus(ctx context.Context) (KTStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, err := c.ktOpen(ctx)
	if err != nil {
		return KTStatus{}, err
	}
	_, ferr := c.ktFresh(ctx, l)
	st := KTStatus{VRFKey: l.vrf.Bytes()}
	if k, err := getMeta(ctx, c.db, metaKTLogKey); err == nil {
		st.LogKey = string(k)
	}
	if cp, ok := l.v.Latest(); ok {
		st.Size, st.Checkpoint = cp.Size, string(cp.Note)
		st.RootHash = fmt.Sprintf("%x", cp.Hash[:])
	}
	if b, err := getMeta(ctx, c.db, metaKTMonitor); err == nil {
		if f, err := parseFrontier(b); err == nil {
			st.Monitored = f.n
		}
	}
	if st.Alerts, err = c.ktAlerts(ctx); err != nil {
		return st, err
	}
	return st, ferr
}

// KTMonitor reads the log's entries since the last run, checks that they are the
// entries the newest checkpoint commits to, and reports every binding of the profile's
// own account that it did not make: a device other than this one (a ghost device), an
// identity key other than its own, a sequence number out of order. New alerts are
// returned and recorded ([Client.KTAlerts]).
func (c *Client) KTMonitor(ctx context.Context) ([]KTAlert, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.requireAccount(); err != nil {
		return nil, err
	}
	l, err := c.ktOpen(ctx)
	if err != nil {
		return nil, err
	}
	cp, err := c.ktFresh(ctx, l)
	if err != nil {
		return nil, err
	}
	b, err := getMeta(ctx, c.db, metaKTMonitor)
	if err != nil {
		return nil, err
	}
	f, err := parseFrontier(b)
	if err != nil {
		return nil, err
	}
	if f.n > cp.Size {
		return nil, fmt.Errorf("%w: the log shrank from %d to %d entries", ErrKeyTransparency, f.n, cp.Size)
	}
	var lastSeq uint64
	if b, err := getMeta(ctx, c.db, metaKTOwnSeq); err == nil && len(b) == 8 {
		lastSeq = binary.BigEndian.Uint64(b)
	}
	own := c.acc.AccountID
	var found []KTAlert
	err = l.remote.entries(ctx, f.n, cp.Size, func(i int64, b []byte) error {
		f.push(b)
		e, err := kt.ParseEntry(b)
		if err != nil {
			found = append(found, KTAlert{Kind: "log", Detail: fmt.Sprintf("entry %d does not parse: %v", i, err)})
			return nil
		}
		if e.AccountID() != own {
			return nil
		}
		var seq uint64
		switch e := e.(type) {
		case kt.DeviceBinding:
			seq = e.Sequence
			if e.State != kt.StateRemoved && e.Device != c.acc.DeviceID {
				found = append(found, KTAlert{Kind: "ghost_device", Detail: fmt.Sprintf("log entry %d adds device %d to your account, which this device did not add", i, e.Device)})
			}
			if e.State != kt.StateRemoved && !bytes.Equal(e.IdentityKey[:], c.acc.IdentityKey) {
				found = append(found, KTAlert{Kind: "foreign_key", Detail: fmt.Sprintf("log entry %d binds device %d of your account to an identity key that is not yours", i, e.Device)})
			}
		case kt.LookupBinding:
			seq = e.Sequence
		}
		if seq != lastSeq+1 {
			found = append(found, KTAlert{Kind: "sequence", Detail: fmt.Sprintf("log entry %d has sequence %d for your account, after %d", i, seq, lastSeq)})
		}
		lastSeq = max(lastSeq, seq)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if f.root() != cp.Hash {
		a := KTAlert{Kind: "log", Detail: fmt.Sprintf("the entries the server served are not the ones its checkpoint of size %d commits to", cp.Size)}
		c.ktAlert(ctx, a)
		return []KTAlert{a}, fmt.Errorf("%w: %s", ErrKeyTransparency, a.Detail)
	}
	for i := range found {
		found[i].At = c.now()
		c.ktAlert(ctx, found[i])
	}
	if err := setMeta(ctx, c.db, metaKTMonitor, f.marshal()); err != nil {
		return nil, err
	}
	if err := setMeta(ctx, c.db, metaKTOwnSeq, binary.BigEndian.AppendUint64(nil, lastSeq)); err != nil {
		return nil, err
	}
	return found, nil
}

// ktVerifyAccountKey checks that key is the identity key the log binds every device of
// account to, before the profile trusts it (a contact's changed key, say). c.mu is held.
func (c *Client) ktVerifyAccountKey(ctx context.Context, account uuid.UUID, key []byte) error {
	var ka api.KTAccount
	if err := c.api.do(ctx, "GET", "/v1/kt/account/"+account.String(), c.cred(), nil, &ka); err != nil {
		return fmt.Errorf("fetching the contact's log entries: %w", err)
	}
	if !bytes.Equal(ka.IdentityKey, key) {
		return fmt.Errorf("%w: the contact's current key is not the one this profile holds for them; receive their newest message first", ErrKeyTransparency)
	}
	if len(ka.Devices) == 0 {
		return fmt.Errorf("%w: the contact has no device in the log", ErrKeyTransparency)
	}
	br := api.BundleResponse{IdentityKey: ka.IdentityKey}
	for _, d := range ka.Devices {
		b := d.KTBinding
		br.Devices = append(br.Devices, api.DeviceBundle{DeviceID: d.DeviceID, KT: &b})
	}
	return c.ktVerifyBundle(ctx, account, &br)
}
