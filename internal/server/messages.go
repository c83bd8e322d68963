package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/store"
)

// send queues one envelope per device of the target account. The device list must be
// exactly right (409 names missing and extra devices, 410 stale registration ids), or
// nothing is queued; the answer is given only once every envelope is durable.
func (s *Server) send(w http.ResponseWriter, r *http.Request, d device) error {
	target, err := uuid.Parse(r.PathValue("account"))
	if err != nil {
		return badRequest("account is not a UUID")
	}
	var req api.SendRequest
	if err := decodeJSON(w, r, s.cfg.Limits.MaxSendBytes, &req); err != nil {
		return err
	}
	at, err := s.queue(r.Context(), d, target, req.Messages)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, api.SendResponse{ServerTime: at})
	return nil
}

// queue is a send, from HTTP or the WebSocket: it checks msgs against target's devices,
// stores one envelope per device durably and wakes the devices. It returns the server
// time stamped on the envelopes, or an *httpError (or an internal error).
func (s *Server) queue(ctx context.Context, d device, target uuid.UUID, msgs []api.OutgoingEnvelope) (int64, error) {
	for i, m := range msgs {
		if len(m.Body) > api.MaxEnvelopeBody {
			return 0, newError(http.StatusRequestEntityTooLarge, api.CodeTooLarge,
				fmt.Sprintf("messages[%d]: body is over %d bytes", i, api.MaxEnvelopeBody))
		}
		if len(m.Body) == 0 {
			return 0, badRequest(fmt.Sprintf("messages[%d]: body is empty", i))
		}
		if m.ID == uuid.Nil {
			return 0, badRequest(fmt.Sprintf("messages[%d]: id is missing", i))
		}
		for _, o := range msgs[:i] { // sends name a few devices: a scan beats a map
			if o.DeviceID == m.DeviceID {
				return 0, badRequest(fmt.Sprintf("messages[%d]: device %d appears twice", i, m.DeviceID))
			}
		}
	}

	devs, err := s.devices.get(ctx, s.store, target)
	if errors.Is(err, store.ErrNotFound) {
		return 0, errNoAccount
	}
	if err != nil {
		return 0, fmt.Errorf("listing devices: %w", err)
	}
	if e := checkDevices(devs, msgs, target == d.account, d.id); e != nil {
		return 0, e
	}
	now := envelopeTime(s.now()) // to the second, as fan-outs are: see envelopeTime
	if len(msgs) == 0 {
		// Sending to one's own account with no other device: nothing to do.
		return now.UnixMilli(), nil
	}
	envs := make([]*store.Envelope, len(msgs))
	backing := make([]store.Envelope, len(msgs))
	for i, m := range msgs {
		backing[i] = store.Envelope{ID: m.ID, Account: target, Device: m.DeviceID, ServerTime: now, Body: m.Body}
		envs[i] = &backing[i]
	}
	if err := s.enqueue(ctx, envs); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// A device went away between the check and the enqueue.
			s.devices.forget(target)
			return 0, newError(http.StatusConflict, api.CodeMismatchedDevices, "the device list changed; fetch it and retry")
		}
		return 0, fmt.Errorf("enqueueing: %w", err)
	}
	return now.UnixMilli(), nil
}

// enqueue stores envs in one durable write, all or none, then wakes each one's device.
// The store's error is returned as is.
func (s *Server) enqueue(ctx context.Context, envs []*store.Envelope) error {
	if err := s.store.Enqueue(ctx, envs); err != nil {
		return err
	}
	s.metrics.queued.Add(float64(len(envs)))
	for _, e := range envs {
		s.notify.Notify(e.Account, e.Device)
	}
	return nil
}

// checkDevices compares a send's envelopes with the target's devices. A sender writing to
// its own account addresses every device but itself.
func checkDevices(devs []store.Device, msgs []api.OutgoingEnvelope, self bool, selfDevice uint32) *httpError {
	want := make(map[uint32]uint32, len(devs)) // device id -> registration id
	for _, d := range devs {
		if self && d.ID == selfDevice {
			continue
		}
		want[d.ID] = d.RegistrationID
	}
	var missing, extra, stale []uint32
	got := make(map[uint32]bool, len(msgs))
	for _, m := range msgs {
		got[m.DeviceID] = true
		reg, ok := want[m.DeviceID]
		switch {
		case !ok:
			extra = append(extra, m.DeviceID)
		case reg != m.RegistrationID:
			stale = append(stale, m.DeviceID)
		}
	}
	for id := range want {
		if !got[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		slices.Sort(missing)
		slices.Sort(extra)
		e := newError(http.StatusConflict, api.CodeMismatchedDevices,
			"the device list differs from the account's; add missing_devices, drop extra_devices and retry")
		e.body.MissingDevices, e.body.ExtraDevices = missing, extra
		return e
	}
	if len(stale) > 0 {
		slices.Sort(stale)
		e := newError(http.StatusGone, api.CodeStaleDevices,
			"these devices were re-registered; fetch their new bundles and retry")
		e.body.StaleDevices = stale
		return e
	}
	return nil
}
