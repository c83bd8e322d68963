package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/store"
)

// Multi-recipient sends (issue 8): PUT /v1/messages carries the envelopes of one message
// for every device of several accounts, typically a group message encrypted once under
// the sender's Sender Key and sealed once per device. The server checks every account's
// device list, queues every envelope in one durable write or none, and keeps nothing
// about the request itself: no group, no member list, no record of which accounts were
// addressed together. What remains afterwards is the envelopes, each in its own device's
// queue, stored as envelopes sent one account at a time are, except for their time
// (docs/api.md says what a copy of the queue can still tell while they wait: adjacent
// seqs, and one server time to the whole second, shared with every other send of that
// second).

// multiSendRoutes registers the multi-recipient send.
func (s *Server) multiSendRoutes(m *http.ServeMux) {
	m.Handle("PUT /v1/messages", s.handle(s.authed(s.multiSend)))
}

// maxConcurrentMultiSends bounds the multi-sends one node handles at once: each may hold
// up to 32 MiB of body and as much again decoded, so 4 at once stay near 256 MiB.
const maxConcurrentMultiSends = 4

// multiSendWait is the longest a multi-send waits for a slot before it is answered 503;
// a client's context may end the wait sooner.
const multiSendWait = 10 * time.Second

// sendSlots is a counting semaphore, usable at its zero value.
type sendSlots struct {
	once sync.Once
	c    chan struct{}
	wait atomic.Int64 // nanoseconds; zero means multiSendWait (tests shorten it)
}

func (sl *sendSlots) ch() chan struct{} {
	sl.once.Do(func() { sl.c = make(chan struct{}, maxConcurrentMultiSends) })
	return sl.c
}

// acquire takes a slot, waiting until one is free, ctx ends or multiSendWait passes (then
// a 503 with Retry-After); the caller calls release once it is done with the request.
func (sl *sendSlots) acquire(ctx context.Context) (release func(), err error) {
	c := sl.ch()
	select {
	case c <- struct{}{}: // a free slot needs no timer
		return func() { <-c }, nil
	default:
	}
	wait := time.Duration(sl.wait.Load())
	if wait == 0 {
		wait = multiSendWait
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case c <- struct{}{}:
		return func() { <-c }, nil
	case <-ctx.Done():
	case <-t.C:
	}
	e := newError(http.StatusServiceUnavailable, api.CodeBusy,
		"too many multi-recipient sends are in progress; retry after the Retry-After delay")
	e.retryAfter = time.Second
	return nil, e
}

func (s *Server) multiSend(w http.ResponseWriter, r *http.Request, d device) error {
	// A declared length over the limit is refused before a byte of the body is read; an
	// undeclared one (chunked) is cut off at the limit by readMultiSend's reader.
	if r.ContentLength > api.MaxMultiSendBytes {
		return tooLargeBody()
	}
	// The slot is taken before the body is read: the body is what a slot bounds.
	release, err := s.multiSlots.acquire(r.Context())
	if err != nil {
		return err
	}
	defer release()
	req, err := readMultiSend(w, r)
	if err != nil {
		return err
	}
	at, err := s.queueMulti(r.Context(), d, req.Recipients)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.SendResponse{ServerTime: at})
	return nil
}

// readMultiSend reads the body of PUT /v1/messages, at most api.MaxMultiSendBytes. The
// form encoding/json writes is parsed without reflection (parseMultiSend); anything else
// takes the strict decoder, with its answers to malformed JSON.
func readMultiSend(w http.ResponseWriter, r *http.Request) (api.MultiSendRequest, error) {
	r.Body = http.MaxBytesReader(w, r.Body, api.MaxMultiSendBytes)
	buf := bytes.NewBuffer(make([]byte, 0, max(0, min(r.ContentLength, api.MaxMultiSendBytes))+bytes.MinRead))
	if _, err := buf.ReadFrom(r.Body); err != nil {
		return api.MultiSendRequest{}, jsonError(err)
	}
	if req, ok := parseMultiSend(buf.Bytes()); ok {
		return req, nil
	}
	var req api.MultiSendRequest
	r.Body = io.NopCloser(buf)
	if err := decodeJSON(w, r, api.MaxMultiSendBytes, &req); err != nil {
		return api.MultiSendRequest{}, err
	}
	return req, nil
}

