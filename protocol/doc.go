// Package protocol is the Signal Protocol for Bastion clients, byte-compatible with
// Signal's libsignal (pinned at 0.90.0 in interop/libsignal): PQXDH session setup
// (X25519 + Kyber-1024 round 3), the Double Ratchet, and the messages that carry them.
// Sub-packages hold the pieces with their own life: curve (keys and XEdDSA, shared with
// the server), kem (Kyber-1024), proto (the protobuf encodings), senderkey (group
// messages) and fingerprint (safety numbers).
//
// It implements Signal's PQXDH and Double Ratchet specifications
// exactly as libsignal rust/protocol/src/ratchet.rs,
// session.rs, session_cipher.rs and protocol.rs do at v0.90.0: the same KDF labels,
// message framing (version byte 0x44, 8-byte truncated HMAC-SHA256 over both identity
// keys and the message), AES-256-CBC, limits (25 000 forward jumps, 2 000 skipped keys
// per chain, 5 receiving chains, 40 archived states), simultaneous initiation and
// unacknowledged-session handling. It sends (in PreKeySignalMessages, as libsignal
// does) and checks the sender/recipient binding (SignalMessage field 6) that libsignal
// added in 0.91. It does not run SPQR, the
// post-quantum ratchet of libsignal 0.92 and later; libsignal 0.90 negotiates it away.
//
// What it protects: the confidentiality and integrity of 1:1 messages against the
// server and the network, forward secrecy and post-compromise recovery through the
// ratchet, and the session's initial secret against a future quantum computer (Kyber).
// What it does not: the authenticity of a peer's identity key (that is safety numbers
// and key transparency), metadata (who talks to whom, when, how much), the device
// itself, or replays of a PreKeySignalMessage to a last-resort Kyber prekey unless the
// [KyberPreKeyStore] refuses them as documented.
//
// It has no I/O: state lives behind the small store interfaces in [Stores], which a
// client implements ([MemoryStore] keeps them in memory). [Cipher] is the entry point.
package protocol
