package libsignal

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

// establish runs a full session between two fresh parties and returns them.
func establish(t *testing.T, p *Peer, alice, bob string) (Party, Party) {
	t.Helper()
	a := newParty(t, p, alice)
	b := newParty(t, p, bob)
	bundle, err := p.GenerateBundle(bob, BundleArgs{DeviceID: 1, PreKeyID: 1, SignedPreKeyID: 1, KyberPreKeyID: 1})
	if err != nil {
		t.Fatalf("GenerateBundle = %v", err)
	}
	if err := p.ProcessBundle(alice, bobAddr, bundle); err != nil {
		t.Fatalf("ProcessBundle = %v", err)
	}
	m, err := p.Encrypt(alice, bobAddr, []byte("hi"))
	if err != nil {
		t.Fatalf("Encrypt = %v", err)
	}
	mustDecrypt(t, p, bob, aliceAddr, m, []byte("hi"))
	return a, b
}

func TestImportedIdentity(t *testing.T) {
	p := StartForTest(t)
	priv, pub, err := p.KeyPair()
	if err != nil {
		t.Fatalf("KeyPair = %v", err)
	}
	got, err := p.NewParty(NewPartyArgs{Party: "alice", RegistrationID: 4242, IdentityPrivate: priv})
	if err != nil {
		t.Fatalf("NewParty = %v", err)
	}
	if !bytes.Equal(got.IdentityKey, pub) || got.RegistrationID != 4242 {
		t.Errorf("NewParty(imported key) = %x/%d, want %x/4242", got.IdentityKey, got.RegistrationID, pub)
	}
	id, err := p.Identity("alice")
	if err != nil {
		t.Fatalf("Identity = %v", err)
	}
	if !bytes.Equal(id.IdentityPrivate, priv) || !bytes.Equal(id.IdentityKey, pub) {
		t.Errorf("Identity = %x/%x, want %x/%x", id.IdentityPrivate, id.IdentityKey, priv, pub)
	}
	var derived struct {
		PublicKey []byte `json:"public_key"`
	}
	if err := p.Call("public_key", map[string]any{"private_key": priv}, &derived); err != nil || !bytes.Equal(derived.PublicKey, pub) {
		t.Errorf("public_key(private) = %x, %v; want %x", derived.PublicKey, err, pub)
	}
	if _, err := p.NewParty(NewPartyArgs{Party: "alice"}); err == nil {
		t.Error("NewParty(existing name) = nil error, want an error")
	}
}

func TestIdentityTrust(t *testing.T) {
	p := StartForTest(t)
	_, b := establish(t, p, "alice", "bob")
	var got struct {
		IdentityKey []byte `json:"identity_key"`
	}
	if err := p.Call("get_identity", addrArgs{"alice", bobAddr}, &got); err != nil || !bytes.Equal(got.IdentityKey, b.IdentityKey) {
		t.Fatalf("get_identity(bob) = %x, %v; want %x", got.IdentityKey, err, b.IdentityKey)
	}
	_, other, err := p.KeyPair()
	if err != nil {
		t.Fatalf("KeyPair = %v", err)
	}
	// A bundle under a different identity key is not trusted (trust on first use).
	newParty(t, p, "mallory")
	bundle, err := p.GenerateBundle("mallory", BundleArgs{DeviceID: 1, PreKeyID: 2, SignedPreKeyID: 2, KyberPreKeyID: 2})
	if err != nil {
		t.Fatalf("GenerateBundle = %v", err)
	}
	var perr *Error
	if err := p.ProcessBundle("alice", bobAddr, bundle); !errors.As(err, &perr) || perr.Code != "UntrustedIdentity" {
		t.Fatalf("ProcessBundle(other identity for bob) = %v, want UntrustedIdentity", err)
	}
	var saved struct {
		Replaced bool `json:"replaced"`
	}
	if err := p.Call("save_identity", map[string]any{"party": "alice", "address": bobAddr, "identity_key": other}, &saved); err != nil || !saved.Replaced {
		t.Fatalf("save_identity(new key) = %v, %v; want replaced", saved.Replaced, err)
	}
	if err := p.Call("save_identity", map[string]any{"party": "alice", "address": bobAddr, "identity_key": other}, &saved); err != nil || saved.Replaced {
		t.Fatalf("save_identity(same key again) = %v, %v; want not replaced", saved.Replaced, err)
	}
	got.IdentityKey = nil
	if err := p.Call("get_identity", addrArgs{"alice", carolAddr}, &got); err != nil || got.IdentityKey != nil {
		t.Fatalf("get_identity(unknown) = %x, %v; want none", got.IdentityKey, err)
	}
}

