// Package store is the server's persistence contract: accounts and devices, prekeys,
// per-device envelope queues, registration sessions, the connection log, and public
// broadcast channels with their operator notices and reports.
//
// What it holds is exactly what the data inventory (inventory.json, served at
// /v1/inventory) lists, and a test fails when a database column is missing from it. The
// queue holds ciphertext addressed to a device and nothing about its sender: the store
// never records who sent an envelope, so it cannot be asked who talks to whom.
//
// Backends: sqlite/ (the embedded default) and postgres/. storetest is the conformance
// suite every backend must pass. Interfaces are split by concern, so that a consumer
// takes only what it uses (the legal desk, for instance, sees none of this package; it
// gets a read-only view built on [ConnLog] and [Accounts.AccountByNumber]).
package store

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/google/uuid"
)

// Errors callers branch on. Backends wrap them with %w.
var (
	// ErrNotFound: no such account, device, session or envelope.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a uniqueness rule would be broken (e.g. a device id in use).
	ErrConflict = errors.New("conflict")
	// ErrNoPreKeys: a bundle was asked for a device that has no signed prekey or no Kyber
	// prekey at all (neither one-time nor last resort).
	ErrNoPreKeys = errors.New("no prekeys")
)

// Store is a whole backend. Close waits for in-flight writes (a pending group commit) to
// finish.
type Store interface {
	Accounts
	Keys
	Queue
	Verifications
	ConnLog
	RateLimits
	Markets
	Channels
	Close() error
}

// Account is a registered phone number. ID is the account's protocol identity (libsignal's
// ACI); the phone number is only how it registered.
type Account struct {
	ID          uuid.UUID
	Number      string // E.164, e.g. "+14155550100"
	IdentityKey []byte // 33-byte serialized Curve25519 public key
	CreatedAt   time.Time
}

// Device is one device of an account. Device 1 is the primary.
type Device struct {
	AccountID      uuid.UUID
	ID             uint32
	RegistrationID uint32 // libsignal registration id, 14 bits; senders check it for staleness
	// CredentialHash is SHA-256 of the device's random secret (>= 128 bits). A fast hash is
	// right for a random secret of that size; a slow one would tax every request.
	CredentialHash []byte
	CreatedAt      time.Time
}

// Accounts holds accounts and their devices.
type Accounts interface {
	// Register creates the account for number with its primary device, or, if number is
	// already registered, keeps the account id and replaces everything else atomically:
	// identity key, every device (with their prekeys and queued envelopes). primary.ID must
	// be 1; primary.AccountID is ignored. replaced reports a re-registration.
	Register(ctx context.Context, number string, identityKey []byte, primary Device) (acct Account, replaced bool, err error)
	// Account and AccountByNumber return ErrNotFound for unknown accounts.
	Account(ctx context.Context, id uuid.UUID) (Account, error)
	AccountByNumber(ctx context.Context, number string) (Account, error)
	// Devices lists an account's devices ordered by id (ErrNotFound if no such account).
	Devices(ctx context.Context, account uuid.UUID) ([]Device, error)
	Device(ctx context.Context, account uuid.UUID, id uint32) (Device, error)
	// AddDevice stores a new device with the next free id and returns it.
	AddDevice(ctx context.Context, account uuid.UUID, d Device) (Device, error)
	// RemoveDevice deletes a device (not the primary) with its prekeys and queue.
	RemoveDevice(ctx context.Context, account uuid.UUID, id uint32) error
	// DeleteAccount deletes an account and everything it owns.
	DeleteAccount(ctx context.Context, id uuid.UUID) error
}

// PreKey is a one-time Curve25519 prekey.
type PreKey struct {
	ID        uint32
	PublicKey []byte // 33 bytes
}

// SignedPreKey is a Curve25519 or Kyber prekey signed by the account's identity key.
// For Kyber keys PublicKey is the 1569-byte serialized key (type byte 0x08).
type SignedPreKey struct {
	ID        uint32
	PublicKey []byte
	Signature []byte // 64-byte XEdDSA signature over PublicKey
}

