package channel

import (
	"errors"
	"fmt"
)

// What a [Verifier] detects. Each is returned wrapped in an [*Error] (or, for a gap,
// a [*GapError]) that names the post; test for them with errors.Is. They are what a
// client shows its user: each means the server, or someone between it and the
// subscriber, served something the channel's owner did not publish.
var (
	// ErrForged means a post is signed by a key that is not the owner's and not an
	// admin key delegated for that sequence number.
	ErrForged = errors.New("forged post: not signed by the channel")
	// ErrAltered means a post's signature does not verify: it was changed after it
	// was signed (or made up under an authorised key by someone without it).
	ErrAltered = errors.New("altered post: signature does not match")
	// ErrGap means posts are missing before the one offered: dropped, or not yet
	// delivered. The [*GapError] says which.
	ErrGap = errors.New("posts missing")
	// ErrReordered means posts were served out of order.
	ErrReordered = errors.New("posts out of order")
	// ErrFork means two different validly signed posts claim one place in the
	// chain, or a post does not chain onto the one before it: the subscriber is
	// being shown a different history from someone else.
	ErrFork = errors.New("forked channel history")
	// ErrRevoked means a post is signed by an admin key revoked before it.
	ErrRevoked = errors.New("post by a revoked admin key")
	// ErrDuplicate means the post was accepted before. It is harmless: delivery is
	// at least once.
	ErrDuplicate = errors.New("post already accepted")
	// ErrWithheld means a body is missing without a valid statement of reasons from
	// the operator (a silent hole).
	ErrWithheld = errors.New("post withheld without a statement of reasons")
	// ErrWrongChannel means a post, head or notice belongs to another channel.
	ErrWrongChannel = errors.New("post from another channel")
	// ErrInvalidEntry means a validly signed post breaks the channel's rules: an
	// edit of a deleted post, a delete of a delegation, a revocation of a key never
	// delegated.
	ErrInvalidEntry = errors.New("post breaks the channel rules")
)

// Error says which post a [Verifier] refused, and why.
type Error struct {
	Seq    uint64
	Err    error
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("channel post %d: %v", e.Seq, e.Err)
	}
	return fmt.Sprintf("channel post %d: %v: %s", e.Seq, e.Err, e.Detail)
}

// Unwrap returns the sentinel, one of the Err values above.
func (e *Error) Unwrap() error { return e.Err }

func postErr(seq uint64, err error, format string, args ...any) *Error {
	return &Error{Seq: seq, Err: err, Detail: fmt.Sprintf(format, args...)}
}

// GapError says that posts From to To (inclusive) are missing: fetch them, and if
// the server cannot serve them, show the hole.
type GapError struct {
	From, To uint64
}

func (e *GapError) Error() string {
	if e.From == e.To {
		return fmt.Sprintf("channel post %d: %v", e.From, ErrGap)
	}
	return fmt.Sprintf("channel posts %d to %d: %v", e.From, e.To, ErrGap)
}

// Unwrap returns [ErrGap].
func (e *GapError) Unwrap() error { return ErrGap }
