// Package multinode tests Bastion's multi-node setup from the outside, as an operator
// runs it: three real bastiond processes on one PostgreSQL database (a throwaway cluster
// from package pgtest) and one NATS server (in-process), with clients of the client SDK
// connected to different nodes.
//
// What it proves: a message sent through one node reaches a recipient listening on
// another at once (the wake-up crossed NATS; without it the bus's one-minute sweep is the
// only path, and the test waits far less), and when a node is killed with SIGKILL in the
// middle of a load, every message a server acknowledged is delivered: the queue lives in
// PostgreSQL, so a node holds nothing that dies with it. Senders and receivers of the
// killed node move to a surviving one, as a client behind a load balancer would.
//
// What it does not: partitions between nodes and NATS (package bus tests those), a
// PostgreSQL crash (package postgres's crash test), or load beyond what two cores carry
// in a few seconds. There is no code outside the tests.
package multinode
