package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/store"
	"github.com/bastionchat/bastion/kt"
	"github.com/bastionchat/bastion/kt/vrf"
)

// ktView is what a test client knows of the log: its keys, from GET /v1/kt/keys.
type ktView struct {
	h        *harness
	verifier note.Verifier
	vrf      *vrf.PublicKey
}

func newKTView(h *harness) *ktView {
	h.t.Helper()
	r := h.do("GET", "/v1/kt/keys", nil, nil)
	h.want(r, 200, "", "GET /v1/kt/keys")
	keys := decodeBody[api.KTKeys](h.t, r)
	v, err := note.NewVerifier(keys.LogKey)
	if err != nil {
		h.t.Fatalf("note.NewVerifier(%q) = %v", keys.LogKey, err)
	}
	pk, err := vrf.NewPublicKey(keys.VRFKey)
	if err != nil {
		h.t.Fatalf("vrf.NewPublicKey() = %v", err)
	}
	return &ktView{h: h, verifier: v, vrf: pk}
}

func (v *ktView) checkpoint() kt.Checkpoint {
	v.h.t.Helper()
	r := v.h.do("GET", "/v1/kt/checkpoint", nil, nil)
	v.h.want(r, 200, "", "GET /v1/kt/checkpoint")
	cp, err := kt.VerifyCheckpoint(v.verifier, r.body)
	if err != nil {
		v.h.t.Fatalf("VerifyCheckpoint(%q) = %v", r.body, err)
	}
	return cp
}

func hashesIn(t testing.TB, bs [][]byte) []tlog.Hash {
	t.Helper()
	out := make([]tlog.Hash, len(bs))
	for i, b := range bs {
		if len(b) != tlog.HashSize {
			t.Fatalf("proof hash %d is %d bytes", i, len(b))
		}
		out[i] = tlog.Hash(b)
	}
	return out
}

// included checks entry's inclusion at index under cp, with a proof from the server.
func (v *ktView) included(cp kt.Checkpoint, index int64, entry []byte) error {
	v.h.t.Helper()
	r := v.h.do("GET", fmt.Sprintf("/v1/kt/inclusion?index=%d&size=%d", index, cp.Size), nil, nil)
	v.h.want(r, 200, "", "GET /v1/kt/inclusion")
	p := decodeBody[api.KTInclusionProof](v.h.t, r)
	return kt.VerifyInclusion(cp, index, entry, hashesIn(v.h.t, p.Proof))
}

func (v *ktView) consistent(old, new kt.Checkpoint) error {
	v.h.t.Helper()
	r := v.h.do("GET", fmt.Sprintf("/v1/kt/consistency?old=%d&new=%d", old.Size, new.Size), nil, nil)
	v.h.want(r, 200, "", "GET /v1/kt/consistency")
	p := decodeBody[api.KTConsistencyProof](v.h.t, r)
	return kt.VerifyConsistency(old, new, hashesIn(v.h.t, p.Proof))
}

// all returns every entry of the log under cp.
func (v *ktView) all(cp kt.Checkpoint) [][]byte {
	v.h.t.Helper()
	var out [][]byte
	for start := int64(0); start < cp.Size; {
		end := min(cp.Size, start+7) // small pages, to cross page boundaries
		r := v.h.do("GET", fmt.Sprintf("/v1/kt/entries?start=%d&end=%d", start, end), nil, nil)
		v.h.want(r, 200, "", "GET /v1/kt/entries")
		out = append(out, decodeBody[api.KTEntries](v.h.t, r).Entries...)
		start = end
	}
	return out
}

// bundleBinding fetches c's device's bundle as from and checks its KT binding: the entry
// binds this account, device and identity key, and is in the log under a fresh checkpoint.
func (v *ktView) bundleBinding(from, c *client, device uint32) (api.KTBinding, kt.DeviceBinding) {
	v.h.t.Helper()
	r := v.h.do("GET", fmt.Sprintf("/v1/keys/%s/%d", c.account, device), nil, from)
	v.h.want(r, 200, "", "bundle")
	b := decodeBody[api.BundleResponse](v.h.t, r)
	if len(b.Devices) != 1 || b.Devices[0].KT == nil {
		v.h.t.Fatalf("bundle = %s, want one device with a kt binding", r.body)
	}
	binding := *b.Devices[0].KT
	e, err := kt.ParseEntry(binding.Entry)
	if err != nil {
		v.h.t.Fatalf("ParseEntry(bundle's entry) = %v", err)
	}
	db, ok := e.(kt.DeviceBinding)
	if !ok || db.Account != c.account || db.Device != device || !bytes.Equal(db.IdentityKey[:], b.IdentityKey) || db.State == kt.StateRemoved {
		v.h.t.Fatalf("bundle's entry = %+v, want a live binding of %s.%d to the bundle's identity key", e, c.account, device)
	}
	if err := v.included(v.checkpoint(), binding.LogIndex, binding.Entry); err != nil {
		v.h.t.Fatalf("bundle's binding not included: %v", err)
	}
	return binding, db
}

