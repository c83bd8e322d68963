// Package client is the Bastion SDK: everything a program needs to be one device of a
// Bastion account. It registers a phone number, publishes and maintains the device's
// prekeys, sends and receives end-to-end encrypted 1:1 messages through a bastiond
// server, and keeps the device's state in one local profile.
//
// It implements the client side of docs/api.md with the Signal Protocol of package
// protocol (PQXDH and the Double Ratchet, byte-compatible with libsignal 0.90.0). Every
// envelope body is sealed sender v1 (package protocol/sealed), so the server stores no
// sender for a message; inside the Signal ciphertext travels a padded [Content].
//
// # The profile
//
// A profile is a directory (mode 0700) holding one SQLite file (mode 0600; the pure-Go
// driver modernc.org/sqlite, so no cgo). Private keys, session and sender-key records,
// the device password and received texts are sealed with AES-256-GCM under a random
// profile key. With a passphrase ([Options.Passphrase]) that key is wrapped under a key
// derived by Argon2id; without one it is stored as it is, and only the file's mode
// protects it.
//
// # Guarantees
//
//   - A received message is stored, in the same transaction as the ratchet step that
//     decrypted it, before it is acknowledged: a crash between delivery and storage
//     loses nothing, and one after storage loses nothing either (the server delivers
//     again, the duplicate is dropped by its envelope id).
//   - A send is retried with the same envelope ids when the server corrects the device
//     list, so a recipient never stores one message twice.
//   - A contact's new identity key is recorded and reported ([Message.SafetyNumberChanged],
//     [UntrustedIdentityError]); nothing is sent to it until [Client.Trust].
//
// What it does not protect: the device itself (whoever runs code as the profile's owner
// can read it, and without a passphrase so can whoever copies the file), the phone
// numbers of contacts and the times of messages in the profile (stored in the clear),
// metadata visible to the server (which account receives, when, how much, and the
// sender's authenticated connection when it sends), and the authenticity of a new
// contact's first identity key (trust on first use: compare safety numbers).
//
// The SDK logs at debug level only, through [Options.Logger], and never a plaintext, a
// key, a phone number or an account id.
package client
