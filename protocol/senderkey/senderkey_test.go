package senderkey

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/internal/primitives"
)

var (
	alice = protocol.Address{Name: "9d0652a3-dcc3-4d11-975f-74d61598733f", DeviceID: 1}
	bob   = protocol.Address{Name: "796abedb-ca4e-4f18-8803-1fde5b921f9f", DeviceID: 2}
	group = uuid.MustParse("d1d1d1d1-7000-11eb-b32a-33b8a8a487a6")
)

// pair is a sender (alice, with her own chain) and a receiver (bob, holding alice's
// chain from her distribution message).
type pair struct {
	aliceStore, bobStore *MemoryStore
	skdm                 *DistributionMessage
}

func newPair(t testing.TB) *pair {
	t.Helper()
	ctx := context.Background()
	p := &pair{aliceStore: NewMemoryStore(), bobStore: NewMemoryStore()}
	skdm, err := Create(ctx, p.aliceStore, alice, group)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	// Through the wire, as a peer would receive it.
	p.skdm, err = NewDistributionMessage(skdm.Bytes())
	if err != nil {
		t.Fatalf("NewDistributionMessage: %v", err)
	}
	if err := Process(ctx, p.bobStore, alice, p.skdm); err != nil {
		t.Fatalf("Process: %v", err)
	}
	return p
}

func (p *pair) encrypt(t testing.TB, pt string) []byte {
	t.Helper()
	ct, err := Encrypt(context.Background(), p.aliceStore, alice, group, []byte(pt))
	if err != nil {
		t.Fatalf("Encrypt(%q): %v", pt, err)
	}
	return ct
}

func (p *pair) decrypt(ct []byte) (string, error) {
	pt, err := Decrypt(context.Background(), p.bobStore, alice, ct)
	return string(pt), err
}

// bobRecord returns the bytes of bob's record of alice's chains.
func (p *pair) bobRecord(t testing.TB) []byte {
	t.Helper()
	r, err := p.bobStore.LoadSenderKey(context.Background(), alice, group)
	if err != nil || r == nil {
		t.Fatalf("LoadSenderKey = %v, %v", r, err)
	}
	return r.Bytes()
}

// forge makes a message on alice's chain signed with her real signing key, at any
// iteration and with any ciphertext: what only a buggy or malicious sender can send.
func (p *pair) forge(t testing.TB, chainID, iteration uint32, ct []byte) []byte {
	t.Helper()
	r, err := p.aliceStore.LoadSenderKey(context.Background(), alice, group)
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMessage(group, chainID, iteration, ct, r.states[0].signingPriv)
	if err != nil {
		t.Fatal(err)
	}
	return m.Bytes()
}

// keyAt returns the message key of alice's chain at iteration, derived from the
// distribution message.
func (p *pair) keyAt(iteration uint32) messageKey {
	c := chainKey{iteration: p.skdm.iteration, key: p.skdm.chainKey}
	for c.iteration < iteration {
		c = c.next()
	}
	return c.messageKey()
}

func mustCBC(t testing.TB, key, iv, pt []byte) []byte {
	t.Helper()
	ct, err := primitives.EncryptCBC(key, iv, pt)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func TestInOrderAndOutOfOrder(t *testing.T) {
	for _, order := range [][]int{
		{0, 1, 2, 3, 4},
		{4, 3, 2, 1, 0},
		{2, 0, 4, 1, 3},
		{1, 0, 3, 2, 4},
	} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			p := newPair(t)
			var cts [][]byte
			for i := range order {
				cts = append(cts, p.encrypt(t, fmt.Sprintf("message %d", i)))
			}
			for _, i := range order {
				got, err := p.decrypt(cts[i])
				if want := fmt.Sprintf("message %d", i); err != nil || got != want {
					t.Errorf("Decrypt(message %d) = %q, %v, want %q", i, got, err, want)
				}
			}
			for _, i := range order {
				if got, err := p.decrypt(cts[i]); !errors.Is(err, ErrDuplicateMessage) {
					t.Errorf("Decrypt(message %d again) = %q, %v, want ErrDuplicateMessage", i, got, err)
				}
			}
		})
	}
}

