// Package storetest is the conformance suite for [store.Store] backends: every backend
// runs [Run] in its tests, and passing it is what "implements the store contract" means.
//
// It checks the promises the server relies on: re-registration keeps the account id and
// replaces everything else; a one-time prekey is handed out at most once, also to many
// concurrent takers; Enqueue is idempotent per (account, device, envelope id), orders a
// queue by Seq and stores nothing of a call that names an unknown device; acknowledged
// and expired envelopes are gone; registration sessions and the connection log behave.
//
// What it cannot check from outside: durability across a crash. Each backend tests that
// itself (the sqlite backend kills a child process mid-write). Times in the suite have
// microsecond precision, the finest both backends keep.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bastionchat/bastion/internal/store"
	"github.com/google/uuid"
)

// Run runs the conformance suite. open returns a new, empty store for one subtest; Run
// closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Register", testRegister},
		{"ReRegister", testReRegister},
		{"RegisterConcurrent", testRegisterConcurrent},
		{"UnknownAccount", testUnknownAccount},
		{"Devices", testDevices},
		{"DeleteAccount", testDeleteAccount},
		{"SetKeys", testSetKeys},
		{"TakeBundle", testTakeBundle},
		{"TakeBundleNoPreKeys", testTakeBundleNoPreKeys},
		{"TakeBundleConcurrent", testTakeBundleConcurrent},
		{"EnqueueOrder", testEnqueueOrder},
		{"EnqueueIdempotent", testEnqueueIdempotent},
		{"EnqueueUnknownDevice", testEnqueueUnknownDevice},
		{"EnqueueConcurrent", testEnqueueConcurrent},
		{"PendingPaging", testPendingPaging},
		{"Ack", testAck},
		{"ExpireBefore", testExpireBefore},
		{"Verifications", testVerifications},
		{"ConnLog", testConnLog},
		{"RateLimits", testRateLimits}, {"RateLimitsConcurrent", testRateLimitsConcurrent},
		{"Markets", testMarkets},
		{"Channels", testChannels}, {"ChannelAppendConcurrent", testChannelAppendConcurrent},
		{"ChannelCounters", testChannelCounters}, {"ChannelNotices", testChannelNotices},
		{"ChannelReports", testChannelReports},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close() = %v, want nil", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// now is a time with the precision every backend keeps.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

var numbers atomic.Int64

// newNumber returns a phone number no other test in this process uses.
func newNumber() string { return fmt.Sprintf("+1415555%04d", numbers.Add(1)%10000) }

func newDevice() store.Device {
	return store.Device{ID: 1, RegistrationID: 1 + uint32(randBytes(1)[0]), CredentialHash: randBytes(32)}
}

func identityKey() []byte { return append([]byte{0x05}, randBytes(32)...) }

func register(t *testing.T, s store.Store) (store.Account, store.Device) {
	t.Helper()
	dev := newDevice()
	acct, replaced, err := s.Register(context.Background(), newNumber(), identityKey(), dev)
	if err != nil || replaced {
		t.Fatalf("Register() = %v, replaced %v; want nil, false", err, replaced)
	}
	dev.AccountID = acct.ID
	return acct, dev
}

func ecKey(id uint32) store.PreKey {
	return store.PreKey{ID: id, PublicKey: append([]byte{0x05}, randBytes(32)...)}
}

func signedKey(id uint32) store.SignedPreKey {
	return store.SignedPreKey{ID: id, PublicKey: append([]byte{0x05}, randBytes(32)...), Signature: randBytes(64)}
}

func kyberKey(id uint32) store.SignedPreKey {
	return store.SignedPreKey{ID: id, PublicKey: append([]byte{0x08}, randBytes(1568)...), Signature: randBytes(64)}
}

// fullKeys is an upload with every kind of key: ec one-time ids 1..ec, Kyber one-time
// ids 1..kyber.
func fullKeys(ec, kyber int) store.KeyUpload {
	sp, lr := signedKey(7), kyberKey(1000)
	k := store.KeyUpload{SignedPreKey: &sp, LastResortKyber: &lr}
	for i := 1; i <= ec; i++ {
		k.PreKeys = append(k.PreKeys, ecKey(uint32(i)))
	}
	for i := 1; i <= kyber; i++ {
		k.KyberPreKeys = append(k.KyberPreKeys, kyberKey(uint32(i)))
	}
	return k
}

func envelope(acct uuid.UUID, dev uint32, at time.Time) *store.Envelope {
	return &store.Envelope{ID: uuid.New(), Account: acct, Device: dev, ServerTime: at, Body: randBytes(64)}
}

func equalDevice(a, b store.Device) bool {
	return a.AccountID == b.AccountID && a.ID == b.ID && a.RegistrationID == b.RegistrationID &&
		bytes.Equal(a.CredentialHash, b.CredentialHash)
}

func equalAccount(a, b store.Account) bool {
	return a.ID == b.ID && a.Number == b.Number && bytes.Equal(a.IdentityKey, b.IdentityKey) && a.CreatedAt.Equal(b.CreatedAt)
}

func equalEnvelope(a, b store.Envelope) bool {
	return a.ID == b.ID && a.Seq == b.Seq && a.Account == b.Account && a.Device == b.Device &&
		a.ServerTime.Equal(b.ServerTime) && bytes.Equal(a.Body, b.Body)
}

