package client

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nyaruka/phonenumbers"

	"github.com/bastionchat/bastion/protocol"
)

// DefaultServer is the server a new profile talks to when [Options.Server] is empty:
// bastiond's default listen address.
const DefaultServer = "http://127.0.0.1:8080"

// Options configure [Open].
type Options struct {
	// Server is the server's base URL ("https://chat.example"). Empty means the one the
	// profile registered with, or DefaultServer for a new profile.
	Server string
	// Passphrase unlocks a protected profile. For a new profile, a non-empty passphrase
	// protects its private keys with a key derived from it by Argon2id; without one they
	// are protected by the file's mode (0600) only.
	Passphrase []byte
	// Logger receives debug-level events only; nil discards them. The SDK never logs a
	// plaintext, a key, a phone number or an account id.
	Logger *slog.Logger
	// HTTPClient makes the requests; nil means a client with a 30-second timeout.
	HTTPClient *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the source of key material; nil means crypto/rand.
	Rand io.Reader
}

// Client is one device's profile: its keys, sessions, contacts and received messages,
// in one SQLite file, and its conversation with one server. Methods are safe for
// concurrent use; they are serialised on the profile.
type Client struct {
	db   *sql.DB
	seal *sealer
	api  *httpAPI
	log  *slog.Logger
	now  func() time.Time
	rand io.Reader

	mu  sync.Mutex // serialises protocol operations on the profile
	acc *Account   // nil until registered
	id  *protocol.IdentityKeyPair
	reg uint32
	pw  string

	// groupsQueued: a received change queued group messages to send (groups.go), so the
	// next flush after storing messages has work. Guarded by mu.
	groupsQueued bool
}

// Account describes the profile's own registration.
type Account struct {
	Number    string    `json:"number"`
	AccountID uuid.UUID `json:"account_id"`
	DeviceID  uint32    `json:"device_id"`
	Server    string    `json:"server"`
	// IdentityKey is the device's public identity key, 33 bytes.
	IdentityKey []byte `json:"identity_key"`
}

// Open opens the profile in dir, creating it (directory mode 0700, file 0600) if needed.
func Open(ctx context.Context, dir string, opts Options) (*Client, error) {
	db, s, err := openDB(ctx, dir, opts.Passphrase)
	if err != nil {
		return nil, err
	}
	c := &Client{db: db, seal: s, log: opts.Logger, now: opts.Now, rand: opts.Rand}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	server := opts.Server
	if server == "" {
		b, err := getMeta(ctx, db, metaServer)
		if err != nil {
			db.Close()
			return nil, err
		}
		server = string(b)
	}
	if server == "" {
		server = DefaultServer
	}
	if c.api, err = newHTTPAPI(server, opts.HTTPClient); err != nil {
		db.Close()
		return nil, err
	}
	if err := c.loadAccount(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the profile.
func (c *Client) Close() error { return c.db.Close() }

func (c *Client) loadAccount(ctx context.Context) error {
	acct, err := getMeta(ctx, c.db, metaAccount)
	if err != nil || len(acct) == 0 {
		return err
	}
	id, err := uuid.ParseBytes(acct)
	if err != nil {
		return fmt.Errorf("profile account: %w", err)
	}
	vals := map[string][]byte{}
	for _, k := range []string{metaDevice, metaNumber, metaServer, metaRegID, metaPassword, metaIdentity} {
		if vals[k], err = getMeta(ctx, c.db, k); err != nil {
			return err
		}
	}
	pw, err := c.seal.open(vals[metaPassword], metaPassword)
	if err != nil {
		return err
	}
	ib, err := c.seal.open(vals[metaIdentity], metaIdentity)
	if err != nil {
		return err
	}
	if c.id, err = protocol.NewIdentityKeyPair(ib); err != nil {
		return fmt.Errorf("profile identity: %w", err)
	}
	if len(vals[metaDevice]) != 4 || len(vals[metaRegID]) != 4 {
		return fmt.Errorf("profile: corrupt device record")
	}
	c.pw = string(pw)
	c.reg = binary.BigEndian.Uint32(vals[metaRegID])
	c.acc = &Account{
		Number: string(vals[metaNumber]), AccountID: id,
		DeviceID: binary.BigEndian.Uint32(vals[metaDevice]), Server: string(vals[metaServer]),
		IdentityKey: c.id.PublicKey().Bytes(),
	}
	return nil
}

// SetPassphrase protects the profile's private keys with passphrase from now on (an
// empty one removes the protection). The profile key itself does not change, so nothing
// else is re-encrypted; the old wrapped key is overwritten in place.
func (c *Client) SetPassphrase(ctx context.Context, passphrase []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inTx(ctx, func(tx *sql.Tx) error { return writeKey(ctx, tx, c.seal.key, passphrase) })
}

// Whoami returns the profile's account, or [ErrNotRegistered].
func (c *Client) Whoami(context.Context) (Account, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.acc == nil {
		return Account{}, ErrNotRegistered
	}
	a := *c.acc
	a.IdentityKey = append([]byte(nil), a.IdentityKey...)
	return a, nil
}

func (c *Client) cred() *credentials {
	return &credentials{user: c.acc.AccountID.String() + "." + fmt.Sprint(c.acc.DeviceID), password: c.pw}
}

func (c *Client) local() protocol.Address {
	return protocol.Address{Name: c.acc.AccountID.String(), DeviceID: c.acc.DeviceID}
}

// storesOn returns the protocol stores over q (the database or one transaction).
func (c *Client) storesOn(q querier) *stores {
	return &stores{q: q, s: c.seal, identity: c.id, regID: c.reg, now: c.now}
}

func (c *Client) cipherOn(st *stores) *protocol.Cipher {
	return &protocol.Cipher{Local: c.local(), Stores: st.protocolStores(), Rand: c.rand}
}

// inTx runs f in one immediate transaction on the profile.
func (c *Client) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("profile transaction: %w", err)
	}
	var after error
	if err := f(tx); err != nil {
		var ct errCommitThen
		if !errors.As(err, &ct) {
			tx.Rollback()
			return err
		}
		after = ct.err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("profile commit: %w", err)
	}
	return after
}

// NormalizeNumber returns a phone number in E.164 form ("+14155550100"). It must be in
// international form, with its leading +.
func NormalizeNumber(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "+") {
		return "", fmt.Errorf("phone number must start with + and the country code")
	}
	n, err := phonenumbers.Parse(s, "ZZ")
	if err != nil {
		return "", fmt.Errorf("not a phone number: %w", err)
	}
	return phonenumbers.Format(n, phonenumbers.E164), nil
}

func (c *Client) requireAccount() error {
	if c.acc == nil {
		return ErrNotRegistered
	}
	return nil
}
