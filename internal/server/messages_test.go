package server

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/bastionchat/bastion/api"
	"github.com/bastionchat/bastion/internal/store"
)

func envelope(device, reg uint32, body []byte) api.OutgoingEnvelope {
	return api.OutgoingEnvelope{DeviceID: device, RegistrationID: reg, ID: uuid.New(), Body: body}
}

func (h *harness) send(from *client, to uuid.UUID, envs ...api.OutgoingEnvelope) response {
	h.t.Helper()
	return h.do("PUT", "/v1/messages/"+to.String(), api.SendRequest{Messages: envs}, from)
}

func (h *harness) pending(c *client, device uint32) []store.Envelope {
	h.t.Helper()
	envs, err := h.st.Pending(context.Background(), c.account, device, 0, 1000)
	if err != nil {
		h.t.Fatalf("Pending() = %v", err)
	}
	return envs
}

// addDevice gives c a second device straight in the store (device linking is not an
// endpoint yet).
func (h *harness) addDevice(c *client, reg uint32) uint32 {
	h.t.Helper()
	d, err := h.st.AddDevice(context.Background(), c.account, store.Device{RegistrationID: reg, CredentialHash: make([]byte, 32)})
	if err != nil {
		h.t.Fatalf("AddDevice() = %v", err)
	}
	return d.ID
}

func TestSendDeviceList(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	bob := h.register("+14155550301", 0)
	alice := h.register("+14155550302", 0)
	second := h.addDevice(bob, 555)
	body := []byte("opaque ciphertext")
	tests := []struct {
		name                  string
		envs                  []api.OutgoingEnvelope
		status                int
		code                  string
		missing, extra, stale []uint32
	}{
		{"missing device", []api.OutgoingEnvelope{envelope(1, bob.regID, body)}, 409, api.CodeMismatchedDevices, []uint32{second}, nil, nil},
		{"extra device", []api.OutgoingEnvelope{envelope(1, bob.regID, body), envelope(second, 555, body), envelope(7, 1, body)}, 409, api.CodeMismatchedDevices, nil, []uint32{7}, nil},
		{"missing and extra", []api.OutgoingEnvelope{envelope(1, bob.regID, body), envelope(9, 1, body)}, 409, api.CodeMismatchedDevices, []uint32{second}, []uint32{9}, nil},
		{"stale registration id", []api.OutgoingEnvelope{envelope(1, bob.regID, body), envelope(second, 556, body)}, 410, api.CodeStaleDevices, nil, nil, []uint32{second}},
		{"no envelopes", nil, 409, api.CodeMismatchedDevices, []uint32{1, second}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.send(alice, bob.account, tt.envs...)
			h.want(r, tt.status, tt.code, "send")
			e := r.apiError()
			if !slices.Equal(e.MissingDevices, tt.missing) || !slices.Equal(e.ExtraDevices, tt.extra) || !slices.Equal(e.StaleDevices, tt.stale) {
				t.Errorf("send lists = missing %v extra %v stale %v, want %v %v %v",
					e.MissingDevices, e.ExtraDevices, e.StaleDevices, tt.missing, tt.extra, tt.stale)
			}
			if n := len(h.pending(bob, 1)) + len(h.pending(bob, second)); n != 0 {
				t.Errorf("queued after a refused send = %d, want 0", n)
			}
		})
	}
	r := h.send(alice, bob.account, envelope(1, bob.regID, body), envelope(second, 555, body))
	h.want(r, 200, "", "send with the right device list")
	if got := decodeBody[api.SendResponse](t, r).ServerTime; got != h.clock.Now().UnixMilli() {
		t.Errorf("server_time = %d, want %d", got, h.clock.Now().UnixMilli())
	}
	for _, d := range []uint32{1, second} {
		if p := h.pending(bob, d); len(p) != 1 || !bytes.Equal(p[0].Body, body) {
			t.Errorf("device %d queue = %d envelopes, want the one sent", d, len(p))
		}
	}

	// To one's own account: every device but the sender's.
	h.want(h.send(bob, bob.account, envelope(1, bob.regID, body), envelope(second, 555, body)), 409, api.CodeMismatchedDevices, "send to own account including self")
	h.want(h.send(bob, bob.account, envelope(second, 555, body)), 200, "", "send to own other device")
	h.want(h.send(alice, alice.account), 200, "", "send to own account with no other device")
	h.want(h.send(alice, uuid.New(), envelope(1, 1, body)), 404, api.CodeNotFound, "send to an unknown account")
}

func TestSendSizeLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.Limits.MaxSendBytes = 1 << 20 })
	bob := h.register("+14155550303", 0)
	alice := h.register("+14155550304", 0)
	h.want(h.send(alice, bob.account, envelope(1, bob.regID, make([]byte, api.MaxEnvelopeBody))), 200, "", "send 96 KiB")
	h.want(h.send(alice, bob.account, envelope(1, bob.regID, make([]byte, api.MaxEnvelopeBody+1))), 413, api.CodeTooLarge, "send 96 KiB + 1")
	if n := len(h.pending(bob, 1)); n != 1 {
		t.Errorf("queued = %d, want 1 (the oversized one refused)", n)
	}
	// A request body over the send limit is cut off while it is read.
	big := fmt.Sprintf(`{"messages":[{"device_id":1,"registration_id":%d,"id":%q,"body":"%s"}]}`,
		bob.regID, uuid.New(), bytes.Repeat([]byte("A"), 3<<19))
	h.want(h.do("PUT", "/v1/messages/"+bob.account.String(), big, alice), 413, api.CodeTooLarge, "send a 1.5 MiB request")
}

func TestSendIsIdempotentPerEnvelopeID(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	bob := h.register("+14155550305", 0)
	alice := h.register("+14155550306", 0)
	e := envelope(1, bob.regID, []byte("once"))
	h.want(h.send(alice, bob.account, e), 200, "", "send")
	h.want(h.send(alice, bob.account, e), 200, "", "resend of the same id")
	if n := len(h.pending(bob, 1)); n != 1 {
		t.Errorf("queued = %d, want 1", n)
	}
}

func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	bob := h.register("+14155550307", 0)
	send := "/v1/messages/" + bob.account.String()
	tests := []struct {
		name, method, path, body string
	}{
		{"syntax error", "POST", "/v1/verification", `{"number":`},
		{"not JSON", "POST", "/v1/verification", `number=+14155550100`},
		{"unknown field", "POST", "/v1/verification", `{"number":"+14155550100","admin":true}`},
		{"wrong type", "POST", "/v1/verification", `{"number":14155550100}`},
		{"two values", "POST", "/v1/verification", `{"number":"+14155550100"}{}`},
		{"empty body", "POST", "/v1/verification", ``},
		{"unknown field in code", "PUT", "/v1/verification/x/code", `{"code":"1","session":"y"}`},
		{"unknown field in keys", "PUT", "/v1/keys", `{"identity_key":"BQ=="}`},
		{"bad base64", "PUT", send, `{"messages":[{"device_id":1,"registration_id":1,"id":"` + uuid.NewString() + `","body":"!!"}]}`},
		{"bad uuid", "PUT", send, `{"messages":[{"device_id":1,"registration_id":1,"id":"x","body":"AA=="}]}`},
		{"negative device", "PUT", send, `{"messages":[{"device_id":-1,"registration_id":1,"id":"` + uuid.NewString() + `","body":"AA=="}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(tt.method, tt.path, tt.body, bob)
			h.want(r, 400, api.CodeBadJSON, tt.method+" "+tt.path)
			if e := r.apiError(); len(e.Message) < 10 {
				t.Errorf("message = %q, want a clear explanation", e.Message)
			}
		})
	}
	h.want(h.do("GET", "/v1/nothing", nil, nil), 404, api.CodeNotFound, "unknown route")
}