func equalSigned(a, b store.SignedPreKey) bool {
	return a.ID == b.ID && bytes.Equal(a.PublicKey, b.PublicKey) && bytes.Equal(a.Signature, b.Signature)
}

func pendingAll(t *testing.T, s store.Store, acct uuid.UUID, dev uint32) []store.Envelope {
	t.Helper()
	envs, err := s.Pending(context.Background(), acct, dev, 0, 1<<20)
	if err != nil {
		t.Fatalf("Pending() = %v", err)
	}
	return envs
}

func counts(t *testing.T, s store.Store, acct uuid.UUID, dev uint32) (int, int) {
	t.Helper()
	ec, ky, err := s.PreKeyCounts(context.Background(), acct, dev)
	if err != nil {
		t.Fatalf("PreKeyCounts() = %v", err)
	}
	return ec, ky
}

func testRegister(t *testing.T, s store.Store) {
	ctx := context.Background()
	number, ik, dev := newNumber(), identityKey(), newDevice()
	before := now().Add(-time.Second)
	acct, replaced, err := s.Register(ctx, number, ik, dev)
	if err != nil || replaced {
		t.Fatalf("Register() = %v, replaced %v; want nil, false", err, replaced)
	}
	if acct.ID == uuid.Nil || acct.Number != number || !bytes.Equal(acct.IdentityKey, ik) {
		t.Errorf("Register() = %+v, want a new id, number %s and the identity key", acct, number)
	}
	if acct.CreatedAt.Before(before) {
		t.Errorf("Register().CreatedAt = %v, want about now", acct.CreatedAt)
	}
	for _, get := range []struct {
		name string
		fn   func() (store.Account, error)
	}{
		{"Account", func() (store.Account, error) { return s.Account(ctx, acct.ID) }},
		{"AccountByNumber", func() (store.Account, error) { return s.AccountByNumber(ctx, number) }},
	} {
		got, err := get.fn()
		if err != nil || !equalAccount(got, acct) {
			t.Errorf("%s() = %+v, %v; want %+v", get.name, got, err, acct)
		}
	}
	dev.AccountID = acct.ID
	devs, err := s.Devices(ctx, acct.ID)
	if err != nil || len(devs) != 1 || !equalDevice(devs[0], dev) {
		t.Errorf("Devices() = %+v, %v; want [%+v]", devs, err, dev)
	}
	if got, err := s.Device(ctx, acct.ID, 1); err != nil || !equalDevice(got, dev) {
		t.Errorf("Device(1) = %+v, %v; want %+v", got, err, dev)
	}

	bad := newDevice()
	bad.ID = 2
	if _, _, err := s.Register(ctx, newNumber(), identityKey(), bad); err == nil {
		t.Errorf("Register(primary id 2) = nil, want an error")
	}
}

func testReRegister(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct, _ := register(t, s)
	if _, err := s.AddDevice(ctx, acct.ID, store.Device{RegistrationID: 9, CredentialHash: randBytes(32)}); err != nil {
		t.Fatalf("AddDevice() = %v", err)
	}
	for _, dev := range []uint32{1, 2} {
		if err := s.SetKeys(ctx, acct.ID, dev, fullKeys(3, 3)); err != nil {
			t.Fatalf("SetKeys(%d) = %v", dev, err)
		}
		if err := s.Enqueue(ctx, []*store.Envelope{envelope(acct.ID, dev, now())}); err != nil {
			t.Fatalf("Enqueue(%d) = %v", dev, err)
		}
	}

	ik, dev := identityKey(), newDevice()
	again, replaced, err := s.Register(ctx, acct.Number, ik, dev)
	if err != nil || !replaced {
		t.Fatalf("Register(same number) = %v, replaced %v; want nil, true", err, replaced)
	}
	if again.ID != acct.ID || !bytes.Equal(again.IdentityKey, ik) {
		t.Errorf("Register(same number) = id %v key %x, want id %v (kept) and the new key", again.ID, again.IdentityKey, acct.ID)
	}
	if got, err := s.Account(ctx, acct.ID); err != nil || !bytes.Equal(got.IdentityKey, ik) {
		t.Errorf("Account() after re-registration = %+v, %v; want the new identity key", got, err)
	}
	dev.AccountID = acct.ID
	devs, err := s.Devices(ctx, acct.ID)
	if err != nil || len(devs) != 1 || !equalDevice(devs[0], dev) {
		t.Errorf("Devices() after re-registration = %+v, %v; want only the new primary %+v", devs, err, dev)
	}
	if _, err := s.Device(ctx, acct.ID, 2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Device(2) after re-registration = %v, want ErrNotFound", err)
	}
	if ec, ky := counts(t, s, acct.ID, 1); ec != 0 || ky != 0 {
		t.Errorf("PreKeyCounts() after re-registration = %d, %d; want 0, 0", ec, ky)
	}
	if _, err := s.TakeBundle(ctx, acct.ID, 1); !errors.Is(err, store.ErrNoPreKeys) {
		t.Errorf("TakeBundle() after re-registration = %v, want ErrNoPreKeys (old keys gone)", err)
	}
	for _, d := range []uint32{1, 2} {
		if envs := pendingAll(t, s, acct.ID, d); len(envs) != 0 {
			t.Errorf("Pending(%d) after re-registration = %d envelopes, want 0", d, len(envs))
		}
	}
}