func TestKTRegistrationIsLogged(t *testing.T) {
	h := newHarness(t, nil)
	v := newKTView(h)
	empty := v.checkpoint()
	if empty.Size != 0 {
		t.Fatalf("checkpoint of a new server has size %d, want 0", empty.Size)
	}

	alice := h.register("+14155550801", 1)
	bob := h.register("+14155550802", 1)
	cp1 := v.checkpoint()
	if cp1.Size != 4 { // per account: lookup added, device 1 added
		t.Fatalf("checkpoint size after two registrations = %d, want 4", cp1.Size)
	}
	if err := v.consistent(empty, cp1); err != nil {
		t.Errorf("consistency from the empty tree: %v", err)
	}

	// The directory answer proves the number's index and points at its binding.
	r := h.do("POST", "/v1/directory", api.LookupRequest{Number: "+14155550802"}, alice)
	h.want(r, 200, "", "lookup")
	lr := decodeBody[api.LookupResponse](t, r)
	if lr.KT == nil {
		t.Fatalf("lookup answer %s has no kt part", r.body)
	}
	index, err := kt.VerifyLookup(v.vrf, kt.KindPhoneNumber, "+14155550802", lr.KT.VRFProof)
	if err != nil {
		t.Fatalf("VerifyLookup() = %v", err)
	}
	e, err := kt.ParseEntry(lr.KT.Entry)
	if err != nil {
		t.Fatal(err)
	}
	if lb, ok := e.(kt.LookupBinding); !ok || lb.Index != index || lb.Account != bob.account || lb.State != kt.StateAdded {
		t.Errorf("lookup entry = %+v, want the VRF index bound to %s", e, bob.account)
	}
	if err := v.included(cp1, lr.KT.LogIndex, lr.KT.Entry); err != nil {
		t.Errorf("lookup binding not included: %v", err)
	}
	if _, err := kt.VerifyLookup(v.vrf, kt.KindPhoneNumber, "+14155550801", lr.KT.VRFProof); err == nil {
		t.Errorf("VerifyLookup(another number, the proof) = nil, want an error")
	}

	first, db := v.bundleBinding(alice, bob, 1)
	if db.State != kt.StateAdded || db.Sequence != 2 {
		t.Errorf("bob's device binding = %v seq %d, want added seq 2", db.State, db.Sequence)
	}

	// Re-registration replaces the key: the log says "changed", and the bundle now
	// points at the new entry.
	bob2 := h.register("+14155550802", 1)
	if bob2.account != bob.account {
		t.Fatalf("re-registration gave account %s, want %s", bob2.account, bob.account)
	}
	cp2 := v.checkpoint()
	if cp2.Size != cp1.Size+1 {
		t.Errorf("checkpoint size after re-registration = %d, want %d", cp2.Size, cp1.Size+1)
	}
	if err := v.consistent(cp1, cp2); err != nil {
		t.Errorf("consistency across re-registration: %v", err)
	}
	second, db := v.bundleBinding(alice, bob2, 1)
	if db.State != kt.StateChanged || db.Sequence != 3 || second.LogIndex == first.LogIndex {
		t.Errorf("after re-registration: binding %v seq %d at %d, want changed seq 3 at a new index", db.State, db.Sequence, second.LogIndex)
	}
	if !bytes.Equal(db.IdentityKey[:], bob2.ik.PublicKey().Bytes()) {
		t.Errorf("re-registered binding holds the old identity key")
	}

	// The account's bindings without a bundle: the same entry.
	r = h.do("GET", "/v1/kt/account/"+bob.account.String(), nil, alice)
	h.want(r, 200, "", "GET /v1/kt/account")
	ka := decodeBody[api.KTAccount](t, r)
	if len(ka.Devices) != 1 || ka.Devices[0].DeviceID != 1 || ka.Devices[0].LogIndex != second.LogIndex || !bytes.Equal(ka.Devices[0].Entry, second.Entry) {
		t.Errorf("GET /v1/kt/account = %s, want device 1 at %d", r.body, second.LogIndex)
	}
	h.want(h.do("GET", "/v1/kt/account/"+bob.account.String(), nil, nil), 401, "", "GET /v1/kt/account without credentials")
	h.want(h.do("GET", "/v1/kt/account/"+uuid.NewString(), nil, alice), 404, "", "GET /v1/kt/account of no account")
}

