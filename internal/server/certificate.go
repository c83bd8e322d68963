package server

// Sealed sender's server side: the trust root and the server-certificate key, kept in
// the data directory, and the two endpoints that hand clients the trust root and their
// own short-lived sender certificate. The server only signs; it never opens a sealed
// message (it imports protocol/certificate, never protocol/sealed).

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/protocol/certificate"
	"github.com/bastionchat/bastion/protocol/curve"
)

// Files in the data directory. The private keys are 0600 and never logged.
const (
	trustRootKeyFile  = "sealed-trust-root.key" // 32-byte private key; needed once, to certify the server key
	trustRootPubFile  = "sealed-trust-root.pub" // 33-byte public key, served at /v1/certificate/trust-root
	serverKeyFile     = "sealed-server.key"     // 32-byte private key that signs sender certificates
	serverCertFile    = "sealed-server.cert"    // the ServerCertificate, signed by the trust root
	serverCertKeyID   = 1                       // the first server key's id; a rotation would use the next
	deliveryCertValid = 24 * time.Hour          // how long a sender certificate lasts, as Signal's do
)

// CertificateKeys are the keys behind sealed sender: the trust root clients check
// certificates against, and the server key, with its certificate, that signs each
// device's sender certificate. They have no String or JSON form.
type CertificateKeys struct {
	trustRoot  *curve.PublicKey
	serverKey  *curve.PrivateKey
	serverCert []byte
}

// TrustRoot returns the public trust root clients validate sender certificates with.
func (k *CertificateKeys) TrustRoot() *curve.PublicKey { return k.trustRoot }

// GenerateCertificateKeys makes a fresh set in memory: for tests and for a [New] without
// [Options.Certificates]. A server that restarts with new keys invalidates every
// certificate it handed out, so [Run] uses [LoadCertificateKeys] instead.
func GenerateCertificateKeys() (*CertificateKeys, error) {
	root, err := curve.GeneratePrivateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating trust root: %w", err)
	}
	server, err := curve.GeneratePrivateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating server certificate key: %w", err)
	}
	cert, err := certificate.NewServer(root, serverCertKeyID, server.PublicKey(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return &CertificateKeys{trustRoot: root.PublicKey(), serverKey: server, serverCert: cert}, nil
}

// LoadCertificateKeys reads the keys from dir, creating on first start whatever is
// missing: the trust root, the server key, and the server certificate (the one use of
// the trust root's private key; an operator may move sealed-trust-root.key offline
// afterwards and the server still starts). Private key files must not be readable by
// group or others. It refuses keys that do not fit together.
func LoadCertificateKeys(dir string) (*CertificateKeys, error) {
	rootPriv, err := loadOrMissing(dir, trustRootKeyFile, curve.NewPrivateKey)
	if err != nil {
		return nil, err
	}
	rootPub, err := loadOrMissing(dir, trustRootPubFile, curve.NewPublicKey)
	if err != nil {
		return nil, err
	}
	switch {
	case rootPriv == nil && rootPub == nil:
		if rootPriv, err = createKey(dir, trustRootKeyFile); err != nil {
			return nil, err
		}
		fallthrough
	case rootPub == nil:
		rootPub = rootPriv.PublicKey()
		if err := writeNew(filepath.Join(dir, trustRootPubFile), rootPub.Bytes()); err != nil {
			return nil, err
		}
	case rootPriv != nil && !rootPriv.PublicKey().Equal(rootPub):
		return nil, fmt.Errorf("%s does not match %s", trustRootKeyFile, trustRootPubFile)
	}

	serverKey, err := loadOrMissing(dir, serverKeyFile, curve.NewPrivateKey)
	if err != nil {
		return nil, err
	}
	if serverKey == nil {
		if serverKey, err = createKey(dir, serverKeyFile); err != nil {
			return nil, err
		}
	}

	certPath := filepath.Join(dir, serverCertFile)
	certBytes, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		if rootPriv == nil {
			return nil, fmt.Errorf("no %s and no %s to make it with", serverCertFile, trustRootKeyFile)
		}
		certBytes, err = certificate.NewServer(rootPriv, serverCertKeyID, serverKey.PublicKey(), rand.Reader)
		if err != nil {
			return nil, err
		}
		err = writeNew(certPath, certBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	cert, err := certificate.ParseServer(certBytes)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", serverCertFile, err)
	}
	if err := cert.Validate(rootPub); err != nil {
		return nil, fmt.Errorf("%s: %w", serverCertFile, err)
	}
	if !cert.Key.Equal(serverKey.PublicKey()) {
		return nil, fmt.Errorf("%s does not certify %s", serverCertFile, serverKeyFile)
	}
	return &CertificateKeys{trustRoot: rootPub, serverKey: serverKey, serverCert: certBytes}, nil
}

// loadOrMissing reads and decodes dir/name, or returns the zero value if it does not
// exist. Private key files with group or other permissions are refused.
func loadOrMissing[T any](dir, name string, decode func([]byte) (T, error)) (T, error) {
	var zero T
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return zero, nil
	}
	if err != nil {
		return zero, fmt.Errorf("reading %s: %w", name, err)
	}
	if filepath.Ext(name) == ".key" {
		fi, err := os.Stat(path)
		if err != nil {
			return zero, fmt.Errorf("reading %s: %w", name, err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return zero, fmt.Errorf("%s is accessible to group or others (mode %v); it must be 0600", name, fi.Mode().Perm())
		}
	}
	v, err := decode(b)
	if err != nil {
		return zero, fmt.Errorf("reading %s: %w", name, err)
	}
	return v, nil
}

func createKey(dir, name string) (*curve.PrivateKey, error) {
	k, err := curve.GeneratePrivateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating %s: %w", name, err)
	}
	if err := writeNew(filepath.Join(dir, name), k.Bytes()); err != nil {
		return nil, err
	}
	return k, nil
}

