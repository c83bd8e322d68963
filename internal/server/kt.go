package server

// Key transparency, the server's half (docs/key-transparency.md): every (account, device,
// identity key) binding and every phone-number lookup binding goes into an append-only
// Merkle log (internal/translog) whose signed checkpoints, proofs and entries are served
// to anyone, so that clients and auditors can check that the server never showed a key
// it did not log.
//
// What goes in: a device binding when a device appears (added), when the account's
// identity key changes under it (changed: a re-registration) and when it goes (removed);
// a lookup binding phone number -> account when an account is created and when it is
// deleted. A phone number enters the log only as its VRF output (kt.LookupIndex), never
// in any other form.
//
// How the log follows the store: the log is derived from the store, not the other way
// round. syncAccount compares an account as the store has it with the account's latest
// bindings in the log and appends the difference. It runs after every change the server
// makes, and again whenever a read finds the log behind the store (a crash between the
// store's commit and the append), so a missing entry is appended late rather than never.
// The account's latest bindings are kept in memory, rebuilt from the log's entries at
// start and caught up with entries other nodes appended before every use.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/store"
	"github.com/bastionchat/bastion/internal/translog"
	"github.com/bastionchat/bastion/kt"
	"github.com/bastionchat/bastion/kt/vrf"
)

// Key files in the data directory. The private ones are created 0600 and refused when
// group or others can read them.
const (
	ktLogKeyFile = "kt-log.key" // note signer key text
	ktLogPubFile = "kt-log.pub" // note verifier key text
	ktVRFKeyFile = "kt-vrf.key" // the 32-byte VRF seed
)

// KTKeys are the key transparency log's keys: the note key that signs checkpoints and
// the VRF key that turns phone numbers into lookup indexes. They have no String or JSON
// form.
type KTKeys struct {
	signer   note.Signer
	verifier string // the verifier key text, public
	vrf      *vrf.PrivateKey
}

// VerifierKey returns the log's public note verifier key, "<origin>+<hash>+<key>".
func (k *KTKeys) VerifierKey() string { return k.verifier }

// VRFPublicKey returns the public VRF key.
func (k *KTKeys) VRFPublicKey() *vrf.PublicKey { return k.vrf.Public() }

// GenerateKTKeys makes a fresh set in memory, for tests and for a [New] without
// [Options.KTKeys]. A server that restarts with new keys starts a new log, so [Run]
// uses [LoadKTKeys] instead.
func GenerateKTKeys(origin string) (*KTKeys, error) {
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return nil, fmt.Errorf("generating kt log key: %w", err)
	}
	v, err := vrf.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating kt vrf key: %w", err)
	}
	return newKTKeys(skey, vkey, v)
}

func newKTKeys(skey, vkey string, v *vrf.PrivateKey) (*KTKeys, error) {
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ktLogKeyFile, err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ktLogPubFile, err)
	}
	// The two files must be halves of one key: sign and check a probe.
	probe, err := note.Sign(&note.Note{Text: "bastion kt key check\n"}, signer)
	if err != nil {
		return nil, err
	}
	if _, err := note.Open(probe, note.VerifierList(verifier)); err != nil || signer.Name() != verifier.Name() {
		return nil, fmt.Errorf("%s does not match %s", ktLogPubFile, ktLogKeyFile)
	}
	return &KTKeys{signer: signer, verifier: vkey, vrf: v}, nil
}

// LoadKTKeys reads the log's keys from dir, creating them on first start with origin
// as the log's name (it is kept in the key file, so later starts ignore origin).
func LoadKTKeys(dir, origin string) (*KTKeys, error) {
	skey, err := loadOrMissing(dir, ktLogKeyFile, func(b []byte) (string, error) { return strings.TrimSpace(string(b)), nil })
	if err != nil {
		return nil, err
	}
	vkey, err := loadOrMissing(dir, ktLogPubFile, func(b []byte) (string, error) { return strings.TrimSpace(string(b)), nil })
	if err != nil {
		return nil, err
	}
	switch {
	case skey == "" && vkey == "":
		if origin == "" {
			origin = KTOrigin("")
		}
		if skey, vkey, err = note.GenerateKey(rand.Reader, origin); err != nil {
			return nil, fmt.Errorf("generating kt log key: %w", err)
		}
		if err := writeNew(filepath.Join(dir, ktLogKeyFile), []byte(skey+"\n")); err != nil {
			return nil, err
		}
		if err := writeNew(filepath.Join(dir, ktLogPubFile), []byte(vkey+"\n")); err != nil {
			return nil, err
		}
	case skey == "" || vkey == "":
		return nil, fmt.Errorf("%s and %s must both exist or both be absent", ktLogKeyFile, ktLogPubFile)
	}
	v, err := loadOrMissing(dir, ktVRFKeyFile, vrf.NewPrivateKey)
	if err != nil {
		return nil, err
	}
	if v == nil {
		if v, err = vrf.GenerateKey(rand.Reader); err != nil {
			return nil, fmt.Errorf("generating kt vrf key: %w", err)
		}
		if err := writeNew(filepath.Join(dir, ktVRFKeyFile), v.Seed()); err != nil {
			return nil, err
		}
	}
	return newKTKeys(skey, vkey, v)
}