// parseMultiSend reads a multi-recipient send in exactly the form encoding/json writes
// api.MultiSendRequest, with at least one recipient and one envelope each:
// {"recipients":[{"account":"<uuid>","messages":[{"device_id":N,"registration_id":N,
// "id":"<uuid>","body":"<base64>"},...]},...]}. Decoding 10,000 envelopes with
// encoding/json was the largest part of the handler's time for such a send (143 ms of
// CPU, most of it on UUIDs; this takes about 30 ms, docs/bench/fanout.md). Like parseSend it returns ok
// false for anything else, which the strict decoder then reads; a fuzz test holds the
// two to the same answer.
func parseMultiSend(p []byte) (req api.MultiSendRequest, ok bool) {
	s := scanner{p: p, ok: true}
	s.lit(`{"recipients":[`)
	for s.ok {
		var rc api.Recipient
		s.lit(`{"account":`)
		rc.Account = s.uuid()
		s.lit(`,"messages":`)
		rc.Messages = s.envelopes()
		s.lit(`}`)
		req.Recipients = append(req.Recipients, rc)
		if !s.ok || len(s.p) == 0 || s.p[0] != ',' {
			break
		}
		s.p = s.p[1:]
	}
	s.lit(`]}`)
	if !s.ok || len(s.p) != 0 {
		return api.MultiSendRequest{}, false
	}
	return req, true
}

func tooLargeBody() *httpError {
	return newError(http.StatusRequestEntityTooLarge, api.CodeTooLarge,
		fmt.Sprintf("request body is over its limit of %d bytes", api.MaxMultiSendBytes))
}

// validateMulti checks a multi-recipient send's shape, before any store read: the
// envelope count, each envelope as the 1:1 send checks it, and no account or (within an
// account) device named twice.
func validateMulti(recips []api.Recipient) error {
	if len(recips) == 0 {
		return badRequest("recipients is empty")
	}
	total := 0
	for _, rc := range recips {
		total += len(rc.Messages)
	}
	// The count is checked first so that an oversized request costs no more work. 10,000
	// is a full group (1,000 members) of 10 devices each; a larger audience is a channel.
	if total > api.MaxMultiRecipientDevices {
		return newError(http.StatusRequestEntityTooLarge, api.CodeTooLarge,
			fmt.Sprintf("%d envelopes is over the limit of %d per request", total, api.MaxMultiRecipientDevices))
	}
	seen := make(map[uuid.UUID]int, len(recips))
	for i, rc := range recips {
		if rc.Account == uuid.Nil {
			return badRequest(fmt.Sprintf("recipients[%d]: account is missing", i))
		}
		if j, dup := seen[rc.Account]; dup {
			return badRequest(fmt.Sprintf("recipients[%d]: the account of recipients[%d] appears twice", i, j))
		}
		seen[rc.Account] = i
		if err := validateEnvelopes(rc.Messages); err != nil {
			err.body.Message = fmt.Sprintf("recipients[%d].%s", i, err.body.Message)
			return err
		}
	}
	return nil
}

// validateEnvelopes checks one account's envelopes as the 1:1 send does.
func validateEnvelopes(msgs []api.OutgoingEnvelope) *httpError {
	var devs map[uint32]struct{}
	if len(msgs) > 8 { // a scan beats a map for a few devices, not for many
		devs = make(map[uint32]struct{}, len(msgs))
	}
	for i, m := range msgs {
		if len(m.Body) > api.MaxEnvelopeBody {
			return newError(http.StatusRequestEntityTooLarge, api.CodeTooLarge,
				fmt.Sprintf("messages[%d]: body is over %d bytes", i, api.MaxEnvelopeBody))
		}
		if len(m.Body) == 0 {
			return badRequest(fmt.Sprintf("messages[%d]: body is empty", i))
		}
		if m.ID == uuid.Nil {
			return badRequest(fmt.Sprintf("messages[%d]: id is missing", i))
		}
		dup := false
		if devs != nil {
			_, dup = devs[m.DeviceID]
			devs[m.DeviceID] = struct{}{}
		} else {
			for _, o := range msgs[:i] {
				dup = dup || o.DeviceID == m.DeviceID
			}
		}
		if dup {
			return badRequest(fmt.Sprintf("messages[%d]: device %d appears twice", i, m.DeviceID))
		}
	}
	return nil
}