// writeNew creates path with data, mode 0600, atomically and without replacing an
// existing file: a crash leaves either no file or the whole file, and two starts racing
// cannot each keep a different key.
func writeNew(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Base(path), err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes 0600 files; say so anyway, it is the point.
	err = errors.Join(tmp.Chmod(0o600), write(tmp, data), tmp.Sync(), tmp.Close())
	if err == nil {
		err = os.Link(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Base(path), err)
	}
	return nil
}

func write(f *os.File, b []byte) error {
	_, err := f.Write(b)
	return err
}

// Wire types of the two endpoints, in package api with the others.
type (
	trustRootResponse           = api.TrustRootResponse
	deliveryCertificateResponse = api.DeliveryCertificateResponse
)

func (s *Server) trustRoot(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, api.TrustRootResponse{TrustRoot: s.certs.trustRoot.Bytes()})
	return nil
}

// deliveryCertificate issues the authenticated device a sender certificate for its
// account's stored identity key, valid for 24 hours. It carries no phone number.
func (s *Server) deliveryCertificate(w http.ResponseWriter, r *http.Request, d device) error {
	acct, err := s.store.Account(r.Context(), d.account)
	if err != nil {
		return fmt.Errorf("loading account for a delivery certificate: %w", err)
	}
	identity, err := curve.NewPublicKey(acct.IdentityKey)
	if err != nil {
		return fmt.Errorf("stored identity key: %w", err)
	}
	if d.id > certificate.MaxDeviceID {
		// libsignal cannot represent such a device; the client cannot use sealed sender.
		return newError(http.StatusNotFound, api.CodeNotFound, "no delivery certificate for this device id")
	}
	cert, err := certificate.IssueSender(s.certs.serverKey, s.certs.serverCert, d.account, d.id,
		identity, s.now().Add(deliveryCertValid), rand.Reader)
	if err != nil {
		return fmt.Errorf("issuing a delivery certificate: %w", err)
	}
	w.Header().Set("Cache-Control", "no-store") // one device's credential
	writeJSON(w, http.StatusOK, api.DeliveryCertificateResponse{Certificate: cert})
	return nil
}