func TestSessionArchive(t *testing.T) {
	p := StartForTest(t)
	establish(t, p, "alice", "bob")
	if err := p.Call("session_archive", addrArgs{"alice", bobAddr}, nil); err != nil {
		t.Fatalf("session_archive = %v", err)
	}
	info, err := p.SessionInfo("alice", bobAddr)
	if err != nil {
		t.Fatalf("SessionInfo = %v", err)
	}
	if !info.Exists || info.HasCurrentState {
		t.Errorf("SessionInfo after archive = exists %v current %v, want true, false", info.Exists, info.HasCurrentState)
	}
	var perr *Error
	if _, err := p.Encrypt("alice", bobAddr, []byte("x")); !errors.As(err, &perr) {
		t.Errorf("Encrypt after archive = %v, want a libsignal error", err)
	}
	if info, err := p.SessionInfo("alice", carolAddr); err != nil || info.Exists {
		t.Errorf("SessionInfo(no session) = %+v, %v; want not existing", info, err)
	}
}

func TestHKDF(t *testing.T) {
	p := StartForTest(t)
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// RFC 5869, appendix A.1 (test case 1).
	var r struct {
		OKM []byte `json:"okm"`
	}
	err := p.Call("hkdf", map[string]any{
		"length": 42,
		"ikm":    unhex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
		"salt":   unhex("000102030405060708090a0b0c"),
		"info":   unhex("f0f1f2f3f4f5f6f7f8f9"),
	}, &r)
	want := unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
	if err != nil || !bytes.Equal(r.OKM, want) {
		t.Errorf("hkdf(RFC 5869 A.1) = %x, %v; want %x", r.OKM, err, want)
	}
}

func TestKyberKeyPair(t *testing.T) {
	p := StartForTest(t)
	var r struct {
		Public []byte `json:"public"`
		Secret []byte `json:"secret"`
	}
	if err := p.Call("kyber_keypair", nil, &r); err != nil {
		t.Fatalf("kyber_keypair = %v", err)
	}
	// Kyber-1024 round 3: 1568-byte public key, 3168-byte secret key, both tagged 0x08.
	if len(r.Public) != 1569 || r.Public[0] != 0x08 || len(r.Secret) != 3169 || r.Secret[0] != 0x08 {
		t.Errorf("kyber_keypair = public %d bytes (%#x), secret %d bytes (%#x); want 1569 and 3169, both 0x08",
			len(r.Public), r.Public[0], len(r.Secret), r.Secret[0])
	}
}

func TestSignalMessageEncoding(t *testing.T) {
	p := StartForTest(t)
	_, ratchet, _ := p.KeyPair()
	_, sender, _ := p.KeyPair()
	_, receiver, err := p.KeyPair()
	if err != nil {
		t.Fatalf("KeyPair = %v", err)
	}
	macKey := bytes.Repeat([]byte{7}, 32)
	args := map[string]any{
		"version": 4, "mac_key": macKey, "sender_ratchet_key": ratchet, "counter": 5, "previous_counter": 3,
		"ciphertext": bytes.Repeat([]byte{9}, 32), "sender_identity_key": sender, "receiver_identity_key": receiver,
	}
	var built struct {
		Message []byte `json:"message"`
	}
	if err := p.Call("build_signal_message", args, &built); err != nil {
		t.Fatalf("build_signal_message = %v", err)
	}
	var again struct {
		Message []byte `json:"message"`
	}
	if err := p.Call("build_signal_message", args, &again); err != nil || !bytes.Equal(built.Message, again.Message) {
		t.Fatalf("build_signal_message twice = %x, %v; want the same bytes %x", again.Message, err, built.Message)
	}
	if built.Message[0] != 0x44 {
		t.Errorf("SignalMessage version byte = %#x, want 0x44", built.Message[0])
	}
	var parsed struct {
		Version int    `json:"version"`
		Counter uint32 `json:"counter"`
		Body    []byte `json:"body"`
	}
	if err := p.Call("parse_signal_message", map[string]any{"message": built.Message}, &parsed); err != nil {
		t.Fatalf("parse_signal_message = %v", err)
	}
	if parsed.Version != 4 || parsed.Counter != 5 || !bytes.Equal(parsed.Body, bytes.Repeat([]byte{9}, 32)) {
		t.Errorf("parse_signal_message = %+v, want version 4, counter 5, the body", parsed)
	}
	verify := func(msg, s, r, key []byte) bool {
		t.Helper()
		var v struct {
			Valid bool `json:"valid"`
		}
		if err := p.Call("verify_mac", map[string]any{"message": msg, "sender_identity_key": s, "receiver_identity_key": r, "mac_key": key}, &v); err != nil {
			t.Fatalf("verify_mac = %v", err)
		}
		return v.Valid
	}
	if !verify(built.Message, sender, receiver, macKey) {
		t.Error("verify_mac(built message) = false, want true")
	}
	if verify(built.Message, receiver, sender, macKey) {
		t.Error("verify_mac(identities swapped) = true, want false")
	}
	if verify(built.Message, sender, receiver, bytes.Repeat([]byte{8}, 32)) {
		t.Error("verify_mac(other key) = true, want false")
	}
}

