package libsignal

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

var (
	aliceAddr = Address{Name: "a11ce000-0000-4000-8000-000000000001", DeviceID: 1}
	bobAddr   = Address{Name: "b0b00000-0000-4000-8000-000000000002", DeviceID: 1}
	carolAddr = Address{Name: "ca401000-0000-4000-8000-000000000003", DeviceID: 2}
)

func newParty(t *testing.T, p *Peer, name string) Party {
	t.Helper()
	party, err := p.NewParty(NewPartyArgs{Party: name})
	if err != nil {
		t.Fatalf("NewParty(%q) = %v", name, err)
	}
	return party
}

func mustDecrypt(t *testing.T, p *Peer, party string, from Address, m Message, want []byte) {
	t.Helper()
	got, err := p.Decrypt(party, from, m)
	if err != nil {
		t.Fatalf("Decrypt(%s, type %d) = %v", party, m.Type, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Decrypt(%s, type %d) = %q, want %q", party, m.Type, got, want)
	}
}

func TestSessionRoundTrip(t *testing.T) {
	p := StartForTest(t)
	tests := []struct {
		name     string
		noPreKey bool
	}{
		{"with one-time prekey", false},
		{"without one-time prekey", true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alice, bob := fmt.Sprintf("alice%d", i), fmt.Sprintf("bob%d", i)
			a := newParty(t, p, alice)
			b := newParty(t, p, bob)
			bundle, err := p.GenerateBundle(bob, BundleArgs{DeviceID: 1, PreKeyID: 11, SignedPreKeyID: 22, KyberPreKeyID: 33, NoPreKey: tt.noPreKey})
			if err != nil {
				t.Fatalf("GenerateBundle = %v", err)
			}
			checkBundleShape(t, bundle, b, tt.noPreKey)
			if err := p.ProcessBundle(alice, bobAddr, bundle); err != nil {
				t.Fatalf("ProcessBundle = %v", err)
			}

			// Alice's first messages are PreKey messages; Bob receives them out of order.
			var first []Message
			for j := range 3 {
				m, err := p.Encrypt(alice, bobAddr, fmt.Appendf(nil, "a->b %d", j))
				if err != nil {
					t.Fatalf("Encrypt = %v", err)
				}
				if m.Type != TypePreKey {
					t.Fatalf("Encrypt before any reply: type = %d, want %d", m.Type, TypePreKey)
				}
				first = append(first, m)
			}
			var pk struct {
				RegistrationID uint32  `json:"registration_id"`
				PreKeyID       *uint32 `json:"prekey_id"`
				SignedPreKeyID uint32  `json:"signed_prekey_id"`
			}
			if err := p.Call("parse_prekey_message", map[string]any{"message": first[0].Ciphertext}, &pk); err != nil {
				t.Fatalf("parse_prekey_message = %v", err)
			}
			if pk.RegistrationID != a.RegistrationID || pk.SignedPreKeyID != 22 || (pk.PreKeyID == nil) != tt.noPreKey {
				t.Fatalf("parse_prekey_message = reg %d spk %d pk %v, want reg %d spk 22 prekey present %v",
					pk.RegistrationID, pk.SignedPreKeyID, pk.PreKeyID, a.RegistrationID, !tt.noPreKey)
			}
			for _, j := range []int{2, 0, 1} {
				mustDecrypt(t, p, bob, aliceAddr, first[j], fmt.Appendf(nil, "a->b %d", j))
			}
			var dup *Error
			if _, err := p.Decrypt(bob, aliceAddr, first[0]); !errors.As(err, &dup) || dup.Code != "DuplicatedMessage" {
				t.Fatalf("Decrypt(replayed message) = %v, want a DuplicatedMessage error", err)
			}

			var state struct {
				PreKeyIDs []uint32 `json:"prekey_ids"`
				KyberUsed []struct {
					KyberPreKeyID uint32 `json:"kyber_prekey_id"`
				} `json:"kyber_used"`
			}
			if err := p.Call("prekey_state", partyArgs{bob}, &state); err != nil {
				t.Fatalf("prekey_state = %v", err)
			}
			if len(state.PreKeyIDs) != 0 {
				t.Errorf("one-time prekeys after use = %v, want none", state.PreKeyIDs)
			}
			if len(state.KyberUsed) == 0 || state.KyberUsed[0].KyberPreKeyID != 33 {
				t.Errorf("kyber prekeys marked used = %+v, want id 33", state.KyberUsed)
			}

			// Bob answers with SignalMessages; Alice receives them out of order.
			var replies []Message
			for j := range 3 {
				m, err := p.Encrypt(bob, aliceAddr, fmt.Appendf(nil, "b->a %d", j))
				if err != nil {
					t.Fatalf("Encrypt = %v", err)
				}
				if m.Type != TypeWhisper {
					t.Fatalf("Encrypt by responder: type = %d, want %d", m.Type, TypeWhisper)
				}
				replies = append(replies, m)
			}
			for _, j := range []int{1, 2, 0} {
				mustDecrypt(t, p, alice, bobAddr, replies[j], fmt.Appendf(nil, "b->a %d", j))
			}

			// Having heard from Bob, Alice sends plain SignalMessages.
			m, err := p.Encrypt(alice, bobAddr, []byte("after reply"))
			if err != nil {
				t.Fatalf("Encrypt = %v", err)
			}
			if m.Type != TypeWhisper {
				t.Fatalf("Encrypt after reply: type = %d, want %d", m.Type, TypeWhisper)
			}
			var sm struct {
				Version   int    `json:"version"`
				PQRatchet []byte `json:"pq_ratchet"`
			}
			if err := p.Call("parse_signal_message", map[string]any{"message": m.Ciphertext}, &sm); err != nil {
				t.Fatalf("parse_signal_message = %v", err)
			}
			if sm.Version != 4 || m.Ciphertext[0] != 0x44 {
				t.Errorf("SignalMessage version = %d, first byte %#x, want 4 and 0x44", sm.Version, m.Ciphertext[0])
			}
			t.Logf("libsignal-to-libsignal SignalMessage carries %d bytes of SPQR data", len(sm.PQRatchet))
			mustDecrypt(t, p, bob, aliceAddr, m, []byte("after reply"))

			for _, side := range []struct {
				party       string
				addr        Address
				local, peer uint32
			}{{alice, bobAddr, a.RegistrationID, b.RegistrationID}, {bob, aliceAddr, b.RegistrationID, a.RegistrationID}} {
				info, err := p.SessionInfo(side.party, side.addr)
				if err != nil {
					t.Fatalf("SessionInfo = %v", err)
				}
				if !info.Exists || !info.HasCurrentState || info.LocalRegistrationID != side.local || info.RemoteRegistrationID != side.peer {
					t.Errorf("SessionInfo(%s) = %+v, want a current session with registration ids %d/%d", side.party, info, side.local, side.peer)
				}
			}
		})
	}
}