func TestPlaintextSizes(t *testing.T) {
	p := newPair(t)
	for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 256, 4096} {
		pt := bytes.Repeat([]byte{byte(n)}, n)
		ct, err := Encrypt(context.Background(), p.aliceStore, alice, group, pt)
		if err != nil {
			t.Fatalf("Encrypt(%d bytes): %v", n, err)
		}
		got, err := Decrypt(context.Background(), p.bobStore, alice, ct)
		if err != nil || !bytes.Equal(got, pt) {
			t.Errorf("Decrypt(Encrypt(%d bytes)) = %d bytes, %v, want the plaintext", n, len(got), err)
		}
	}
}

// Every failure leaves bob's record exactly as it was, and says nothing beyond its class.
func TestDecryptFailureLeavesStore(t *testing.T) {
	p := newPair(t)
	first := p.encrypt(t, "first")
	if _, err := p.decrypt(first); err != nil {
		t.Fatal(err)
	}
	good := p.encrypt(t, "second")
	chainID := p.skdm.chainID
	mk := p.keyAt(1)
	iv, key := mk.keys()
	// The first block of sixteen zero bytes, without its padding block: signed, on the
	// right key, but its last byte decrypts to 0x00, which is not PKCS#7.
	badPad := mustCBC(t, key, iv, make([]byte, 16))[:16]
	flipSig := bytes.Clone(good)
	flipSig[len(flipSig)-1] ^= 0x01
	flipBody := bytes.Clone(good)
	flipBody[len(flipBody)-65] ^= 0x01
	otherGroup := p.forge(t, chainID, 1, good[len(good)-64-16:len(good)-64])
	otherGroup[3] ^= 0xFF // distribution id byte: a group bob has no record for

	tests := []struct {
		name string
		ct   []byte
		want error
	}{
		{"signature bit flipped", flipSig, ErrInvalidMessage},
		{"ciphertext bit flipped", flipBody, ErrInvalidMessage},
		{"truncated", good[:len(good)-1], ErrInvalidMessage},
		{"empty", nil, ErrInvalidMessage},
		{"version 4", append([]byte{0x44}, good[1:]...), ErrInvalidMessage},
		{"bad padding, validly signed", p.forge(t, chainID, 1, badPad), ErrInvalidMessage},
		{"beyond the forward-jump limit", p.forge(t, chainID, 1+MaxForwardJumps+1, good[len(good)-64-16:len(good)-64]), ErrInvalidMessage},
		{"iteration 2^32-1", p.forge(t, chainID, 1<<32-1, good[len(good)-64-16:len(good)-64]), ErrInvalidMessage},
		{"unknown chain id", p.forge(t, chainID+1, 1, good[len(good)-64-16:len(good)-64]), ErrNoSenderKey},
		{"unknown group", otherGroup, ErrNoSenderKey},
		{"duplicate", first, ErrDuplicateMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := p.bobRecord(t)
			pt, err := p.decrypt(tt.ct)
			if !errors.Is(err, tt.want) {
				t.Errorf("Decrypt() = %q, %v, want %v", pt, err, tt.want)
			}
			if err != nil && err.Error() != tt.want.Error() {
				t.Errorf("Decrypt() error %q says more than %q", err, tt.want)
			}
			if after := p.bobRecord(t); !bytes.Equal(before, after) {
				t.Errorf("Decrypt() failed but changed the record")
			}
		})
	}
	// The good message still decrypts after all that.
	if got, err := p.decrypt(good); err != nil || got != "second" {
		t.Errorf("Decrypt(good) = %q, %v, want %q", got, err, "second")
	}
}

