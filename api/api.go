// Package api holds the wire types between a Bastion client and server, version 1 (the
// "/v1" path prefix). It has no logic: every type here is a JSON document whose meaning,
// limits and errors are specified in docs/api.md.
//
// Byte fields ([]byte) travel as standard base64 (RFC 4648 section 4, with padding), as
// encoding/json writes them. Times are milliseconds since the Unix epoch, UTC. Account ids
// are UUID strings (libsignal's ACI); device ids are small integers, 1 being the primary.
//
// Compatibility: a field is never removed from or repurposed in version 1; a breaking
// change goes into a new package and a new path prefix. Servers refuse unknown fields in
// requests (400 bad_json), so a client learns at once that it speaks a newer dialect.
//
// What it does not protect: these are plain documents. Confidentiality of envelope bodies
// comes from the Signal Protocol on the client; the transport is TLS.
package api

import "github.com/google/uuid"

// PathPrefix is the prefix of every version-1 endpoint.
const PathPrefix = "/v1"

// Limits a client must respect (a server refuses more). See docs/api.md.
const (
	// MaxEnvelopeBody is the largest envelope body the server queues: 96 KiB.
	MaxEnvelopeBody = 96 << 10
	// VerificationCodeDigits is the length of an SMS verification code.
	VerificationCodeDigits = 6
)

// Error is the body of every error answer (4xx and 5xx). Code is stable and meant for
// programs; Message is for people and may change. The device lists are set only for the
// codes that name them.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// MissingDevices and ExtraDevices: code "mismatched_devices" (409).
	MissingDevices []uint32 `json:"missing_devices,omitempty"`
	ExtraDevices   []uint32 `json:"extra_devices,omitempty"`
	// StaleDevices: code "stale_devices" (410).
	StaleDevices []uint32 `json:"stale_devices,omitempty"`
	// AttemptsLeft: code "incorrect_code" (403).
	AttemptsLeft *int `json:"attempts_left,omitempty"`
	// Accounts: codes "mismatched_devices" (409) and "stale_devices" (410) of a
	// multi-recipient send, one entry per account whose devices were wrong.
	Accounts []AccountMismatch `json:"accounts,omitempty"`
}

// Stable error codes, one per distinct situation a client may act on.
const (
	CodeBadJSON           = "bad_json"             // 400: malformed JSON, unknown or missing field
	CodeBadRequest        = "bad_request"          // 400: a field has an invalid value
	CodeInvalidNumber     = "invalid_number"       // 400: not a valid phone number
	CodeBadSignature      = "bad_signature"        // 400: a prekey signature does not verify
	CodeUnauthorized      = "unauthorized"         // 401: missing or wrong credentials
	CodeIncorrectCode     = "incorrect_code"       // 403: wrong verification code
	CodeNotVerified       = "session_not_verified" // 403: register before the code was verified
	CodeNotFound          = "not_found"            // 404: no such account, device or route
	CodeSessionNotFound   = "session_not_found"    // 404: unknown or expired verification session
	CodeMismatchedDevices = "mismatched_devices"   // 409: device list differs; see Missing/Extra
	CodeStaleDevices      = "stale_devices"        // 410: registration ids changed; see Stale
	CodeTooLarge          = "too_large"            // 413: request or envelope over its limit
	CodeRateLimited       = "rate_limited"         // 429: try again after Retry-After seconds
	CodeTooManyAttempts   = "too_many_attempts"    // 429: the session's code attempts are used up
	CodeNoPreKeys         = "no_prekeys"           // 404: the device has no signed or Kyber prekey
	CodeSMSUnavailable    = "sms_unavailable"      // 503: the code could not be sent
	CodeInternal          = "internal"             // 500: the server failed; details are in its log
	CodeShuttingDown      = "shutting_down"        // 503: the server is stopping
	CodeMarketWithdrawn   = "market_withdrawn"     // 451: the service is withdrawn from the number's country
	CodeBusy              = "busy"                 // 503: too many multi-recipient sends at once; retry after Retry-After
)

// CreateVerificationRequest starts a registration: POST /v1/verification.
type CreateVerificationRequest struct {
	// Number is a phone number in E.164 form ("+14155550100"); the server normalises it.
	Number string `json:"number"`
}