// KeyUpload is what a device uploads. Nil or empty fields leave the stored value alone;
// one-time keys are appended (an id already stored for the device is replaced).
type KeyUpload struct {
	SignedPreKey    *SignedPreKey
	LastResortKyber *SignedPreKey
	PreKeys         []PreKey
	KyberPreKeys    []SignedPreKey
}

// Bundle is what a sender needs to start a session with one device.
type Bundle struct {
	DeviceID        uint32
	RegistrationID  uint32
	IdentityKey     []byte
	SignedPreKey    SignedPreKey
	PreKey          *PreKey // nil when the device has run out of one-time prekeys
	KyberPreKey     SignedPreKey
	KyberLastResort bool // KyberPreKey is the last-resort key, not a one-time key
}

// Keys holds prekeys.
type Keys interface {
	SetKeys(ctx context.Context, account uuid.UUID, device uint32, k KeyUpload) error
	// PreKeyCounts returns how many one-time EC and Kyber prekeys a device has left.
	PreKeyCounts(ctx context.Context, account uuid.UUID, device uint32) (ec, kyber int, err error)
	// TakeBundle returns a bundle for a device and, in the same transaction, deletes the
	// one-time EC prekey and one-time Kyber prekey it hands out, so that no one-time key
	// is ever handed out twice, under concurrency or across a crash. With no one-time
	// Kyber key left it hands out the last-resort Kyber key (not deleted).
	TakeBundle(ctx context.Context, account uuid.UUID, device uint32) (Bundle, error)
}

// Envelope is an opaque ciphertext queued for one device. The store never learns or
// keeps its sender.
type Envelope struct {
	// ID is chosen by the sending client, unique per destination device: enqueueing an ID
	// already queued for that device is a no-op (idempotent retries, no replays while queued).
	ID         uuid.UUID
	Seq        int64 // assigned by the store: increasing, the delivery order of a queue
	Account    uuid.UUID
	Device     uint32
	ServerTime time.Time // assigned by the caller (the server's clock at acceptance)
	Body       []byte
}

// Queue holds per-device envelope queues.
type Queue interface {
	// Enqueue stores envelopes durably (synced to disk when it returns nil) and assigns
	// their Seq in place. Backends batch concurrent calls into one commit (group commit).
	// Envelopes for unknown devices fail the whole call with ErrNotFound; nothing is stored.
	Enqueue(ctx context.Context, envs []*Envelope) error
	// Pending returns up to limit envelopes for a device with Seq > after, oldest first.
	Pending(ctx context.Context, account uuid.UUID, device uint32, after int64, limit int) ([]Envelope, error)
	// Ack deletes delivered envelopes by ID; unknown IDs are ignored.
	Ack(ctx context.Context, account uuid.UUID, device uint32, ids []uuid.UUID) error
	// ExpireBefore deletes envelopes whose ServerTime is before t (the queue TTL janitor).
	ExpireBefore(ctx context.Context, t time.Time) (int64, error)
}