func TestForwardJumpLimit(t *testing.T) {
	p := newPair(t)
	ct := p.encrypt(t, "zero")
	body := ct[len(ct)-64-16 : len(ct)-64] // any whole block; the key decides
	mk := p.keyAt(MaxForwardJumps)
	iv, key := mk.keys()
	atLimit := p.forge(t, p.skdm.chainID, MaxForwardJumps, mustCBC(t, key, iv, []byte("far")))
	if got, err := p.decrypt(p.forge(t, p.skdm.chainID, MaxForwardJumps+1, body)); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("Decrypt(iteration %d) = %q, %v, want ErrInvalidMessage", MaxForwardJumps+1, got, err)
	}
	if got, err := p.decrypt(atLimit); err != nil || got != "far" {
		t.Errorf("Decrypt(iteration %d) = %q, %v, want %q", MaxForwardJumps, got, err, "far")
	}
	// The keys of the skipped messages closest to the jump are kept: the newest
	// MaxMessageKeys of them, no more.
	r, err := p.bobStore.LoadSenderKey(context.Background(), alice, group)
	if err != nil {
		t.Fatal(err)
	}
	s := r.states[0]
	if got := len(s.skipped); got != MaxMessageKeys {
		t.Errorf("kept %d skipped keys, want %d", got, MaxMessageKeys)
	}
	if got, want := s.skipped[0].iteration, uint32(MaxForwardJumps-MaxMessageKeys); got != want {
		t.Errorf("oldest kept key is for iteration %d, want %d", got, want)
	}
	if got, err := p.decrypt(ct); !errors.Is(err, ErrDuplicateMessage) {
		t.Errorf("Decrypt(iteration 0, evicted) = %q, %v, want ErrDuplicateMessage", got, err)
	}
}

func TestMessageKeyLimit(t *testing.T) {
	p := newPair(t)
	var cts [][]byte
	for i := range MaxMessageKeys + 2 {
		cts = append(cts, p.encrypt(t, fmt.Sprint(i)))
	}
	last := len(cts) - 1
	if got, err := p.decrypt(cts[last]); err != nil || got != fmt.Sprint(last) {
		t.Fatalf("Decrypt(message %d) = %q, %v", last, got, err)
	}
	// MaxMessageKeys+1 messages were skipped; only the newest MaxMessageKeys are kept.
	if got, err := p.decrypt(cts[0]); !errors.Is(err, ErrDuplicateMessage) {
		t.Errorf("Decrypt(message 0) = %q, %v, want ErrDuplicateMessage (key evicted)", got, err)
	}
	for _, i := range []int{1, 2, last - 1} {
		if got, err := p.decrypt(cts[i]); err != nil || got != fmt.Sprint(i) {
			t.Errorf("Decrypt(message %d) = %q, %v, want %q", i, got, err, fmt.Sprint(i))
		}
	}
}