// KTOrigin returns the log name for a server reachable at host: "<host>/kt", or
// "bastion.invalid/kt" when there is no usable host name. A note key name may hold no
// space and no "+".
func KTOrigin(host string) string {
	if host == "" || strings.ContainsAny(host, "+/ \t\n") {
		host = "bastion.invalid"
	}
	return host + "/kt"
}

// appendLocker is a storage shared by several nodes that lets one node at a time append
// (the PostgreSQL store's KTLog). Storages one process owns need no such lock.
type appendLocker interface {
	LockAppends(ctx context.Context, fn func(ctx context.Context) error) error
}

// ktLog is the server's key transparency log and what it knows of every account's latest
// bindings.
type ktLog struct {
	log     *translog.Log
	storage translog.Storage
	keys    *KTKeys
	store   store.Accounts
	now     func() time.Time

	mu       sync.Mutex // guards what follows and serializes appends in this process
	applied  int64      // the log size the state reflects
	accounts map[uuid.UUID]*ktAccount
}

// ktAccount is an account's latest bindings in the log.
type ktAccount struct {
	seq     uint64 // the largest sequence logged for the account
	lookup  *ktLogged
	devices map[uint32]*ktLogged
}

// ktLogged is a binding as last logged: the entry and where it is.
type ktLogged struct {
	index int64
	entry []byte
	key   [kt.IdentityKeySize]byte // device bindings
	vrf   [kt.LookupIndexSize]byte // lookup bindings
}

func newKTLog(storage translog.Storage, keys *KTKeys, accounts store.Accounts, now func() time.Time) *ktLog {
	return &ktLog{
		log: translog.New(storage, keys.signer), storage: storage, keys: keys, store: accounts, now: now,
		accounts: map[uuid.UUID]*ktAccount{},
	}
}

// catchUp applies entries appended since the state was last brought up to date (by this
// node before a crash, or by another node). k.mu must be held.
func (k *ktLog) catchUp(ctx context.Context) error {
	tree, err := k.log.Tree(ctx)
	if err != nil {
		return err
	}
	for k.applied < tree.N {
		end := min(tree.N, k.applied+translog.MaxEntriesRange)
		es, err := k.log.Entries(ctx, k.applied, end)
		if err != nil {
			return err
		}
		for i, b := range es {
			if err := k.apply(k.applied+int64(i), b); err != nil {
				return err
			}
		}
		k.applied = end
	}
	return nil
}

func (k *ktLog) apply(index int64, b []byte) error {
	e, err := kt.ParseEntry(b)
	if err != nil {
		// Only this server writes the log; an entry it cannot read is a broken invariant
		// of the storage, not peer input, but failing the request beats a panic.
		return fmt.Errorf("kt entry %d: %w", index, err)
	}
	a := k.accounts[e.AccountID()]
	if a == nil {
		a = &ktAccount{devices: map[uint32]*ktLogged{}}
		k.accounts[e.AccountID()] = a
	}
	logged := &ktLogged{index: index, entry: bytes.Clone(b)}
	switch e := e.(type) {
	case kt.DeviceBinding:
		a.seq = max(a.seq, e.Sequence)
		if e.State == kt.StateRemoved {
			delete(a.devices, e.Device)
		} else {
			logged.key = e.IdentityKey
			a.devices[e.Device] = logged
		}
	case kt.LookupBinding:
		a.seq = max(a.seq, e.Sequence)
		if e.State == kt.StateRemoved {
			a.lookup = nil
		} else {
			logged.vrf = e.Index
			a.lookup = logged
		}
	}
	return nil
}

