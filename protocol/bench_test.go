package protocol_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/bastionchat/bastion/interop/libsignal"
	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/kem"
)

// Benchmarks of the protocol and, measured in the same run, of the primitives it
// cannot avoid (the "floor"), and of libsignal through the Node peer. See
// docs/bench/protocol.md.

var benchMsg = bytes.Repeat([]byte{'a'}, 256)

func BenchmarkSetupSender(b *testing.B) {
	alice, bob := newParty(b, aliceID, 1), newParty(b, bobID, 2)
	bundle := bob.bundle(b, 1, 2, 3, true)
	b.ReportAllocs()
	for b.Loop() {
		if err := alice.cipher.ProcessPreKeyBundle(ctx, bob.addr, bundle, now); err != nil {
			b.Fatal(err)
		}
		if _, err := alice.cipher.Encrypt(ctx, bob.addr, benchMsg, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSetupReceiver(b *testing.B) {
	bob := newParty(b, bobID, 2)
	bundle := bob.bundle(b, 1, 2, 3, false)
	// A last-resort Kyber prekey, so every iteration can use it with a new base key.
	kpk, err := bob.store.LoadKyberPreKey(ctx, 3)
	if err != nil {
		b.Fatal(err)
	}
	bob.store.StoreKyberPreKey(kpk, true)
	b.ReportAllocs()
	i := uint32(0)
	for b.Loop() {
		b.StopTimer()
		// A new initiator each time, so Bob's records stay as small as in real use.
		i++
		alice := newParty(b, protocol.Address{Name: fmt.Sprintf("a11ce000-0000-4000-8000-%012d", i), DeviceID: 1}, 1)
		if err := alice.cipher.ProcessPreKeyBundle(ctx, bob.addr, bundle, now); err != nil {
			b.Fatal(err)
		}
		m := alice.encrypt(b, bob, string(benchMsg))
		in, err := protocol.ParseCiphertextMessage(m.Type(), m.Bytes())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := bob.cipher.Decrypt(ctx, alice.addr, in); err != nil {
			b.Fatal(err)
		}
	}
}

// roundTrip encrypts benchMsg from one party and decrypts it at the other.
func roundTrip(b *testing.B, from, to *party) {
	m, err := from.cipher.Encrypt(ctx, to.addr, benchMsg, now)
	if err != nil {
		b.Fatal(err)
	}
	in, err := protocol.NewSignalMessage(m.Bytes())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := to.cipher.DecryptSignal(ctx, from.addr, in); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkOneChain: encrypt and decrypt a 256-byte message, always Alice to Bob.
func BenchmarkOneChain(b *testing.B) {
	alice, bob := established(b)
	b.ReportAllocs()
	for b.Loop() {
		roundTrip(b, alice, bob)
	}
}

// BenchmarkRatchetStep: encrypt and decrypt, alternating direction, so every message
// carries a new ratchet key and every decryption a DH ratchet step.
func BenchmarkRatchetStep(b *testing.B) {
	alice, bob := established(b)
	from, to := alice, bob
	b.ReportAllocs()
	for b.Loop() {
		roundTrip(b, from, to)
		from, to = to, from
	}
}

// ---- The floor: the primitive calls one operation cannot avoid, made plainly with
// the standard library (a new HMAC, HKDF and AES state per use).

func floorHMAC(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// floorMessage is one side of one message: chain step (2 HMAC), message keys (HKDF,
// 80 bytes), AES-256-CBC of 256 bytes, and the MAC over identities and message.
func floorMessage(b *testing.B, ck, ids []byte, encrypt bool) {
	seed := floorHMAC(ck, []byte{1})
	_ = floorHMAC(ck, []byte{2})
	okm, err := hkdf.Key(sha256.New, seed, nil, "WhisperMessageKeys", 80)
	if err != nil {
		b.Fatal(err)
	}
	blk, err := aes.NewCipher(okm[:32])
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 272)
	copy(buf, benchMsg)
	if encrypt {
		cipher.NewCBCEncrypter(blk, okm[64:80]).CryptBlocks(buf, buf)
	} else {
		cipher.NewCBCDecrypter(blk, okm[64:80]).CryptBlocks(buf, buf)
	}
	_ = floorHMAC(okm[32:64], ids, buf)
}

func BenchmarkFloorOneChain(b *testing.B) {
	ck := bytes.Repeat([]byte{7}, 32)
	ids := bytes.Repeat([]byte{5}, 66)
	for b.Loop() {
		floorMessage(b, ck, ids, true)
		floorMessage(b, ck, ids, false)
	}
}

// BenchmarkFloorRatchetStep adds what a DH ratchet step needs on the receiving side:
// a key generation, two X25519 agreements and two 64-byte HKDFs.
func BenchmarkFloorRatchetStep(b *testing.B) {
	ck := bytes.Repeat([]byte{7}, 32)
	ids := bytes.Repeat([]byte{5}, 66)
	x := ecdh.X25519()
	ours, _ := x.GenerateKey(rand.Reader)
	theirs, _ := x.GenerateKey(rand.Reader)
	for b.Loop() {
		floorMessage(b, ck, ids, true)
		floorMessage(b, ck, ids, false)
		fresh, err := x.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		s1, _ := ours.ECDH(theirs.PublicKey())
		s2, _ := fresh.ECDH(theirs.PublicKey())
		_, _ = hkdf.Key(sha256.New, s1, ck, "WhisperRatchet", 64)
		_, _ = hkdf.Key(sha256.New, s2, ck, "WhisperRatchet", 64)
	}
}

// BenchmarkFloorSetupSender is PQXDH's unavoidable work for the sender plus the first
// message: two XEdDSA verifications (bundle), two key generations (base and ratchet
// key), five X25519 agreements (four PQXDH, one ratchet), a Kyber-1024 encapsulation,
// two HKDFs, and one message.
func BenchmarkFloorSetupSender(b *testing.B) {
	floor := newFloorSetup(b)
	for b.Loop() {
		floor()
	}
}

func newFloorSetup(b *testing.B) func() {
	id, _ := protocol.GenerateIdentityKeyPair(nil)
	spk, _ := curve.GeneratePrivateKey(nil)
	sig, _ := id.PrivateKey().Sign(nil, spk.PublicKey().Bytes())
	kp, _ := kem.GenerateKeyPair(nil)
	ksig, _ := id.PrivateKey().Sign(nil, kp.Public.Bytes())
	kpub := kp.Public.Bytes()
	ck := bytes.Repeat([]byte{7}, 32)
	ids := bytes.Repeat([]byte{5}, 66)
	return func() {
		if !id.PublicKey().Verify(spk.PublicKey().Bytes(), sig) || !id.PublicKey().Verify(kpub, ksig) {
			b.Fatal("verify")
		}
		base, _ := curve.GeneratePrivateKey(nil)
		ratchet, _ := curve.GeneratePrivateKey(nil)
		for _, k := range []*curve.PrivateKey{id.PrivateKey(), base, base, base, ratchet} {
			if _, err := k.Agree(spk.PublicKey()); err != nil {
				b.Fatal(err)
			}
		}
		if _, _, err := kp.Public.Encapsulate(nil); err != nil {
			b.Fatal(err)
		}
		_, _ = hkdf.Key(sha256.New, ck, nil, "WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024", 64)
		_, _ = hkdf.Key(sha256.New, ck, ck, "WhisperRatchet", 64)
		floorMessage(b, ck, ids, true)
	}
}

// BenchmarkLibsignal measures libsignal's Node binding on the same operations, inside
// the peer (libsignal against libsignal); it skips when the peer is not installed.
func BenchmarkLibsignal(b *testing.B) {
	peer := libsignal.StartForTest(b)
	for _, kind := range []struct{ name, op string }{
		{"OneChain", libsignal.BenchOneChain},
		{"RatchetStep", libsignal.BenchRatchetStep},
		{"SetupSender", libsignal.BenchSetup},
	} {
		b.Run(kind.name, func(b *testing.B) {
			n := 1000
			if kind.op == libsignal.BenchSetup {
				n = 200
			}
			var total int64
			calls := 0
			for b.Loop() {
				r, err := peer.Bench(kind.op, n)
				if err != nil {
					b.Fatal(err)
				}
				total += r.NsPerOp
				calls++
			}
			b.ReportMetric(float64(total)/float64(calls), "libsignal-ns/op")
		})
	}
}

// BenchmarkInterleaved runs each operation and its floor alternately, timing each
// separately, so that load from other processes falls on both alike; it reports both
// per-operation times and their ratio.
func BenchmarkInterleaved(b *testing.B) {
	ck := bytes.Repeat([]byte{7}, 32)
	ids := bytes.Repeat([]byte{5}, 66)
	x := ecdh.X25519()
	ours, _ := x.GenerateKey(rand.Reader)
	theirs, _ := x.GenerateKey(rand.Reader)
	floorOneChain := func() {
		floorMessage(b, ck, ids, true)
		floorMessage(b, ck, ids, false)
	}
	floorStep := func() {
		floorOneChain()
		fresh, _ := x.GenerateKey(rand.Reader)
		s1, _ := ours.ECDH(theirs.PublicKey())
		s2, _ := fresh.ECDH(theirs.PublicKey())
		_, _ = hkdf.Key(sha256.New, s1, ck, "WhisperRatchet", 64)
		_, _ = hkdf.Key(sha256.New, s2, ck, "WhisperRatchet", 64)
	}
	run := func(b *testing.B, op, floor func()) {
		var opT, floorT time.Duration
		for b.Loop() {
			t0 := time.Now()
			op()
			t1 := time.Now()
			floor()
			floorT += time.Since(t1)
			opT += t1.Sub(t0)
		}
		n := float64(b.N)
		b.ReportMetric(float64(opT.Nanoseconds())/n, "bastion-ns/op")
		b.ReportMetric(float64(floorT.Nanoseconds())/n, "floor-ns/op")
		b.ReportMetric(float64(opT)/float64(floorT), "ratio")
	}
	b.Run("OneChain", func(b *testing.B) {
		alice, bob := established(b)
		run(b, func() { roundTrip(b, alice, bob) }, floorOneChain)
	})
	b.Run("RatchetStep", func(b *testing.B) {
		alice, bob := established(b)
		from, to := alice, bob
		run(b, func() { roundTrip(b, from, to); from, to = to, from }, floorStep)
	})
	b.Run("SetupSender", func(b *testing.B) {
		alice, bob := newParty(b, aliceID, 1), newParty(b, bobID, 2)
		bundle := bob.bundle(b, 1, 2, 3, true)
		run(b, func() {
			if err := alice.cipher.ProcessPreKeyBundle(ctx, bob.addr, bundle, now); err != nil {
				b.Fatal(err)
			}
			if _, err := alice.cipher.Encrypt(ctx, bob.addr, benchMsg, now); err != nil {
				b.Fatal(err)
			}
		}, newFloorSetup(b))
	})
}

// BenchmarkVsLibsignal alternates rounds of Bastion and of libsignal (inside the Node
// peer) on the same operation, so that both see the same machine load; it reports both
// per-operation times and libsignal's time as a multiple of Bastion's.
func BenchmarkVsLibsignal(b *testing.B) {
	peer := libsignal.StartForTest(b)
	// Rounds long enough that the peer's per-call cost (and its JIT warming up after
	// each switch) does not count against libsignal.
	run := func(b *testing.B, kind string, round int, op func()) {
		var ours, theirs time.Duration
		rounds := 0
		for b.Loop() {
			t0 := time.Now()
			for range round {
				op()
			}
			ours += time.Since(t0)
			r, err := peer.Bench(kind, round)
			if err != nil {
				b.Fatal(err)
			}
			theirs += time.Duration(r.NsPerOp) * time.Duration(round)
			rounds++
		}
		n := float64(rounds * round)
		b.ReportMetric(float64(ours.Nanoseconds())/n, "bastion-ns/op")
		b.ReportMetric(float64(theirs.Nanoseconds())/n, "libsignal-ns/op")
		b.ReportMetric(float64(theirs)/float64(ours), "libsignal/bastion")
	}
	b.Run("OneChain", func(b *testing.B) {
		alice, bob := established(b)
		run(b, libsignal.BenchOneChain, 500, func() { roundTrip(b, alice, bob) })
	})
	b.Run("RatchetStep", func(b *testing.B) {
		alice, bob := established(b)
		from, to := alice, bob
		run(b, libsignal.BenchRatchetStep, 300, func() { roundTrip(b, from, to); from, to = to, from })
	})
	b.Run("SetupSender", func(b *testing.B) {
		alice, bob := newParty(b, aliceID, 1), newParty(b, bobID, 2)
		bundle := bob.bundle(b, 1, 2, 3, true)
		run(b, libsignal.BenchSetup, 100, func() {
			if err := alice.cipher.ProcessPreKeyBundle(ctx, bob.addr, bundle, now); err != nil {
				b.Fatal(err)
			}
			if _, err := alice.cipher.Encrypt(ctx, bob.addr, benchMsg, now); err != nil {
				b.Fatal(err)
			}
		})
	})
}
