package protocol

import "errors"

// Errors a caller may branch on. Every failure to authenticate or decrypt a message
// is [ErrInvalidMessage] and nothing more specific, whatever failed (MAC, padding, a
// wrong key, a Kyber ciphertext that decapsulated to garbage): one value, so that no
// caller can turn this package into an oracle by reporting failures differently.
var (
	// ErrInvalidMessage: the message is malformed, or does not authenticate or decrypt.
	ErrInvalidMessage = errors.New("protocol: invalid message")
	// ErrDuplicateMessage: the message's key was already used (a replay or a resend).
	ErrDuplicateMessage = errors.New("protocol: duplicate message")
	// ErrUntrustedIdentity: the identity store does not trust the peer's identity key.
	ErrUntrustedIdentity = errors.New("protocol: untrusted identity")
	// ErrNoSession: there is no usable session with the address.
	ErrNoSession = errors.New("protocol: no session")
	// ErrInvalidSignature: a bundle's prekey signature does not verify.
	ErrInvalidSignature = errors.New("protocol: invalid prekey signature")
	// ErrNoPreKey: a PreKeySignalMessage names a prekey this device does not have
	// (already used, or never made).
	ErrNoPreKey = errors.New("protocol: unknown prekey")
)
