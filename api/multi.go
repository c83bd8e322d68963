package api

import "github.com/google/uuid"

// Multi-recipient sends (issue 8): one request carries the envelopes of a group message
// (or any message to several accounts) for every device of every recipient account.
const (
	// MaxMultiRecipientDevices is the most envelopes one multi-recipient send may carry:
	// 1,000 members (the group limit) with up to 10 devices each.
	MaxMultiRecipientDevices = 10_000
	// MaxMultiSendBytes bounds the JSON of a multi-recipient send: 10,000 envelopes of a
	// few hundred bytes of sealed sender-key ciphertext, base64-encoded, with headroom.
	MaxMultiSendBytes = 32 << 20
)

// MultiSendRequest is the body of PUT /v1/messages: one entry per recipient account, each
// with one envelope per device of that account (every device but the sender's own when
// the sender's account is among them). The server checks every account's device list,
// queues every envelope durably or none, and answers once all are durable. It keeps no
// record of which accounts or devices were addressed together.
type MultiSendRequest struct {
	Recipients []Recipient `json:"recipients"`
}

// Recipient is the envelopes of one account in a multi-recipient send.
type Recipient struct {
	Account  uuid.UUID          `json:"account"`
	Messages []OutgoingEnvelope `json:"messages"`
}

// AccountMismatch is one account whose device list in a multi-recipient send was wrong:
// the 409 (mismatched_devices) and 410 (stale_devices) answers of PUT /v1/messages list
// them in Error.Accounts. Unknown reports an account that does not exist (any more).
type AccountMismatch struct {
	Account        uuid.UUID `json:"account"`
	Unknown        bool      `json:"unknown,omitempty"`
	MissingDevices []uint32  `json:"missing_devices,omitempty"`
	ExtraDevices   []uint32  `json:"extra_devices,omitempty"`
	StaleDevices   []uint32  `json:"stale_devices,omitempty"`
}