// Verification is a registration session: a code sent to a number, awaiting proof.
type Verification struct {
	ID        string // random, >= 128 bits, given to the client
	Number    string // E.164
	CodeHash  []byte // SHA-256 of the code; compared in constant time
	Attempts  int    // wrong codes tried so far
	Verified  bool
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Verifications holds registration sessions. They are in the store, not in memory, so
// that they survive a restart and are shared by every node.
type Verifications interface {
	CreateVerification(ctx context.Context, v Verification) error
	Verification(ctx context.Context, id string) (Verification, error)
	// UpdateVerification replaces Attempts and Verified of an existing session.
	UpdateVerification(ctx context.Context, v Verification) error
	DeleteVerification(ctx context.Context, id string) error
	// PruneVerifications deletes sessions that expired before t.
	PruneVerifications(ctx context.Context, before time.Time) (int64, error)
}

// Connection is one row of the connection log: an account seen from an IP address.
// It is, with the phone number, the only data a court order can reach.
type Connection struct {
	Account   uuid.UUID
	IP        netip.Addr
	FirstSeen time.Time
	LastSeen  time.Time
}

// ConnLog is the connection log, kept for the configured retention window only.
type ConnLog interface {
	// RecordConnection creates the (account, ip) row or moves its LastSeen to at.
	RecordConnection(ctx context.Context, account uuid.UUID, ip netip.Addr, at time.Time) error
	// Connections lists an account's rows, newest LastSeen first.
	Connections(ctx context.Context, account uuid.UUID) ([]Connection, error)
	// PruneConnections deletes rows whose LastSeen is before t.
	PruneConnections(ctx context.Context, before time.Time) (int64, error)
}

// RateLimits holds token buckets that every node shares. A key is an opaque digest the
// caller derives (the server uses HMAC-SHA256 under a secret kept outside the database),
// so the store never holds the phone number, address or pair a bucket limits.
type RateLimits interface {
	// TakeToken takes one token from key's bucket, which holds at most capacity tokens and
	// gets one back every refill; a bucket never seen starts full. When none is left it
	// reports ok false and how long until one is. Concurrent takers, on any node, never
	// take more tokens than the bucket has.
	TakeToken(ctx context.Context, key []byte, capacity int, refill time.Duration, now time.Time) (ok bool, retryAfter time.Duration, err error)
	// PruneRateLimits deletes buckets that were full again before t: they behave exactly
	// as buckets never seen.
	PruneRateLimits(ctx context.Context, before time.Time) (int64, error)
}

// MarketWithdrawal is the public record that the service has left a country: what
// /v1/markets and the transparency page publish, and no personal data.
type MarketWithdrawal struct {
	Country string // ISO 3166-1 alpha-2, e.g. "DE"
	Since   time.Time
	Reason  string // the published statement
}

// Markets holds the countries the service is withdrawn from, so that every node refuses
// their registrations. The lawful-request desk (on one node, in its own database) is the
// authority; it mirrors each withdrawal and restoration here.
type Markets interface {
	// SetMarketWithdrawal records or replaces a withdrawal.
	SetMarketWithdrawal(ctx context.Context, w MarketWithdrawal) error
	// ClearMarketWithdrawal removes a country's withdrawal; an absent one is not an error.
	ClearMarketWithdrawal(ctx context.Context, country string) error
	// MarketWithdrawals lists every withdrawal, ordered by country.
	MarketWithdrawals(ctx context.Context) ([]MarketWithdrawal, error)
}

// Channel is a public broadcast channel (docs/channels.md) as the server holds it: the
// signed bytes package channel defines, stored unchanged, plus aggregate counters. The
// store keeps no follower list and no per-reader record; channel content is public.
type Channel struct {
	ID          [16]byte
	Handle      string // without the "@", unique
	Private     bool
	Genesis     []byte // the owner-signed post 0
	Head        []byte // the newest owner head the server accepted, nil if none
	HeadSeq     uint64 // the sequence number Head names
	Newest      uint64 // the newest post's sequence number (0: only the genesis)
	NewestHash  [32]byte
	State       []byte // the server's channel.Verifier state at Newest (MarshalBinary)
	Subscribers int64  // an aggregate count, never below 0
	CreatedAt   time.Time
}

// ChannelPost is one stored post: the bytes the signer submitted, and its aggregate
// view count.
type ChannelPost struct {
	Channel [16]byte
	Seq     uint64
	Post    []byte
	Views   int64
}

// ChannelNotice is an operator notice (a signed channel.Notice) on one post. Action is 1
// (restrict in Jurisdiction, an ISO 3166-1 alpha-2 code) or 2 (remove, Jurisdiction "").
type ChannelNotice struct {
	Channel      [16]byte
	Seq          uint64
	Action       uint8
	Jurisdiction string
	Notice       []byte
	CreatedAt    time.Time
}

// ChannelReport is a notice by anyone about a post (DSA Art. 16). It holds no reporter
// identity. Status is "open" until the operator decides: "dismissed", "restricted" or
// "removed", at DecidedAt (zero while open).
type ChannelReport struct {
	ID        uuid.UUID
	Channel   [16]byte
	Seq       uint64
	Reason    string
	Text      string
	CreatedAt time.Time
	Status    string
	DecidedAt time.Time
}

// Channels holds broadcast channels, their posts, operator notices and reports.
type Channels interface {
	// CreateChannel stores a new channel with its genesis (Newest 0, NewestHash the
	// genesis hash). ErrConflict if its id or handle is taken.
	CreateChannel(ctx context.Context, c Channel) error
	// Channel and ChannelByHandle return ErrNotFound for unknown channels.
	Channel(ctx context.Context, id [16]byte) (Channel, error)
	ChannelByHandle(ctx context.Context, handle string) (Channel, error)
	// AppendChannelPost stores p as post seq, atomically with the channel's new newest
	// hash and verifier state, only if seq is the channel's newest plus one: ErrConflict
	// otherwise (a concurrent poster, on any node, won), ErrNotFound for no channel.
	AppendChannelPost(ctx context.Context, p ChannelPost, hash [32]byte, state []byte) error
	// SetChannelHead stores an owner head naming post seq if it is newer than the head
	// held (an older or equal one is ignored, not an error). ErrNotFound for no channel.
	SetChannelHead(ctx context.Context, id [16]byte, seq uint64, head []byte) error
	// ChannelPostsAfter returns up to limit posts with seq > after, oldest first;
	// ChannelPostsBefore up to limit with seq < before, newest first. Neither returns the
	// genesis (post 0, held in Channel.Genesis).
	ChannelPostsAfter(ctx context.Context, id [16]byte, after uint64, limit int) ([]ChannelPost, error)
	ChannelPostsBefore(ctx context.Context, id [16]byte, before uint64, limit int) ([]ChannelPost, error)
	// AddChannelSubscribers adds delta (+1 or -1) to the subscriber count, which never
	// goes below 0. ErrNotFound for no channel.
	AddChannelSubscribers(ctx context.Context, id [16]byte, delta int64) error
	// AddChannelViews adds one to the view count of each listed post; unknown posts are
	// ignored.
	AddChannelViews(ctx context.Context, id [16]byte, seqs []uint64) error

	// PutChannelNotice stores an operator notice, replacing one with the same channel,
	// seq, action and jurisdiction.
	PutChannelNotice(ctx context.Context, n ChannelNotice) error
	// ChannelNotices lists a channel's notices, oldest first.
	ChannelNotices(ctx context.Context, channel [16]byte) ([]ChannelNotice, error)
	// AddChannelReport stores a new report (ErrConflict if its id is in use).
	AddChannelReport(ctx context.Context, r ChannelReport) error
	// ChannelReports lists reports with the given status ("" for all), oldest first.
	ChannelReports(ctx context.Context, status string) ([]ChannelReport, error)
	// ChannelReport returns one report, ErrNotFound if there is none.
	ChannelReport(ctx context.Context, id uuid.UUID) (ChannelReport, error)
	// DecideChannelReport moves an open report to status ("dismissed", "restricted" or
	// "removed") at at: ErrNotFound for no report, ErrConflict if it is not open.
	DecideChannelReport(ctx context.Context, id uuid.UUID, status string, at time.Time) error
}

// Report statuses.
const (
	ReportOpen       = "open"
	ReportDismissed  = "dismissed"
	ReportRestricted = "restricted"
	ReportRemoved    = "removed"
)

// ValidDecision reports whether status is one an operator can decide a report with.
func ValidDecision(status string) bool {
	return status == ReportDismissed || status == ReportRestricted || status == ReportRemoved
}
