package server

import (
	"context"
	"crypto/subtle"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/internal/store"
)

// Two short-lived caches take the store reads off the send path: a send used to read the
// sender's device (credentials) and the target's device list, two SQLite reads that cost
// more CPU than the durable insert they guard.
//
// The trade-off: a change made by another node (issue 7), or written to the store behind
// the server's back, is seen here only when the entry expires, after at most cacheTTL.
// Changes made through this server (re-registration, which replaces every device and its
// credentials) forget the account at once: server code that adds, removes or replaces a
// device calls disconnectAccount, or forget on both caches. Within the TTL, a device removed elsewhere is
// still refused by the store on enqueue (the foreign key), and a re-registration
// elsewhere lets at most cacheTTL of sends queue for the new device with the old
// registration id, which its client cannot decrypt and drops, as it would a message
// that raced the re-registration.
const (
	cacheTTL = time.Second
	// cacheMax bounds each cache; a full cache starts over rather than track recency.
	cacheMax = 1 << 16
)

// deviceCache holds accounts' device lists. Entries hold no credential digest.
type deviceCache struct {
	mu  sync.Mutex
	gen uint64 // bumped by forget, so that a read that raced it is not cached
	m   map[uuid.UUID]cachedDevices
}

type cachedDevices struct {
	devs  []store.Device
	until time.Time
}

// get returns account's devices, from the cache or from st. The slice is shared: callers
// do not modify it.
func (c *deviceCache) get(ctx context.Context, st store.Accounts, account uuid.UUID) ([]store.Device, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.m[account]
	gen := c.gen
	c.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.devs, nil
	}
	devs, err := st.Devices(ctx, account)
	if err != nil {
		return nil, err
	}
	for i := range devs {
		devs[i].CredentialHash = nil // not needed to check a device list; not kept
	}
	c.mu.Lock()
	if c.gen == gen {
		if c.m == nil || len(c.m) >= cacheMax {
			c.m = make(map[uuid.UUID]cachedDevices)
		}
		c.m[account] = cachedDevices{devs: devs, until: now.Add(cacheTTL)}
	}
	c.mu.Unlock()
	return devs, nil
}

func (c *deviceCache) forget(account uuid.UUID) {
	c.mu.Lock()
	c.gen++
	delete(c.m, account)
	c.mu.Unlock()
}

// credCache remembers, per device, the SHA-256 digest of a secret that authenticated
// recently. It holds what the store holds (the digest, never the secret) and is
// compared in constant time like the store's.
type credCache struct {
	mu  sync.Mutex
	gen uint64
	m   map[device]cachedCred
}

type cachedCred struct {
	sum   [32]byte
	until time.Time
}

// check reports whether sum is the cached digest for d.
func (c *credCache) check(d device, sum *[32]byte) bool {
	c.mu.Lock()
	e, ok := c.m[d]
	c.mu.Unlock()
	return ok && time.Now().Before(e.until) && subtle.ConstantTimeCompare(e.sum[:], sum[:]) == 1
}

// generation is read before the store is, and passed to put.
func (c *credCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *credCache) put(d device, sum *[32]byte, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return // forgotten while the store was read
	}
	if c.m == nil || len(c.m) >= cacheMax {
		c.m = make(map[device]cachedCred)
	}
	c.m[d] = cachedCred{sum: *sum, until: time.Now().Add(cacheTTL)}
}

func (c *credCache) forget(account uuid.UUID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for d := range c.m {
		if d.account == account {
			delete(c.m, d)
		}
	}
}
