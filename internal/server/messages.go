package server

import (
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
	seen := make(map[uint32]bool, len(req.Messages))
	for i, m := range req.Messages {
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
		if seen[m.DeviceID] {
			return badRequest(fmt.Sprintf("messages[%d]: device %d appears twice", i, m.DeviceID))
		}
		seen[m.DeviceID] = true
	}

	devs, err := s.store.Devices(r.Context(), target)
	if errors.Is(err, store.ErrNotFound) {
		return errNoAccount
	}
	if err != nil {
		return fmt.Errorf("listing devices: %w", err)
	}
	if e := checkDevices(devs, req.Messages, target == d.account, d.id); e != nil {
		return e
	}
	if len(req.Messages) == 0 {
		// Sending to one's own account with no other device: nothing to do.
		writeJSON(w, http.StatusOK, api.SendResponse{ServerTime: s.now().UnixMilli()})
		return nil
	}
	now := s.now()
	envs := make([]*store.Envelope, len(req.Messages))
	for i, m := range req.Messages {
		envs[i] = &store.Envelope{ID: m.ID, Account: target, Device: m.DeviceID, ServerTime: now, Body: m.Body}
	}
	if err := s.store.Enqueue(r.Context(), envs); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// A device went away between the check and the enqueue.
			return newError(http.StatusConflict, api.CodeMismatchedDevices, "the device list changed; fetch it and retry")
		}
		return fmt.Errorf("enqueueing: %w", err)
	}
	s.metrics.queued.Add(float64(len(envs)))
	for _, e := range envs {
		s.notify.Notify(e.Account, e.Device)
	}
	writeJSON(w, http.StatusOK, api.SendResponse{ServerTime: now.UnixMilli()})
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
