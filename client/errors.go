package client

import (
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// Errors callers branch on.
var (
	// ErrNotRegistered: the profile has no account yet (register and verify first).
	ErrNotRegistered = errors.New("profile is not registered")
	// ErrAlreadyRegistered: the profile already holds an account.
	ErrAlreadyRegistered = errors.New("profile is already registered")
	// ErrNoPendingCode: Verify was called without RequestCode before it.
	ErrNoPendingCode = errors.New("no verification code was requested for this profile")
	// ErrIncorrectCode: the verification code is wrong; see [CodeError].
	ErrIncorrectCode = errors.New("wrong verification code")
	// ErrUnknownNumber: no account is registered with the phone number.
	ErrUnknownNumber = errors.New("number is not registered with Bastion")
	// ErrUnreachable: the server could not be reached or the connection broke.
	ErrUnreachable = errors.New("cannot reach the server")
	// ErrUntrustedIdentity is wrapped by [UntrustedIdentityError].
	ErrUntrustedIdentity = errors.New("contact's identity key changed and is not trusted")
	// ErrPassphraseRequired: the profile is protected by a passphrase and none was given.
	ErrPassphraseRequired = errors.New("profile is protected by a passphrase; give it")
	// ErrWrongPassphrase: the passphrase does not unlock the profile.
	ErrWrongPassphrase = errors.New("wrong passphrase for this profile")
	// ErrNoPassphraseSet: a passphrase was given for a profile that has none.
	ErrNoPassphraseSet = errors.New("profile has no passphrase, but one was given")
	// ErrUnknownContact: the number is not among the profile's contacts.
	ErrUnknownContact = errors.New("no contact with this number")
)

// CodeError is a wrong verification code, with the attempts the session has left
// (-1 when the server did not say).
type CodeError struct {
	AttemptsLeft int
}

func (e *CodeError) Error() string {
	if e.AttemptsLeft >= 0 {
		return fmt.Sprintf("wrong verification code (%d attempts left)", e.AttemptsLeft)
	}
	return "wrong verification code"
}

// Unwrap makes errors.Is(err, [ErrIncorrectCode]) true.
func (e *CodeError) Unwrap() error { return ErrIncorrectCode }

// UntrustedIdentityError reports that a contact's identity key is not the one this
// profile trusts: the contact re-registered, or someone (the server included) is
// attempting to intercept. Nothing was sent. Compare safety numbers, then call
// [Client.Trust].
type UntrustedIdentityError struct {
	Number  string // the contact's phone number, when known
	Account uuid.UUID
}

func (e *UntrustedIdentityError) Error() string {
	who := e.Number
	if who == "" {
		who = e.Account.String()
	}
	return fmt.Sprintf("the identity key of %s changed and is not trusted yet", who)
}

// Unwrap makes errors.Is(err, [ErrUntrustedIdentity]) true.
func (e *UntrustedIdentityError) Unwrap() error { return ErrUntrustedIdentity }
