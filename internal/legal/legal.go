// Package legal is the lawful-request desk: it takes in court orders, checks them, has
// two different operators approve them, answers them with a signed disclosure package,
// notifies the affected users (after a deferral the order may impose), appends every
// order and its outcome to a public Merkle log, computes the transparency report from
// that log alone, and keeps the list of markets the service has withdrawn from. It is
// also where operators decide the reports of public channel posts (notice and action,
// moderation.go): a restriction or removal is a notice signed with the server's key, and
// every report and decision is logged and counted.
//
// It implements DESIGN.md "Lawful requests and transparency"; docs/lawful-access.md
// describes it for authorities and operators.
//
// What it protects: the boundary of what an order can reach. The desk sees user data only
// through [Subscribers], which offers the account registered with a phone number and
// that account's connection log and nothing else; a test fences the package's imports
// so that it cannot reach the store, the server or the protocol code. A category the
// data inventory says is not held is answered "not held" from the inventory, without a
// lookup. No disclosure happens before two different operators approved. The disclosure
// package holds, per target, only the phone number and connection-log entries inside the
// retention window, and is signed with the server's Ed25519 key. The public log holds no
// personal data: jurisdiction, dates, categories, counts, outcome and the SHA-256 of the
// order.
//
// What it does not protect: the validity of an order (operators judge that, and can
// reject), the secrecy of legal.db (it holds the orders, which name their targets; file
// permissions and disk encryption are the operator's), or against a dishonest operator
// who controls the server's key: the log makes a rewritten history detectable, not
// impossible.
package legal

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/google/uuid"
)

// Subscribers is the desk's only view of user data: the account registered with a phone
// number, and that account's connection log. It is read-only and offers nothing else.
type Subscribers interface {
	// AccountByNumber returns the account registered with an E.164 number; found is
	// false if there is none.
	AccountByNumber(ctx context.Context, number string) (account uuid.UUID, found bool, err error)
	// Connections returns the account's connection-log rows.
	Connections(ctx context.Context, account uuid.UUID) ([]Connection, error)
}

// Connection is one connection-log row: an IP address with first and last seen.
type Connection struct {
	IP        netip.Addr
	FirstSeen time.Time
	LastSeen  time.Time
}

// Notifier delivers a notice to every device of an account. The server implements it by
// queueing a server-originated envelope for each device.
type Notifier interface {
	NotifyAccount(ctx context.Context, account uuid.UUID, notice []byte) error
}

// Category is a data category of the data inventory, as far as the desk needs it.
type Category struct {
	ID          string
	Name        string
	Held        bool // the service stores it
	Disclosable bool // a court order can reach it
}

// The categories the desk can disclose, by inventory id. Nothing else can ever be in a
// disclosure package, whatever the inventory says.
const (
	CategoryPhoneNumber   = "phone_number"
	CategoryConnectionLog = "connection_log"
)

// Errors callers branch on.
var (
	ErrNotFound     = errors.New("no such order")
	ErrUnauthorized = errors.New("unknown operator token")
	// ErrNeedsApproval: disclosure before two different operators approved.
	ErrNeedsApproval = errors.New("order needs the approval of two different operators")
	// ErrAlreadyApproved: the same operator approving twice.
	ErrAlreadyApproved = errors.New("operator already approved this order")
	// ErrConcluded: a decision on an order that is already rejected or answered.
	ErrConcluded = errors.New("order already concluded")
)
