package client

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/argon2"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver: pure Go, no cgo
)

// ProfileFile is the name of the SQLite file inside a profile directory.
const ProfileFile = "profile.db"

// schemaVersion is the PRAGMA user_version of the current schema.
const schemaVersion = 4

// schema is the whole profile. Columns named *_enc hold AES-256-GCM ciphertext under the
// profile key (see [sealer]); everything secret is in one of them: private keys, session
// and sender-key records (their chain keys), the device password and message texts.
// What stays in the clear is what the file's owner could learn from the server anyway:
// account ids, device ids, public identity keys, phone numbers of contacts, times.
const schema = `
CREATE TABLE meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE identities (
	account TEXT PRIMARY KEY,
	key BLOB NOT NULL,             -- 33-byte public identity key
	trusted INTEGER NOT NULL,      -- 1: may be sent to; 0: changed and not yet accepted
	changed INTEGER NOT NULL,      -- 1: differs from a key seen before
	updated_ms INTEGER NOT NULL
);
CREATE TABLE sessions (
	account TEXT NOT NULL, device INTEGER NOT NULL, record_enc BLOB NOT NULL,
	PRIMARY KEY (account, device)
);
CREATE TABLE prekeys (id INTEGER PRIMARY KEY, record_enc BLOB NOT NULL);
CREATE TABLE signed_prekeys (id INTEGER PRIMARY KEY, record_enc BLOB NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE kyber_prekeys (
	id INTEGER PRIMARY KEY, record_enc BLOB NOT NULL,
	last_resort INTEGER NOT NULL, created_ms INTEGER NOT NULL
);
CREATE TABLE kyber_used (
	id INTEGER NOT NULL, signed_id INTEGER NOT NULL, base_key BLOB NOT NULL,
	PRIMARY KEY (id, signed_id, base_key)
);
CREATE TABLE sender_keys (
	account TEXT NOT NULL, device INTEGER NOT NULL, distribution TEXT NOT NULL, record_enc BLOB NOT NULL,
	PRIMARY KEY (account, device, distribution)
);
CREATE TABLE contacts (number TEXT PRIMARY KEY, account TEXT NOT NULL UNIQUE);
CREATE TABLE messages (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	id TEXT NOT NULL UNIQUE,       -- envelope id
	account TEXT NOT NULL, device INTEGER NOT NULL,
	content_enc BLOB NOT NULL,     -- the decoded Content, encrypted
	server_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL,
	identity_changed INTEGER NOT NULL,
	shown INTEGER NOT NULL DEFAULT 0,
	undecryptable INTEGER NOT NULL DEFAULT 0 -- 1: a notice that a message from account did not decrypt
);
CREATE TABLE seen (id TEXT PRIMARY KEY, expires_ms INTEGER NOT NULL);
` + groupsSchema + channelsSchema

// groupsSchema (version 3) holds the groups this account is in (docs/groups.md). Titles,
// members and admins are secrets the server never learns, so the whole replica is
// encrypted; only the random group id is in the clear, to find it.
const groupsSchema = `
CREATE TABLE groups (
	id BLOB PRIMARY KEY,           -- 32-byte group id
	record_enc BLOB NOT NULL,      -- the replica: history and sender-key bookkeeping
	updated_ms INTEGER NOT NULL
);
`

// channelsSchema (version 4) holds the channels this account owns, administers or
// follows (docs/channels.md). Which channels someone follows is not something the
// server learns, so everything but the random key the rows are found by is encrypted.
const channelsSchema = `
CREATE TABLE channels (
	id BLOB PRIMARY KEY,           -- 16-byte channel id
	record_enc BLOB NOT NULL,      -- handle, role, signing keys, verifier state
	updated_ms INTEGER NOT NULL
);
CREATE TABLE channel_posts (
	channel BLOB NOT NULL, seq INTEGER NOT NULL,
	post_enc BLOB NOT NULL,        -- the accepted post (and notice, plaintext of a private post)
	PRIMARY KEY (channel, seq)
);
`