func TestSenderKeyEncoding(t *testing.T) {
	p := StartForTest(t)
	priv, pub, _ := p.KeyPair()
	_, other, err := p.KeyPair()
	if err != nil {
		t.Fatalf("KeyPair = %v", err)
	}
	const dist = "d1570000-0000-4000-8000-000000000004"
	chainKey := bytes.Repeat([]byte{3}, 32)
	var skdm struct {
		SKDM []byte `json:"skdm"`
	}
	if err := p.Call("build_skdm", map[string]any{"version": 3, "distribution_id": dist, "chain_id": 7, "iteration": 3, "chain_key": chainKey, "signing_key": pub}, &skdm); err != nil {
		t.Fatalf("build_skdm = %v", err)
	}
	var parsed struct {
		DistributionID string `json:"distribution_id"`
		ChainID        uint32 `json:"chain_id"`
		Iteration      uint32 `json:"iteration"`
		ChainKey       []byte `json:"chain_key"`
	}
	if err := p.Call("parse_skdm", map[string]any{"skdm": skdm.SKDM}, &parsed); err != nil {
		t.Fatalf("parse_skdm = %v", err)
	}
	if parsed.DistributionID != dist || parsed.ChainID != 7 || parsed.Iteration != 3 || !bytes.Equal(parsed.ChainKey, chainKey) {
		t.Errorf("parse_skdm(build_skdm) = %+v, want %s, 7, 3, %x", parsed, dist, chainKey)
	}

	var skm struct {
		Message []byte `json:"message"`
	}
	if err := p.Call("build_sender_key_message", map[string]any{"version": 3, "distribution_id": dist, "chain_id": 7, "iteration": 4, "ciphertext": []byte("0123456789abcdef"), "signing_private": priv}, &skm); err != nil {
		t.Fatalf("build_sender_key_message = %v", err)
	}
	for _, tt := range []struct {
		name string
		key  []byte
		want bool
	}{{"signer's key", pub, true}, {"other key", other, false}} {
		var r struct {
			DistributionID string `json:"distribution_id"`
			ChainID        uint32 `json:"chain_id"`
			Iteration      uint32 `json:"iteration"`
			Body           []byte `json:"body"`
			SignatureValid *bool  `json:"signature_valid"`
		}
		if err := p.Call("parse_sender_key_message", map[string]any{"message": skm.Message, "signing_key": tt.key}, &r); err != nil {
			t.Fatalf("parse_sender_key_message = %v", err)
		}
		if r.DistributionID != dist || r.ChainID != 7 || r.Iteration != 4 || string(r.Body) != "0123456789abcdef" || r.SignatureValid == nil || *r.SignatureValid != tt.want {
			t.Errorf("parse_sender_key_message(%s) = %+v (valid %v), want %s, 7, 4, the body, valid %v", tt.name, r, r.SignatureValid, dist, tt.want)
		}
	}
}

