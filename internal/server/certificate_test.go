package server

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/protocol/certificate"
	"github.com/bastionchat/bastion/protocol/curve"
)

func TestLoadCertificateKeysFirstStart(t *testing.T) {
	dir := t.TempDir()
	k, err := LoadCertificateKeys(dir)
	if err != nil {
		t.Fatalf("LoadCertificateKeys(empty dir) = %v", err)
	}
	for _, name := range []string{trustRootKeyFile, trustRootPubFile, serverKeyFile, serverCertFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("first start did not create %s: %v", name, err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
	cert, err := certificate.ParseServer(k.serverCert)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.Validate(k.TrustRoot()); err != nil || !cert.Key.Equal(k.serverKey.PublicKey()) || cert.ID != serverCertKeyID {
		t.Errorf("server certificate = id %d, validate %v; want id %d certifying the server key under the trust root", cert.ID, err, serverCertKeyID)
	}

	// A restart reads the same keys.
	again, err := LoadCertificateKeys(dir)
	if err != nil {
		t.Fatalf("LoadCertificateKeys(second start) = %v", err)
	}
	if !again.TrustRoot().Equal(k.TrustRoot()) || !bytes.Equal(again.serverCert, k.serverCert) ||
		!again.serverKey.PublicKey().Equal(k.serverKey.PublicKey()) {
		t.Errorf("second start loaded different keys")
	}

	// The trust root's private key can go offline once the server certificate exists.
	if err := os.Remove(filepath.Join(dir, trustRootKeyFile)); err != nil {
		t.Fatal(err)
	}
	offline, err := LoadCertificateKeys(dir)
	if err != nil {
		t.Fatalf("LoadCertificateKeys(trust root offline) = %v", err)
	}
	if !offline.TrustRoot().Equal(k.TrustRoot()) {
		t.Errorf("trust root changed when its private key went offline")
	}
}

func TestLoadCertificateKeysRefuses(t *testing.T) {
	other, err := curve.GeneratePrivateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		damage func(dir string) error
	}{
		{"trust root public key replaced", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, trustRootPubFile), other.PublicKey().Bytes(), 0o600)
		}},
		{"trust root replaced", func(dir string) error {
			if err := os.WriteFile(filepath.Join(dir, trustRootPubFile), other.PublicKey().Bytes(), 0o600); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, trustRootKeyFile), other.Bytes(), 0o600)
		}},
		{"server key replaced", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, serverKeyFile), other.Bytes(), 0o600)
		}},
		{"server key readable by others", func(dir string) error {
			return os.Chmod(filepath.Join(dir, serverKeyFile), 0o644)
		}},
		{"trust root key readable by group", func(dir string) error {
			return os.Chmod(filepath.Join(dir, trustRootKeyFile), 0o640)
		}},
		{"certificate corrupt", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, serverCertFile), []byte("junk"), 0o600)
		}},
		{"truncated key", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, serverKeyFile), other.Bytes()[:31], 0o600)
		}},
		{"no certificate and root offline", func(dir string) error {
			return firstError(os.Remove(filepath.Join(dir, serverCertFile)), os.Remove(filepath.Join(dir, trustRootKeyFile)))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadCertificateKeys(dir); err != nil {
				t.Fatal(err)
			}
			if err := tt.damage(dir); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadCertificateKeys(dir); err == nil {
				t.Errorf("LoadCertificateKeys(%s) = nil error, want a refusal", tt.name)
			} else {
				t.Logf("refused: %v", err)
			}
		})
	}
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func TestTrustRootEndpoint(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	r := h.do("GET", "/v1/certificate/trust-root", nil, nil)
	h.want(r, 200, "", "trust root")
	got := decodeBody[trustRootResponse](t, r)
	if !bytes.Equal(got.TrustRoot, h.srv.certs.TrustRoot().Bytes()) || len(got.TrustRoot) != curve.PublicKeySize {
		t.Errorf("GET /v1/certificate/trust-root = %x, want the server's %d-byte trust root %x",
			got.TrustRoot, curve.PublicKeySize, h.srv.certs.TrustRoot().Bytes())
	}
}

func TestDeliveryCertificate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	alice := h.register("+14155550701", 0)

	r := h.do("GET", "/v1/certificate/trust-root", nil, nil)
	h.want(r, 200, "", "trust root")
	root, err := curve.NewPublicKey(decodeBody[trustRootResponse](t, r).TrustRoot)
	if err != nil {
		t.Fatal(err)
	}

	r = h.do("GET", "/v1/certificate/delivery", nil, alice)
	h.want(r, 200, "", "delivery certificate")
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	raw := decodeBody[deliveryCertificateResponse](t, r).Certificate
	c, err := certificate.ParseSender(raw)
	if err != nil {
		t.Fatalf("ParseSender(delivery certificate) = %v", err)
	}
	issued := h.clock.Now()
	if c.SenderUUID != alice.account || c.DeviceID != alice.device || !c.IdentityKey.Equal(alice.ik.PublicKey()) ||
		!c.Expires.Equal(issued.Add(24*time.Hour)) {
		t.Errorf("delivery certificate = %v.%d key %v expires %v, want %v.%d key %v expires %v",
			c.SenderUUID, c.DeviceID, c.IdentityKey, c.Expires,
			alice.account, alice.device, alice.ik.PublicKey(), issued.Add(24*time.Hour))
	}
	if err := c.Validate(root, issued); err != nil {
		t.Errorf("Validate(served trust root, now) = %v, want nil", err)
	}
	if err := c.Validate(root, issued.Add(24*time.Hour+time.Millisecond)); err == nil {
		t.Errorf("Validate(after 24h) = nil, want expired")
	}
	if bytes.Contains(raw, []byte("4155550701")) {
		t.Errorf("delivery certificate contains the phone number")
	}

	// Only an authenticated device gets one.
	h.want(h.do("GET", "/v1/certificate/delivery", nil, nil), 401, api.CodeUnauthorized, "delivery certificate without credentials")
	wrong := *alice
	wrong.password = "not-the-password"
	h.want(h.do("GET", "/v1/certificate/delivery", nil, &wrong), 401, api.CodeUnauthorized, "delivery certificate with a wrong password")
}

// The endpoints serve the keys Run loads from the data directory, not a fresh set.
func TestNewUsesGivenCertificateKeys(t *testing.T) {
	k, err := LoadCertificateKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, nil)
	s, err := New(testConfig(), Options{Store: h.st, SMS: h.sms, Certificates: k})
	if err != nil {
		t.Fatal(err)
	}
	if s.certs != k {
		t.Errorf("New(Options{Certificates: k}) uses other keys")
	}
	if h.srv.certs == nil || h.srv.certs.TrustRoot().Equal(k.TrustRoot()) {
		t.Errorf("New without Certificates did not generate its own keys")
	}
}