// locked runs fn with the state caught up, holding this process's lock and, on a storage
// several nodes share, the nodes' append lock.
func (k *ktLog) locked(ctx context.Context, appending bool, fn func(ctx context.Context) error) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	run := func(ctx context.Context) error {
		if err := k.catchUp(ctx); err != nil {
			return err
		}
		return fn(ctx)
	}
	if l, ok := k.storage.(appendLocker); ok && appending {
		return l.LockAppends(ctx, run)
	}
	return run(ctx)
}

// syncAccount appends whatever bindings of the account the log lacks, as the store has
// the account now, and returns once they are logged.
func (k *ktLog) syncAccount(ctx context.Context, id uuid.UUID) error {
	err := k.locked(ctx, true, func(ctx context.Context) error {
		acct, err := k.store.Account(ctx, id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		var devs []store.Device
		if err == nil {
			if devs, err = k.store.Devices(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		entries, err := k.diff(id, acct, devs)
		if err != nil || len(entries) == 0 {
			return err
		}
		first, err := k.log.Append(ctx, entries...)
		if err != nil {
			return err
		}
		for i, b := range entries {
			if err := k.apply(first+int64(i), b); err != nil {
				return err
			}
		}
		k.applied = first + int64(len(entries))
		return nil
	})
	if err != nil {
		return fmt.Errorf("logging bindings: %w", err)
	}
	return nil
}

// diff returns the entries that bring the account's logged bindings to acct and devs (a
// zero acct: the account is gone). k.mu must be held.
func (k *ktLog) diff(id uuid.UUID, acct store.Account, devs []store.Device) ([][]byte, error) {
	a := k.accounts[id]
	if a == nil {
		a = &ktAccount{devices: map[uint32]*ktLogged{}}
	}
	now := k.now()
	seq := a.seq
	var out [][]byte
	add := func(e kt.Entry) error {
		b, err := kt.Marshal(e)
		if err != nil {
			return err
		}
		out = append(out, b)
		return nil
	}
	var key [kt.IdentityKeySize]byte
	if acct.ID != uuid.Nil {
		if len(acct.IdentityKey) != kt.IdentityKeySize {
			return nil, fmt.Errorf("stored identity key is %d bytes", len(acct.IdentityKey))
		}
		key = [kt.IdentityKeySize]byte(acct.IdentityKey)
	}

	// The lookup binding first: number -> account, then the devices.
	var index [kt.LookupIndexSize]byte
	if acct.ID != uuid.Nil {
		var err error
		if index, _, err = kt.LookupIndex(k.keys.vrf, kt.KindPhoneNumber, acct.Number); err != nil {
			return nil, err
		}
	}
	if a.lookup != nil && (acct.ID == uuid.Nil || a.lookup.vrf != index) {
		seq++
		if err := add(kt.LookupBinding{Kind: kt.KindPhoneNumber, Index: a.lookup.vrf, Account: id, State: kt.StateRemoved, Sequence: seq, Time: now}); err != nil {
			return nil, err
		}
	}
	if acct.ID != uuid.Nil && (a.lookup == nil || a.lookup.vrf != index) {
		seq++
		if err := add(kt.LookupBinding{Kind: kt.KindPhoneNumber, Index: index, Account: id, State: kt.StateAdded, Sequence: seq, Time: now}); err != nil {
			return nil, err
		}
	}

	current := map[uint32]bool{}
	for _, d := range devs {
		current[d.ID] = true
		logged := a.devices[d.ID]
		state := kt.StateAdded
		if logged != nil {
			if logged.key == key {
				continue
			}
			state = kt.StateChanged
		}
		seq++
		if err := add(kt.DeviceBinding{Account: id, Device: d.ID, IdentityKey: key, State: state, Sequence: seq, Time: now}); err != nil {
			return nil, err
		}
	}
	// Removals in device order, so that the same change always logs the same way.
	var gone []uint32
	for dev := range a.devices {
		if !current[dev] {
			gone = append(gone, dev)
		}
	}
	slices.Sort(gone)
	for _, dev := range gone {
		seq++
		if err := add(kt.DeviceBinding{Account: id, Device: dev, IdentityKey: a.devices[dev].key, State: kt.StateRemoved, Sequence: seq, Time: now}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// deviceBinding returns the logged binding of a device if it binds key; it appends the
// account's missing bindings first when the log is behind the store.
func (k *ktLog) deviceBinding(ctx context.Context, id uuid.UUID, device uint32, key []byte) (*api.KTBinding, error) {
	get := func() (*api.KTBinding, error) {
		var out *api.KTBinding
		err := k.locked(ctx, false, func(context.Context) error {
			if a := k.accounts[id]; a != nil {
				if l := a.devices[device]; l != nil && bytes.Equal(l.key[:], key) {
					out = &api.KTBinding{LogIndex: l.index, Entry: bytes.Clone(l.entry)}
				}
			}
			return nil
		})
		return out, err
	}
	b, err := get()
	if err != nil || b != nil {
		return b, err
	}
	if err := k.syncAccount(ctx, id); err != nil {
		return nil, err
	}
	if b, err = get(); err == nil && b == nil {
		err = errors.New("device binding missing from the log after sync")
	}
	return b, err
}

// lookupBinding returns the VRF proof for number and the logged binding of its index to
// the account, appending it first when the log is behind the store.
func (k *ktLog) lookupBinding(ctx context.Context, id uuid.UUID, number string) (*api.KTLookup, error) {
	index, proof, err := kt.LookupIndex(k.keys.vrf, kt.KindPhoneNumber, number)
	if err != nil {
		return nil, err
	}
	get := func() (*api.KTLookup, error) {
		var out *api.KTLookup
		err := k.locked(ctx, false, func(context.Context) error {
			if a := k.accounts[id]; a != nil && a.lookup != nil && a.lookup.vrf == index {
				out = &api.KTLookup{VRFProof: proof, LogIndex: a.lookup.index, Entry: bytes.Clone(a.lookup.entry)}
			}
			return nil
		})
		return out, err
	}
	l, err := get()
	if err != nil || l != nil {
		return l, err
	}
	if err := k.syncAccount(ctx, id); err != nil {
		return nil, err
	}
	if l, err = get(); err == nil && l == nil {
		err = errors.New("lookup binding missing from the log after sync")
	}
	return l, err
}

// The HTTP side. Every endpoint is public and unauthenticated: an auditor needs no
// account, and nothing served is secret.

func (s *Server) ktRoutes(m *http.ServeMux) {
	h := s.handle
	m.Handle("GET /v1/kt/keys", h(s.ktKeys))
	m.Handle("GET /v1/kt/checkpoint", h(s.ktCheckpoint))
	m.Handle("GET /v1/kt/inclusion", h(s.ktInclusion))
	m.Handle("GET /v1/kt/consistency", h(s.ktConsistency))
	m.Handle("GET /v1/kt/entries", h(s.ktEntries))
	m.Handle("GET /v1/kt/tile/{path...}", h(s.ktTile))
	m.Handle("GET /v1/kt/account/{account}", h(s.authed(s.ktAccount)))
}

// ktAccount answers an account's current device bindings: what a client needs to check
// a contact's identity key without fetching (and consuming) a bundle.
func (s *Server) ktAccount(w http.ResponseWriter, r *http.Request, _ device) error {
	target, err := uuid.Parse(r.PathValue("account"))
	if err != nil {
		return badRequest("account is not a UUID")
	}
	acct, err := s.store.Account(r.Context(), target)
	if errors.Is(err, store.ErrNotFound) {
		return errNoAccount
	}
	if err != nil {
		return fmt.Errorf("loading account: %w", err)
	}
	devs, err := s.store.Devices(r.Context(), target)
	if err != nil {
		return fmt.Errorf("listing devices: %w", err)
	}
	resp := api.KTAccount{IdentityKey: acct.IdentityKey, Devices: []api.KTDeviceBinding{}}
	for _, d := range devs {
		b, err := s.kt.deviceBinding(r.Context(), target, d.ID, acct.IdentityKey)
		if err != nil {
			return err
		}
		resp.Devices = append(resp.Devices, api.KTDeviceBinding{DeviceID: d.ID, KTBinding: *b})
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// immutable marks an answer that can never change (entries, proofs between fixed sizes,
// tiles): caches and CDNs may keep it for good.
func immutable(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
}

func (s *Server) ktKeys(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, api.KTKeys{LogKey: s.kt.keys.verifier, VRFKey: s.kt.keys.vrf.Public().Bytes()})
	return nil
}

func (s *Server) ktCheckpoint(w http.ResponseWriter, r *http.Request) error {
	signed, err := s.kt.log.Checkpoint(r.Context())
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache") // the head moves with every append
	w.Write(signed)
	return nil
}

// queryInt reads a non-negative integer query parameter.
func queryInt(r *http.Request, name string) (int64, error) {
	v, err := strconv.ParseInt(r.URL.Query().Get(name), 10, 64)
	if err != nil || v < 0 {
		return 0, badRequest(name + " must be a non-negative integer")
	}
	return v, nil
}

// treeSize checks that n is within the committed tree: a proof for a larger one is
// answered 404, not 500, since a client may race an append on another node.
func (s *Server) treeSize(r *http.Request, n int64) error {
	t, err := s.kt.log.Tree(r.Context())
	if err != nil {
		return err
	}
	if n > t.N {
		return newError(http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("the log has %d entries", t.N))
	}
	return nil
}

func hashesOut(hs []tlog.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

func (s *Server) ktInclusion(w http.ResponseWriter, r *http.Request) error {
	index, err := queryInt(r, "index")
	if err != nil {
		return err
	}
	size, err := queryInt(r, "size")
	if err != nil {
		return err
	}
	if index >= size {
		return badRequest("index must be below size")
	}
	if err := s.treeSize(r, size); err != nil {
		return err
	}
	p, err := s.kt.log.InclusionProof(r.Context(), index, size)
	if err != nil {
		return err
	}
	immutable(w)
	writeJSON(w, http.StatusOK, api.KTInclusionProof{Index: index, Size: size, Proof: hashesOut(p)})
	return nil
}

func (s *Server) ktConsistency(w http.ResponseWriter, r *http.Request) error {
	old, err := queryInt(r, "old")
	if err != nil {
		return err
	}
	nw, err := queryInt(r, "new")
	if err != nil {
		return err
	}
	if old > nw {
		return badRequest("old must not exceed new")
	}
	if err := s.treeSize(r, nw); err != nil {
		return err
	}
	p, err := s.kt.log.ConsistencyProof(r.Context(), old, nw)
	if err != nil {
		return err
	}
	immutable(w)
	writeJSON(w, http.StatusOK, api.KTConsistencyProof{Old: old, New: nw, Proof: hashesOut(p)})
	return nil
}

func (s *Server) ktEntries(w http.ResponseWriter, r *http.Request) error {
	start, err := queryInt(r, "start")
	if err != nil {
		return err
	}
	end, err := queryInt(r, "end")
	if err != nil {
		return err
	}
	if start >= end || end-start > translog.MaxEntriesRange {
		return badRequest(fmt.Sprintf("need start < end and at most %d entries", translog.MaxEntriesRange))
	}
	if err := s.treeSize(r, end); err != nil {
		return err
	}
	es, err := s.kt.log.Entries(r.Context(), start, end)
	if err != nil {
		return err
	}
	immutable(w)
	writeJSON(w, http.StatusOK, api.KTEntries{Start: start, Entries: es})
	return nil
}

// ktTile serves the tlog tiles of the log (tile/H/L/NNN[.p/W] under /v1/kt/): hash tiles
// as translog reads them, and data tiles (L = "data") as the tile's entries concatenated,
// each self-delimiting in the kt encoding.
func (s *Server) ktTile(w http.ResponseWriter, r *http.Request) error {
	t, err := tlog.ParseTilePath("tile/" + r.PathValue("path"))
	if err != nil {
		return badRequest("not a tile path")
	}
	var data []byte
	if t.L == -1 {
		start := t.N << uint(t.H)
		end := start + int64(t.W)
		if t.H < 1 || t.H > 10 || t.N > (1<<62)>>uint(t.H) {
			return badRequest("not a tile path")
		}
		if err := s.treeSize(r, end); err != nil {
			return err
		}
		es, err := s.kt.log.Entries(r.Context(), start, end)
		if err != nil {
			return err
		}
		data = bytes.Join(es, nil)
	} else {
		data, err = s.kt.log.TileData(r.Context(), t)
		if err != nil {
			return newError(http.StatusNotFound, api.CodeNotFound, "no such tile")
		}
	}
	immutable(w)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(data)
	return nil
}

// KTOptions are the key transparency log's keys and storage. A nil Keys generates fresh
// keys and a nil Storage keeps the log in memory (tests); [Run] loads the keys from the
// data directory and keeps the log in the store's database.
type KTOptions struct {
	Keys    *KTKeys
	Storage translog.Storage
}

func (s *Server) initKT(o KTOptions) error {
	if o.Keys == nil {
		var err error
		if o.Keys, err = GenerateKTKeys(KTOrigin("")); err != nil {
			return err
		}
	}
	if o.Storage == nil {
		o.Storage = translog.NewMemStorage()
	}
	s.kt = newKTLog(o.Storage, o.Keys, s.store, s.now)
	return nil
}
