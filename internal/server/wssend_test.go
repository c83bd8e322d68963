package server

import (
	"encoding/json"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
)

func (w *wsClient) write(f any) {
	w.t.Helper()
	p, err := json.Marshal(f)
	if err != nil {
		w.t.Fatalf("json.Marshal() = %v", err)
	}
	if err := wsutil.WriteClientText(w.conn, p); err != nil {
		w.t.Fatalf("writing frame: %v", err)
	}
}

// sendResults reads frames until n send_result frames arrived, by request id.
func (w *wsClient) sendResults(n int) map[uint64]api.Frame {
	w.t.Helper()
	got := make(map[uint64]api.Frame)
	for len(got) < n {
		if f := w.next(); f.Type == api.FrameSendResult {
			got[f.RequestID] = f
		}
	}
	return got
}

// TestWebSocketSend: a send frame is answered like PUT /v1/messages, with the same device
// checks, limits and idempotence, and queues what it says.
func TestWebSocketSend(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	alice := h.register("+14155550801", 0)
	bob := h.register("+14155550802", 0)
	second := h.addDevice(bob, 555)
	body := []byte("opaque ciphertext")
	dup, dup2 := envelope(1, bob.regID, body), envelope(second, 555, body)
	unknown := uuid.New()
	tests := []struct {
		id     uint64
		dest   *uuid.UUID
		msgs   []api.OutgoingEnvelope
		status int
		code   string
	}{
		{1, &bob.account, []api.OutgoingEnvelope{dup, dup2}, 200, ""},
		{2, &bob.account, []api.OutgoingEnvelope{dup, dup2}, 200, ""}, // the same ids again: a no-op
		{3, &bob.account, []api.OutgoingEnvelope{envelope(1, bob.regID, body)}, 409, api.CodeMismatchedDevices},
		{4, &bob.account, []api.OutgoingEnvelope{envelope(1, bob.regID, body), envelope(second, 556, body)}, 410, api.CodeStaleDevices},
		{5, &unknown, []api.OutgoingEnvelope{envelope(1, 1, body)}, 404, api.CodeNotFound},
		{6, nil, []api.OutgoingEnvelope{envelope(1, 1, body)}, 400, api.CodeBadRequest},
		{7, &bob.account, []api.OutgoingEnvelope{envelope(1, bob.regID, nil), envelope(second, 555, body)}, 400, api.CodeBadRequest},
		{8, &bob.account, []api.OutgoingEnvelope{envelope(1, bob.regID, make([]byte, api.MaxEnvelopeBody+1))}, 413, api.CodeTooLarge},
	}
	// 96 KiB bodies do not fit the WebSocket's message limit; raise it for this one case.
	h.srv.cfg.Limits.MaxWSMessage = 256 << 10
	w := h.dial(alice)
	w.next() // queue_empty
	for _, tt := range tests {
		w.write(api.Frame{Type: api.FrameSend, RequestID: tt.id, Destination: tt.dest, Messages: tt.msgs})
	}
	got := w.sendResults(len(tests))
	for _, tt := range tests {
		f := got[tt.id]
		if f.Status != tt.status {
			t.Errorf("send %d: status = %d (%+v), want %d", tt.id, f.Status, f.Error, tt.status)
			continue
		}
		if tt.status == 200 {
			if f.ServerTime != h.clock.Now().UnixMilli() || f.Error != nil {
				t.Errorf("send %d: server_time = %d, error %+v, want %d and none", tt.id, f.ServerTime, f.Error, h.clock.Now().UnixMilli())
			}
		} else if f.Error == nil || f.Error.Code != tt.code {
			t.Errorf("send %d: error = %+v, want code %q", tt.id, f.Error, tt.code)
		}
	}
	for _, d := range []uint32{1, second} {
		if p := h.pending(bob, d); len(p) != 1 || string(p[0].Body) != string(body) {
			t.Errorf("device %d queue = %d envelopes, want the one sent once", d, len(p))
		}
	}
	// Delivered to a connected device like any other envelope.
	bw := h.dial(bob)
	if envs, _ := bw.envelopes(1); envs[0].ID != dup.ID {
		t.Errorf("delivered %s, want %s", envs[0].ID, dup.ID)
	}
}

func TestWebSocketSendBadFrames(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	alice := h.register("+14155550803", 0)
	dest := uuid.New()
	tests := []struct {
		name string
		f    string
		want ws.StatusCode
	}{
		{"send without request id", `{"type":"send","destination":"` + dest.String() + `","messages":[]}`, ws.StatusPolicyViolation},
		{"send with ack ids", `{"type":"send","request_id":1,"ids":["` + dest.String() + `"]}`, ws.StatusUnsupportedData},
		{"ack with messages", `{"type":"ack","messages":[{"device_id":1}]}`, ws.StatusUnsupportedData},
		{"ack with request id", `{"type":"ack","request_id":3}`, ws.StatusUnsupportedData},
		{"client sends a send_result", `{"type":"send_result","request_id":1,"status":200}`, ws.StatusUnsupportedData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := h.dial(alice)
			w.t = t
			w.next() // queue_empty
			if err := wsutil.WriteClientText(w.conn, []byte(tt.f)); err != nil {
				t.Fatalf("writing: %v", err)
			}
			if code := w.closeCode(); code != tt.want {
				t.Errorf("close code = %d, want %d", code, tt.want)
			}
		})
	}
}