// VerificationResponse describes a verification session.
type VerificationResponse struct {
	SessionID string `json:"session_id"`
	ExpiresAt int64  `json:"expires_at"` // ms since epoch
	Verified  bool   `json:"verified"`
}

// SubmitCodeRequest proves ownership of the number: PUT /v1/verification/{session}/code.
type SubmitCodeRequest struct {
	Code string `json:"code"`
}

// PreKey is a one-time Curve25519 prekey. PublicKey is 33 bytes (0x05 || u).
type PreKey struct {
	KeyID     uint32 `json:"key_id"`
	PublicKey []byte `json:"public_key"`
}

// SignedPreKey is a signed Curve25519 prekey (33-byte PublicKey) or a Kyber-1024 prekey
// (1569-byte PublicKey: type byte 0x08 then the key). Signature is the 64-byte XEdDSA
// signature of the account's identity key over PublicKey.
type SignedPreKey struct {
	KeyID     uint32 `json:"key_id"`
	PublicKey []byte `json:"public_key"`
	Signature []byte `json:"signature"`
}

// RegisterRequest creates the account (or replaces it, for a number already registered)
// with its primary device: POST /v1/accounts.
type RegisterRequest struct {
	SessionID       string         `json:"session_id"`
	IdentityKey     []byte         `json:"identity_key"`    // 33 bytes
	RegistrationID  uint32         `json:"registration_id"` // 1..16380
	SignedPreKey    SignedPreKey   `json:"signed_prekey"`
	KyberLastResort SignedPreKey   `json:"kyber_last_resort"`
	PreKeys         []PreKey       `json:"prekeys,omitempty"`
	KyberPreKeys    []SignedPreKey `json:"kyber_prekeys,omitempty"`
}

// RegisterResponse carries the new device's credentials. Password is shown once; the
// server keeps only its SHA-256.
type RegisterResponse struct {
	AccountID    uuid.UUID `json:"account_id"`
	DeviceID     uint32    `json:"device_id"`
	Password     string    `json:"password"`
	Reregistered bool      `json:"reregistered"`
}

// SetKeysRequest uploads a device's prekeys: PUT /v1/keys. Absent fields leave the stored
// value alone; one-time keys are added.
type SetKeysRequest struct {
	SignedPreKey    *SignedPreKey  `json:"signed_prekey,omitempty"`
	KyberLastResort *SignedPreKey  `json:"kyber_last_resort,omitempty"`
	PreKeys         []PreKey       `json:"prekeys,omitempty"`
	KyberPreKeys    []SignedPreKey `json:"kyber_prekeys,omitempty"`
}

// PreKeyCount is the answer to GET /v1/keys: one-time keys the device has left.
type PreKeyCount struct {
	Count      int `json:"count"`       // one-time EC prekeys
	KyberCount int `json:"kyber_count"` // one-time Kyber prekeys
}

// BundleResponse is the answer to GET /v1/keys/{account}/{device}.
type BundleResponse struct {
	IdentityKey []byte         `json:"identity_key"`
	Devices     []DeviceBundle `json:"devices"`
}

// DeviceBundle is what a sender needs to start a session with one device.
type DeviceBundle struct {
	DeviceID       uint32       `json:"device_id"`
	RegistrationID uint32       `json:"registration_id"`
	SignedPreKey   SignedPreKey `json:"signed_prekey"`
	PreKey         *PreKey      `json:"prekey,omitempty"` // absent when none is left
	KyberPreKey    SignedPreKey `json:"kyber_prekey"`
	// KyberLastResort reports that KyberPreKey is the device's last-resort key.
	KyberLastResort bool `json:"kyber_last_resort"`
	// KT is the device's binding in the key transparency log.
	KT *KTBinding `json:"kt,omitempty"`
}

// LookupRequest asks which account a phone number belongs to: POST /v1/directory.
type LookupRequest struct {
	Number string `json:"number"`
}

// LookupResponse names the account registered with a number.
type LookupResponse struct {
	AccountID uuid.UUID `json:"account_id"`
	KT        *KTLookup `json:"kt,omitempty"` // the number's binding in the key transparency log
}

