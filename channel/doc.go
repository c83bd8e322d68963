// Package channel is the cryptographic core of Bastion's broadcast channels: the
// signed, hash-chained posts a channel is made of, and the [Verifier] every
// subscriber runs over them. It has no I/O and no storage; the server and the
// client build on it (docs/channels.md describes the format and the guarantees).
//
// A channel starts with a genesis post signed by its owner's Ed25519 key, naming
// its handle, title and description; the channel id is derived from the owner's key
// ([DeriveID]). Every later post, whether a message, an edit, a delete, a
// delegation of an admin key or a revocation, carries the channel id, its
// sequence number, the hash of the post before it, the signer's claimed time, its
// kind and the hash of its body, all signed by the owner or a delegated admin.
//
// What it protects: nobody without the owner's or a delegated admin's key, the
// server included, can forge, alter, drop, reorder or fork a channel's history
// without every subscriber's Verifier refusing it with an error that says which
// ([ErrForged], [ErrAltered], [ErrGap], [ErrReordered], [ErrFork], [ErrRevoked]).
// A post the operator withholds (notice and action) shows up as a signed header
// with the operator's signed statement of reasons ([Notice]), never as a silent
// hole.
//
// What it does not protect: the server can withhold the newest posts until a
// subscriber sees a newer owner-signed [Head] (freshness is bounded by how often the
// owner publishes one); it sees every public post and who fetches it; the time on a
// post is the signer's claim; a stolen owner key is the channel (there is no key
// rotation yet); and a stolen admin key signs validly until the owner revokes it.
// Confidentiality of private channels is package channel/private's job: here a
// private post's body is opaque ciphertext.
//
// This package implements the "Channels" section of the design (DESIGN.md) and
// issue 9 ("Broadcast channels the server can host but never forge").
package channel
