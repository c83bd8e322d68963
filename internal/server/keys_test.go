package server

import (
	"testing"
	"time"

	"github.com/bastionchat/bastion/api"
)

func TestKeyUploadChecks(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	c := h.register("+14155550201", 2)
	other := newIdentity(t)
	flip := func(k api.SignedPreKey) *api.SignedPreKey {
		k.Signature = append([]byte(nil), k.Signature...)
		k.Signature[10] ^= 0x40
		return &k
	}
	good := keys(t, c.ik, 100, 1)
	tests := []struct {
		name string
		req  api.SetKeysRequest
		code string
	}{
		{"signed prekey, bad signature", api.SetKeysRequest{SignedPreKey: flip(*good.SignedPreKey)}, api.CodeBadSignature},
		{"signed prekey, signed by another key", api.SetKeysRequest{SignedPreKey: ptr(sign(t, other, 5, ecKey(t)))}, api.CodeBadSignature},
		{"signed prekey, not a key", api.SetKeysRequest{SignedPreKey: ptr(sign(t, c.ik, 5, []byte{5, 1, 2}))}, api.CodeBadRequest},
		{"kyber last resort, bad signature", api.SetKeysRequest{KyberLastResort: flip(*good.KyberLastResort)}, api.CodeBadSignature},
		{"kyber last resort, EC key", api.SetKeysRequest{KyberLastResort: ptr(sign(t, c.ik, 5, ecKey(t)))}, api.CodeBadRequest},
		{"kyber prekey, wrong type byte", api.SetKeysRequest{KyberPreKeys: []api.SignedPreKey{sign(t, c.ik, 5, append([]byte{0x07}, kyberKey()[1:]...))}}, api.CodeBadRequest},
		{"kyber prekey, bad signature", api.SetKeysRequest{KyberPreKeys: []api.SignedPreKey{*flip(good.KyberPreKeys[0])}}, api.CodeBadSignature},
		{"one-time prekey, bad key", api.SetKeysRequest{PreKeys: []api.PreKey{{KeyID: 9, PublicKey: make([]byte, 33)}}}, api.CodeBadRequest},
		{"too many prekeys", api.SetKeysRequest{PreKeys: make([]api.PreKey, 101)}, api.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A valid key rides along: a bad one refuses the whole upload.
			tt.req.PreKeys = append(tt.req.PreKeys, api.PreKey{KeyID: 77, PublicKey: ecKey(t)})
			h.want(h.do("PUT", "/v1/keys", tt.req, c), 400, tt.code, "PUT /v1/keys")
			r := h.do("GET", "/v1/keys", nil, c)
			if got := decodeBody[api.PreKeyCount](t, r); got != (api.PreKeyCount{Count: 2, KyberCount: 2}) {
				t.Errorf("prekey count after a refused upload = %+v, want 2 and 2", got)
			}
		})
	}
	h.want(h.do("PUT", "/v1/keys", good, c), 204, "", "PUT /v1/keys with good keys")
	r := h.do("GET", "/v1/keys", nil, c)
	if got := decodeBody[api.PreKeyCount](t, r); got != (api.PreKeyCount{Count: 3, KyberCount: 3}) {
		t.Errorf("prekey count after upload = %+v, want 3 and 3", got)
	}
}

func ptr[T any](v T) *T { return &v }