func checkBundleShape(t *testing.T, b Bundle, owner Party, noPreKey bool) {
	t.Helper()
	if !bytes.Equal(b.IdentityKey, owner.IdentityKey) || b.RegistrationID != owner.RegistrationID {
		t.Errorf("bundle identity = %x/%d, want %x/%d", b.IdentityKey, b.RegistrationID, owner.IdentityKey, owner.RegistrationID)
	}
	lengths := []struct {
		name   string
		got    []byte
		length int
		prefix byte
	}{
		{"identity_key", b.IdentityKey, 33, 0x05},
		{"signed_prekey_public", b.SignedPreKeyPublic, 33, 0x05},
		{"kyber_prekey_public", b.KyberPreKeyPublic, 1569, 0x08}, // Kyber-1024 round 3, type 0x08
		{"signed_prekey_signature", b.SignedPreKeySignature, 64, 0},
		{"kyber_prekey_signature", b.KyberPreKeySignature, 64, 0},
	}
	if !noPreKey {
		lengths = append(lengths, struct {
			name   string
			got    []byte
			length int
			prefix byte
		}{"prekey_public", b.PreKeyPublic, 33, 0x05})
	} else if len(b.PreKeyPublic) != 0 {
		t.Errorf("bundle without prekey has prekey_public %x", b.PreKeyPublic)
	}
	for _, l := range lengths {
		if len(l.got) != l.length || (l.prefix != 0 && l.got[0] != l.prefix) {
			t.Errorf("bundle %s = %d bytes starting %x, want %d bytes starting %#x", l.name, len(l.got), l.got[:min(1, len(l.got))], l.length, l.prefix)
		}
	}
}