func TestStatesPerSender(t *testing.T) {
	ctx := context.Background()
	bobStore := NewMemoryStore()
	type chain struct {
		store *MemoryStore
		skdm  *DistributionMessage
	}
	var chains []chain
	for range MaxStates + 1 {
		// Alice resets her sender key: a fresh own store makes a fresh chain.
		s := NewMemoryStore()
		skdm, err := Create(ctx, s, alice, group)
		if err != nil {
			t.Fatal(err)
		}
		if err := Process(ctx, bobStore, alice, skdm); err != nil {
			t.Fatal(err)
		}
		chains = append(chains, chain{s, skdm})
	}
	r, err := bobStore.LoadSenderKey(ctx, alice, group)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(r.states); got != MaxStates {
		t.Errorf("record has %d states, want %d", got, MaxStates)
	}
	for i, c := range chains {
		ct, err := Encrypt(ctx, c.store, alice, group, []byte("hi"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Decrypt(ctx, bobStore, alice, ct)
		if i == 0 {
			if !errors.Is(err, ErrNoSenderKey) {
				t.Errorf("Decrypt(oldest chain) = %v, want ErrNoSenderKey", err)
			}
		} else if err != nil {
			t.Errorf("Decrypt(chain %d) = %v, want success", i, err)
		}
	}
}

// A distribution message processed again must not rewind the chain: that would make
// already-decrypted messages decrypt again.
func TestProcessAgainDoesNotRewind(t *testing.T) {
	p := newPair(t)
	ct := p.encrypt(t, "once")
	if _, err := p.decrypt(ct); err != nil {
		t.Fatal(err)
	}
	if err := Process(context.Background(), p.bobStore, alice, p.skdm); err != nil {
		t.Fatal(err)
	}
	if got, err := p.decrypt(ct); !errors.Is(err, ErrDuplicateMessage) {
		t.Errorf("Decrypt(replay after re-Process) = %q, %v, want ErrDuplicateMessage", got, err)
	}
}

// A distribution message with a known chain id but another signing key replaces the
// state: only the new key's messages verify.
func TestProcessSameChainNewKey(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	old := p.encrypt(t, "old key")
	evil, err := curve.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	m := *p.skdm
	m.signingKey = evil.PublicKey()
	if err := Process(ctx, p.bobStore, alice, &m); err != nil {
		t.Fatal(err)
	}
	r, _ := p.bobStore.LoadSenderKey(ctx, alice, group)
	if len(r.states) != 1 {
		t.Errorf("record has %d states, want 1", len(r.states))
	}
	if got, err := p.decrypt(old); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("Decrypt(message under the replaced key) = %q, %v, want ErrInvalidMessage", got, err)
	}
}

func TestCreateIsStable(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	p.encrypt(t, "advance")
	again, err := Create(ctx, p.aliceStore, alice, group)
	if err != nil {
		t.Fatal(err)
	}
	if again.ChainID() != p.skdm.ChainID() || !again.SigningKey().Equal(p.skdm.SigningKey()) {
		t.Errorf("Create() again made a new chain, want the existing one")
	}
	if again.Iteration() != 1 {
		t.Errorf("Create() again at iteration %d, want 1 (the chain moved on)", again.Iteration())
	}
	if p.skdm.ChainID()>>31 != 0 {
		t.Errorf("chain id %d has the top bit set, want 31 bits", p.skdm.ChainID())
	}
	if p.skdm.DistributionID() != group {
		t.Errorf("DistributionID() = %v, want %v", p.skdm.DistributionID(), group)
	}
}

func TestEncryptNeedsOwnChain(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	// Bob holds alice's chain but not her signing key.
	if _, err := Encrypt(ctx, p.bobStore, alice, group, []byte("x")); !errors.Is(err, ErrNoSenderKey) {
		t.Errorf("Encrypt(without private key) = %v, want ErrNoSenderKey", err)
	}
	if _, err := Encrypt(ctx, NewMemoryStore(), alice, group, []byte("x")); !errors.Is(err, ErrNoSenderKey) {
		t.Errorf("Encrypt(empty store) = %v, want ErrNoSenderKey", err)
	}
	bad := protocol.Address{Name: alice.Name}
	if _, err := Encrypt(ctx, p.aliceStore, bad, group, []byte("x")); err == nil {
		t.Errorf("Encrypt(device 0) = nil error, want error")
	}
	if _, err := Decrypt(ctx, p.bobStore, bad, nil); err == nil {
		t.Errorf("Decrypt(device 0) = nil error, want error")
	}
}

func TestSenderIsPartOfTheKey(t *testing.T) {
	p := newPair(t)
	ct := p.encrypt(t, "from alice")
	if _, err := Decrypt(context.Background(), p.bobStore, bob, ct); !errors.Is(err, ErrNoSenderKey) {
		t.Errorf("Decrypt(as if from bob) = %v, want ErrNoSenderKey", err)
	}
}

func TestChainExhausted(t *testing.T) {
	ctx := context.Background()
	p := newPair(t)
	r, _ := p.aliceStore.LoadSenderKey(ctx, alice, group)
	r.states[0].chain.iteration = 1<<32 - 1
	if err := p.aliceStore.StoreSenderKey(ctx, alice, group, r); err != nil {
		t.Fatal(err)
	}
	if _, err := Encrypt(ctx, p.aliceStore, alice, group, []byte("x")); err == nil {
		t.Errorf("Encrypt(at iteration 2^32-1) = nil error, want error")
	}
}

func TestRecordRoundTrip(t *testing.T) {
	p := newPair(t)
	for i := range 5 {
		ct := p.encrypt(t, fmt.Sprint(i))
		if i%2 == 1 {
			if _, err := p.decrypt(ct); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, s := range map[string]*MemoryStore{"sender": p.aliceStore, "receiver": p.bobStore} {
		r, err := s.LoadSenderKey(context.Background(), alice, group)
		if err != nil {
			t.Fatal(err)
		}
		b := r.Bytes()
		r2, err := NewRecord(b)
		if err != nil {
			t.Fatalf("NewRecord(%s record) = %v", name, err)
		}
		if b2 := r2.Bytes(); !bytes.Equal(b, b2) {
			t.Errorf("NewRecord(%s record).Bytes() = %x, want %x", name, b2, b)
		}
	}
	if r, err := NewRecord(nil); err != nil || len(r.states) != 0 {
		t.Errorf("NewRecord(nil) = %v, %v, want an empty record", r, err)
	}
}

func TestNewRecordRejects(t *testing.T) {
	p := newPair(t)
	own, _ := p.aliceStore.LoadSenderKey(context.Background(), alice, group)
	good := own.Bytes()
	other, _ := curve.GeneratePrivateKey(nil)
	mismatched := &Record{states: []*state{{
		chainID: 7, signingPub: own.states[0].signingPub, signingPriv: other,
	}}}
	twoSame := &Record{states: []*state{own.states[0], own.states[0]}}
	keysBeyond := &Record{states: []*state{{
		chainID: 7, signingPub: own.states[0].signingPub,
		skipped: []messageKey{{iteration: 3}}, chain: chainKey{iteration: 3},
	}}}
	tests := []struct {
		name string
		b    []byte
	}{
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"unknown field", append(bytes.Clone(good), 0x10, 0x01)},
		{"private key of another public key", mismatched.Bytes()},
		{"two states with one chain id", twoSame.Bytes()},
		{"skipped key at the chain", keysBeyond.Bytes()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r, err := NewRecord(tt.b); !errors.Is(err, ErrInvalidRecord) {
				t.Errorf("NewRecord(%x) = %v, %v, want ErrInvalidRecord", tt.b, r, err)
			}
		})
	}
}

func TestMemoryStoreHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := NewMemoryStore()
	if _, err := Create(ctx, s, alice, group); !errors.Is(err, context.Canceled) {
		t.Errorf("Create(cancelled) = %v, want context.Canceled", err)
	}
}

// MemoryStore serves many senders at once (one goroutine per sender, as the package
// documentation asks); the race detector checks its locking.
func TestMemoryStoreConcurrentSenders(t *testing.T) {
	ctx := context.Background()
	own, member := NewMemoryStore(), NewMemoryStore()
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			sender := protocol.Address{Name: alice.Name, DeviceID: uint32(i + 1)}
			skdm, err := Create(ctx, own, sender, group)
			if err == nil {
				err = Process(ctx, member, sender, skdm)
			}
			var ct []byte
			if err == nil {
				ct, err = Encrypt(ctx, own, sender, group, []byte{byte(i)})
			}
			var pt []byte
			if err == nil {
				pt, err = Decrypt(ctx, member, sender, ct)
			}
			if err == nil && (len(pt) != 1 || pt[0] != byte(i)) {
				err = fmt.Errorf("sender %d: Decrypt() = %x, want %02x", i, pt, i)
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