// upgrades[v] brings a profile from schema v to v+1; schema is the result of all of them.
var upgrades = map[int]string{
	1: "ALTER TABLE messages ADD COLUMN undecryptable INTEGER NOT NULL DEFAULT 0",
	2: groupsSchema,
	3: channelsSchema,
}

// kdfParams are the Argon2id parameters a passphrase-protected profile was made with;
// they are stored so that later releases can raise them without locking anyone out.
type kdfParams struct {
	Alg     string `json:"alg"`
	Time    uint32 `json:"time"`
	Memory  uint32 `json:"memory_kib"`
	Threads uint8  `json:"threads"`
	Salt    []byte `json:"salt"`
}

// defaultKDF is RFC 9106 section 4's second recommended option (t=3, 64 MiB, p=4): the
// one it suggests when 2 GiB per derivation is too much, as on phones and small
// machines. The profile is opened once per command, so about a tenth of a second per
// guess is paid once by the user and on every guess by whoever stole the file.
func defaultKDF() kdfParams {
	salt := make([]byte, 16)
	rand.Read(salt)
	return kdfParams{Alg: "argon2id", Time: 3, Memory: 64 << 10, Threads: 4, Salt: salt}
}

func (p kdfParams) derive(passphrase []byte) []byte {
	return argon2.IDKey(passphrase, p.Salt, p.Time, p.Memory, p.Threads, 32)
}

// sealer encrypts the secret columns under the 32-byte profile key with AES-256-GCM.
// Nonces are random: 96 bits are safe for far more than the 2^32 encryptions a profile
// will ever make under one key. The associated data names the table, column and row, so
// a ciphertext moved to another row does not decrypt.
type sealer struct {
	aead cipher.AEAD
	key  []byte // kept to rewrap it under a new passphrase
}

func newSealer(key []byte) (*sealer, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: a, key: key}, nil
}

func (s *sealer) seal(plaintext []byte, where string) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plaintext, []byte("bastion profile v1\x00"+where))
}

func (s *sealer) open(ciphertext []byte, where string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(ciphertext) < n+s.aead.Overhead() {
		return nil, errCorrupt
	}
	p, err := s.aead.Open(nil, ciphertext[:n], ciphertext[n:], []byte("bastion profile v1\x00"+where))
	if err != nil {
		return nil, errCorrupt
	}
	return p, nil
}

var errCorrupt = errors.New("profile: a stored secret does not decrypt (corrupt or moved)")

// openDB opens (creating if needed) the profile database in dir, with dir mode 0700 and
// the file mode 0600 (SQLite gives its -wal and -shm files the database file's mode), and
// returns it with the profile key unlocked by passphrase.
func openDB(ctx context.Context, dir string, passphrase []byte) (*sql.DB, *sealer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating profile directory: %w", err)
	}
	// The directory holds the keys: nobody else may list or enter it.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("securing profile directory: %w", err)
	}
	path := filepath.Join(dir, ProfileFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("creating profile: %w", err)
	}
	f.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, nil, fmt.Errorf("securing profile: %w", err)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(FULL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("opening profile: %w", err)
	}
	// One connection: a profile is one user's device; serialising its writes is what
	// keeps a session record from being updated twice at once.
	db.SetMaxOpenConns(1)
	s, err := migrate(ctx, db, passphrase)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, s, nil
}

func migrate(ctx context.Context, db *sql.DB, passphrase []byte) (*sealer, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("opening profile: %w", err)
	}
	defer tx.Rollback()
	var v int
	var key []byte
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return nil, fmt.Errorf("reading profile version: %w", err)
	}
	switch {
	case v == 0:
		if _, err := tx.ExecContext(ctx, schema); err != nil {
			return nil, fmt.Errorf("creating profile schema: %w", err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
			return nil, fmt.Errorf("creating profile schema: %w", err)
		}
		key = make([]byte, 32)
		rand.Read(key)
		if err := writeKey(ctx, tx, key, passphrase); err != nil {
			return nil, err
		}
	case v > schemaVersion:
		return nil, fmt.Errorf("profile schema %d is newer than this program (%d)", v, schemaVersion)
	default:
		// Upgrades, one version at a time.
		for ; v < schemaVersion; v++ {
			if _, err := tx.ExecContext(ctx, upgrades[v]); err != nil {
				return nil, fmt.Errorf("upgrading profile schema to %d: %w", v+1, err)
			}
			if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
				return nil, fmt.Errorf("upgrading profile schema to %d: %w", v+1, err)
			}
		}
		if key, err = readKey(ctx, tx, passphrase); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("opening profile: %w", err)
	}
	return newSealer(key)
}