func TestBundleTamperingRejected(t *testing.T) {
	p := StartForTest(t)
	newParty(t, p, "alice")
	newParty(t, p, "bob")
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		return c
	}
	tests := []struct {
		name    string
		tamper  func(*Bundle)
		wantErr bool
	}{
		{"untouched", func(*Bundle) {}, false},
		{"signed prekey signature", func(b *Bundle) { b.SignedPreKeySignature = flip(b.SignedPreKeySignature, 10) }, true},
		{"signed prekey public", func(b *Bundle) { b.SignedPreKeyPublic = flip(b.SignedPreKeyPublic, 10) }, true},
		{"kyber prekey signature", func(b *Bundle) { b.KyberPreKeySignature = flip(b.KyberPreKeySignature, 10) }, true},
		{"kyber prekey public", func(b *Bundle) { b.KyberPreKeyPublic = flip(b.KyberPreKeyPublic, 100) }, true},
		{"kyber signature swapped for the EC one", func(b *Bundle) { b.KyberPreKeySignature = b.SignedPreKeySignature }, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := uint32(100 + i)
			bundle, err := p.GenerateBundle("bob", BundleArgs{DeviceID: 1, PreKeyID: id, SignedPreKeyID: id, KyberPreKeyID: id})
			if err != nil {
				t.Fatalf("GenerateBundle = %v", err)
			}
			tt.tamper(&bundle)
			err = p.ProcessBundle("alice", bobAddr, bundle)
			var perr *Error
			if tt.wantErr && (!errors.As(err, &perr) || perr.Code == "") {
				t.Fatalf("ProcessBundle(tampered %s) = %v, want a libsignal error", tt.name, err)
			}
			if !tt.wantErr && err != nil {
				t.Fatalf("ProcessBundle(%s) = %v, want nil", tt.name, err)
			}
		})
	}
}

func TestSenderKeys(t *testing.T) {
	p := StartForTest(t)
	for _, name := range []string{"alice", "bob", "carol"} {
		newParty(t, p, name)
	}
	const dist = "d15t0000-0000-4000-8000-000000000004"
	const distID = "d1570000-0000-4000-8000-000000000004"
	if _, err := p.SenderKeyCreate("alice", aliceAddr, dist); err == nil {
		t.Fatalf("SenderKeyCreate(invalid distribution id %q) = nil error, want an error", dist)
	}
	skdm, err := p.SenderKeyCreate("alice", aliceAddr, distID)
	if err != nil {
		t.Fatalf("SenderKeyCreate = %v", err)
	}
	var parsed struct {
		DistributionID string `json:"distribution_id"`
		Iteration      uint32 `json:"iteration"`
		ChainKey       []byte `json:"chain_key"`
	}
	if err := p.Call("parse_skdm", map[string]any{"skdm": skdm}, &parsed); err != nil {
		t.Fatalf("parse_skdm = %v", err)
	}
	if parsed.DistributionID != distID || parsed.Iteration != 0 || len(parsed.ChainKey) != 32 || skdm[0] != 0x33 {
		t.Errorf("parse_skdm = %s iteration %d chain key %d bytes, version byte %#x; want %s, 0, 32, 0x33",
			parsed.DistributionID, parsed.Iteration, len(parsed.ChainKey), skdm[0], distID)
	}
	for _, member := range []string{"bob", "carol"} {
		if err := p.SenderKeyProcess(member, aliceAddr, skdm); err != nil {
			t.Fatalf("SenderKeyProcess(%s) = %v", member, err)
		}
	}
	var msgs [][]byte
	for i := range 3 {
		ct, err := p.GroupEncrypt("alice", aliceAddr, distID, fmt.Appendf(nil, "group %d", i))
		if err != nil {
			t.Fatalf("GroupEncrypt = %v", err)
		}
		if ct[0] != 0x33 {
			t.Errorf("SenderKeyMessage version byte = %#x, want 0x33", ct[0])
		}
		msgs = append(msgs, ct)
	}
	for member, order := range map[string][]int{"bob": {2, 0, 1}, "carol": {0, 1, 2}} {
		for _, i := range order {
			got, err := p.GroupDecrypt(member, aliceAddr, msgs[i])
			if err != nil {
				t.Fatalf("GroupDecrypt(%s, %d) = %v", member, i, err)
			}
			if want := fmt.Appendf(nil, "group %d", i); !bytes.Equal(got, want) {
				t.Fatalf("GroupDecrypt(%s, %d) = %q, want %q", member, i, got, want)
			}
		}
	}
	tampered := bytes.Clone(msgs[1])
	tampered[len(tampered)-70] ^= 0x01 // inside the ciphertext, before the 64-byte signature
	if _, err := p.GroupDecrypt("bob", aliceAddr, tampered); err == nil {
		t.Fatal("GroupDecrypt(tampered) = nil error, want an error")
	}
	if _, err := p.GroupDecrypt("bob", carolAddr, msgs[0]); err == nil {
		t.Fatal("GroupDecrypt(unknown sender) = nil error, want an error")
	}
	empty, err := p.GroupEncrypt("alice", aliceAddr, distID, nil)
	if err != nil {
		t.Fatalf("GroupEncrypt(empty) = %v", err)
	}
	if got, err := p.GroupDecrypt("carol", aliceAddr, empty); err != nil || len(got) != 0 {
		t.Fatalf("GroupDecrypt(empty message) = %q, %v; want empty, nil", got, err)
	}
}

