package legal

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// KeyFile is the name of the server's Ed25519 signing key in the data directory: the
// 32-byte seed in base64, mode 0600. It signs disclosure packages and the legal log's
// checkpoints.
const KeyFile = "server-ed25519.key"

// LogOrigin is the legal log's origin line and the name of its checkpoint key.
const LogOrigin = "bastion-legal-log"

// SigningKey is the server's Ed25519 key. It has no String or JSON form on purpose.
type SigningKey struct {
	priv ed25519.PrivateKey
}

// LoadOrCreateKey reads the key from dir, creating it (0600) if there is none.
func LoadOrCreateKey(dir string) (*SigningKey, error) {
	file := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		seed := make([]byte, ed25519.SeedSize)
		rand.Read(seed)
		enc := base64.StdEncoding.EncodeToString(seed) + "\n"
		// O_EXCL: two processes starting at once must not each write a different key.
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return LoadOrCreateKey(dir)
		}
		if err != nil {
			return nil, fmt.Errorf("creating signing key: %w", err)
		}
		if _, err := f.WriteString(enc); err != nil {
			f.Close()
			return nil, fmt.Errorf("writing signing key: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("writing signing key: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("writing signing key: %w", err)
		}
		return &SigningKey{priv: ed25519.NewKeyFromSeed(seed)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading signing key: %w", err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("reading signing key %s: not a base64 32-byte seed", file)
	}
	return &SigningKey{priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// Public returns the public key.
func (k *SigningKey) Public() ed25519.PublicKey {
	return k.priv.Public().(ed25519.PublicKey)
}

// Sign signs msg (Ed25519, deterministic).
func (k *SigningKey) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// noteSigner returns the key as a signed-note signer named [LogOrigin].
func (k *SigningKey) noteSigner() note.Signer {
	return &noteSigner{key: k, hash: keyHash(LogOrigin, k.Public())}
}

// VerifierKey returns the legal log's verifier key in the signed-note encoding
// ("name+hash+base64"), the form auditors pin.
func VerifierKey(pub ed25519.PublicKey) (string, error) {
	return note.NewEd25519VerifierKey(LogOrigin, pub)
}

// keyHash is the signed-note key id: the first four bytes of
// SHA-256(name || "\n" || 0x01 || pub), 0x01 being the Ed25519 algorithm byte.
func keyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{1})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil)[:4])
}

type noteSigner struct {
	key  *SigningKey
	hash uint32
}

func (s *noteSigner) Name() string                    { return LogOrigin }
func (s *noteSigner) KeyHash() uint32                 { return s.hash }
func (s *noteSigner) Sign(msg []byte) ([]byte, error) { return s.key.Sign(msg), nil }