// SendRequest carries one envelope per destination device: PUT /v1/messages/{account}.
type SendRequest struct {
	Messages []OutgoingEnvelope `json:"messages"`
}

// OutgoingEnvelope is one ciphertext for one device.
type OutgoingEnvelope struct {
	DeviceID       uint32 `json:"device_id"`
	RegistrationID uint32 `json:"registration_id"`
	// ID is chosen by the sender, unique per destination device; resending the same ID
	// while it is queued is a no-op, and receivers drop duplicates by it.
	ID   uuid.UUID `json:"id"`
	Body []byte    `json:"body"` // at most MaxEnvelopeBody bytes
}

// SendResponse acknowledges that every envelope is durable.
type SendResponse struct {
	ServerTime int64 `json:"server_time"` // ms since epoch, stamped on every envelope
}

// TrustRootResponse is the answer to GET /v1/certificate/trust-root: the sealed-sender
// trust root clients check server certificates against.
type TrustRootResponse struct {
	TrustRoot []byte `json:"trust_root"` // 33-byte Curve25519 public key
}

// DeliveryCertificateResponse is the answer to GET /v1/certificate/delivery: the calling
// device's sealed-sender certificate (libsignal's serialized SenderCertificate).
type DeliveryCertificateResponse struct {
	Certificate []byte `json:"certificate"`
}

// WebSocket frames (GET /v1/websocket): JSON text frames, one Frame each.
const (
	FrameEnvelopes  = "envelopes"   // server -> client: Envelopes, in queue order
	FrameQueueEmpty = "queue_empty" // server -> client: everything queued at connect was sent
	FrameAck        = "ack"         // client -> server: IDs delivered and stored
	// FrameSend is a send over the WebSocket (client -> server): RequestID, Destination
	// and Messages, the body of PUT /v1/messages/{Destination}. It saves a request's
	// HTTP and authentication per message.
	FrameSend = "send"
	// FrameSendResult answers a send (server -> client): RequestID, Status (the HTTP
	// status the same PUT would have had), ServerTime on 200, Error otherwise.
	FrameSendResult = "send_result"
)

// Frame is one WebSocket message in either direction.
type Frame struct {
	Type      string      `json:"type"`
	Envelopes []Envelope  `json:"envelopes,omitempty"`
	IDs       []uuid.UUID `json:"ids,omitempty"`

	// RequestID pairs a send with its send_result; the client chooses it.
	RequestID   uint64             `json:"request_id,omitempty"`
	Destination *uuid.UUID         `json:"destination,omitempty"` // send: the target account
	Messages    []OutgoingEnvelope `json:"messages,omitempty"`    // send: one per device
	Status      int                `json:"status,omitempty"`      // send_result
	ServerTime  int64              `json:"server_time,omitempty"` // send_result on 200
	Error       *Error             `json:"error,omitempty"`       // send_result otherwise

	// Channels: channel_subscribe. Channel and Posts: channel_posts (see channels.go).
	Channels []string      `json:"channels,omitempty"`
	Channel  string        `json:"channel,omitempty"`
	Posts    []ChannelPost `json:"posts,omitempty"`
}

// Envelope is a queued ciphertext delivered to a device. The server does not know and does
// not say who sent it: identifying the sender is the body's business.
type Envelope struct {
	ID         uuid.UUID `json:"id"`
	ServerTime int64     `json:"server_time"` // ms since epoch
	Body       []byte    `json:"body"`
}

// ServerNotice is the body of an envelope the server itself queues: a notice from the
// operator (a lawful-request notice, a market withdrawal). Users' envelopes are sealed
// sender and do not parse as one. Any user can queue any body for anyone, so a client
// trusts a notice only if Signature is the server's Ed25519 signature (key: GET
// /v1/legal/key, pinned at registration) over NoticeContext followed by Notice.
type ServerNotice struct {
	Notice    []byte `json:"server_notice"` // JSON: {"type": "legal_notice" | "market_withdrawn", ...}
	Signature []byte `json:"signature"`
}

// NoticeContext prefixes what a notice signature covers, so that a signature made for a
// notice can never pass as one over a disclosure package or a log checkpoint, which the
// same key signs.
const NoticeContext = "bastion server notice v1\x00"