// TestKTDevices drives the store's device changes (no endpoint adds devices yet) and the
// sync that must follow each, down to deleting the account.
func TestKTDevices(t *testing.T) {
	h := newHarness(t, nil)
	v := newKTView(h)
	ctx := context.Background()
	alice := h.register("+14155550811", 1)
	bob := h.register("+14155550812", 1)

	d2, err := h.st.AddDevice(ctx, bob.account, store.Device{RegistrationID: 77, CredentialHash: make([]byte, 32), CreatedAt: h.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.kt.syncAccount(ctx, bob.account); err != nil {
		t.Fatal(err)
	}
	// Before its keys are uploaded the device has no bundle, but its binding is logged.
	k := keys(t, bob.ik, 100, 1)
	up := store.KeyUpload{
		SignedPreKey:    &store.SignedPreKey{ID: k.SignedPreKey.KeyID, PublicKey: k.SignedPreKey.PublicKey, Signature: k.SignedPreKey.Signature},
		LastResortKyber: &store.SignedPreKey{ID: k.KyberLastResort.KeyID, PublicKey: k.KyberLastResort.PublicKey, Signature: k.KyberLastResort.Signature},
	}
	if err := h.st.SetKeys(ctx, bob.account, d2.ID, up); err != nil {
		t.Fatal(err)
	}
	_, db := v.bundleBinding(alice, bob, d2.ID)
	if db.State != kt.StateAdded || db.Sequence != 3 {
		t.Errorf("new device's binding = %v seq %d, want added seq 3", db.State, db.Sequence)
	}

	if err := h.st.RemoveDevice(ctx, bob.account, d2.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.kt.syncAccount(ctx, bob.account); err != nil {
		t.Fatal(err)
	}
	if err := h.st.DeleteAccount(ctx, bob.account); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.kt.syncAccount(ctx, bob.account); err != nil {
		t.Fatal(err)
	}
	// A sync with nothing to change appends nothing.
	before := v.checkpoint()
	if err := h.srv.kt.syncAccount(ctx, bob.account); err != nil {
		t.Fatal(err)
	}
	cp := v.checkpoint()
	if cp.Size != before.Size {
		t.Errorf("a sync with nothing to change moved the log from %d to %d", before.Size, cp.Size)
	}

	// Bob's entries, in order, as his own monitor would read them.
	var got []string
	for _, b := range v.all(cp) {
		e, err := kt.ParseEntry(b)
		if err != nil {
			t.Fatal(err)
		}
		if e.AccountID() != bob.account {
			continue
		}
		switch e := e.(type) {
		case kt.DeviceBinding:
			got = append(got, fmt.Sprintf("%d device %d %v", e.Sequence, e.Device, e.State))
		case kt.LookupBinding:
			got = append(got, fmt.Sprintf("%d lookup %v", e.Sequence, e.State))
		}
	}
	want := []string{
		"1 lookup added", "2 device 1 added", "3 device 2 added", "4 device 2 removed",
		"5 lookup removed", "6 device 1 removed",
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("bob's log entries =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestKTLogBehindStore: a binding the store has but the log lacks (a crash between the
// two) is appended the first time a bundle or lookup needs it, never served unlogged.
func TestKTLogBehindStore(t *testing.T) {
	h := newHarness(t, nil)
	v := newKTView(h)
	alice := h.register("+14155550821", 1)
	ctx := context.Background()
	ik := newIdentity(t)
	bob, _, err := h.st.Register(ctx, "+14155550822", ik.PublicKey().Bytes(), store.Device{ID: 1, RegistrationID: 5, CredentialHash: make([]byte, 32), CreatedAt: h.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	h.secret("+14155550822")
	k := keys(t, ik, 1, 0)
	if err := h.st.SetKeys(ctx, bob.ID, 1, store.KeyUpload{
		SignedPreKey:    &store.SignedPreKey{ID: 1, PublicKey: k.SignedPreKey.PublicKey, Signature: k.SignedPreKey.Signature},
		LastResortKyber: &store.SignedPreKey{ID: 1, PublicKey: k.KyberLastResort.PublicKey, Signature: k.KyberLastResort.Signature},
	}); err != nil {
		t.Fatal(err)
	}
	if n := v.checkpoint().Size; n != 2 {
		t.Fatalf("log size = %d, want 2 (alice only)", n)
	}
	_, db := v.bundleBinding(alice, &client{account: bob.ID}, 1)
	if db.Sequence != 2 {
		t.Errorf("late binding sequence = %d, want 2 (after the lookup binding)", db.Sequence)
	}
	r := h.do("POST", "/v1/directory", api.LookupRequest{Number: "+14155550822"}, alice)
	h.want(r, 200, "", "lookup")
	if lr := decodeBody[api.LookupResponse](t, r); lr.KT == nil {
		t.Errorf("lookup answer has no kt part")
	}
}

// TestKTNoPhoneNumberInLog reads the whole log, entries and tiles, and searches it for
// every registered number in every form we could think of.
func TestKTNoPhoneNumberInLog(t *testing.T) {
	h := newHarness(t, nil)
	v := newKTView(h)
	numbers := []string{"+14155550831", "+447911123456", "+4915112345678", "+33612345678"}
	for _, n := range numbers {
		h.register(n, 0)
	}
	h.register(numbers[0], 0) // and a re-registration
	cp := v.checkpoint()
	var whole bytes.Buffer
	for _, e := range v.all(cp) {
		whole.Write(e)
	}
	// The data tile and the level-0 hash tile, as an auditor mirroring tiles reads them.
	for _, path := range []string{fmt.Sprintf("8/data/000.p/%d", cp.Size), fmt.Sprintf("8/0/000.p/%d", cp.Size)} {
		r := h.do("GET", "/v1/kt/tile/"+path, nil, nil)
		h.want(r, 200, "", "GET tile "+path)
		whole.Write(r.body)
	}
	log := whole.Bytes()
	for _, n := range numbers {
		digits := strings.TrimPrefix(n, "+")
		num, _ := strconv.ParseUint(digits, 10, 64)
		forms := map[string][]byte{
			"E.164":            []byte(n),
			"digits":           []byte(digits),
			"last 9 digits":    []byte(digits[len(digits)-9:]),
			"uint64":           binary.BigEndian.AppendUint64(nil, num),
			"uint64 LE":        binary.LittleEndian.AppendUint64(nil, num),
			"UTF-16":           utf16(n),
			"base64":           []byte(base64.StdEncoding.EncodeToString([]byte(n))),
			"hex":              []byte(hex.EncodeToString([]byte(n))),
			"SHA-256(E.164)":   sha(n),
			"SHA-256(digits)":  sha(digits),
			"SHA-256 hex":      []byte(hex.EncodeToString(sha(n))),
			"BCD (E.164 TBCD)": tbcd(digits),
		}
		for form, b := range forms {
			if bytes.Contains(log, b) {
				t.Errorf("the log contains %s as %s", n, form)
			}
		}
	}
	// And the tiles are what they claim: the data tile is the entries, the hash tile
	// their record hashes.
	r := h.do("GET", fmt.Sprintf("/v1/kt/tile/8/0/000.p/%d", cp.Size), nil, nil)
	var want []byte
	for _, e := range v.all(cp) {
		rh := tlog.RecordHash(e)
		want = append(want, rh[:]...)
	}
	if !bytes.Equal(r.body, want) {
		t.Errorf("hash tile 8/0/000.p/%d is not the entries' record hashes", cp.Size)
	}
}

func sha(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func utf16(s string) []byte {
	var b []byte
	for _, c := range s {
		b = append(b, 0, byte(c))
	}
	return b
}

// tbcd packs digits two to a byte, low nibble first, as GSM does.
func tbcd(digits string) []byte {
	var b []byte
	for i := 0; i < len(digits); i += 2 {
		lo := digits[i] - '0'
		hi := byte(0xf)
		if i+1 < len(digits) {
			hi = digits[i+1] - '0'
		}
		b = append(b, hi<<4|lo)
	}
	return b
}

func TestKTEndpointErrors(t *testing.T) {
	h := newHarness(t, nil)
	h.register("+14155550841", 0)
	tests := []struct {
		path   string
		status int
	}{
		{"/v1/kt/inclusion?index=0&size=3", 404},
		{"/v1/kt/inclusion?index=2&size=2", 400},
		{"/v1/kt/inclusion?index=-1&size=2", 400},
		{"/v1/kt/inclusion?size=2", 400},
		{"/v1/kt/consistency?old=2&new=1", 400},
		{"/v1/kt/consistency?old=1&new=9", 404},
		{"/v1/kt/consistency?old=0&new=2", 200},
		{"/v1/kt/entries?start=0&end=0", 400},
		{"/v1/kt/entries?start=0&end=5000", 400},
		{"/v1/kt/entries?start=1&end=3", 404},
		{"/v1/kt/entries?start=1&end=2", 200},
		{"/v1/kt/tile/8/0/000.p/3", 404},
		{"/v1/kt/tile/8/data/000.p/3", 404},
		{"/v1/kt/tile/8/data/000.p/2", 200},
		{"/v1/kt/tile/nonsense", 400},
	}
	for _, tt := range tests {
		r := h.do("GET", tt.path, nil, nil)
		if r.status != tt.status {
			t.Errorf("GET %s = %d %s, want %d", tt.path, r.status, r.body, tt.status)
		}
		if tt.status == 200 && !strings.Contains(r.header.Get("Cache-Control"), "immutable") {
			t.Errorf("GET %s Cache-Control = %q, want immutable", tt.path, r.header.Get("Cache-Control"))
		}
	}
}

func TestLoadKTKeys(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadKTKeys(dir, KTOrigin("chat.example"))
	if err != nil {
		t.Fatalf("LoadKTKeys(new dir) = %v", err)
	}
	if !strings.HasPrefix(k1.VerifierKey(), "chat.example/kt+") {
		t.Errorf("VerifierKey() = %q, want the origin chat.example/kt", k1.VerifierKey())
	}
	for _, name := range []string{ktLogKeyFile, ktVRFKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", name, fi.Mode().Perm())
		}
	}
	k2, err := LoadKTKeys(dir, KTOrigin("other.example"))
	if err != nil {
		t.Fatalf("LoadKTKeys(again) = %v", err)
	}
	if k2.VerifierKey() != k1.VerifierKey() || !k2.VRFPublicKey().Equal(k1.VRFPublicKey()) {
		t.Errorf("LoadKTKeys(again) returned different keys")
	}
	if err := os.Chmod(filepath.Join(dir, ktVRFKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKTKeys(dir, ""); err == nil {
		t.Errorf("LoadKTKeys with a world-readable VRF key = nil, want an error")
	}
	other := t.TempDir()
	if _, err := LoadKTKeys(other, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(other, ktLogPubFile)); err != nil {
		t.Fatal(err)
	}
	pub, _ := os.ReadFile(filepath.Join(dir, ktLogPubFile))
	os.WriteFile(filepath.Join(other, ktLogPubFile), pub, 0o644)
	if _, err := LoadKTKeys(other, ""); err == nil {
		t.Errorf("LoadKTKeys with another log's public key = nil, want an error")
	}
	for _, host := range []string{"", "a b", "x+y"} {
		if got := KTOrigin(host); got != "bastion.invalid/kt" {
			t.Errorf("KTOrigin(%q) = %q, want bastion.invalid/kt", host, got)
		}
	}
}

// TestKTTwoNodes runs two ktLogs on one storage, as two nodes on one database: each
// catches up with what the other appended before it appends or answers.
func TestKTTwoNodes(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	alice := h.register("+14155550851", 0)
	other := newKTLog(h.srv.kt.storage, h.srv.kt.keys, h.st, h.clock.Now)
	d2, err := h.st.AddDevice(ctx, alice.account, store.Device{RegistrationID: 9, CredentialHash: make([]byte, 32), CreatedAt: h.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.syncAccount(ctx, alice.account); err != nil {
		t.Fatal(err)
	}
	b, err := h.srv.kt.deviceBinding(ctx, alice.account, d2.ID, alice.ik.PublicKey().Bytes())
	if err != nil || b == nil {
		t.Fatalf("first node's deviceBinding(device %d) = %v, %v; want the other node's entry", d2.ID, b, err)
	}
	if b.LogIndex != 2 {
		t.Errorf("device %d binding at %d, want 2 (the other node's append, not a second one)", d2.ID, b.LogIndex)
	}
	tree, _ := h.srv.kt.log.Tree(ctx)
	if tree.N != 3 {
		t.Errorf("log size = %d, want 3", tree.N)
	}
}