func TestFingerprint(t *testing.T) {
	p := StartForTest(t)
	a := newParty(t, p, "alice")
	b := newParty(t, p, "bob")
	c := newParty(t, p, "carol")
	aliceID := bytes.Repeat([]byte{0xa1}, 16)
	bobID := bytes.Repeat([]byte{0xb0}, 16)
	fp := func(localID, localKey, remoteID, remoteKey []byte) Fingerprint {
		t.Helper()
		f, err := p.Fingerprint(FingerprintArgs{Version: 2, Iterations: 5200, LocalID: localID, LocalKey: localKey, RemoteID: remoteID, RemoteKey: remoteKey})
		if err != nil {
			t.Fatalf("Fingerprint = %v", err)
		}
		return f
	}
	compare := func(x, y []byte) bool {
		t.Helper()
		var r struct {
			Equal bool `json:"equal"`
		}
		if err := p.Call("fingerprint_compare", map[string]any{"a": x, "b": y}, &r); err != nil {
			t.Fatalf("fingerprint_compare = %v", err)
		}
		return r.Equal
	}
	fromAlice := fp(aliceID, a.IdentityKey, bobID, b.IdentityKey)
	fromBob := fp(bobID, b.IdentityKey, aliceID, a.IdentityKey)
	if fromAlice.Displayable != fromBob.Displayable {
		t.Errorf("safety number from Alice = %s, from Bob = %s, want equal", fromAlice.Displayable, fromBob.Displayable)
	}
	if len(fromAlice.Displayable) != 60 || strings.Trim(fromAlice.Displayable, "0123456789") != "" {
		t.Errorf("safety number = %q, want 60 digits", fromAlice.Displayable)
	}
	if !compare(fromAlice.Scannable, fromBob.Scannable) {
		t.Error("scannable fingerprints from both sides do not match")
	}
	mitm := fp(aliceID, a.IdentityKey, bobID, c.IdentityKey)
	if mitm.Displayable == fromBob.Displayable || compare(mitm.Scannable, fromBob.Scannable) {
		t.Error("a substituted remote key gives the same fingerprint")
	}
}