// writeKey stores the profile key: wrapped under an Argon2id key from passphrase, or,
// with no passphrase, as it is (the file's mode is then its only protection).
func writeKey(ctx context.Context, q querier, key, passphrase []byte) error {
	var kdf []byte
	wrapped := key
	if len(passphrase) > 0 {
		p := defaultKDF()
		s, err := newSealer(p.derive(passphrase))
		if err != nil {
			return err
		}
		wrapped = s.seal(key, "profile key")
		kdf, _ = json.Marshal(p)
	}
	if err := setMeta(ctx, q, metaKDF, kdf); err != nil {
		return err
	}
	return setMeta(ctx, q, metaProfileKey, wrapped)
}

func readKey(ctx context.Context, q querier, passphrase []byte) ([]byte, error) {
	kdf, err := getMeta(ctx, q, metaKDF)
	if err != nil {
		return nil, err
	}
	wrapped, err := getMeta(ctx, q, metaProfileKey)
	if err != nil {
		return nil, err
	}
	if len(kdf) == 0 {
		if len(passphrase) > 0 {
			return nil, ErrNoPassphraseSet
		}
		return wrapped, nil
	}
	if len(passphrase) == 0 {
		return nil, ErrPassphraseRequired
	}
	var p kdfParams
	if err := json.Unmarshal(kdf, &p); err != nil || p.Alg != "argon2id" {
		return nil, fmt.Errorf("profile key derivation: unsupported parameters")
	}
	s, err := newSealer(p.derive(passphrase))
	if err != nil {
		return nil, err
	}
	key, err := s.open(wrapped, "profile key")
	if err != nil {
		return nil, ErrWrongPassphrase
	}
	return key, nil
}

// Keys of the meta table.
const (
	metaKDF        = "kdf"
	metaProfileKey = "profile_key"
	metaServer     = "server"
	metaNumber     = "number"
	metaPending    = "pending_session" // verification session id while a code is pending
	metaAccount    = "account"
	metaDevice     = "device"
	metaPassword   = "password_enc"
	metaIdentity   = "identity_enc"
	metaRegID      = "registration_id"
	metaNextPreKey = "next_prekey_id"
	metaNextSigned = "next_signed_prekey_id"
	metaNextKyber  = "next_kyber_prekey_id"
	metaTrustRoot  = "trust_root"
	metaSenderCert = "sender_certificate"
)

// querier is what both *sql.DB and *sql.Tx offer; stores run on either, so a decryption
// and the message it yields can be committed together.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

var (
	_ querier = (*sql.DB)(nil)
	_ querier = (*sql.Tx)(nil)
)

// getMeta returns the value under k, or nil when there is none.
func getMeta(ctx context.Context, q querier, k string) ([]byte, error) {
	var v []byte
	err := q.QueryRowContext(ctx, "SELECT v FROM meta WHERE k = ?", k).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading profile %s: %w", k, err)
	}
	return v, nil
}

func setMeta(ctx context.Context, q querier, k string, v []byte) error {
	if v == nil {
		v = []byte{}
	}
	if _, err := q.ExecContext(ctx, "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", k, v); err != nil {
		return fmt.Errorf("writing profile %s: %w", k, err)
	}
	return nil
}

func delMeta(ctx context.Context, q querier, k string) error {
	if _, err := q.ExecContext(ctx, "DELETE FROM meta WHERE k = ?", k); err != nil {
		return fmt.Errorf("writing profile %s: %w", k, err)
	}
	return nil
}
