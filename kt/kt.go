// Package kt holds what a client or an auditor needs to check Bastion's key
// transparency log: the format of the log's entries, the signed checkpoints
// that commit to the log, and the proofs that tie the two together.
//
// The server appends every (account, device, identity key) binding and every
// phone-number or username lookup binding to an append-only Merkle log with
// RFC 6962 hashing (as implemented by golang.org/x/mod/sumdb/tlog) and signs
// its head as a checkpoint in the C2SP tlog-checkpoint format
// (https://c2sp.org/tlog-checkpoint), carried in the signed-note format of
// golang.org/x/mod/sumdb/note. Lookup bindings are indexed by an
// ECVRF-EDWARDS25519-SHA512-TAI output (RFC 9381, package [vrf]), never by
// the phone number or username itself.
//
// What it protects: a client that verifies an inclusion proof before trusting
// a contact's key ([VerifyInclusion]), and that checks every new checkpoint
// against the last one it trusted ([Verifier.Advance]) and against the ones
// other clients saw ([CompareCheckpoints]), detects a server that shows it a
// key the rest of the world does not see, or that rewrites history. An owner
// that reads the log's entries for its own account sees any device or key it
// did not add (a "ghost device").
//
// What it does not protect: a split view is detected only if the two views
// meet — through gossip between clients or an auditor; the server can still
// refuse service, delay entries, or learn which lookups a client makes. The
// log says who is bound to which key; it does not say that the person behind
// an account is who they claim to be (that is what safety numbers are for).
package kt
