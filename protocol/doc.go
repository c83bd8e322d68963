// Package protocol is the Signal Protocol for Bastion clients, byte-compatible with
// Signal's libsignal (pinned at 0.90.0 in interop/libsignal): PQXDH session setup
// (X25519 + Kyber-1024 round 3), the Double Ratchet, and the messages that carry them.
// Sub-packages hold the pieces with their own life: curve (keys and XEdDSA, shared with
// the server), kem (Kyber-1024), senderkey (group messages) and fingerprint (safety
// numbers).
//
// It has no I/O: state lives behind the small store interfaces a client implements.
package protocol