// testRegisterConcurrent registers one number from many callers at once, and adds
// devices concurrently: one account, one creation, distinct device ids.
func testRegisterConcurrent(t *testing.T, s store.Store) {
	const callers = 8
	ctx := context.Background()
	number := newNumber()
	var (
		mu      sync.Mutex
		ids     = map[uuid.UUID]bool{}
		created int
		wg      sync.WaitGroup
	)
	for range callers {
		wg.Go(func() {
			acct, replaced, err := s.Register(ctx, number, identityKey(), newDevice())
			if err != nil {
				t.Errorf("Register() = %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			ids[acct.ID] = true
			if !replaced {
				created++
			}
		})
	}
	wg.Wait()
	if len(ids) != 1 || created != 1 {
		t.Fatalf("%d concurrent Register(same number) = %d account ids, %d creations; want 1 and 1", callers, len(ids), created)
	}
	var acct uuid.UUID
	for id := range ids {
		acct = id
	}
	devIDs := make(chan uint32, callers)
	for range callers {
		wg.Go(func() {
			d, err := s.AddDevice(ctx, acct, store.Device{RegistrationID: 3, CredentialHash: randBytes(32)})
			if err != nil {
				t.Errorf("AddDevice() = %v", err)
				return
			}
			devIDs <- d.ID
		})
	}
	wg.Wait()
	close(devIDs)
	seen := map[uint32]bool{1: true}
	for id := range devIDs {
		if seen[id] {
			t.Errorf("concurrent AddDevice() handed out device id %d twice", id)
		}
		seen[id] = true
	}
	if devs, err := s.Devices(ctx, acct); err != nil || len(devs) != callers+1 {
		t.Errorf("Devices() after concurrent adds = %d, %v; want %d", len(devs), err, callers+1)
	}
}

func testUnknownAccount(t *testing.T, s store.Store) {
	ctx := context.Background()
	id := uuid.New()
	if _, err := s.Account(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Account(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.AccountByNumber(ctx, newNumber()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AccountByNumber(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.Devices(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Devices(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.Device(ctx, id, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Device(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.AddDevice(ctx, id, newDevice()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AddDevice(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.DeleteAccount(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteAccount(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.SetKeys(ctx, id, 1, fullKeys(1, 1)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetKeys(unknown) = %v, want ErrNotFound", err)
	}
	if _, _, err := s.PreKeyCounts(ctx, id, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PreKeyCounts(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.TakeBundle(ctx, id, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TakeBundle(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.RecordConnection(ctx, id, netip.MustParseAddr("192.0.2.1"), now()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RecordConnection(unknown) = %v, want ErrNotFound", err)
	}
}

func testDevices(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct, primary := register(t, s)
	var added []store.Device
	for i := range 2 {
		d := store.Device{RegistrationID: uint32(100 + i), CredentialHash: randBytes(32)}
		got, err := s.AddDevice(ctx, acct.ID, d)
		if want := uint32(2 + i); err != nil || got.ID != want || got.AccountID != acct.ID {
			t.Fatalf("AddDevice() = %+v, %v; want id %d", got, err, want)
		}
		added = append(added, got)
	}
	devs, err := s.Devices(ctx, acct.ID)
	want := []store.Device{primary, added[0], added[1]}
	if err != nil || !slices.EqualFunc(devs, want, equalDevice) {
		t.Errorf("Devices() = %+v, %v; want %+v", devs, err, want)
	}
	if got, err := s.Device(ctx, acct.ID, 3); err != nil || !equalDevice(got, added[1]) {
		t.Errorf("Device(3) = %+v, %v; want %+v", got, err, added[1])
	}

	// Removing a device takes its keys and queue with it.
	if err := s.SetKeys(ctx, acct.ID, 2, fullKeys(2, 2)); err != nil {
		t.Fatalf("SetKeys(2) = %v", err)
	}
	if err := s.Enqueue(ctx, []*store.Envelope{envelope(acct.ID, 2, now())}); err != nil {
		t.Fatalf("Enqueue(2) = %v", err)
	}
	if err := s.RemoveDevice(ctx, acct.ID, 2); err != nil {
		t.Fatalf("RemoveDevice(2) = %v", err)
	}
	if _, err := s.Device(ctx, acct.ID, 2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Device(2) after removal = %v, want ErrNotFound", err)
	}
	if err := s.RemoveDevice(ctx, acct.ID, 2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RemoveDevice(2) twice = %v, want ErrNotFound", err)
	}
	if envs := pendingAll(t, s, acct.ID, 2); len(envs) != 0 {
		t.Errorf("Pending(removed device) = %d envelopes, want 0", len(envs))
	}
	if _, err := s.TakeBundle(ctx, acct.ID, 2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TakeBundle(removed device) = %v, want ErrNotFound", err)
	}
	if err := s.Enqueue(ctx, []*store.Envelope{envelope(acct.ID, 2, now())}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Enqueue(removed device) = %v, want ErrNotFound", err)
	}
	if err := s.RemoveDevice(ctx, acct.ID, 1); err == nil {
		t.Errorf("RemoveDevice(primary) = nil, want an error")
	}
	if devs, err := s.Devices(ctx, acct.ID); err != nil || len(devs) != 2 {
		t.Errorf("Devices() after removals = %+v, %v; want devices 1 and 3", devs, err)
	}
	// A new device gets an id not in use.
	got, err := s.AddDevice(ctx, acct.ID, store.Device{RegistrationID: 5, CredentialHash: randBytes(32)})
	if err != nil || got.ID == 1 || got.ID == 3 || got.ID == 0 || got.ID > 127 {
		t.Errorf("AddDevice() = %+v, %v; want a free id in 2..127", got, err)
	}
}

func testDeleteAccount(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct, _ := register(t, s)
	if err := s.SetKeys(ctx, acct.ID, 1, fullKeys(2, 2)); err != nil {
		t.Fatalf("SetKeys() = %v", err)
	}
	if err := s.Enqueue(ctx, []*store.Envelope{envelope(acct.ID, 1, now())}); err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	if err := s.DeleteAccount(ctx, acct.ID); err != nil {
		t.Fatalf("DeleteAccount() = %v", err)
	}
	if _, err := s.Account(ctx, acct.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Account() after delete = %v, want ErrNotFound", err)
	}
	if _, err := s.AccountByNumber(ctx, acct.Number); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AccountByNumber() after delete = %v, want ErrNotFound", err)
	}
	if _, err := s.Device(ctx, acct.ID, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Device() after delete = %v, want ErrNotFound", err)
	}
	if envs := pendingAll(t, s, acct.ID, 1); len(envs) != 0 {
		t.Errorf("Pending() after delete = %d envelopes, want 0", len(envs))
	}
	// The number is free again, for a new account.
	again, replaced, err := s.Register(ctx, acct.Number, identityKey(), newDevice())
	if err != nil || replaced || again.ID == acct.ID {
		t.Errorf("Register(deleted number) = id %v, replaced %v, %v; want a new id, false, nil", again.ID, replaced, err)
	}
}

func testSetKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct, _ := register(t, s)
	if err := s.SetKeys(ctx, acct.ID, 2, fullKeys(1, 1)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetKeys(unknown device) = %v, want ErrNotFound", err)
	}
	if ec, ky := counts(t, s, acct.ID, 1); ec != 0 || ky != 0 {
		t.Errorf("PreKeyCounts() before upload = %d, %d; want 0, 0", ec, ky)
	}
	up := fullKeys(3, 2)
	if err := s.SetKeys(ctx, acct.ID, 1, up); err != nil {
		t.Fatalf("SetKeys() = %v", err)
	}
	if ec, ky := counts(t, s, acct.ID, 1); ec != 3 || ky != 2 {
		t.Errorf("PreKeyCounts() = %d, %d; want 3, 2", ec, ky)
	}
	// One-time keys are appended; an id already stored is replaced, not duplicated.
	more := store.KeyUpload{
		PreKeys:      []store.PreKey{ecKey(3), ecKey(4)},
		KyberPreKeys: []store.SignedPreKey{kyberKey(2), kyberKey(3), kyberKey(4)},
	}
	if err := s.SetKeys(ctx, acct.ID, 1, more); err != nil {
		t.Fatalf("SetKeys(more) = %v", err)
	}
	if ec, ky := counts(t, s, acct.ID, 1); ec != 4 || ky != 4 {
		t.Errorf("PreKeyCounts() after second upload = %d, %d; want 4, 4", ec, ky)
	}
	// Nil fields left the signed prekey alone.
	b, err := s.TakeBundle(ctx, acct.ID, 1)
	if err != nil || !equalSigned(b.SignedPreKey, *up.SignedPreKey) {
		t.Errorf("TakeBundle().SignedPreKey = %+v, %v; want the first upload's", b.SignedPreKey, err)
	}
	// A new signed prekey and last-resort key replace the old ones.
	sp, lr := signedKey(8), kyberKey(1001)
	if err := s.SetKeys(ctx, acct.ID, 1, store.KeyUpload{SignedPreKey: &sp, LastResortKyber: &lr}); err != nil {
		t.Fatalf("SetKeys(signed) = %v", err)
	}
	b, err = s.TakeBundle(ctx, acct.ID, 1)
	if err != nil || !equalSigned(b.SignedPreKey, sp) {
		t.Errorf("TakeBundle().SignedPreKey = %+v, %v; want the replacement %+v", b.SignedPreKey, err, sp)
	}
	for range 10 { // use up the one-time Kyber keys
		if b, err = s.TakeBundle(ctx, acct.ID, 1); err != nil {
			t.Fatalf("TakeBundle() = %v", err)
		}
	}
	if !b.KyberLastResort || !equalSigned(b.KyberPreKey, lr) {
		t.Errorf("TakeBundle() when out of Kyber keys = %+v (last resort %v), want the replacement last-resort key", b.KyberPreKey, b.KyberLastResort)
	}
}

func testTakeBundle(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct, dev := register(t, s)
	up := fullKeys(2, 3)
	if err := s.SetKeys(ctx, acct.ID, 1, up); err != nil {
		t.Fatalf("SetKeys() = %v", err)
	}
	ecByID := map[uint32][]byte{}
	for _, k := range up.PreKeys {
		ecByID[k.ID] = k.PublicKey
	}
	kyByID := map[uint32]store.SignedPreKey{}
	for _, k := range up.KyberPreKeys {
		kyByID[k.ID] = k
	}
	seenEC, seenKy := map[uint32]bool{}, map[uint32]bool{}
	for i := range 5 {
		b, err := s.TakeBundle(ctx, acct.ID, 1)
		if err != nil {
			t.Fatalf("TakeBundle() #%d = %v", i, err)
		}
		if b.DeviceID != 1 || b.RegistrationID != dev.RegistrationID || !bytes.Equal(b.IdentityKey, acct.IdentityKey) ||
			!equalSigned(b.SignedPreKey, *up.SignedPreKey) {
			t.Errorf("TakeBundle() #%d = %+v, want device 1, its registration id, identity key and signed prekey", i, b)
		}
		switch {
		case i < 2:
			if b.PreKey == nil || !bytes.Equal(b.PreKey.PublicKey, ecByID[b.PreKey.ID]) || seenEC[b.PreKey.ID] {
				t.Errorf("TakeBundle() #%d PreKey = %s, want an uploaded one-time key not handed out before", i, preKeyID(b.PreKey))
			} else {
				seenEC[b.PreKey.ID] = true
			}
		default:
			if b.PreKey != nil {
				t.Errorf("TakeBundle() #%d PreKey = %s, want nil (all used)", i, preKeyID(b.PreKey))
			}
		}
		switch {
		case i < 3:
			if b.KyberLastResort || !equalSigned(b.KyberPreKey, kyByID[b.KyberPreKey.ID]) || seenKy[b.KyberPreKey.ID] {
				t.Errorf("TakeBundle() #%d Kyber = id %d last resort %v, want an uploaded one-time key not handed out before", i, b.KyberPreKey.ID, b.KyberLastResort)
			} else {
				seenKy[b.KyberPreKey.ID] = true
			}
		default:
			if !b.KyberLastResort || !equalSigned(b.KyberPreKey, *up.LastResortKyber) {
				t.Errorf("TakeBundle() #%d Kyber = id %d last resort %v, want the last-resort key", i, b.KyberPreKey.ID, b.KyberLastResort)
			}
		}
		wantEC, wantKy := max(0, 2-(i+1)), max(0, 3-(i+1))
		if ec, ky := counts(t, s, acct.ID, 1); ec != wantEC || ky != wantKy {
			t.Errorf("PreKeyCounts() after %d bundles = %d, %d; want %d, %d", i+1, ec, ky, wantEC, wantKy)
		}
	}
	if _, err := s.TakeBundle(ctx, acct.ID, 9); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TakeBundle(unknown device) = %v, want ErrNotFound", err)
	}
}

func preKeyID(p *store.PreKey) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprintf("id %d", p.ID)
}

func testTakeBundleNoPreKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	sp, ky := signedKey(1), kyberKey(1)
	tests := []struct {
		name string
		up   store.KeyUpload
	}{
		{"nothing", store.KeyUpload{}},
		{"only one-time EC", store.KeyUpload{PreKeys: []store.PreKey{ecKey(1)}}},
		{"no signed prekey", store.KeyUpload{LastResortKyber: &ky, KyberPreKeys: []store.SignedPreKey{kyberKey(2)}, PreKeys: []store.PreKey{ecKey(1)}}},
		{"no Kyber key", store.KeyUpload{SignedPreKey: &sp, PreKeys: []store.PreKey{ecKey(1)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			acct, _ := register(t, s)
			if err := s.SetKeys(ctx, acct.ID, 1, tc.up); err != nil {
				t.Fatalf("SetKeys() = %v", err)
			}
			ec0, ky0 := counts(t, s, acct.ID, 1)
			if _, err := s.TakeBundle(ctx, acct.ID, 1); !errors.Is(err, store.ErrNoPreKeys) {
				t.Errorf("TakeBundle() = %v, want ErrNoPreKeys", err)
			}
			if ec, ky := counts(t, s, acct.ID, 1); ec != ec0 || ky != ky0 {
				t.Errorf("PreKeyCounts() after a failed TakeBundle = %d, %d; want %d, %d (nothing consumed)", ec, ky, ec0, ky0)
			}
		})
	}
}

// testTakeBundleConcurrent has 32 takers race for fewer one-time keys than bundles.
func testTakeBundleConcurrent(t *testing.T, s store.Store) {
	const takers, each, ecKeys, kyKeys = 32, 3, 64, 48
	ctx := context.Background()
	acct, _ := register(t, s)
	if err := s.SetKeys(ctx, acct.ID, 1, fullKeys(ecKeys, kyKeys)); err != nil {
		t.Fatalf("SetKeys() = %v", err)
	}
	var (
		mu            sync.Mutex
		ecIDs, kyIDs  []uint32
		noEC, lastRes int
		wg            sync.WaitGroup
	)
	for range takers {
		wg.Go(func() {
			for range each {
				b, err := s.TakeBundle(ctx, acct.ID, 1)
				if err != nil {
					t.Errorf("TakeBundle() = %v", err)
					return
				}
				mu.Lock()
				if b.PreKey != nil {
					ecIDs = append(ecIDs, b.PreKey.ID)
				} else {
					noEC++
				}
				if b.KyberLastResort {
					lastRes++
				} else {
					kyIDs = append(kyIDs, b.KyberPreKey.ID)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, c := range []struct {
		name     string
		ids      []uint32
		fallback int
		keys     int
	}{
		{"EC", ecIDs, noEC, ecKeys},
		{"Kyber", kyIDs, lastRes, kyKeys},
	} {
		ids := slices.Clone(c.ids)
		slices.Sort(ids)
		if n := len(slices.Compact(ids)); n != len(c.ids) {
			t.Errorf("%d concurrent takers: %d %s one-time keys handed out, only %d distinct", takers, len(c.ids), c.name, n)
		}
		if len(c.ids) != c.keys || c.fallback != takers*each-c.keys {
			t.Errorf("%d concurrent takers: %d %s one-time keys and %d without, want %d and %d", takers, len(c.ids), c.name, c.fallback, c.keys, takers*each-c.keys)
		}
	}
	if ec, ky := counts(t, s, acct.ID, 1); ec != 0 || ky != 0 {
		t.Errorf("PreKeyCounts() after the race = %d, %d; want 0, 0", ec, ky)
	}
}

func testEnqueueOrder(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct, _ := register(t, s)
	if _, err := s.AddDevice(ctx, acct.ID, newDevice()); err != nil {
		t.Fatalf("AddDevice() = %v", err)
	}
	t0 := now()
	var want1, want2 []store.Envelope
	for call := range 3 {
		var envs []*store.Envelope
		for i := range 4 {
			dev := uint32(1 + i%2)
			envs = append(envs, envelope(acct.ID, dev, t0.Add(time.Duration(call*4+i)*time.Millisecond)))
		}
		if err := s.Enqueue(ctx, envs); err != nil {
			t.Fatalf("Enqueue() = %v", err)
		}
		for _, e := range envs {
			if e.Device == 1 {
				want1 = append(want1, *e)
			} else {
				want2 = append(want2, *e)
			}
		}
	}
	for _, c := range []struct {
		dev  uint32
		want []store.Envelope
	}{{1, want1}, {2, want2}} {
		for i := 1; i < len(c.want); i++ {
			if c.want[i].Seq <= c.want[i-1].Seq {
				t.Errorf("Enqueue() assigned Seq %d after %d on device %d, want increasing", c.want[i].Seq, c.want[i-1].Seq, c.dev)
			}
		}
		got := pendingAll(t, s, acct.ID, c.dev)
		if !slices.EqualFunc(got, c.want, equalEnvelope) {
			t.Errorf("Pending(device %d) = %d envelopes %v, want %d in enqueue order %v", c.dev, len(got), seqs(got), len(c.want), seqs(c.want))
		}
	}
	if err := s.Enqueue(ctx, nil); err != nil {
		t.Errorf("Enqueue(nil) = %v, want nil", err)
	}
}

func seqs(envs []store.Envelope) []int64 {
	var s []int64
	for _, e := range envs {
		s = append(s, e.Seq)
	}
	return s
}

func testEnqueueIdempotent(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct, _ := register(t, s)
	if _, err := s.AddDevice(ctx, acct.ID, newDevice()); err != nil {
		t.Fatalf("AddDevice() = %v", err)
	}
	first := envelope(acct.ID, 1, now())
	if err := s.Enqueue(ctx, []*store.Envelope{first}); err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	// A retry with the same id (even a different body) is a no-op that reports the Seq.
	retry := &store.Envelope{ID: first.ID, Account: acct.ID, Device: 1, ServerTime: now(), Body: randBytes(10)}
	dup := &store.Envelope{ID: first.ID, Account: acct.ID, Device: 1, ServerTime: now(), Body: randBytes(10)}
	other := envelope(acct.ID, 1, now())
	if err := s.Enqueue(ctx, []*store.Envelope{retry, other, dup}); err != nil {
		t.Fatalf("Enqueue(retry) = %v", err)
	}
	if retry.Seq != first.Seq || dup.Seq != first.Seq {
		t.Errorf("Enqueue(retry).Seq = %d, %d; want the stored %d", retry.Seq, dup.Seq, first.Seq)
	}
	got := pendingAll(t, s, acct.ID, 1)
	if want := []store.Envelope{*first, *other}; !slices.EqualFunc(got, want, equalEnvelope) {
		t.Errorf("Pending() after retry = seqs %v, want %v with the first body", seqs(got), seqs(want))
	}
	// The same id for another device is another envelope.
	same := &store.Envelope{ID: first.ID, Account: acct.ID, Device: 2, ServerTime: now(), Body: randBytes(10)}
	if err := s.Enqueue(ctx, []*store.Envelope{same}); err != nil {
		t.Fatalf("Enqueue(other device) = %v", err)
	}
	if got := pendingAll(t, s, acct.ID, 2); len(got) != 1 || !equalEnvelope(got[0], *same) {
		t.Errorf("Pending(device 2) = %v, want the envelope with the reused id", seqs(got))
	}
}

func testEnqueueUnknownDevice(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct, _ := register(t, s)
	tests := []struct {
		name string
		bad  *store.Envelope
	}{
		{"unknown device", envelope(acct.ID, 5, now())},
		{"unknown account", envelope(uuid.New(), 1, now())},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			good := envelope(acct.ID, 1, now())
			if err := s.Enqueue(ctx, []*store.Envelope{good, tc.bad}); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Enqueue(good, %s) = %v, want ErrNotFound", tc.name, err)
			}
			if got := pendingAll(t, s, acct.ID, 1); len(got) != 0 {
				t.Errorf("Pending() after a failed Enqueue = %d envelopes, want 0 (all or nothing)", len(got))
			}
		})
	}
}

// testEnqueueConcurrent has many callers enqueue at once (a backend batches them), some
// with a bad envelope: only the bad calls fail.
func testEnqueueConcurrent(t *testing.T, s store.Store) {
	const callers, calls = 16, 8
	ctx := context.Background()
	acct, _ := register(t, s)
	var (
		mu   sync.Mutex
		good []store.Envelope
		wg   sync.WaitGroup
	)
	for c := range callers {
		wg.Go(func() {
			for i := range calls {
				envs := []*store.Envelope{envelope(acct.ID, 1, now()), envelope(acct.ID, 1, now())}
				bad := (c+i)%5 == 0
				switch {
				case bad && i%2 == 0:
					envs = append(envs, envelope(acct.ID, 77, now()))
				case bad:
					envs = []*store.Envelope{envelope(acct.ID, 77, now())}
				}
				err := s.Enqueue(ctx, envs)
				switch {
				case bad && !errors.Is(err, store.ErrNotFound):
					t.Errorf("Enqueue(with unknown device) = %v, want ErrNotFound", err)
				case !bad && err != nil:
					t.Errorf("Enqueue() = %v, want nil", err)
				case !bad:
					mu.Lock()
					good = append(good, *envs[0], *envs[1])
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	slices.SortFunc(good, func(a, b store.Envelope) int { return int(a.Seq - b.Seq) })
	got := pendingAll(t, s, acct.ID, 1)
	if !slices.EqualFunc(got, good, equalEnvelope) {
		t.Errorf("Pending() after concurrent Enqueue = %d envelopes, want the %d acknowledged ones in Seq order", len(got), len(good))
	}
}

func testPendingPaging(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct, _ := register(t, s)
	var all []store.Envelope
	for range 10 {
		e := envelope(acct.ID, 1, now())
		if err := s.Enqueue(ctx, []*store.Envelope{e}); err != nil {
			t.Fatalf("Enqueue() = %v", err)
		}
		all = append(all, *e)
	}
	var got []store.Envelope
	after := int64(0)
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatalf("Pending(limit 3) did not finish after 10 pages")
		}
		page, err := s.Pending(ctx, acct.ID, 1, after, 3)
		if err != nil {
			t.Fatalf("Pending() = %v", err)
		}
		if len(page) > 3 {
			t.Fatalf("Pending(limit 3) = %d envelopes", len(page))
		}
		if len(page) == 0 {
			break
		}
		got = append(got, page...)
		after = page[len(page)-1].Seq
	}
	if !slices.EqualFunc(got, all, equalEnvelope) {
		t.Errorf("Pending() pages = %v, want %v", seqs(got), seqs(all))
	}
	if page, err := s.Pending(ctx, acct.ID, 1, all[4].Seq, 100); err != nil || !slices.EqualFunc(page, all[5:], equalEnvelope) {
		t.Errorf("Pending(after %d) = %v, %v; want %v", all[4].Seq, seqs(page), err, seqs(all[5:]))
	}
	if page, err := s.Pending(ctx, uuid.New(), 1, 0, 10); err != nil || len(page) != 0 {
		t.Errorf("Pending(unknown device) = %d envelopes, %v; want none", len(page), err)
	}
}

func testAck(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct, _ := register(t, s)
	if _, err := s.AddDevice(ctx, acct.ID, newDevice()); err != nil {
		t.Fatalf("AddDevice() = %v", err)
	}
	var envs []*store.Envelope
	for range 5 {
		envs = append(envs, envelope(acct.ID, 1, now()))
	}
	if err := s.Enqueue(ctx, envs); err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	// Another device acknowledging these ids deletes nothing of device 1's.
	if err := s.Ack(ctx, acct.ID, 2, []uuid.UUID{envs[0].ID, envs[1].ID}); err != nil {
		t.Fatalf("Ack(device 2) = %v", err)
	}
	if got := pendingAll(t, s, acct.ID, 1); len(got) != 5 {
		t.Errorf("Pending() after another device's Ack = %d envelopes, want 5", len(got))
	}
	if err := s.Ack(ctx, acct.ID, 1, []uuid.UUID{envs[1].ID, uuid.New(), envs[3].ID}); err != nil {
		t.Fatalf("Ack() = %v", err)
	}
	want := []store.Envelope{*envs[0], *envs[2], *envs[4]}
	if got := pendingAll(t, s, acct.ID, 1); !slices.EqualFunc(got, want, equalEnvelope) {
		t.Errorf("Pending() after Ack = %v, want %v", seqs(got), seqs(want))
	}
	if err := s.Ack(ctx, acct.ID, 1, nil); err != nil {
		t.Errorf("Ack(nil) = %v, want nil", err)
	}
}

func testExpireBefore(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct, _ := register(t, s)
	t0 := now()
	old1 := envelope(acct.ID, 1, t0.Add(-48*time.Hour))
	old2 := envelope(acct.ID, 1, t0.Add(-25*time.Hour))
	fresh := envelope(acct.ID, 1, t0)
	if err := s.Enqueue(ctx, []*store.Envelope{old1, fresh, old2}); err != nil {
		t.Fatalf("Enqueue() = %v", err)
	}
	n, err := s.ExpireBefore(ctx, t0.Add(-24*time.Hour))
	if err != nil || n != 2 {
		t.Errorf("ExpireBefore(-24h) = %d, %v; want 2, nil", n, err)
	}
	if got := pendingAll(t, s, acct.ID, 1); !slices.EqualFunc(got, []store.Envelope{*fresh}, equalEnvelope) {
		t.Errorf("Pending() after expiry = %v, want only the fresh envelope %d", seqs(got), fresh.Seq)
	}
	if n, err := s.ExpireBefore(ctx, t0.Add(-24*time.Hour)); err != nil || n != 0 {
		t.Errorf("ExpireBefore(-24h) again = %d, %v; want 0, nil", n, err)
	}
}

func testVerifications(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := now()
	v := store.Verification{
		ID: "session-" + uuid.NewString(), Number: newNumber(), CodeHash: randBytes(32),
		CreatedAt: t0, ExpiresAt: t0.Add(10 * time.Minute),
	}
	if err := s.CreateVerification(ctx, v); err != nil {
		t.Fatalf("CreateVerification() = %v", err)
	}
	equal := func(a, b store.Verification) bool {
		return a.ID == b.ID && a.Number == b.Number && bytes.Equal(a.CodeHash, b.CodeHash) && a.Attempts == b.Attempts &&
			a.Verified == b.Verified && a.CreatedAt.Equal(b.CreatedAt) && a.ExpiresAt.Equal(b.ExpiresAt)
	}
	if got, err := s.Verification(ctx, v.ID); err != nil || !equal(got, v) {
		t.Errorf("Verification() = %+v, %v; want %+v", got, err, v)
	}
	if err := s.CreateVerification(ctx, v); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateVerification(same id) = %v, want ErrConflict", err)
	}
	v.Attempts, v.Verified = 2, true
	if err := s.UpdateVerification(ctx, v); err != nil {
		t.Fatalf("UpdateVerification() = %v", err)
	}
	if got, err := s.Verification(ctx, v.ID); err != nil || !equal(got, v) {
		t.Errorf("Verification() after update = %+v, %v; want %+v", got, err, v)
	}
	if err := s.UpdateVerification(ctx, store.Verification{ID: "nope"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateVerification(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.Verification(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Verification(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.DeleteVerification(ctx, v.ID); err != nil {
		t.Fatalf("DeleteVerification() = %v", err)
	}
	if _, err := s.Verification(ctx, v.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Verification() after delete = %v, want ErrNotFound", err)
	}

	expired := store.Verification{ID: "expired", Number: newNumber(), CodeHash: randBytes(32), CreatedAt: t0.Add(-time.Hour), ExpiresAt: t0.Add(-time.Minute)}
	live := store.Verification{ID: "live", Number: newNumber(), CodeHash: randBytes(32), CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)}
	for _, v := range []store.Verification{expired, live} {
		if err := s.CreateVerification(ctx, v); err != nil {
			t.Fatalf("CreateVerification(%s) = %v", v.ID, err)
		}
	}
	if n, err := s.PruneVerifications(ctx, t0); err != nil || n != 1 {
		t.Errorf("PruneVerifications(now) = %d, %v; want 1, nil", n, err)
	}
	if _, err := s.Verification(ctx, "expired"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Verification(expired) after prune = %v, want ErrNotFound", err)
	}
	if _, err := s.Verification(ctx, "live"); err != nil {
		t.Errorf("Verification(live) after prune = %v, want nil", err)
	}
}

func testConnLog(t *testing.T, s store.Store) {
	ctx := context.Background()
	acct, _ := register(t, s)
	other, _ := register(t, s)
	t0 := now()
	ip4, ip6 := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::1")
	for _, r := range []struct {
		acct uuid.UUID
		ip   netip.Addr
		at   time.Time
	}{
		{acct.ID, ip4, t0.Add(-3 * time.Hour)},
		{acct.ID, ip6, t0.Add(-2 * time.Hour)},
		{acct.ID, ip4, t0.Add(-time.Hour)},
		{other.ID, ip4, t0},
	} {
		if err := s.RecordConnection(ctx, r.acct, r.ip, r.at); err != nil {
			t.Fatalf("RecordConnection() = %v", err)
		}
	}
	want := []store.Connection{
		{Account: acct.ID, IP: ip4, FirstSeen: t0.Add(-3 * time.Hour), LastSeen: t0.Add(-time.Hour)},
		{Account: acct.ID, IP: ip6, FirstSeen: t0.Add(-2 * time.Hour), LastSeen: t0.Add(-2 * time.Hour)},
	}
	equal := func(a, b store.Connection) bool {
		return a.Account == b.Account && a.IP == b.IP && a.FirstSeen.Equal(b.FirstSeen) && a.LastSeen.Equal(b.LastSeen)
	}
	got, err := s.Connections(ctx, acct.ID)
	if err != nil || !slices.EqualFunc(got, want, equal) {
		t.Errorf("Connections() = %+v, %v; want %+v", got, err, want)
	}
	if n, err := s.PruneConnections(ctx, t0.Add(-90*time.Minute)); err != nil || n != 1 {
		t.Errorf("PruneConnections(-90m) = %d, %v; want 1, nil", n, err)
	}
	if got, err := s.Connections(ctx, acct.ID); err != nil || !slices.EqualFunc(got, want[:1], equal) {
		t.Errorf("Connections() after prune = %+v, %v; want %+v", got, err, want[:1])
	}
	if got, err := s.Connections(ctx, other.ID); err != nil || len(got) != 1 {
		t.Errorf("Connections(other) = %+v, %v; want its one row", got, err)
	}
	if got, err := s.Connections(ctx, uuid.New()); err != nil || len(got) != 0 {
		t.Errorf("Connections(unknown) = %+v, %v; want none", got, err)
	}
}