func TestXEdDSAAndAgreement(t *testing.T) {
	p := StartForTest(t)
	priv, pub, err := p.KeyPair()
	if err != nil {
		t.Fatalf("KeyPair = %v", err)
	}
	if len(priv) != 32 || len(pub) != 33 || pub[0] != 0x05 {
		t.Fatalf("KeyPair = %d-byte private, %d-byte public starting %#x; want 32, 33, 0x05", len(priv), len(pub), pub[0])
	}
	otherPriv, otherPub, err := p.KeyPair()
	if err != nil {
		t.Fatalf("KeyPair = %v", err)
	}
	msg := []byte("signed prekey bytes")
	sig, err := p.Sign(priv, msg)
	if err != nil {
		t.Fatalf("Sign = %v", err)
	}
	if len(sig) != 64 {
		t.Fatalf("Sign = %d bytes, want 64", len(sig))
	}
	badSig := bytes.Clone(sig)
	badSig[3] ^= 1
	tests := []struct {
		name     string
		pub, msg []byte
		sig      []byte
		want     bool
	}{
		{"valid", pub, msg, sig, true},
		{"other message", pub, []byte("signed prekey bytez"), sig, false},
		{"flipped signature bit", pub, msg, badSig, false},
		{"other key", otherPub, msg, sig, false},
	}
	for _, tt := range tests {
		got, err := p.Verify(tt.pub, tt.msg, tt.sig)
		if err != nil {
			t.Fatalf("Verify(%s) = %v", tt.name, err)
		}
		if got != tt.want {
			t.Errorf("Verify(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
	ab, err := p.Agree(priv, otherPub)
	if err != nil {
		t.Fatalf("Agree = %v", err)
	}
	ba, err := p.Agree(otherPriv, pub)
	if err != nil {
		t.Fatalf("Agree = %v", err)
	}
	if len(ab) != 32 || !bytes.Equal(ab, ba) {
		t.Errorf("Agree(a, B) = %x, Agree(b, A) = %x, want equal 32 bytes", ab, ba)
	}
}

func TestCallErrors(t *testing.T) {
	p := StartForTest(t)
	tests := []struct {
		name     string
		op       string
		args     any
		peerSide bool // the peer, not the harness, rejects it
	}{
		{"unknown op", "no_such_op", nil, true},
		{"unknown party", "identity", partyArgs{"nobody"}, true},
		{"bad base64", "xeddsa_verify", map[string]any{"public_key": "not base64!", "message": "", "signature": ""}, true},
		{"malformed key", "agree", map[string]any{"private_key": make([]byte, 5), "public_key": make([]byte, 33)}, true},
		{"args set op", "hello", map[string]any{"op": "quit"}, false},
		{"args not an object", "hello", []int{1}, false},
	}
	for _, tt := range tests {
		err := p.Call(tt.op, tt.args, nil)
		var perr *Error
		if got := errors.As(err, &perr); err == nil || got != tt.peerSide {
			t.Errorf("Call(%s) = %v, want an error from the %s", tt.name, err, map[bool]string{true: "peer", false: "harness"}[tt.peerSide])
		}
	}
	// The peer still answers after all that.
	if err := p.Call("hello", nil, nil); err != nil {
		t.Fatalf("Call(hello) after errors = %v", err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	p := StartForTest(t)
	priv, pub, err := p.KeyPair()
	if err != nil {
		t.Fatalf("KeyPair = %v", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 8 {
				msg := fmt.Appendf(nil, "goroutine %d message %d", g, i)
				sig, err := p.Sign(priv, msg)
				if err != nil {
					errs <- err
					return
				}
				// A reply routed to the wrong caller would carry a signature over another message.
				if ok, err := p.Verify(pub, msg, sig); err != nil || !ok {
					errs <- fmt.Errorf("Verify(own signature of %q) = %v, %v; want true", msg, ok, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestBench(t *testing.T) {
	p := StartForTest(t)
	for _, kind := range []string{BenchOneChain, BenchRatchetStep, BenchSetup, BenchGroup} {
		r, err := p.Bench(kind, 3)
		if err != nil {
			t.Fatalf("Bench(%s) = %v", kind, err)
		}
		if r.N != 3 || r.NsPerOp <= 0 {
			t.Errorf("Bench(%s, 3) = %+v, want n 3 and a positive rate", kind, r)
		}
	}
	if _, err := p.Bench("no_such_kind", 1); err == nil {
		t.Error("Bench(no_such_kind) = nil error, want an error")
	}
}

func TestClose(t *testing.T) {
	p := StartForTest(t)
	if err := p.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := p.Call("hello", nil, nil); err == nil {
		t.Fatal("Call after Close = nil error, want an error")
	}
}

// BenchmarkLibsignal reports libsignal's own rates (two parties inside the
// Node peer), for comparison with the Go implementation's benchmarks.
func BenchmarkLibsignal(b *testing.B) {
	p := StartForTest(b)
	for _, kind := range []string{BenchOneChain, BenchRatchetStep, BenchSetup, BenchGroup} {
		b.Run(kind, func(b *testing.B) {
			r, err := p.Bench(kind, b.N)
			if err != nil {
				b.Fatalf("Bench(%s) = %v", kind, err)
			}
			b.ReportMetric(float64(r.NsPerOp), "libsignal-ns/op")
		})
	}
}