// queueMulti is a multi-recipient send: it validates recips, checks every account's
// device list (d's own account, if named, addresses every device but d), and on success
// stores every envelope in one durable Enqueue and wakes the devices. On any mismatch it
// queues nothing and answers 409 (or 410 when every problem is a stale registration id)
// listing every account that is wrong. It returns the server time stamped on the
// envelopes.
func (s *Server) queueMulti(ctx context.Context, d device, recips []api.Recipient) (int64, error) {
	if err := validateMulti(recips); err != nil {
		return 0, err
	}
	accounts := make([]uuid.UUID, len(recips))
	for i, rc := range recips {
		accounts[i] = rc.Account
	}
	lists, err := s.devices.getMany(ctx, s.store, accounts)
	if err != nil {
		return 0, err
	}
	var bad []api.AccountMismatch
	onlyStale := true
	total := 0
	for i, rc := range recips {
		total += len(rc.Messages)
		devs := lists[i]
		if devs == nil {
			bad = append(bad, api.AccountMismatch{Account: rc.Account, Unknown: true})
			onlyStale = false
			continue
		}
		if e := checkDevices(devs, rc.Messages, rc.Account == d.account, d.id); e != nil {
			bad = append(bad, api.AccountMismatch{
				Account:        rc.Account,
				MissingDevices: e.body.MissingDevices,
				ExtraDevices:   e.body.ExtraDevices,
				StaleDevices:   e.body.StaleDevices,
			})
			onlyStale = onlyStale && e.status == http.StatusGone
		}
	}
	if len(bad) > 0 {
		var e *httpError
		if onlyStale {
			e = newError(http.StatusGone, api.CodeStaleDevices,
				"devices of the accounts listed were re-registered; fetch their new bundles and retry")
		} else {
			e = newError(http.StatusConflict, api.CodeMismatchedDevices,
				"the device lists of the accounts listed differ; add missing_devices, drop extra_devices, drop unknown accounts and retry")
		}
		e.body.Accounts = bad
		return 0, e
	}

	now := envelopeTime(s.now())
	if total == 0 {
		// Only one's own account, with no other device: nothing to do.
		return now.UnixMilli(), nil
	}
	envs := make([]*store.Envelope, 0, total)
	backing := make([]store.Envelope, 0, total)
	for _, rc := range recips {
		for _, m := range rc.Messages {
			backing = append(backing, store.Envelope{ID: m.ID, Account: rc.Account, Device: m.DeviceID, ServerTime: now, Body: m.Body})
			envs = append(envs, &backing[len(backing)-1])
		}
	}
	if err := s.enqueue(ctx, envs); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// A device went away between the check and the enqueue, and the store stored
			// nothing. Which account it was is not known here: forget them all.
			for _, rc := range recips {
				s.devices.forget(rc.Account)
			}
			return 0, newError(http.StatusConflict, api.CodeMismatchedDevices, "a device list changed; fetch them and retry")
		}
		return 0, fmt.Errorf("enqueueing: %w", err)
	}
	return now.UnixMilli(), nil
}

// envelopeTime is the server time stamped on queued envelopes: now to the whole second.
// Every envelope of one fan-out carries the same time, and at finer precision that time
// alone would pick out, in a copy of the queue, which accounts got the same message; at
// whole seconds it is shared with every other send of that second. Clients use it for
// sender certificate expiry (hours) and display, neither of which needs less.
func envelopeTime(now time.Time) time.Time { return now.Truncate(time.Second) }

// bulkDevices is a store that lists many accounts' devices in one query (both stores
// do); another is asked one account at a time.
type bulkDevices interface {
	DevicesOf(ctx context.Context, accounts []uuid.UUID) (map[uuid.UUID][]store.Device, error)
}

// getMany is get for many accounts: lists[i] is accounts[i]'s devices, nil for an account
// that does not exist. Lists not cached are read together when st is a bulkDevices, so a
// send to 10,000 accounts costs tens of queries rather than 10,000. The slices are shared:
// callers do not modify them.
func (c *deviceCache) getMany(ctx context.Context, st store.Accounts, accounts []uuid.UUID) ([][]store.Device, error) {
	lists := make([][]store.Device, len(accounts))
	var miss []uuid.UUID
	now := time.Now()
	c.mu.Lock()
	gen := c.gen
	for i, a := range accounts {
		if e, ok := c.m[a]; ok && now.Before(e.until) {
			lists[i] = e.devs
		} else {
			miss = append(miss, a)
		}
	}
	c.mu.Unlock()
	if len(miss) == 0 {
		return lists, nil
	}
	bulk, ok := st.(bulkDevices)
	if !ok || len(miss) < 4 {
		for i, a := range accounts {
			if lists[i] != nil {
				continue
			}
			devs, err := c.get(ctx, st, a)
			switch {
			case errors.Is(err, store.ErrNotFound):
				continue // nil: unknown
			case err != nil:
				return nil, fmt.Errorf("listing devices: %w", err)
			case devs == nil:
				devs = []store.Device{} // an account without devices is not an unknown one
			}
			lists[i] = devs
		}
		return lists, nil
	}
	found, err := bulk.DevicesOf(ctx, miss)
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	for _, devs := range found {
		for i := range devs {
			devs[i].CredentialHash = nil // not needed to check a device list; not kept
		}
	}
	for i, a := range accounts {
		if lists[i] == nil {
			lists[i] = found[a] // nil if unknown, which is not cached
		}
	}
	c.mu.Lock()
	if c.gen == gen {
		if c.m == nil || len(c.m)+len(found) > cacheMax {
			c.m = make(map[uuid.UUID]cachedDevices)
		}
		for a, devs := range found {
			c.m[a] = cachedDevices{devs: devs, until: now.Add(cacheTTL)}
		}
	}
	c.mu.Unlock()
	return lists, nil
}