func TestBundleConsumesKeys(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	bob := h.register("+14155550202", 2)
	alice := h.register("+14155550203", 0)
	seenEC := map[uint32]bool{}
	seenKyber := map[uint32]bool{}
	for i := range 3 {
		r := h.do("GET", "/v1/keys/"+bob.account.String()+"/*", nil, alice)
		h.want(r, 200, "", "GET bundle")
		b := decodeBody[api.BundleResponse](t, r)
		if len(b.Devices) != 1 || b.Devices[0].DeviceID != 1 || b.Devices[0].RegistrationID != bob.regID {
			t.Fatalf("bundle %d devices = %+v, want device 1 with registration id %d", i, b.Devices, bob.regID)
		}
		d := b.Devices[0]
		if string(b.IdentityKey) != string(bob.ik.PublicKey().Bytes()) {
			t.Errorf("bundle identity key differs from the registered one")
		}
		if !bob.ik.PublicKey().Verify(d.SignedPreKey.PublicKey, d.SignedPreKey.Signature) {
			t.Errorf("bundle signed prekey does not verify")
		}
		if i < 2 {
			if d.PreKey == nil || seenEC[d.PreKey.KeyID] {
				t.Fatalf("bundle %d prekey = %+v, want a fresh one-time key", i, d.PreKey)
			}
			seenEC[d.PreKey.KeyID] = true
			if d.KyberLastResort || seenKyber[d.KyberPreKey.KeyID] {
				t.Fatalf("bundle %d kyber = id %d last resort %v, want a fresh one-time key", i, d.KyberPreKey.KeyID, d.KyberLastResort)
			}
			seenKyber[d.KyberPreKey.KeyID] = true
		} else if d.PreKey != nil || !d.KyberLastResort {
			t.Errorf("bundle after the one-time keys ran out = prekey %+v, last resort %v; want none and true", d.PreKey, d.KyberLastResort)
		}
	}
	r := h.do("GET", "/v1/keys", nil, bob)
	if got := decodeBody[api.PreKeyCount](t, r); got != (api.PreKeyCount{}) {
		t.Errorf("bob's prekey count = %+v, want 0 and 0", got)
	}
	h.want(h.do("GET", "/v1/keys/"+bob.account.String()+"/1", nil, alice), 200, "", "GET bundle for device 1")
	h.want(h.do("GET", "/v1/keys/"+bob.account.String()+"/9", nil, alice), 404, "", "GET bundle for an unknown device")
	h.want(h.do("GET", "/v1/keys/not-a-uuid/1", nil, alice), 400, api.CodeBadRequest, "GET bundle for a bad account")
	h.want(h.do("GET", "/v1/keys/"+bob.account.String()+"/1", nil, nil), 401, api.CodeUnauthorized, "GET bundle unauthenticated")
}

func TestBundleDrainingIsThrottled(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.Limits.BundlePerPair = Rate{N: 2, Per: time.Hour} })
	bob := h.register("+14155550204", 5)
	mallory := h.register("+14155550205", 0)
	carol := h.register("+14155550206", 0)
	path := "/v1/keys/" + bob.account.String() + "/*"
	h.want(h.do("GET", path, nil, mallory), 200, "", "first fetch")
	h.want(h.do("GET", path, nil, mallory), 200, "", "second fetch")
	r := h.do("GET", path, nil, mallory)
	h.want(r, 429, api.CodeRateLimited, "third fetch by the same requester")
	if r.header.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
	// The limit is per pair: another requester is not affected.
	h.want(h.do("GET", path, nil, carol), 200, "", "fetch by another requester")
	r = h.do("GET", "/v1/keys", nil, bob)
	if got := decodeBody[api.PreKeyCount](t, r); got.Count != 2 {
		t.Errorf("bob's prekeys left = %d, want 2 (three taken)", got.Count)
	}
}

func TestDirectoryLookup(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	bob := h.register("+14155550207", 0)
	alice := h.register("+14155550208", 0)
	r := h.do("POST", "/v1/directory", api.LookupRequest{Number: "+1 415 555 0207"}, alice)
	h.want(r, 200, "", "lookup")
	if got := decodeBody[api.LookupResponse](t, r).AccountID; got != bob.account {
		t.Errorf("lookup = %v, want %v", got, bob.account)
	}
	h.secret("+14155550209")
	h.want(h.do("POST", "/v1/directory", api.LookupRequest{Number: "+14155550209"}, alice), 404, api.CodeNotFound, "lookup unregistered")
	h.want(h.do("POST", "/v1/directory", api.LookupRequest{Number: "+14155550207"}, nil), 401, api.CodeUnauthorized, "lookup unauthenticated")
}