func TestSealedSender(t *testing.T) {
	p := StartForTest(t)
	a, _ := establish(t, p, "alice", "bob")
	rootPriv, rootPub, _ := p.KeyPair()
	serverPriv, _, _ := p.KeyPair()
	_, otherRoot, err := p.KeyPair()
	if err != nil {
		t.Fatalf("KeyPair = %v", err)
	}
	expiration := time.Now().Add(time.Hour).UnixMilli()
	var certs struct {
		ServerCertificate []byte `json:"server_certificate"`
		SenderCertificate []byte `json:"sender_certificate"`
	}
	if err := p.Call("sender_certificate", map[string]any{
		"trust_root_private": rootPriv, "server_key_private": serverPriv, "server_key_id": 1,
		"sender_uuid": aliceAddr.Name, "sender_device_id": aliceAddr.DeviceID, "sender_identity_key": a.IdentityKey,
		"expiration": expiration,
	}, &certs); err != nil {
		t.Fatalf("sender_certificate = %v", err)
	}
	for _, tt := range []struct {
		name string
		root []byte
		time int64
		want bool
	}{
		{"valid", rootPub, expiration - 1, true},
		{"expired", rootPub, expiration + 1, false},
		{"other trust root", otherRoot, expiration - 1, false},
	} {
		var v struct {
			Valid bool `json:"valid"`
		}
		if err := p.Call("sender_certificate_validate", map[string]any{"sender_certificate": certs.SenderCertificate, "trust_root": tt.root, "time": tt.time}, &v); err != nil {
			t.Fatalf("sender_certificate_validate = %v", err)
		}
		if v.Valid != tt.want {
			t.Errorf("sender_certificate_validate(%s) = %v, want %v", tt.name, v.Valid, tt.want)
		}
	}

	var sealed struct {
		Ciphertext []byte `json:"ciphertext"`
	}
	if err := p.Call("sealed_encrypt", map[string]any{"party": "alice", "address": bobAddr, "sender_certificate": certs.SenderCertificate, "plaintext": []byte("sealed hello")}, &sealed); err != nil {
		t.Fatalf("sealed_encrypt = %v", err)
	}
	var usmc struct {
		MsgType           int    `json:"msg_type"`
		SenderCertificate []byte `json:"sender_certificate"`
	}
	if err := p.Call("sealed_decrypt_to_usmc", map[string]any{"party": "bob", "ciphertext": sealed.Ciphertext}, &usmc); err != nil {
		t.Fatalf("sealed_decrypt_to_usmc = %v", err)
	}
	// Alice has not heard from Bob yet, so the sealed message is still a PreKey message.
	if usmc.MsgType != int(TypePreKey) || !bytes.Equal(usmc.SenderCertificate, certs.SenderCertificate) {
		t.Errorf("sealed_decrypt_to_usmc = type %d, cert match %v; want type %d and the sender certificate",
			usmc.MsgType, bytes.Equal(usmc.SenderCertificate, certs.SenderCertificate), TypePreKey)
	}
	open := func(root []byte) (map[string]any, error) {
		var r struct {
			Plaintext      []byte `json:"plaintext"`
			SenderUUID     string `json:"sender_uuid"`
			SenderDeviceID uint32 `json:"sender_device_id"`
		}
		err := p.Call("sealed_decrypt", map[string]any{
			"party": "bob", "ciphertext": sealed.Ciphertext, "trust_root": root, "timestamp": expiration - 1,
			"local_uuid": bobAddr.Name, "local_device_id": bobAddr.DeviceID,
		}, &r)
		return map[string]any{"plaintext": string(r.Plaintext), "uuid": r.SenderUUID, "device": r.SenderDeviceID}, err
	}
	if _, err := open(otherRoot); err == nil {
		t.Error("sealed_decrypt(other trust root) = nil error, want an error")
	}
	got, err := open(rootPub)
	if err != nil {
		t.Fatalf("sealed_decrypt = %v", err)
	}
	if got["plaintext"] != "sealed hello" || got["uuid"] != aliceAddr.Name || got["device"] != aliceAddr.DeviceID {
		t.Errorf("sealed_decrypt = %v, want plaintext %q from %s.%d", got, "sealed hello", aliceAddr.Name, aliceAddr.DeviceID)
	}
}
